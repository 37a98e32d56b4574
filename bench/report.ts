/*
 * Turns the results of one run into Markdown: the machine and versions,
 * the targets with their status, and one table per scenario. Figures are
 * medians over the rounds with the range (min–max) in brackets; ratios are
 * computed per round against the reference measured in that same round.
 */
import type { Environment } from "./lib/environment.js";
import { formatBytes, GiB, MiB, numberSummary, percent, percentSummary, summarize, type Summary } from "./lib/stats.js";
import type { LoadResult } from "./scenarios/load.js";
import type { MemoryResult } from "./scenarios/memory.js";
import type { MinioStreamingResult } from "./scenarios/minio.js";
import type { LoadCell, SmallOpsResult, Target } from "./scenarios/small-ops.js";
import type { PathMeasurements, StreamingResult } from "./scenarios/streaming.js";

export interface RunResults {
  readonly command: string;
  readonly quick: boolean;
  /** Scenarios run when --only chose some, or undefined for all. */
  readonly only: readonly string[] | undefined;
  readonly startedAt: Date;
  readonly finishedAt: Date;
  readonly loadAverageAtEnd: string;
  readonly environment: Environment;
  readonly streaming?: StreamingResult;
  readonly minio?: MinioStreamingResult;
  readonly smallOps?: SmallOpsResult;
  readonly load?: LoadResult;
  readonly memory?: MemoryResult;
  /** Scenarios that did not run, with the reason. */
  readonly skipped: { scenario: string; reason: string }[];
  /** Scenarios that failed, with the error. */
  readonly failed: { scenario: string; error: string }[];
}

/** Status of one performance target. */
interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  readonly met: boolean | undefined;
}

const RSS_LIMIT_BYTES = 300 * MiB;
const STREAM_TCP_SHARE = 0.5;
const MINIO_SHARE = 0.8;
const GET_P99_LIMIT_MS = 5;

export function renderReport(results: RunResults): string {
  const lines: string[] = [];
  let mode = results.quick ? "quick mode: small sizes, one round, a smoke test and not a measurement" : "full run";
  if (results.only) mode += `, only ${results.only.join(", ")}`;
  lines.push(`## Results (${mode})`, "");
  lines.push(`Run from ${results.startedAt.toISOString()} to ${results.finishedAt.toISOString()} with:`, "");
  lines.push("```sh", results.command, "```", "");
  lines.push(...renderEnvironment(results.environment, results.loadAverageAtEnd), "");
  lines.push(...renderTargets(results), "");
  if (results.streaming) lines.push(...renderStreaming(results.streaming), "");
  if (results.minio) lines.push(...renderMinio(results.minio), "");
  if (results.smallOps) lines.push(...renderSmallOps(results.smallOps), "");
  if (results.load) lines.push(...renderLoad(results.load), "");
  if (results.memory) lines.push(...renderMemory(results.memory), "");
  for (const { scenario, reason } of results.skipped) lines.push(`Skipped: ${scenario}: ${reason}.`, "");
  for (const { scenario, error } of results.failed) lines.push(`**Failed**: ${scenario}: ${error}`, "");
  return `${lines.join("\n").trimEnd()}\n`;
}

/** Renders the machine and version table of a run. */
export function renderEnvironment(env: Environment, loadAverageAtEnd: string): string[] {
  const lines = [
    "### Machine and versions",
    "",
    "| | |",
    "| --- | --- |",
    `| CPU | ${env.cpu}, ${env.cores} cores |`,
    `| memory | ${env.memory} |`,
    `| system | ${env.kernel} |`,
    `| load average (1, 5, 15 min) | ${env.loadAverageAtStart} at the start, ${loadAverageAtEnd} at the end |`,
    `| Node.js | ${env.node} |`,
    `| Engram commit | ${env.commit} |`,
  ];
  for (const [name, version] of Object.entries(env.packages)) lines.push(`| ${name} | ${version} |`);
  for (const [name, version] of Object.entries(env.tools)) lines.push(`| ${name} | ${version} |`);
  return lines;
}

/** Ratios of `path` to `reference`, one per round (a speed ratio is the inverse of the time ratio). */
function speedRatios(path: readonly number[], reference: readonly number[]): number[] {
  return path.map((seconds, round) => reference[round]! / seconds).filter((ratio) => Number.isFinite(ratio));
}

function speeds(bytes: number, seconds: readonly number[]): Summary {
  return summarize(seconds.filter(Number.isFinite).map((value) => bytes / MiB / value));
}

function maxOf(values: readonly number[]): number {
  const finite = values.filter(Number.isFinite);
  return finite.length === 0 ? Number.NaN : Math.max(...finite);
}

function mib(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / MiB).toFixed(0)} MiB` : "n/a";
}

function renderTargets(results: RunResults): string[] {
  const checks: TargetCheck[] = [];
  const { streaming, minio, smallOps, load, memory } = results;

  if (streaming) {
    const tcp = streaming.paths.find((path) => path.role === "ceiling");
    const tus = streaming.paths.find((path) => path.name.startsWith("tus"));
    for (const path of streaming.paths.filter((entry) => entry.role === "engram")) {
      for (const direction of ["upload", "download"] as const) {
        const seconds = direction === "upload" ? path.uploadSeconds : path.downloadSeconds;
        const toTcp = summarize(speedRatios(seconds, direction === "upload" ? tcp!.uploadSeconds : tcp!.downloadSeconds));
        const toTus = summarize(speedRatios(seconds, direction === "upload" ? tus!.uploadSeconds : tus!.downloadSeconds));
        checks.push({
          target: `${direction}, ${path.name}: at least ${percent(STREAM_TCP_SHARE)} of raw TCP and faster than tus`,
          measured: `${percentSummary(toTcp)} of raw TCP, ${percentSummary(toTus)} of tus`,
          met: toTcp.median >= STREAM_TCP_SHARE && toTus.median > 1,
        });
      }
    }
  }
  if (minio) {
    const direct = minio.paths.find((path) => path.role === "reference")!;
    for (const path of minio.paths.filter((entry) => entry.role === "engram")) {
      for (const direction of ["upload", "download"] as const) {
        const ratio = summarize(
          direction === "upload" ? speedRatios(path.uploadSeconds, direct.uploadSeconds) : speedRatios(path.downloadSeconds, direct.downloadSeconds),
        );
        checks.push({
          target: `${direction} through MinIO, ${path.name.replace(/^Engram on MinIO: /, "")}: at least ${MINIO_SHARE} of the direct minio client`,
          measured: percentSummary(ratio),
          met: ratio.median >= MINIO_SHARE,
        });
      }
    }
  }
  if (smallOps) {
    for (const cell of smallOps.cells.filter((entry) => entry.target === "Engram" && entry.operation === "GetObject" && entry.concurrency === 16)) {
      const p99 = summarize(cell.runs.map((run) => run.p99Ms));
      checks.push({
        target: `GetObject p99 under ${GET_P99_LIMIT_MS} ms at concurrency 16, ${cell.generator} load`,
        measured: numberSummary(p99, 2, "ms"),
        met: p99.median < GET_P99_LIMIT_MS,
      });
    }
  }
  if (load) {
    for (const count of load.counts) {
      const phases = load.phases.filter((phase) => phase.target === "Engram" && phase.count === count);
      const failures = phases.reduce((sum, phase) => sum + phase.uploadFailures + phase.downloadFailures, 0);
      const verified = phases.reduce((sum, phase) => sum + phase.verifiedDownloads, 0);
      checks.push({
        target: `${count} concurrent uploads and downloads with zero failures`,
        measured: `${failures} failures; ${verified} of ${count * phases.length} downloads verified`,
        met: failures === 0 && verified === count * phases.length,
      });
    }
  }

  const peaks = engramPeaks(results);
  if (peaks.length > 0) {
    const over = peaks.filter((peak) => peak.bytes >= RSS_LIMIT_BYTES);
    const highest = peaks.reduce((a, b) => (b.bytes > a.bytes ? b : a));
    checks.push({
      target: `server RSS under ${mib(RSS_LIMIT_BYTES)} in every scenario`,
      measured: `highest ${mib(highest.bytes)} (${highest.where}); ${over.length} of ${peaks.length} measurements at or over the limit`,
      met: over.length === 0,
    });
    if (memory) {
      checks.push({
        target: `server RSS under ${mib(RSS_LIMIT_BYTES)} on the first start, which creates the PGlite database`,
        measured: mib(memory.engramFirstStartPeakBytes),
        met: memory.engramFirstStartPeakBytes < RSS_LIMIT_BYTES,
      });
    }
  }

  const lines = ["### Targets", "", "| target | measured | met |", "| --- | --- | --- |"];
  for (const check of checks) lines.push(`| ${check.target} | ${check.measured} | ${check.met === undefined ? "n/a" : check.met ? "yes" : "**no**"} |`);
  return lines;
}

/** Collects every peak RSS of an Engram server that the run measured, with where it was measured. */
function engramPeaks(results: RunResults): { bytes: number; where: string }[] {
  const peaks: { bytes: number; where: string }[] = [];
  const addPaths = (scenario: string, paths: readonly PathMeasurements[]): void => {
    for (const path of paths.filter((entry) => entry.role === "engram")) {
      peaks.push({ bytes: maxOf(path.uploadPeakRss), where: `${scenario}, upload, ${path.name}` });
      peaks.push({ bytes: maxOf(path.downloadPeakRss), where: `${scenario}, download, ${path.name}` });
    }
  };
  if (results.streaming) addPaths("streaming", results.streaming.paths);
  if (results.minio) addPaths("MinIO", results.minio.paths);
  for (const cell of results.smallOps?.cells.filter((entry) => entry.target === "Engram") ?? []) {
    peaks.push({ bytes: maxOf(cell.runs.map((run) => run.peakRssBytes)), where: `small operations, ${cell.operation} c=${cell.concurrency}, ${cell.generator}` });
  }
  for (const phase of results.load?.phases.filter((entry) => entry.target === "Engram") ?? []) {
    peaks.push({ bytes: phase.uploadPeakRss, where: `load, ${phase.count} uploads` });
    peaks.push({ bytes: phase.downloadPeakRss, where: `load, ${phase.count} downloads` });
  }
  for (const step of results.memory?.steps.filter((entry) => entry.server === "Engram") ?? []) {
    peaks.push({ bytes: step.peakRssBytes, where: `memory, ${step.step}` });
  }
  return peaks.filter((peak) => Number.isFinite(peak.bytes));
}

function renderStreaming(result: StreamingResult): string[] {
  const tcp = result.paths.find((path) => path.role === "ceiling")!;
  const tus = result.paths.find((path) => path.name.startsWith("tus"))!;
  const lines = [
    `### 1. Streaming ${formatBytes(result.sizeBytes)}, embedded backend (${result.rounds} round${result.rounds === 1 ? "" : "s"})`,
    "",
    "Speeds in MiB/s; ratios against raw TCP and tus from the same round. Peak RSS is the server's (Engram, the tus peer, the TCP peer).",
    "",
    "| path | upload MiB/s | upload vs raw TCP | upload vs tus | download MiB/s | download vs raw TCP | download vs tus | server peak RSS |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const path of result.paths) {
    const hasDownload = path.downloadSeconds.some(Number.isFinite);
    const cells = [
      path.name,
      numberSummary(speeds(result.sizeBytes, path.uploadSeconds), 0, ""),
      percentSummary(summarize(speedRatios(path.uploadSeconds, tcp.uploadSeconds))),
      percentSummary(summarize(speedRatios(path.uploadSeconds, tus.uploadSeconds))),
      hasDownload ? numberSummary(speeds(result.sizeBytes, path.downloadSeconds), 0, "") : "—",
      hasDownload ? percentSummary(summarize(speedRatios(path.downloadSeconds, tcp.downloadSeconds))) : "—",
      hasDownload ? percentSummary(summarize(speedRatios(path.downloadSeconds, tus.downloadSeconds))) : "—",
      mib(maxOf([...path.uploadPeakRss, ...path.downloadPeakRss])),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("", ...renderCpu(result.sizeBytes, result.paths));
  return lines;
}

/**
 * CPU seconds per GiB moved, of the server process and of the benchmark
 * process (the client), summed over user and system time of all threads.
 * They depend less than speeds on other programs sharing the cores.
 */
function renderCpu(sizeBytes: number, paths: readonly PathMeasurements[]): string[] {
  const perGiB = (values: readonly number[]): string => {
    const finite = values.filter(Number.isFinite);
    return finite.length === 0 ? "—" : numberSummary(summarize(finite.map((value) => (value * GiB) / sizeBytes)), 2, "");
  };
  const lines = [
    "CPU seconds per GiB (user and system time of all threads; the client is the benchmark process):",
    "",
    "| path | upload, server | upload, client | download, server | download, client |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const path of paths) {
    lines.push(`| ${path.name} | ${perGiB(path.uploadServerCpu)} | ${perGiB(path.uploadClientCpu)} | ${perGiB(path.downloadServerCpu)} | ${perGiB(path.downloadClientCpu)} |`);
  }
  return lines;
}

function renderMinio(result: MinioStreamingResult): string[] {
  const direct = result.paths.find((path) => path.role === "reference")!;
  const lines = [
    `### 2. Streaming ${formatBytes(result.sizeBytes)}, MinIO backend (${result.rounds} round${result.rounds === 1 ? "" : "s"})`,
    "",
    `Engram stores blobs in MinIO and metadata in ${result.metadata}. Peak RSS is Engram's for the Engram rows and MinIO's for the direct row. The presigned row moves the bytes between the client and MinIO, with URLs that Engram issues (\`ENGRAM_PRESIGN_URLS=store\`), and its upload ends with FinalizePresignedUpload, where Engram reads the object back to compute its checksums.`,
    "",
    "| path | upload MiB/s | upload vs direct | download MiB/s | download vs direct | server peak RSS |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const path of result.paths) {
    const cells = [
      path.name,
      numberSummary(speeds(result.sizeBytes, path.uploadSeconds), 0, ""),
      percentSummary(summarize(speedRatios(path.uploadSeconds, direct.uploadSeconds))),
      numberSummary(speeds(result.sizeBytes, path.downloadSeconds), 0, ""),
      percentSummary(summarize(speedRatios(path.downloadSeconds, direct.downloadSeconds))),
      mib(maxOf([...path.uploadPeakRss, ...path.downloadPeakRss])),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("", ...renderCpu(result.sizeBytes, result.paths), "", "The server of the direct row is MinIO; for the Engram rows it is Engram, and MinIO's own CPU time is not counted.");
  return lines;
}

function renderSmallOps(result: SmallOpsResult): string[] {
  const lines = [
    `### 3. Small operations, embedded backend (${result.rounds} round${result.rounds === 1 ? "" : "s"} of ${result.secondsPerRun} s per cell)`,
    "",
    `GetObject reads the metadata of a 1 KiB object; ListObjects returns ${result.listedObjects} objects in one page. The bare Connect handler returns Engram's own responses, stored once, so the messages are the same size. Each load generator holds one HTTP/2 connection. Latencies in ms; throughput in calls per second.`,
    "",
  ];
  for (const generator of ["Connect-ES", "ghz"] as const) {
    const cells = result.cells.filter((cell) => cell.generator === generator);
    if (cells.length === 0) {
      if (generator === "ghz") lines.push(`ghz did not run: ${result.ghzUnavailable ?? "unknown reason"}.`, "");
      continue;
    }
    lines.push(
      `Load from ${generator === "ghz" ? "ghz (Go)" : "the Connect-ES gRPC client in the benchmark process"}:`,
      "",
      "| operation | concurrency | Engram p50 | Engram p99 | bare p50 | bare p99 | Engram calls/s | bare calls/s | Engram vs bare | failures |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    );
    for (const operation of ["GetObject", "ListObjects"] as const) {
      for (const concurrency of result.concurrencies) {
        const find = (target: Target): LoadCell | undefined =>
          cells.find((cell) => cell.operation === operation && cell.concurrency === concurrency && cell.target === target);
        const engram = find("Engram");
        const bare = find("bare Connect handler");
        if (!engram || !bare) continue;
        const ratios = engram.runs.map((run, round) => run.callsPerSecond / bare.runs[round]!.callsPerSecond);
        const failures = [...engram.runs, ...bare.runs].reduce((sum, run) => sum + run.failures, 0);
        lines.push(
          `| ${operation} | ${concurrency} | ${numberSummary(summarize(engram.runs.map((run) => run.p50Ms)), 2, "")} | ${numberSummary(summarize(engram.runs.map((run) => run.p99Ms)), 2, "")} | ${numberSummary(summarize(bare.runs.map((run) => run.p50Ms)), 2, "")} | ${numberSummary(summarize(bare.runs.map((run) => run.p99Ms)), 2, "")} | ${numberSummary(summarize(engram.runs.map((run) => run.callsPerSecond)), 0, "")} | ${numberSummary(summarize(bare.runs.map((run) => run.callsPerSecond)), 0, "")} | ${percentSummary(summarize(ratios))} | ${failures} |`,
        );
      }
    }
    lines.push("");
  }
  return lines;
}

function renderLoad(result: LoadResult): string[] {
  const lines = [
    `### 4. Load: concurrent uploads of ${formatBytes(result.objectBytes)}, then all downloaded (${result.rounds} round${result.rounds === 1 ? "" : "s"})`,
    "",
    `Engram clients share HTTP/2 connections, ${result.streamsPerConnection} streams each; the tus client opens one HTTP/1.1 connection per request. Times in seconds for the whole batch; "vs tus" is tus's time divided by Engram's in the same round (above 100%: Engram faster).`,
    "",
    "| uploads | server | upload s | download s | upload vs tus | download vs tus | failures | verified downloads | peak RSS upload / download |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const count of result.counts) {
    for (const target of ["Engram", "tus"] as const) {
      const phases = result.phases.filter((phase) => phase.count === count && phase.target === target);
      const tus = result.phases.filter((phase) => phase.count === count && phase.target === "tus");
      const upload = phases.map((phase) => phase.uploadSeconds);
      const download = phases.map((phase) => phase.downloadSeconds);
      const failures = phases.reduce((sum, phase) => sum + phase.uploadFailures + phase.downloadFailures, 0);
      const verified = phases.reduce((sum, phase) => sum + phase.verifiedDownloads, 0);
      const versusTus = target === "tus" ? ["—", "—"] : [
        percentSummary(summarize(speedRatios(upload, tus.map((phase) => phase.uploadSeconds)))),
        percentSummary(summarize(speedRatios(download, tus.map((phase) => phase.downloadSeconds)))),
      ];
      lines.push(
        `| ${count} | ${target} | ${numberSummary(summarize(upload), 1, "")} | ${numberSummary(summarize(download), 1, "")} | ${versusTus.join(" | ")} | ${failures} | ${verified} of ${count * phases.length} | ${mib(maxOf(phases.map((phase) => phase.uploadPeakRss)))} / ${mib(maxOf(phases.map((phase) => phase.downloadPeakRss)))} |`,
      );
    }
  }
  const messages = result.phases.flatMap((phase) => phase.failureMessages.map((message) => `${phase.target}, ${phase.count} uploads: ${message}`));
  if (messages.length > 0) {
    lines.push("", "First failures:", "");
    for (const message of messages.slice(0, 10)) lines.push(`- ${message}`);
  }
  return lines;
}

function renderMemory(result: MemoryResult): string[] {
  const lines = [
    `### 5. Memory: ${formatBytes(result.sizeBytes)} object, embedded backend`,
    "",
    `Engram's first start on an empty data directory peaked at ${mib(result.engramFirstStartPeakBytes)}; the measured server, started again on that directory, had ${mib(result.engramIdleRssBytes)} when idle. The tus peer had ${mib(result.tusIdleRssBytes)} when idle.`,
    "",
    "| server | step | seconds | peak RSS | RSS at the end |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const step of result.steps) {
    const peak = step.peakWasReset ? mib(step.peakRssBytes) : `${mib(step.peakRssBytes)} (peak not reset)`;
    lines.push(`| ${step.server} | ${step.step} | ${step.seconds.toFixed(1)} | ${peak} | ${mib(step.endRssBytes)} |`);
  }
  lines.push("", `For a stalled download, "RSS at the end" is the RSS after the client had not read for ${result.stallSeconds} s.`);
  return lines;
}
