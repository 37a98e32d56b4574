/*
 * npm run bench [-- OPTIONS]: runs the benchmark scenarios against the
 * built Engram and writes the results as Markdown. See USAGE.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

import { cleanupAll, runBenchmark } from "./lib/cleanup.js";
import { describeEnvironment } from "./lib/environment.js";
import { REPO_ROOT } from "./lib/paths.js";
import { writeBetweenMarkers } from "./lib/results-file.js";
import { writeRandomFile } from "./lib/random-data.js";
import { GiB, MiB } from "./lib/stats.js";
import { findOrInstallGhz, findOrInstallMinio, GHZ_VERSION, ToolMissingError, versionOf } from "./lib/tools.js";
import { renderReport, type RunResults } from "./report.js";
import { runLoad, type LoadResult } from "./scenarios/load.js";
import { runMemory, type MemoryResult } from "./scenarios/memory.js";
import { runMinioStreaming, type MinioStreamingResult } from "./scenarios/minio.js";
import { runSmallOps, type SmallOpsResult } from "./scenarios/small-ops.js";
import { runEmbeddedStreaming, type DataFile, type StreamingResult } from "./scenarios/streaming.js";

const USAGE = `Usage: npm run bench -- [options]

Runs Engram's benchmarks on loopback and writes the results as Markdown.
Needs the build (npm run bench compiles first), Go to install ghz (and MinIO
when neither ENGRAM_MINIO nor a cached build exists), and about 14 GiB free
in the temporary directory for the full run.

Options:
  --quick            small sizes and one round (about 2 minutes), for CI;
                     writes to ${join("$TMPDIR", "engram-bench-quick.md")} unless --out is given
  --only LIST        comma-separated scenarios to run: ${"streaming,minio,small-ops,load,memory"}
  --out FILE         where to write the results (default: docs/benchmarks.md,
                     replacing only the part between its results markers)
  --cpu-prof DIR     run the measured Engram servers with node --cpu-prof,
                     writing .cpuprofile files into DIR
  -h, --help         print this help
`;

const SCENARIOS = ["streaming", "minio", "small-ops", "load", "memory"] as const;
type Scenario = (typeof SCENARIOS)[number];

/** Sizes and counts of one mode. */
interface Plan {
  readonly streamBytes: number;
  readonly streamRounds: number;
  readonly minioRounds: number;
  readonly smallOpsRounds: number;
  readonly smallOpsSeconds: number;
  readonly smallOpsWarmupSeconds: number;
  readonly loadCounts: readonly number[];
  readonly loadObjectBytes: number;
  readonly loadRounds: number;
  readonly memoryBytes: number;
  readonly stallSeconds: number;
  readonly stallAfterBytes: number;
}

const FULL: Plan = {
  streamBytes: GiB,
  streamRounds: 4,
  minioRounds: 3,
  smallOpsRounds: 3,
  smallOpsSeconds: 3,
  smallOpsWarmupSeconds: 1,
  loadCounts: [100, 250],
  loadObjectBytes: 8 * MiB,
  loadRounds: 2,
  memoryBytes: 6 * GiB,
  stallSeconds: 30,
  stallAfterBytes: 64 * MiB,
};

const QUICK: Plan = {
  streamBytes: 32 * MiB,
  streamRounds: 1,
  minioRounds: 1,
  smallOpsRounds: 1,
  smallOpsSeconds: 0.5,
  smallOpsWarmupSeconds: 0.2,
  loadCounts: [100, 250],
  loadObjectBytes: MiB,
  loadRounds: 1,
  memoryBytes: 128 * MiB,
  stallSeconds: 3,
  stallAfterBytes: 16 * MiB,
};

const WARMUP_BYTES = 8 * MiB;
const RESULTS_START = "<!-- bench:results:start -->";
const RESULTS_END = "<!-- bench:results:end -->";
const inCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
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
  const plan = quick ? QUICK : FULL;
  const selected = parseScenarios(values.only);
  let out = join(REPO_ROOT, "docs", "benchmarks.md");
  if (values.out) out = resolve(values.out);
  else if (quick) out = join(tmpdir(), "engram-bench-quick.md");
  const engramNodeArgs = values["cpu-prof"] ? ["--cpu-prof", "--cpu-prof-dir", resolve(values["cpu-prof"])] : [];
  const startedAt = new Date();

  const tools: Record<string, string> = {};
  const skipped: RunResults["skipped"] = [];
  const failed: RunResults["failed"] = [];
  let ghz: string | { unavailable: string } = { unavailable: "the small-operations scenario did not run" };
  let minioBinary: string | undefined;
  if (selected.has("small-ops")) {
    ghz = await tool("ghz", () => findOrInstallGhz(log), skipped);
    if (typeof ghz === "string") tools.ghz = `${GHZ_VERSION} (go install)`;
  }
  if (selected.has("minio")) {
    const found = await tool("MinIO", () => findOrInstallMinio(log), skipped);
    if (typeof found === "string") {
      minioBinary = found;
      tools.MinIO = await versionOf(found, ["--version"]);
    } else {
      selected.delete("minio");
    }
  }
  const environment = await describeEnvironment(tools);

  const dir = await mkdtemp(join(tmpdir(), "engram-bench-files-"));
  let streaming: StreamingResult | undefined;
  let minio: MinioStreamingResult | undefined;
  let smallOps: SmallOpsResult | undefined;
  let load: LoadResult | undefined;
  let memory: MemoryResult | undefined;
  let correctnessFailures = 0;
  try {
    const scenario = async <T>(name: Scenario, run: () => Promise<T>): Promise<T | undefined> => {
      if (!selected.has(name)) return undefined;
      log(`--- ${name}`);
      try {
        return await run();
      } catch (err) {
        log(`${name} failed: ${(err as Error).stack ?? String(err)}`);
        failed.push({ scenario: name, error: (err as Error).message ?? String(err) });
        await cleanupAll();
        return undefined;
      }
    };

    let file: DataFile | undefined;
    let warmupFile: DataFile | undefined;
    if (selected.has("streaming") || selected.has("minio")) {
      log(`--- writing ${plan.streamBytes / MiB} MiB of random data to ${dir}`);
      file = await randomFile(join(dir, "stream.bin"), "stream", plan.streamBytes);
      warmupFile = await randomFile(join(dir, "warmup.bin"), "warmup", WARMUP_BYTES);
    }
    streaming = await scenario("streaming", () => runEmbeddedStreaming({ file: file!, warmupFile: warmupFile!, rounds: plan.streamRounds, log, engramNodeArgs }));
    minio = await scenario("minio", () =>
      runMinioStreaming({ minioBinary: minioBinary!, file: file!, warmupFile: warmupFile!, rounds: plan.minioRounds, log, engramNodeArgs }),
    );
    if (file) await rm(file.path, { force: true });

    smallOps = await scenario("small-ops", () =>
      runSmallOps({
        concurrencies: [1, 16, 64],
        rounds: plan.smallOpsRounds,
        secondsPerRun: plan.smallOpsSeconds,
        warmupSeconds: plan.smallOpsWarmupSeconds,
        ghz,
        log,
        engramNodeArgs,
      }),
    );
    load = await scenario("load", () => runLoad({ counts: plan.loadCounts, objectBytes: plan.loadObjectBytes, rounds: plan.loadRounds, log, engramNodeArgs }));
    correctnessFailures += load?.phases.reduce((sum, phase) => sum + phase.uploadFailures + phase.downloadFailures, 0) ?? 0;

    memory = await scenario("memory", async () => {
      log(`--- writing ${plan.memoryBytes / MiB} MiB of random data to ${dir}`);
      const large = await randomFile(join(dir, "large.bin"), "large", plan.memoryBytes);
      try {
        return await runMemory({ file: large, stallSeconds: plan.stallSeconds, stallAfterBytes: plan.stallAfterBytes, log, engramNodeArgs });
      } finally {
        await rm(large.path, { force: true });
      }
    });
    for (const cell of smallOps?.cells ?? []) correctnessFailures += cell.runs.reduce((sum, run) => sum + run.failures, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
  const report = renderReport({
    command,
    quick,
    only: values.only === undefined ? undefined : [...selected],
    startedAt,
    finishedAt: new Date(),
    loadAverageAtEnd: loadavg()
      .map((value) => value.toFixed(2))
      .join(", "),
    environment,
    streaming,
    minio,
    smallOps,
    load,
    memory,
    skipped,
    failed,
  });
  await writeBetweenMarkers(out, report, RESULTS_START, RESULTS_END, "Engram benchmark results");
  await writeFile(join(tmpdir(), "engram-bench-last.json"), JSON.stringify({ streaming, minio, smallOps, load, memory, environment }, null, 2));
  log("");
  log(report);
  log(`results written to ${out}; raw numbers in ${join(tmpdir(), "engram-bench-last.json")}`);

  if (failed.length > 0 || correctnessFailures > 0) {
    log(`benchmark failed: ${failed.length} scenario(s) failed and ${correctnessFailures} call(s) failed`);
    return 1;
  }
  return 0;
}

function parseScenarios(only: string | undefined): Set<Scenario> {
  if (only === undefined) return new Set(SCENARIOS);
  const names = only.split(",").map((name) => name.trim());
  for (const name of names) {
    if (!(SCENARIOS as readonly string[]).includes(name)) {
      throw new Error(`--only: unknown scenario ${JSON.stringify(name)}; choose from ${SCENARIOS.join(", ")}`);
    }
  }
  return new Set(names as Scenario[]);
}

/**
 * Finds or installs a program. A missing program fails the run in CI;
 * elsewhere the part that needs it is skipped with a line saying why.
 */
async function tool(name: string, find: () => Promise<string>, skipped: RunResults["skipped"]): Promise<string | { unavailable: string }> {
  try {
    return await find();
  } catch (err) {
    if (!(err instanceof ToolMissingError) || inCi) throw err;
    log(`warning: ${err.message}; skipping what needs ${name}`);
    skipped.push({ scenario: `what needs ${name}`, reason: err.message });
    return { unavailable: err.message };
  }
}

async function randomFile(path: string, seed: string, size: number): Promise<DataFile> {
  return { path, size, sha256: await writeRandomFile(path, seed, size) };
}

runBenchmark("benchmark", main, log);
