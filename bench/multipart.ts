/*
 * npm run bench:multipart [-- OPTIONS]: uploads one large object through a
 * multipart upload into MinIO and writes the result as Markdown. See USAGE.
 */
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

import { runBenchmark } from "./lib/cleanup.js";
import { describeEnvironment } from "./lib/environment.js";
import { REPO_ROOT } from "./lib/paths.js";
import { writeBetweenMarkers } from "./lib/results-file.js";
import { GiB, MiB } from "./lib/stats.js";
import { findOrInstallMinio, versionOf } from "./lib/tools.js";
import { renderEnvironment } from "./report.js";
import { runMultipart, type MultipartResult } from "./scenarios/multipart.js";

const USAGE = `Usage: npm run bench:multipart -- [options]

Uploads one object through CreateMultipartUpload, UploadPart and
CompleteMultipartUpload into Engram on MinIO, downloads it, checks every
sha256 and records the peak RSS of the Engram server. The data comes from
a seeded generator; MinIO keeps the parts and the object (about twice the
size) on disk in the temporary directory while it runs.

Options:
  --size-mib N       object size in MiB (default ${(6 * GiB) / MiB}, 6 GiB)
  --part-mib N       part size in MiB (default 64)
  --parallel N       parts uploaded at once, one connection each (default 4)
  --quick            a 64 MiB object in 8 MiB parts, a smoke test; writes to
                     ${join("$TMPDIR", "engram-bench-multipart-quick.md")} unless --out is given
  --out FILE         where to write the results (default: docs/benchmarks.md,
                     replacing only the part between its multipart markers)
  --cpu-prof DIR     run Engram with node --cpu-prof, writing into DIR
  -h, --help         print this help
`;

const RESULTS_START = "<!-- bench:multipart:start -->";
const RESULTS_END = "<!-- bench:multipart:end -->";
/** Target for the peak RSS of the Engram server in every phase. */
const RSS_LIMIT_BYTES = 300 * MiB;

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      "size-mib": { type: "string" },
      "part-mib": { type: "string" },
      parallel: { type: "string" },
      quick: { type: "boolean", default: false },
      out: { type: "string" },
      "cpu-prof": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const quick = values.quick ?? false;
  const sizeBytes = positive(values["size-mib"], "--size-mib", quick ? 64 : 6 * 1024) * MiB;
  const partBytes = positive(values["part-mib"], "--part-mib", quick ? 8 : 64) * MiB;
  const partsInFlight = positive(values.parallel, "--parallel", 4);
  let out = join(REPO_ROOT, "docs", "benchmarks.md");
  if (values.out) out = resolve(values.out);
  else if (quick) out = join(tmpdir(), "engram-bench-multipart-quick.md");

  const minioBinary = await findOrInstallMinio(log);
  const environment = await describeEnvironment({ MinIO: await versionOf(minioBinary, ["--version"]) });
  const startedAt = new Date();
  log(`--- multipart: ${sizeBytes / MiB} MiB in parts of ${partBytes / MiB} MiB, ${partsInFlight} at a time`);
  const result = await runMultipart({
    minioBinary,
    sizeBytes,
    partBytes,
    partsInFlight,
    log,
    engramNodeArgs: values["cpu-prof"] ? ["--cpu-prof", "--cpu-prof-dir", resolve(values["cpu-prof"])] : [],
  });

  const command = `npm run bench:multipart${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
  const loadAverageAtEnd = loadavg()
    .map((value) => value.toFixed(2))
    .join(", ");
  const report = renderMultipart(result, { command, quick, startedAt, finishedAt: new Date(), lines: renderEnvironment(environment, loadAverageAtEnd) });
  await writeBetweenMarkers(out, report, RESULTS_START, RESULTS_END, "Engram benchmark results");
  log("");
  log(report);
  log(`results written to ${out}`);
  return 0;
}

function renderMultipart(
  result: MultipartResult,
  run: { command: string; quick: boolean; startedAt: Date; finishedAt: Date; lines: string[] },
): string {
  const size = `${(result.sizeBytes / GiB).toFixed(result.sizeBytes % GiB === 0 ? 0 : 2)} GiB`;
  const mode = run.quick ? "quick mode: a smoke test, not a measurement" : "full run";
  const lines = [`## Multipart upload of ${size} into MinIO (${mode})`, ""];
  lines.push(`Run from ${run.startedAt.toISOString()} to ${run.finishedAt.toISOString()} with:`, "");
  lines.push("```sh", run.command, "```", "");
  lines.push(
    `Engram on MinIO, metadata in ${result.metadata}. The client sent ${result.partCount} parts of ${result.partBytes / MiB} MiB, ` +
      `${result.partsInFlight} at a time, each over its own HTTP/2 connection (Connect-ES, gRPC, 4 MiB chunks with CRC32C). ` +
      "The data came from a seeded generator, and the client checked the sha256 of every part, of the committed object and of a full download " +
      `(${result.sha256}). The machine is shared with other jobs, so the times vary from run to run; the load averages below show how busy it was.`,
    "",
  );
  lines.push("| phase | time | throughput | Engram peak RSS | target < 300 MiB |", "| --- | --- | --- | --- | --- |");
  for (const [name, phase] of [
    ["upload of all parts", result.upload],
    ["CompleteMultipartUpload", result.complete],
    ["download, one stream", result.download],
  ] as const) {
    const throughput = result.sizeBytes / MiB / phase.seconds;
    const met = phase.rss.peakBytes < RSS_LIMIT_BYTES ? "met" : "missed";
    const reset = phase.rss.peakWasReset ? "" : " (peak not reset, may include earlier phases)";
    lines.push(`| ${name} | ${phase.seconds.toFixed(1)} s | ${throughput.toFixed(0)} MiB/s | ${(phase.rss.peakBytes / MiB).toFixed(0)} MiB${reset} | ${met} |`);
  }
  lines.push("", `Engram's RSS when idle, before the upload: ${(result.engramIdleRssBytes / MiB).toFixed(0)} MiB.`, "");
  lines.push(...run.lines.map((line) => line.replace(/^### /, "#### ")));
  return `${lines.join("\n").trimEnd()}\n`;
}

function positive(raw: string | undefined, name: string, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} ${JSON.stringify(raw)} is invalid: give a whole number of 1 or more`);
  return value;
}

runBenchmark("multipart benchmark", main, log);
