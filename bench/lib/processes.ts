/*
 * Child processes of the benchmark: the Engram server (the built
 * `engram serve`), the reference peers of bench/peer.ts and MinIO. Each
 * listens on 127.0.0.1 only, on a port the system picks, with its own
 * temporary directory, and is stopped by the scenario that started it or
 * by the cleanup registry.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, statSync } from "node:fs";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { registerCleanup } from "./cleanup.js";
import { REPO_ROOT } from "./paths.js";
import { readRss } from "./rss.js";

const STOP_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 60_000;

/** A server running in a child process. */
export interface ChildServer {
  readonly pid: number;
  /** Sends SIGTERM, waits for the exit (SIGKILL after 10 s) and removes the temporary directory. */
  stop(): Promise<void>;
}

export interface EngramServer extends ChildServer {
  /** Base URL of the API, such as http://127.0.0.1:40123. */
  readonly url: string;
  readonly metricsUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** Peak RSS of the first start on the empty data directory, which creates the PGlite database. */
  readonly firstStartPeakBytes: number;
  /** RSS when the measured server had started and was idle. */
  readonly idleRssBytes: number;
}

export interface EngramOptions {
  /** ENGRAM_* settings added to the defaults below. */
  readonly env?: Record<string, string>;
  /** Node options for the measured server process, such as --cpu-prof. */
  readonly nodeArgs?: readonly string[];
}

/**
 * Starts `node dist/src/cli/main.js serve` on 127.0.0.1 with port 0 for the
 * API and the metrics, a fresh data directory and the log in a file there.
 *
 * The server is started twice. The first start creates the database (with
 * PGlite, initdb in WebAssembly peaked near 800 MB on a 2-core test
 * machine) and is stopped. The measured server then opens the existing data
 * directory, as every later start of a real deployment does.
 */
export async function startEngramServer(options: EngramOptions = {}): Promise<EngramServer> {
  const dir = await mkdtemp(join(tmpdir(), "engram-bench-"));
  const dataDir = join(dir, "data");
  const logFile = join(dir, "engram.log");
  const env: Record<string, string> = {
    ...environmentWithoutEngram(),
    ENGRAM_HOST: "127.0.0.1",
    ENGRAM_PORT: "0",
    ENGRAM_METRICS_PORT: "0",
    ENGRAM_DATA_DIR: dataDir,
    // Replaced and deleted blobs go at the next sweep, so repeated rounds
    // of 1 GiB and 6 GiB objects do not fill the disk.
    ENGRAM_BLOB_DELETE_GRACE_SECONDS: "0",
    ENGRAM_SHUTDOWN_GRACE_SECONDS: "2",
    // The benchmark measures moving bytes, and its reference clients carry
    // no tokens, so access control is off. It costs one primary-key read
    // of the access key per call when on, which these figures leave out.
    ENGRAM_AUTH: "off",
    ...options.env,
  };

  let child: ChildProcess | undefined;
  const stop = registerCleanup(async () => {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      // The server died before it was stopped: keep its log for a post-mortem.
      const kept = join(tmpdir(), `engram-bench-exited-${child.pid}.log`);
      await copyFile(logFile, kept).catch(() => undefined);
      console.error(`engram serve (pid ${child.pid}) exited by itself with ${child.exitCode ?? child.signalCode}; its log is in ${kept}`);
    }
    if (child) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  });

  try {
    child = spawnEngram(dir, logFile, env, []);
    await waitForLogLine(logFile, child, 0, (entry) => entry.msg === "engram started");
    const firstStartPeakBytes = readRss(child.pid!).peakBytes;
    await stopChild(child);

    const logOffset = statSync(logFile).size;
    child = spawnEngram(dir, logFile, env, options.nodeArgs ?? []);
    const started = await waitForLogLine(logFile, child, logOffset, (entry) => entry.msg === "engram started");
    const idleRssBytes = readRss(child.pid!).rssBytes;
    return { pid: child.pid!, url: String(started.url), metricsUrl: String(started.metricsUrl), dataDir, logFile, firstStartPeakBytes, idleRssBytes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function spawnEngram(cwd: string, logFile: string, env: Record<string, string>, nodeArgs: readonly string[]): ChildProcess {
  const logFd = openSync(logFile, "a");
  try {
    return spawn(process.execPath, [...nodeArgs, join(REPO_ROOT, "dist/src/cli/main.js"), "serve"], { cwd, env, stdio: ["ignore", logFd, logFd] });
  } finally {
    closeSync(logFd);
  }
}

/** Returns the parent's environment without ENGRAM_* settings, so a developer's shell cannot change the benchmark. */
function environmentWithoutEngram(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !name.startsWith("ENGRAM_")) env[name] = value;
  }
  return env;
}

/** Waits for a JSON log line after byte `offset` of the log file that `match` accepts. */
async function waitForLogLine(file: string, child: ChildProcess, offset: number, match: (entry: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const text = readFileSync(file).subarray(offset).toString("utf8");
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue; // A line still being written.
      }
      if (match(entry)) return entry;
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`engram serve exited (${child.exitCode ?? child.signalCode}) before it started; its log ends with:\n${lastLines(text, 10)}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`engram serve did not log "engram started" within ${START_TIMEOUT_MS} ms; its log ends with:\n${lastLines(text, 10)}`);
    }
    await sleep(50);
  }
}

function lastLines(text: string, count: number): string {
  return text.trimEnd().split("\n").slice(-count).join("\n");
}

/** Stops a child with SIGTERM, then SIGKILL if it has not exited after 10 s. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Kinds of reference server that bench/peer.ts runs. */
export type PeerKind = "tcp" | "tus" | "bare-connect";

export interface PeerServer extends ChildServer {
  readonly port: number;
  /** Temporary directory of the peer (the tus FileStore lives below it). */
  readonly dir: string;
}

/**
 * Starts bench/peer.js (compiled) as a child process and waits for the JSON
 * line with its port. `args` are passed on after the kind.
 */
export async function startPeer(kind: PeerKind, args: readonly string[] = []): Promise<PeerServer> {
  const dir = await mkdtemp(join(tmpdir(), `engram-bench-${kind}-`));
  const child = spawn(process.execPath, [join(REPO_ROOT, "dist/bench/peer.js"), kind, dir, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const stop = registerCleanup(async () => {
    await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  });

  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${kind} peer did not report its port within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      child.once("exit", (code) => reject(new Error(`${kind} peer exited with code ${code} before it reported its port`)));
      createInterface({ input: child.stdout! }).once("line", (line) => {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      });
    });
    return { pid: child.pid!, port, dir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Returns a TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface MinioServer extends ChildServer {
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
}

/** Starts MinIO on 127.0.0.1 with a fresh directory and generated credentials. */
export async function startMinioServer(binary: string): Promise<MinioServer> {
  const dir = await mkdtemp(join(tmpdir(), "engram-bench-minio-"));
  const port = await freePort();
  const consolePort = await freePort();
  const accessKey = `bench${randomBytes(4).toString("hex")}`;
  const secretKey = randomBytes(16).toString("hex");
  const logFile = join(dir, "minio.log");
  const logFd = openSync(logFile, "a");
  let child: ChildProcess;
  try {
    child = spawn(binary, ["server", join(dir, "data"), "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${consolePort}`, "--quiet"], {
      env: { ...process.env, MINIO_ROOT_USER: accessKey, MINIO_ROOT_PASSWORD: secretKey, MINIO_BROWSER: "off", MINIO_UPDATE: "off" },
      stdio: ["ignore", logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }
  const stop = registerCleanup(async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      const kept = join(tmpdir(), `engram-bench-minio-exited-${child.pid}.log`);
      await copyFile(logFile, kept).catch(() => undefined);
      console.error(`MinIO (pid ${child.pid}) exited by itself with ${child.exitCode ?? child.signalCode}; its log is in ${kept}`);
    }
    await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  });

  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`MinIO exited with code ${child.exitCode} before its health check passed`);
      const live = await fetch(`${endpoint}/minio/health/live`, { signal: AbortSignal.timeout(1000) }).then(
        (response) => response.ok,
        () => false,
      );
      if (live) break;
      if (Date.now() > deadline) throw new Error(`MinIO health check at ${endpoint} timed out after ${START_TIMEOUT_MS} ms`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: child.pid!, endpoint, accessKey, secretKey, stop };
}
