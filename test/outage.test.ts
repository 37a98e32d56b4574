/*
 * Dependency outages under a running Engram. The test starts its own
 * PostgreSQL cluster and its own MinIO, and stops each one while Engram
 * runs. Readiness must drop, and calls that need the missing store must
 * fail with UNAVAILABLE. When the store returns, everything must recover
 * without a restart of Engram.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, appendFile, chown, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";

import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { minioClientFor, s3Env } from "./support/backends.js";
import { startTestEngram, storageClient, transportFor, type TestEngram } from "./support/engram.js";
import { MiB, download, random, sha256Hex, upload } from "./support/objects.js";
import { MINIO_INSTALL, findMinio, freePort, type S3Peer } from "./support/s3-peers.js";

const execFileAsync = promisify(execFile);

const BUCKET = "mnemos-models";
const STORAGE_SERVICE = "engram.v1.StorageService";
/** Probe interval of the Engrams under test, short so that outages show quickly. */
const HEALTH_INTERVAL_MS = 300;
/** Maximum time the health status may take to follow a store that stopped or returned. */
const DETECTION_LIMIT_MS = 5000;
/** Timeout of a wait for a health status, well above DETECTION_LIMIT_MS so that a slow change is measured, not cut off. */
const WAIT_TIMEOUT_MS = 20_000;
const POLL_INTERVAL_MS = 50;

const inCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";
const POSTGRES_INSTALL = "apt-get install -y --no-install-recommends postgresql, or set ENGRAM_TEST_POSTGRES_BIN to the directory of initdb and pg_ctl";

async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/** Where a program that a suite needs was found, or why it was not. */
type Found<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

/** What a suite does about a missing program: skip it outside CI, fail it in CI. */
interface Requirement<T> {
  /** True when the program is missing outside CI: pass to `describe.skipIf`. */
  readonly skip: boolean;
  /** Returns the program, or throws an error naming why it is missing, which fails the suite in CI. */
  get(): T;
}

function requirement<T>(found: Found<T>, suite: string, install: string): Requirement<T> {
  if (!found.ok && !inCi) {
    console.warn(`Skipping the ${suite} outage tests: ${found.reason}. Enable them with ${install}`);
  }
  return {
    skip: !found.ok && !inCi,
    get() {
      if (!found.ok) throw new Error(`${found.reason}, but the ${suite} outage tests must run in CI: install it with ${install}`);
      return found.value;
    },
  };
}

// ---------------------------------------------------------------------------
// PostgreSQL cluster

interface PostgresTools {
  readonly initdb: string;
  readonly pgCtl: string;
  /** Owner of the cluster's files when the test runs as root, because the PostgreSQL server does not run as root. */
  readonly owner: { readonly uid: number; readonly gid: number } | undefined;
}

/** Orders version directories such as "9.6", "15" and "16" newest first. */
function byVersionDescending(a: string, b: string): number {
  return b.localeCompare(a, "en", { numeric: true });
}

/**
 * Finds initdb and pg_ctl in ENGRAM_TEST_POSTGRES_BIN if set, else in the
 * newest /usr/lib/postgresql/VERSION/bin (Debian and Ubuntu), then on PATH.
 * As root, the cluster runs as the `postgres` user through runuser, so that
 * user and runuser must exist too.
 */
async function findPostgresTools(): Promise<Found<PostgresTools>> {
  const override = process.env.ENGRAM_TEST_POSTGRES_BIN;
  const versions = await readdir("/usr/lib/postgresql").catch(() => [] as string[]);
  const directories = override
    ? [override]
    : [...versions.sort(byVersionDescending).map((version) => join("/usr/lib/postgresql", version, "bin")), ...(process.env.PATH ?? "").split(delimiter).filter(Boolean)];
  let tools: { initdb: string; pgCtl: string } | undefined;
  for (const directory of directories) {
    const initdb = join(directory, "initdb");
    const pgCtl = join(directory, "pg_ctl");
    if ((await isExecutable(initdb)) && (await isExecutable(pgCtl))) {
      tools = { initdb, pgCtl };
      break;
    }
  }
  if (tools === undefined) {
    const where = override ? `in ENGRAM_TEST_POSTGRES_BIN=${override}` : "under /usr/lib/postgresql/*/bin or on PATH";
    return { ok: false, reason: `initdb and pg_ctl not found ${where}` };
  }

  if (process.getuid?.() !== 0) return { ok: true, value: { ...tools, owner: undefined } };
  try {
    const uid = Number((await execFileAsync("id", ["-u", "postgres"])).stdout.trim());
    const gid = Number((await execFileAsync("id", ["-g", "postgres"])).stdout.trim());
    await execFileAsync("runuser", ["--version"]);
    return { ok: true, value: { ...tools, owner: { uid, gid } } };
  } catch {
    return { ok: false, reason: "the user postgres or runuser not found, and the test runs as root, which the PostgreSQL server does not run as" };
  }
}

/** A PostgreSQL cluster of the test's own, on 127.0.0.1 and a port the test chose, with trust auth. */
class PostgresCluster {
  private running = false;

  private constructor(
    private readonly tools: PostgresTools,
    private readonly dir: string,
    readonly port: number,
  ) {}

  /** Runs initdb in a fresh temporary directory and writes the listen settings into postgresql.conf. */
  static async create(tools: PostgresTools): Promise<PostgresCluster> {
    const dir = await mkdtemp(join(tmpdir(), "engram-outage-pg-"));
    const cluster = new PostgresCluster(tools, dir, await freePort());
    try {
      if (tools.owner) await chown(dir, tools.owner.uid, tools.owner.gid);
      await cluster.run(tools.initdb, ["-D", cluster.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
      // Settings go into the file rather than onto the pg_ctl command line,
      // so a restart reuses the same port and a path with spaces needs no quoting.
      const settings = [
        "listen_addresses = '127.0.0.1'",
        `port = ${cluster.port}`,
        `unix_socket_directories = '${dir}'`,
        // Durability is of no use to a test cluster, and fsync slows it down.
        "fsync = off",
        "",
      ];
      await appendFile(join(cluster.dataDir, "postgresql.conf"), settings.join("\n"));
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    return cluster;
  }

  get dataDir(): string {
    return join(this.dir, "data");
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** Starts the server and waits until it accepts connections. */
  async start(): Promise<void> {
    this.running = true;
    await this.run(this.tools.pgCtl, ["-D", this.dataDir, "-l", join(this.dir, "server.log"), "-w", "-t", "30", "start"]);
  }

  /** Stops the server in fast mode, which ends open sessions at once, and waits until it has exited. */
  async stop(): Promise<void> {
    await this.run(this.tools.pgCtl, ["-D", this.dataDir, "-m", "fast", "-w", "-t", "30", "stop"]);
    this.running = false;
  }

  /** Stops the server if it may be running, then removes the directory. */
  async destroy(): Promise<void> {
    if (this.running) await this.stop().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Runs a PostgreSQL program as the owner of the cluster. */
  private async run(program: string, args: string[]): Promise<void> {
    const [command, commandArgs] = this.tools.owner ? ["runuser", ["-u", "postgres", "--", program, ...args]] : [program, args];
    try {
      await execFileAsync(command, commandArgs, { timeout: 60_000 });
    } catch (err) {
      const output = `${(err as { stdout?: string }).stdout ?? ""}${(err as { stderr?: string }).stderr ?? ""}`.trim();
      throw new Error(`${program} ${args.join(" ")} failed: ${output || (err as Error).message}`, { cause: err });
    }
  }
}

// ---------------------------------------------------------------------------
// MinIO server

/**
 * A MinIO of the test's own that can stop and start again on the same
 * port, directory and credentials. The shared startMinio removes its
 * directory when it stops, so it cannot serve an outage.
 */
class MinioServer {
  private child: ChildProcess | undefined;

  private constructor(
    private readonly binary: string,
    private readonly dir: string,
    private readonly port: number,
    private readonly consolePort: number,
    readonly peer: S3Peer,
  ) {}

  static async create(binary: string): Promise<MinioServer> {
    const dir = await mkdtemp(join(tmpdir(), "engram-outage-minio-"));
    await mkdir(join(dir, "data"));
    const port = await freePort();
    const consolePort = await freePort();
    const peer: S3Peer = {
      name: "minio",
      endpoint: `http://127.0.0.1:${port}`,
      accessKey: `engram${randomBytes(4).toString("hex")}`,
      secretKey: randomBytes(16).toString("hex"),
    };
    return new MinioServer(binary, dir, port, consolePort, peer);
  }

  /** Starts MinIO and waits until its liveness endpoint returns 200. */
  async start(): Promise<void> {
    const child = spawn(this.binary, ["server", join(this.dir, "data"), "--address", `127.0.0.1:${this.port}`, "--console-address", `127.0.0.1:${this.consolePort}`, "--quiet"], {
      env: { ...process.env, MINIO_ROOT_USER: this.peer.accessKey, MINIO_ROOT_PASSWORD: this.peer.secretKey, MINIO_BROWSER: "off", MINIO_UPDATE: "off" },
      stdio: "ignore",
    });
    this.child = child;
    const liveUrl = `${this.peer.endpoint}/minio/health/live`;
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`MinIO exited (code ${child.exitCode}, signal ${child.signalCode}) before it responded at ${liveUrl}`);
      }
      const status = await fetch(liveUrl, { signal: AbortSignal.timeout(1000) }).then(
        (response) => response.status,
        () => undefined,
      );
      if (status === 200) return;
      if (Date.now() > deadline) throw new Error(`MinIO did not respond at ${liveUrl} within 30 s`);
      await sleep(100);
    }
  }

  /** Sends SIGTERM, then SIGKILL after 5 s, and waits until the process has exited. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }

  /** Stops MinIO if it runs, then removes the directory. */
  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Probes of the running Engram

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function healthClient(engram: TestEngram): Client<typeof Health> {
  return createClient(Health, transportFor("grpc", engram.url));
}

async function servingStatus(health: Client<typeof Health>, service: string): Promise<ServingStatus> {
  const response = await health.check({ service }, { timeoutMs: 2000 });
  return response.status;
}

/**
 * Polls Health/Check of the whole server until it reports `expected`, and
 * returns the milliseconds that took.
 */
async function waitForStatus(health: Client<typeof Health>, expected: ServingStatus): Promise<number> {
  const started = Date.now();
  let last: ServingStatus | string = "no response yet";
  while (Date.now() - started < WAIT_TIMEOUT_MS) {
    last = await servingStatus(health, "").catch((err: unknown) => `error ${String(err)}`);
    if (last === expected) return Date.now() - started;
    await sleep(POLL_INTERVAL_MS);
  }
  throw new Error(`Health/Check did not report ${ServingStatus[expected]} within ${WAIT_TIMEOUT_MS} ms, last status: ${typeof last === "number" ? ServingStatus[last] : last}`);
}

async function httpStatus(engram: TestEngram, path: "/readyz" | "/healthz"): Promise<number> {
  const response = await fetch(`${engram.metricsUrl}${path}`, { signal: AbortSignal.timeout(2000) });
  await response.body?.cancel();
  return response.status;
}

/** Runs a call that must fail, and returns its error as a ConnectError. */
async function failureOf(call: () => Promise<unknown>): Promise<ConnectError> {
  const outcome = await call().then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
  if (outcome === undefined) throw new Error("the call succeeded, but it should have failed");
  return outcome;
}

// ---------------------------------------------------------------------------
// Suites

const postgres = requirement(await findPostgresTools(), "PostgreSQL", POSTGRES_INSTALL);
const minioFound = await findMinio();
const minio = requirement<string>(minioFound ? { ok: true, value: minioFound } : { ok: false, reason: "minio not found on PATH, in ~/go/bin or at ENGRAM_MINIO" }, "MinIO", MINIO_INSTALL);

// The tests of each suite run in order and share one Engram: each step
// continues the outage that the previous one started.
describe.skipIf(postgres.skip)("PostgreSQL outage", () => {
  let cluster: PostgresCluster | undefined;
  let engram: TestEngram;
  let health: Client<typeof Health>;
  const key = "outage/postgres.bin";
  const content = random(64 * 1024);
  let generation: bigint;

  beforeAll(async () => {
    cluster = await PostgresCluster.create(postgres.get());
    await cluster.start();
    engram = await startTestEngram({ ENGRAM_METADATA_STORE: "postgres", ENGRAM_POSTGRES_URL: cluster.url, ENGRAM_HEALTH_INTERVAL_MS: String(HEALTH_INTERVAL_MS) });
    health = healthClient(engram);
  });

  afterAll(async () => {
    try {
      await engram?.destroy();
    } finally {
      await cluster?.destroy();
    }
  });

  it("serves while the cluster runs", async () => {
    expect(await servingStatus(health, "")).toBe(ServingStatus.SERVING);
    expect(await servingStatus(health, STORAGE_SERVICE)).toBe(ServingStatus.SERVING);
    expect(await httpStatus(engram, "/readyz")).toBe(200);

    const object = await upload(storageClient("grpc", engram.url), BUCKET, key, content);
    generation = object.generation;
    expect(object.size).toBe(BigInt(content.length));
  });

  it("stop turns readiness off", async () => {
    await cluster!.stop();

    const elapsed = await waitForStatus(health, ServingStatus.NOT_SERVING);

    expect(elapsed).toBeLessThan(DETECTION_LIMIT_MS);
    expect(await servingStatus(health, STORAGE_SERVICE)).toBe(ServingStatus.NOT_SERVING);
    expect(await httpStatus(engram, "/readyz")).toBe(503);
    expect(await httpStatus(engram, "/healthz")).toBe(200);
  });

  it("GetObject fails UNAVAILABLE while stopped", async () => {
    const error = await failureOf(() => storageClient("grpc", engram.url).getObject({ bucket: BUCKET, key }));

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain("metadata database");
  });

  it("Download fails UNAVAILABLE while stopped", async () => {
    const error = await failureOf(() => download(storageClient("grpc", engram.url), { bucket: BUCKET, key }));

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain("metadata database");
  });

  it("restart restores serving and the object", async () => {
    await cluster!.start();

    const elapsed = await waitForStatus(health, ServingStatus.SERVING);

    expect(elapsed).toBeLessThan(DETECTION_LIMIT_MS);
    expect(await servingStatus(health, STORAGE_SERVICE)).toBe(ServingStatus.SERVING);
    expect(await httpStatus(engram, "/readyz")).toBe(200);

    const client = storageClient("grpc", engram.url);
    const { object } = await client.getObject({ bucket: BUCKET, key });
    expect(object?.generation).toBe(generation);
    const { content: downloaded } = await download(client, { bucket: BUCKET, key });
    expect(sha256Hex(downloaded)).toBe(sha256Hex(content));
  });
});

describe.skipIf(minio.skip)("MinIO outage", () => {
  let server: MinioServer | undefined;
  let engram: TestEngram;
  let health: Client<typeof Health>;
  let bucketPrefix: string;
  const key = "outage/minio.bin";
  const content = random(64 * 1024);
  /** Uploads tried during the outage: one small enough for a single PUT, one that needs a multipart upload. */
  const failedUploads = [
    { key: "outage/during-small.bin", size: 1024 },
    { key: "outage/during-multipart.bin", size: 6 * MiB },
  ];

  beforeAll(async () => {
    server = await MinioServer.create(minio.get());
    await server.start();
    const env = s3Env(server.peer);
    bucketPrefix = env.ENGRAM_S3_BUCKET_PREFIX!;
    engram = await startTestEngram({ ...env, ENGRAM_HEALTH_INTERVAL_MS: String(HEALTH_INTERVAL_MS) });
    health = healthClient(engram);
  });

  afterAll(async () => {
    try {
      await engram?.destroy();
    } finally {
      await server?.destroy();
    }
  });

  it("serves while MinIO runs", async () => {
    expect(await servingStatus(health, "")).toBe(ServingStatus.SERVING);
    expect(await servingStatus(health, STORAGE_SERVICE)).toBe(ServingStatus.SERVING);
    expect(await httpStatus(engram, "/readyz")).toBe(200);

    const object = await upload(storageClient("grpc", engram.url), BUCKET, key, content);
    expect(object.size).toBe(BigInt(content.length));
  });

  it("stop turns readiness off", async () => {
    await server!.stop();

    const elapsed = await waitForStatus(health, ServingStatus.NOT_SERVING);

    expect(elapsed).toBeLessThan(DETECTION_LIMIT_MS);
    expect(await servingStatus(health, STORAGE_SERVICE)).toBe(ServingStatus.NOT_SERVING);
    expect(await httpStatus(engram, "/readyz")).toBe(503);
    expect(await httpStatus(engram, "/healthz")).toBe(200);
  });

  it("Download fails UNAVAILABLE while stopped", async () => {
    const error = await failureOf(() => download(storageClient("grpc", engram.url), { bucket: BUCKET, key }));

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain("S3 store");
  });

  it("Upload fails UNAVAILABLE while stopped", async () => {
    const client = storageClient("grpc", engram.url);
    for (const attempt of failedUploads) {
      const error = await failureOf(() => upload(client, BUCKET, attempt.key, random(attempt.size)));

      expect(error.code, `${attempt.key}: code`).toBe(Code.Unavailable);
      expect(error.rawMessage, `${attempt.key}: message`).toContain("S3 store");
      // The metadata is in PGlite, which keeps running.
      const lookup = await failureOf(() => client.getObject({ bucket: BUCKET, key: attempt.key }));
      expect(lookup.code, `${attempt.key}: GetObject`).toBe(Code.NotFound);
    }

    const listing = await client.listObjects({ bucket: BUCKET, prefix: "outage/" });
    expect(listing.objects.map((object) => object.key)).toEqual([key]);
  });

  it("restart restores serving and the object", async () => {
    await server!.start();

    const elapsed = await waitForStatus(health, ServingStatus.SERVING);

    expect(elapsed).toBeLessThan(DETECTION_LIMIT_MS);
    expect(await servingStatus(health, STORAGE_SERVICE)).toBe(ServingStatus.SERVING);
    expect(await httpStatus(engram, "/readyz")).toBe(200);

    const { content: downloaded } = await download(storageClient("grpc", engram.url), { bucket: BUCKET, key });
    expect(downloaded.length).toBe(content.length);
    expect(sha256Hex(downloaded)).toBe(sha256Hex(content));
  });

  it("failed uploads left no S3 objects", async () => {
    const s3 = minioClientFor(server!.peer);
    const names: string[] = [];
    for await (const item of s3.listObjectsV2(`${bucketPrefix}${BUCKET}`, "outage/", true) as AsyncIterable<{ name?: string }>) {
      if (item.name !== undefined) names.push(item.name);
    }

    expect(names.filter((name) => !name.startsWith(`${key}/`))).toEqual([]);
  });
});
