/*
 * Starts the real S3 servers the tests run against: MinIO, and Ceph's
 * RADOS Gateway as a second, independent implementation. Each listens on
 * 127.0.0.1 only, with a temporary data directory and generated
 * credentials, and is stopped when the test run ends.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Where and how to reach one S3 server. */
export interface S3Peer {
  readonly name: "minio" | "ceph-rgw";
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
}

export interface RunningPeer extends S3Peer {
  stop(): Promise<void>;
}

export const MINIO_INSTALL = "go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c (or set ENGRAM_MINIO to the binary)";
export const CEPH_INSTALL = "apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd";

async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

async function findBinary(name: string, override: string | undefined, extra: string[]): Promise<string | undefined> {
  if (override) return (await isExecutable(override)) ? override : undefined;
  const candidates = (process.env.PATH ?? "").split(delimiter).filter(Boolean).map((directory) => join(directory, name));
  for (const candidate of [...candidates, ...extra]) {
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export function findMinio(): Promise<string | undefined> {
  const home = process.env.HOME ?? "/root";
  return findBinary("minio", process.env.ENGRAM_MINIO, [join(home, "go", "bin", "minio"), join(home, ".cache", "engram-ci", "gobin-minio", "minio")]);
}

export function findRadosgw(): Promise<string | undefined> {
  return findBinary("radosgw", undefined, []);
}

/** Returns a TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url: string, what: string, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode} before it answered`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (response.status < 500) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`${what} did not answer at ${url} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Starts a MinIO server on loopback with a fresh directory and credentials. */
export async function startMinio(binary: string): Promise<RunningPeer> {
  const dir = await mkdtemp(join(tmpdir(), "engram-minio-"));
  const port = await freePort();
  const consolePort = await freePort();
  const accessKey = `engram${randomBytes(4).toString("hex")}`;
  const secretKey = randomBytes(16).toString("hex");

  const child = spawn(binary, ["server", dir, "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${consolePort}`, "--quiet"], {
    env: { ...process.env, MINIO_ROOT_USER: accessKey, MINIO_ROOT_PASSWORD: secretKey, MINIO_BROWSER: "off", MINIO_UPDATE: "off" },
    stdio: "ignore",
  });
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${endpoint}/minio/health/live`, "MinIO", 30_000, child);
  } catch (err) {
    child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    name: "minio",
    endpoint,
    accessKey,
    secretKey,
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts a one-node Ceph cluster with a RADOS Gateway, with the scripts in
 * shared/peers/ceph-rgw (about 15 s). The OSD of Ceph 16 sometimes fails its
 * first boot with "wrong fsid" (seen in about one start of three here), so
 * a failed start is retried on a fresh directory.
 */
export async function startCephRgw(scriptsDir: string, attempts = 3): Promise<RunningPeer> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await startCephRgwOnce(scriptsDir);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startCephRgwOnce(scriptsDir: string): Promise<RunningPeer> {
  const dir = await mkdtemp(join(tmpdir(), "engram-ceph-"));
  const rgwPort = await freePort();
  const monPort = await freePort();
  const accessKey = `engram${randomBytes(4).toString("hex")}`;
  const secretKey = randomBytes(16).toString("hex");
  const env = { ...process.env, RGW_PORT: String(rgwPort), MON_PORT: String(monPort), S3_ACCESS_KEY: accessKey, S3_SECRET_KEY: secretKey, MAXWAIT: "40" };

  const stop = async (): Promise<void> => {
    await execFileAsync("bash", [join(scriptsDir, "stop.sh"), dir], { timeout: 60_000 }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await execFileAsync("bash", [join(scriptsDir, "start.sh"), dir, "memstore"], { env, timeout: 120_000 });
  } catch (err) {
    const output = `${(err as { stdout?: string }).stdout ?? ""}${(err as { stderr?: string }).stderr ?? ""}`.trim().split("\n").slice(-3).join(" | ");
    await stop();
    throw new Error(`Ceph RGW failed to start: ${output || (err as Error).message}`);
  }
  return { name: "ceph-rgw", endpoint: `http://127.0.0.1:${rgwPort}`, accessKey, secretKey, stop };
}
