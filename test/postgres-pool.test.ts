/*
 * The PostgreSQL metadata store under a small pool: uploads must not hold a
 * connection while bytes arrive, an unreachable server must fail fast, and
 * pool errors must be logged, not crash the process.
 */
import { createServer } from "node:net";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";

import type { MessageInitShape } from "@bufbuild/protobuf";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { UploadRequestSchema } from "../gen/engram/v1/storage_service_pb.js";
import type { PostgresConfig } from "../src/config.js";
import { createLogger } from "../src/log.js";
import { openPostgresMetadataStore } from "../src/metadata/postgres/open-postgres.js";
import { translateDatabaseError } from "../src/metadata/sql/sql-metadata-store.js";
import { StorageError } from "../src/service/errors.js";
import { startTestEngram, storageClient, type LogEntry, type TestEngram } from "./support/engram.js";
import { random, upload } from "./support/objects.js";
import { createTestDatabase, requirePostgres, type TestDatabase } from "./support/postgres.js";

const BUCKET = "mnemos-artifacts";
const SLOW_UPLOADS = 3;
const CHUNK_INTERVAL_MS = 200;
const CHUNKS_PER_UPLOAD = 15;
const CHUNK_BYTES = 1024;

const postgres = await requirePostgres("the PostgreSQL pool tests");

function postgresConfig(url: string, poolSize: number): PostgresConfig {
  return { url, password: undefined, poolSize, statementTimeoutMs: 10_000, idleInTransactionTimeoutMs: 10_000 };
}

/** Creates a pino logger that keeps its JSON lines in `entries`. */
function capturingLogger(): { log: ReturnType<typeof createLogger>; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.trim() !== "") entries.push(JSON.parse(line) as LogEntry);
      }
      done();
    },
  });
  return { log: createLogger("debug", sink), entries };
}

/** Returns a loopback port that nothing listens on, found by binding and closing it. */
async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error(`server.address() returned ${String(address)}: expected a TCP address`);
  return address.port;
}

type UploadRequestInit = MessageInitShape<typeof UploadRequestSchema>;

/** Upload messages that trickle in: the spec, then one small chunk every CHUNK_INTERVAL_MS. */
async function* slowUploadMessages(key: string, content: Buffer, progress: { chunksSent: number }): AsyncGenerator<UploadRequestInit> {
  yield { spec: { bucket: BUCKET, key } };
  for (let offset = 0; offset < content.length; offset += CHUNK_BYTES) {
    await sleep(CHUNK_INTERVAL_MS);
    yield { writeOffset: BigInt(offset), data: { content: content.subarray(offset, offset + CHUNK_BYTES) } };
    progress.chunksSent += 1;
  }
  yield { writeOffset: BigInt(content.length), finishWrite: true };
}

describe.skipIf(postgres.skip)("PostgreSQL store with pool size 2", () => {
  let database: TestDatabase;
  let engram: TestEngram;

  beforeAll(async () => {
    postgres.assertAvailable();
    database = await createTestDatabase();
    const metadata = await openPostgresMetadataStore(postgresConfig(database.url, 2), createLogger("silent"));
    engram = await startTestEngram({}, { metadata });
  });

  afterAll(async () => {
    await engram?.destroy();
    await database?.drop();
  });

  it("slow uploads leave connections free", async () => {
    const probe = storageClient("grpc", engram.url);
    await upload(probe, BUCKET, "probe", random(100));

    const contents = Array.from({ length: SLOW_UPLOADS }, () => random(CHUNKS_PER_UPLOAD * CHUNK_BYTES));
    const progress = contents.map(() => ({ chunksSent: 0 }));
    const started = performance.now();
    const uploads = contents.map((content, index) =>
      storageClient("grpc", engram.url).upload(slowUploadMessages(`slow-${index}`, content, progress[index]!)),
    );
    // Catch failures now so that a failed upload is reported by the await
    // below, not as an unhandled rejection while GetObject runs.
    const settled = Promise.allSettled(uploads);

    // Wait until every upload is past its start and streaming bytes.
    while (progress.some((upload) => upload.chunksSent < 2)) {
      await sleep(20);
    }
    const getStarted = performance.now();
    const { object } = await probe.getObject({ bucket: BUCKET, key: "probe" });
    const getMs = performance.now() - getStarted;

    expect(object?.size).toBe(100n);
    expect(getMs).toBeLessThan(1000);
    const stats = engram.metadata.poolStats?.();
    expect(stats?.total).toBeLessThanOrEqual(2);
    expect(stats?.waiting).toBe(0);

    const results = await settled;
    for (const [index, result] of results.entries()) {
      expect(result.status, `upload slow-${index}: ${String((result as PromiseRejectedResult).reason)}`).toBe("fulfilled");
      const response = (result as PromiseFulfilledResult<Awaited<(typeof uploads)[number]>>).value;
      expect(response.object?.size).toBe(BigInt(contents[index]!.length));
    }
    // The uploads really were slow, so GetObject ran while they streamed.
    expect(performance.now() - started).toBeGreaterThan(CHUNKS_PER_UPLOAD * CHUNK_INTERVAL_MS);

    for (let index = 0; index < SLOW_UPLOADS; index += 1) {
      const { object: stored } = await probe.getObject({ bucket: BUCKET, key: `slow-${index}` });
      expect(stored?.size).toBe(BigInt(contents[index]!.length));
    }
  });
});

describe.skipIf(postgres.skip)("PostgreSQL pool errors", () => {
  let database: TestDatabase;

  beforeAll(async () => {
    postgres.assertAvailable();
    database = await createTestDatabase();
  });

  afterAll(async () => {
    await database?.drop();
  });

  it("terminated idle connection is logged", async () => {
    const { log, entries } = capturingLogger();
    const store = await openPostgresMetadataStore(postgresConfig(database.url, 2), log);
    try {
      await store.ping();
      expect(store.poolStats?.().idle).toBeGreaterThan(0);

      const admin = new pg.Client({ connectionString: database.url });
      await admin.connect();
      try {
        await admin.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()", [database.name]);
      } finally {
        await admin.end();
      }
      // pino level 40 is warn.
      const warnings = () => entries.filter((entry) => entry.level >= 40);
      for (let waited = 0; waited < 2000 && warnings().length === 0; waited += 20) {
        await sleep(20);
      }

      expect(warnings()).toHaveLength(1);
      expect(warnings()[0]?.msg).toContain("PostgreSQL connection failed while idle");
      expect(warnings()[0]?.database).toBe(database.name);
      // The pool opens a new connection for the next query.
      await store.ping();
    } finally {
      await store.close();
    }
  });

  it("statement timeout becomes unavailable", async () => {
    const store = await openPostgresMetadataStore({ ...postgresConfig(database.url, 1), statementTimeoutMs: 200 }, createLogger("silent"));
    try {
      // Hold the advisory lock that a commit of this key takes, so the
      // commit waits until statement_timeout cancels it.
      await store.ensureBuckets(["locked"]);
      const admin = new pg.Client({ connectionString: database.url });
      await admin.connect();
      try {
        await admin.query("begin");
        await admin.query("select pg_advisory_xact_lock(hashtextextended($1, 0))", ["locked/key"]);
        const generation = await store.reserveGeneration();
        const commit = store.commitObject(
          {
            bucket: "locked",
            key: "key",
            generation,
            versionId: "v1",
            size: 0,
            contentType: "",
            storageClass: "STANDARD",
            metadata: {},
            tags: {},
            sha256: "0".repeat(64),
            crc32c: 0,
            etag: '""',
          },
          undefined,
        );
        await expect(commit).rejects.toMatchObject({ kind: "unavailable", message: "metadata query timed out: retry later" });
        await admin.query("rollback");
      } finally {
        await admin.end();
      }
    } finally {
      await store.close();
    }
  });
});

describe("unreachable PostgreSQL", () => {
  it("open fails fast as unavailable", async () => {
    const port = await unusedPort();
    const url = `postgres://postgres@127.0.0.1:${port}/test`;
    const started = performance.now();

    let failure: unknown;
    try {
      const store = await openPostgresMetadataStore(postgresConfig(url, 2), createLogger("silent"));
      await store.close();
    } catch (err) {
      failure = err;
    }
    const elapsedMs = performance.now() - started;

    expect(failure).toBeInstanceOf(StorageError);
    expect((failure as StorageError).kind).toBe("unavailable");
    expect((failure as StorageError).message).toContain(`ECONNREFUSED 127.0.0.1:${port}`);
    expect((failure as StorageError).message).toContain("ENGRAM_POSTGRES_URL");
    expect((failure as StorageError).cause).toMatchObject({ code: "ECONNREFUSED" });
    expect(elapsedMs).toBeLessThan(5000);
  });

  it("invalid URL names the variable", async () => {
    await expect(openPostgresMetadataStore(postgresConfig("not a url", 2), createLogger("silent"))).rejects.toThrow(/ENGRAM_POSTGRES_URL is not a URL/);
    await expect(openPostgresMetadataStore(postgresConfig("mysql://db/engram", 2), createLogger("silent"))).rejects.toThrow(/must start with postgres:\/\//);
  });
});

describe("translateDatabaseError", () => {
  const hint = "check ENGRAM_POSTGRES_URL";
  const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

  it.each([
    ["ECONNREFUSED", withCode("connect ECONNREFUSED 127.0.0.1:5432", "ECONNREFUSED")],
    ["ECONNRESET", withCode("read ECONNRESET", "ECONNRESET")],
    ["ETIMEDOUT", withCode("connect ETIMEDOUT 10.0.0.1:5432", "ETIMEDOUT")],
    ["connection terminated", new Error("Connection terminated unexpectedly")],
    ["connect timeout", new Error("Connection terminated due to connection timeout", { cause: new Error("Connection terminated") })],
    ["acquire timeout", new Error("timeout exceeded when trying to connect")],
    ["server shutdown", withCode("terminating connection due to administrator command", "57P01")],
    ["connection exception", withCode("connection failure", "08006")],
    ["too many connections", withCode("sorry, too many clients already", "53300")],
    ["bad password", withCode('password authentication failed for user "engram"', "28P01")],
    ["missing database", withCode('database "engram" does not exist', "3D000")],
    ["aggregate", new AggregateError([withCode("connect ECONNREFUSED ::1:5432", "ECONNREFUSED"), withCode("connect ECONNREFUSED 127.0.0.1:5432", "ECONNREFUSED")], "")],
  ])("%s is unavailable", (_name, err) => {
    const translated = translateDatabaseError(err, hint);

    expect(translated.kind).toBe("unavailable");
    expect(translated.message).toMatch(/^metadata database is unavailable: .+; check ENGRAM_POSTGRES_URL$/);
    expect(translated.cause).toBe(err);
  });

  it("aggregate message lists members", () => {
    const err = new AggregateError([withCode("connect ECONNREFUSED ::1:5432", "ECONNREFUSED"), withCode("connect ECONNREFUSED 127.0.0.1:5432", "ECONNREFUSED")], "");
    expect(translateDatabaseError(err, hint).message).toContain("connect ECONNREFUSED ::1:5432, connect ECONNREFUSED 127.0.0.1:5432");
  });

  it.each([
    ["syntax error", withCode('syntax error at or near "selec"', "42601"), "internal"],
    ["plain error", new Error("something else"), "internal"],
    ["unique violation", withCode("duplicate key value", "23505"), "aborted"],
    ["foreign key", withCode("violates foreign key constraint", "23503"), "not_found"],
  ])("%s keeps its kind", (_name, err, kind) => {
    expect(translateDatabaseError(err, hint).kind).toBe(kind);
  });
});
