/*
 * Scenario 3: latency and throughput of GetObject and ListObjects on the
 * embedded default at concurrency 1, 16 and 64, against a bare Connect
 * handler that returns the same responses without doing any work (the
 * framework floor). Two load generators: the Connect-ES gRPC client in
 * this process, and ghz, written in Go, as an independent one.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";

import { toBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { GetObjectResponseSchema, ListObjectsResponseSchema, StorageService } from "../../gen/engram/v1/storage_service_pb.js";
import type { BareFixtures } from "../peer.js";
import { connectGrpcClient } from "../lib/engram-clients.js";
import { REPO_ROOT } from "../lib/paths.js";
import { startEngramServer, startPeer, type EngramServer, type PeerServer } from "../lib/processes.js";
import { randomChunks } from "../lib/random-data.js";
import { RssWatch } from "../lib/rss.js";
import { percentile } from "../lib/stats.js";
import { rotate } from "../lib/timing.js";

const execFileAsync = promisify(execFile);

export type Operation = "GetObject" | "ListObjects";
export type Target = "Engram" | "bare Connect handler";
export const OPERATIONS: readonly Operation[] = ["GetObject", "ListObjects"];
export const TARGETS: readonly Target[] = ["Engram", "bare Connect handler"];

/** One run of one load generator against one target, operation and concurrency. */
export interface LoadRun {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly callsPerSecond: number;
  readonly calls: number;
  /** Calls that failed, other than calls cut off when the run's time ended. */
  readonly failures: number;
  /** Peak RSS of the target server during the run. */
  readonly peakRssBytes: number;
}

export interface LoadCell {
  readonly generator: "Connect-ES" | "ghz";
  readonly target: Target;
  readonly operation: Operation;
  readonly concurrency: number;
  readonly runs: LoadRun[];
}

export interface SmallOpsResult {
  readonly concurrencies: readonly number[];
  readonly rounds: number;
  readonly secondsPerRun: number;
  /** Objects in the listed prefix; ListObjects returns all of them in one page. */
  readonly listedObjects: number;
  readonly cells: LoadCell[];
  /** Reason ghz did not run, or undefined when it ran. */
  readonly ghzUnavailable: string | undefined;
}

export interface SmallOpsOptions {
  readonly concurrencies: readonly number[];
  readonly rounds: number;
  readonly secondsPerRun: number;
  readonly warmupSeconds: number;
  /** ghz binary, or the reason there is none. */
  readonly ghz: string | { unavailable: string };
  readonly log: (line: string) => void;
  readonly engramNodeArgs?: readonly string[];
}

const BUCKET = "mnemos-models";
const GET_KEY = "bench/small/get-target";
const LIST_PREFIX = "bench/small/list/";
const LISTED_OBJECTS = 50;
const SMALL_OBJECT_BYTES = 1024;
/** Upper bound on calls per run, so a run ends by count even if the clock misbehaves. */
const MAX_CALLS_PER_RUN = 200_000;

const REQUESTS: Record<Operation, { bucket: string; key?: string; prefix?: string }> = {
  GetObject: { bucket: BUCKET, key: GET_KEY },
  ListObjects: { bucket: BUCKET, prefix: LIST_PREFIX },
};

export async function runSmallOps(options: SmallOpsOptions): Promise<SmallOpsResult> {
  const { log } = options;
  let engram: EngramServer | undefined;
  let bare: PeerServer | undefined;
  const managers: Http2SessionManager[] = [];
  try {
    engram = await startEngramServer({ nodeArgs: options.engramNodeArgs ?? [] });
    await seed(engram);
    const engramClient = unaryClient(engram.url, managers);
    const fixturesPath = join(engram.dataDir, "..", "bare-fixtures.json");
    await writeFixtures(engramClient, fixturesPath);
    bare = await startPeer("bare-connect", [fixturesPath]);
    const bareUrl = `http://127.0.0.1:${bare.port}`;

    const servers: Record<Target, { url: string; pid: number; client: Client<typeof StorageService> }> = {
      Engram: { url: engram.url, pid: engram.pid, client: engramClient },
      "bare Connect handler": { url: bareUrl, pid: bare.pid, client: unaryClient(bareUrl, managers) },
    };

    const cells = new Map<string, LoadCell>();
    const cellOf = (generator: LoadCell["generator"], target: Target, operation: Operation, concurrency: number): LoadCell => {
      const id = `${generator}|${target}|${operation}|${concurrency}`;
      let cell = cells.get(id);
      if (!cell) {
        cell = { generator, target, operation, concurrency, runs: [] };
        cells.set(id, cell);
      }
      return cell;
    };

    for (let round = 0; round < options.rounds; round++) {
      log(`  round ${round + 1} of ${options.rounds}`);
      for (const operation of OPERATIONS) {
        for (const concurrency of options.concurrencies) {
          for (const target of rotate(TARGETS, round)) {
            const server = servers[target];
            const call = operation === "GetObject" ? () => server.client.getObject(REQUESTS.GetObject) : () => server.client.listObjects(REQUESTS.ListObjects);
            await drive(call, concurrency, options.warmupSeconds * 1000);
            const run = await measure(server.pid, () => drive(call, concurrency, options.secondsPerRun * 1000));
            cellOf("Connect-ES", target, operation, concurrency).runs.push(run);
            log(`    Connect-ES ${operation} c=${concurrency} ${target}: p50 ${run.p50Ms.toFixed(2)} ms, p99 ${run.p99Ms.toFixed(2)} ms, ${run.callsPerSecond.toFixed(0)}/s`);

            if (typeof options.ghz === "string") {
              const ghzRun = await measure(server.pid, () => runGhz(options.ghz as string, server.url, operation, concurrency, options));
              cellOf("ghz", target, operation, concurrency).runs.push(ghzRun);
              log(`    ghz ${operation} c=${concurrency} ${target}: p50 ${ghzRun.p50Ms.toFixed(2)} ms, p99 ${ghzRun.p99Ms.toFixed(2)} ms, ${ghzRun.callsPerSecond.toFixed(0)}/s`);
            }
          }
        }
      }
    }
    return {
      concurrencies: options.concurrencies,
      rounds: options.rounds,
      secondsPerRun: options.secondsPerRun,
      listedObjects: LISTED_OBJECTS,
      cells: [...cells.values()],
      ghzUnavailable: typeof options.ghz === "string" ? undefined : options.ghz.unavailable,
    };
  } finally {
    for (const manager of managers) manager.abort();
    await engram?.stop();
    await bare?.stop();
  }
}

/** Creates a Connect-ES gRPC client on one HTTP/2 connection, as a MNEMOS service keeps one per server. */
function unaryClient(baseUrl: string, managers: Http2SessionManager[]): Client<typeof StorageService> {
  const sessionManager = new Http2SessionManager(baseUrl);
  managers.push(sessionManager);
  return createClient(StorageService, createGrpcTransport({ baseUrl, sessionManager, acceptCompression: [] }));
}

/** Uploads the object GetObject reads and the objects ListObjects lists. */
async function seed(engram: EngramServer): Promise<void> {
  const client = connectGrpcClient(engram.url);
  try {
    const keys = [GET_KEY, ...Array.from({ length: LISTED_OBJECTS }, (_, index) => `${LIST_PREFIX}object-${String(index).padStart(4, "0")}`)];
    for (const key of keys) {
      const content = [...randomChunks(key, SMALL_OBJECT_BYTES, SMALL_OBJECT_BYTES)];
      const sha256 = createHash("sha256").update(content[0]!).digest("hex");
      await client.upload(BUCKET, key, () => content, SMALL_OBJECT_BYTES, sha256);
    }
  } finally {
    client.close();
  }
}

/** Stores Engram's own responses, so the bare handler returns messages of the same size and shape. */
async function writeFixtures(client: Client<typeof StorageService>, path: string): Promise<void> {
  const get = await client.getObject(REQUESTS.GetObject);
  const list = await client.listObjects(REQUESTS.ListObjects);
  if (list.objects.length !== LISTED_OBJECTS) throw new Error(`ListObjects returned ${list.objects.length} objects, expected ${LISTED_OBJECTS}`);
  const fixtures: BareFixtures = {
    getObject: Buffer.from(toBinary(GetObjectResponseSchema, get)).toString("base64"),
    listObjects: Buffer.from(toBinary(ListObjectsResponseSchema, list)).toString("base64"),
  };
  await writeFile(path, JSON.stringify(fixtures));
}

interface DriveResult {
  readonly latenciesMs: number[];
  readonly seconds: number;
  readonly failures: number;
}

/** Runs `call` from `concurrency` loops until `durationMs` have passed or MAX_CALLS_PER_RUN calls were started. */
async function drive(call: () => Promise<unknown>, concurrency: number, durationMs: number): Promise<DriveResult> {
  const latenciesMs: number[] = [];
  let failures = 0;
  let started = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline && started < MAX_CALLS_PER_RUN) {
      started += 1;
      const begin = performance.now();
      try {
        await call();
        latenciesMs.push(performance.now() - begin);
      } catch {
        failures += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { latenciesMs, seconds: (performance.now() - start) / 1000, failures };
}

/** Watches the target's RSS while a load generator runs, and turns its result into a LoadRun. */
async function measure(pid: number, run: () => Promise<DriveResult | LoadRun>): Promise<LoadRun> {
  const watch = new RssWatch(pid);
  const result = await run();
  const peakRssBytes = watch.stop().peakBytes;
  if ("p50Ms" in result) return { ...result, peakRssBytes };
  return {
    p50Ms: percentile(result.latenciesMs, 50),
    p99Ms: percentile(result.latenciesMs, 99),
    callsPerSecond: result.latenciesMs.length / result.seconds,
    calls: result.latenciesMs.length,
    failures: result.failures,
    peakRssBytes,
  };
}

interface GhzReport {
  count: number;
  total: number;
  statusCodeDistribution?: Record<string, number>;
  errorDistribution?: Record<string, number>;
  latencyDistribution?: { percentage: number; latency: number }[] | null;
}

/**
 * Runs ghz for `secondsPerRun` on one HTTP/2 connection, with the proto
 * files of the checkout. It runs right after the Connect-ES run on the same
 * server, which serves as its warm-up.
 */
/** Errors of the calls that ghz cuts off when --duration ends. */
const CUT_AT_END = /closed network connection|client connection is closing|transport is closing|context canceled|deadline exceeded/i;

async function runGhz(binary: string, url: string, operation: Operation, concurrency: number, options: SmallOpsOptions): Promise<LoadRun> {
  const args = [
    "--insecure",
    "--proto",
    join(REPO_ROOT, "proto/engram/v1/storage_service.proto"),
    "--import-paths",
    join(REPO_ROOT, "proto"),
    "--call",
    `engram.v1.StorageService.${operation}`,
    "--data",
    JSON.stringify(REQUESTS[operation]),
    "--concurrency",
    String(concurrency),
    "--connections",
    "1",
    "--duration",
    `${options.secondsPerRun}s`,
    "--format",
    "json",
    new URL(url).host,
  ];
  const { stdout } = await execFileAsync(binary, args, { maxBuffer: 64 * 1024 * 1024, timeout: (options.secondsPerRun + 60) * 1000 });
  const report = JSON.parse(stdout) as GhzReport;
  const percentileMs = (p: number): number => (report.latencyDistribution?.find((entry) => entry.percentage === p)?.latency ?? Number.NaN) / 1e6;
  const ok = report.statusCodeDistribution?.OK ?? 0;
  // When --duration ends, ghz cancels the calls in flight; those are not failures.
  let cutAtEnd = 0;
  for (const [message, count] of Object.entries(report.errorDistribution ?? {})) {
    if (CUT_AT_END.test(message)) {
      cutAtEnd += count;
    } else {
      options.log(`    ghz: ${count} × ${message}`);
    }
  }
  return {
    p50Ms: percentileMs(50),
    p99Ms: percentileMs(99),
    callsPerSecond: ok / (report.total / 1e9),
    calls: ok,
    failures: report.count - ok - cutAtEnd,
    peakRssBytes: 0,
  };
}
