/*
 * One contract for every MetadataStore adapter: the same checks run on
 * embedded PGlite and on a real PostgreSQL server.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createLogger } from "../src/log.js";
import type { MetadataStore, NewObject, ObjectRecord } from "../src/metadata/metadata-store.js";
import { openPGliteMetadataStore } from "../src/metadata/pglite/open-pglite.js";
import { openPostgresMetadataStore } from "../src/metadata/postgres/open-postgres.js";
import { StorageError } from "../src/service/errors.js";
import { createTestDatabase, requirePostgres } from "./support/postgres.js";
import { newObject } from "./support/records.js";

/** A store on its own fresh database, and how to remove that database. */
interface OpenedStore {
  readonly store: MetadataStore;
  destroy(): Promise<void>;
}

interface Backend {
  readonly name: string;
  readonly skip: boolean;
  /** Throws when the backend is required but missing. */
  readonly assertAvailable: () => void;
  open(): Promise<OpenedStore>;
}

const postgres = await requirePostgres("the MetadataStore contract tests on PostgreSQL");

const BACKENDS: Backend[] = [
  {
    name: "pglite",
    skip: false,
    assertAvailable: () => {},
    async open() {
      const dir = await mkdtemp(join(tmpdir(), "engram-contract-"));
      const store = await openPGliteMetadataStore(dir);
      return {
        store,
        async destroy() {
          await store.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: "postgres",
    skip: postgres.skip,
    assertAvailable: () => postgres.assertAvailable(),
    async open() {
      const database = await createTestDatabase();
      const config = { url: database.url, password: undefined, poolSize: 4, statementTimeoutMs: 10_000, idleInTransactionTimeoutMs: 10_000 };
      const store = await openPostgresMetadataStore(config, createLogger("silent"));
      return {
        store,
        async destroy() {
          await store.close();
          await database.drop();
        },
      };
    },
  },
];

/** Keys whose UTF-8 byte order differs from both UTF-16 order and locale order. */
const UNICODE_KEYS = ["a", "a/b", "a0", "b", "Z", "é", "世界", "Ａ", "😀"];

function compareUtf8(left: string, right: string): number {
  return Buffer.compare(Buffer.from(left, "utf8"), Buffer.from(right, "utf8"));
}

/** Awaits a promise that must reject, and returns its StorageError. */
async function storageFailure(promise: Promise<unknown>): Promise<StorageError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(StorageError);
    return err as StorageError;
  }
  throw new Error("the call succeeded but was expected to fail with a StorageError");
}

describe.each(BACKENDS)("MetadataStore on $name", (backend) => {
  const test = it.skipIf(backend.skip);
  let opened: OpenedStore | undefined;
  let bucketCount = 0;

  const store = (): MetadataStore => opened!.store;

  /** Creates a bucket no other test uses. */
  async function freshBucket(): Promise<string> {
    bucketCount += 1;
    const name = `contract-${bucketCount}-${randomUUID().slice(0, 8)}`;
    await store().ensureBuckets([name]);
    return name;
  }

  /** Reserves a generation and commits a new version of the key. */
  async function commit(bucket: string, key: string, ifGenerationMatch?: number, overrides: Partial<NewObject> = {}): Promise<ObjectRecord> {
    const generation = await store().reserveGeneration();
    return store().commitObject(newObject(bucket, key, generation, overrides), ifGenerationMatch);
  }

  /** Version ids queued for deletion in one bucket. */
  async function queuedVersionIds(bucket: string): Promise<string[]> {
    const deletions = await store().listBlobDeletions(new Date(Date.now() + 60_000), 10_000);
    return deletions.filter((deletion) => deletion.bucket === bucket).map((deletion) => deletion.versionId);
  }

  beforeAll(async () => {
    if (backend.skip) return;
    backend.assertAvailable();
    opened = await backend.open();
  });

  afterAll(async () => {
    await opened?.destroy();
  });

  test("ensureBuckets is idempotent", async () => {
    await store().ensureBuckets(["order-zeta", "order-alpha"]);
    await store().ensureBuckets(["order-alpha", "order-mid", "order-zeta"]);
    await store().ensureBuckets([]);

    const names = (await store().listBuckets()).map((bucket) => bucket.name);
    const ours = names.filter((name) => name.startsWith("order-"));
    expect(ours).toEqual(["order-alpha", "order-mid", "order-zeta"]);
    expect(names).toEqual([...names].sort());
    expect(new Set(names).size).toBe(names.length);

    const bucket = await store().getBucket("order-mid");
    expect(bucket?.name).toBe("order-mid");
    expect(bucket?.createdAt).toBeInstanceOf(Date);
    expect(await store().getBucket("order-missing")).toBeUndefined();
  });

  test("reserveGeneration unique and increasing", async () => {
    const sequential: number[] = [];
    for (let i = 0; i < 20; i += 1) {
      sequential.push(await store().reserveGeneration());
    }
    for (let i = 1; i < sequential.length; i += 1) {
      expect(sequential[i]).toBeGreaterThan(sequential[i - 1]!);
    }

    const concurrent = await Promise.all(Array.from({ length: 20 }, () => store().reserveGeneration()));
    expect(new Set(concurrent).size).toBe(concurrent.length);
    expect(Math.min(...concurrent)).toBeGreaterThan(Math.max(...sequential));
  });

  test("commitObject checks ifGenerationMatch", async () => {
    const bucket = await freshBucket();

    const first = await commit(bucket, "object", 0);
    expect(first.generation).toBeGreaterThan(0);
    expect((await store().getObject(bucket, "object"))?.versionId).toBe(first.versionId);

    const exists = await storageFailure(commit(bucket, "object", 0));
    expect(exists.kind).toBe("failed_precondition");

    const second = await commit(bucket, "object", first.generation);
    expect((await store().getObject(bucket, "object"))?.generation).toBe(second.generation);
    expect(await queuedVersionIds(bucket)).toEqual([first.versionId]);

    const stale = await storageFailure(commit(bucket, "object", first.generation));
    expect(stale.kind).toBe("failed_precondition");
    expect(stale.message).toContain(String(second.generation));

    const unconditional = await commit(bucket, "object", undefined);
    expect((await store().getObject(bucket, "object"))?.generation).toBe(unconditional.generation);
  });

  test("getObject by generation", async () => {
    const bucket = await freshBucket();
    const committed = await commit(bucket, "object");

    expect((await store().getObject(bucket, "object", committed.generation))?.versionId).toBe(committed.versionId);
    expect(await store().getObject(bucket, "object", committed.generation + 1)).toBeUndefined();
    expect(await store().getObject(bucket, "missing")).toBeUndefined();
  });

  test("lower generation commit is dropped", async () => {
    const bucket = await freshBucket();
    const older = await store().reserveGeneration();
    const newer = await store().reserveGeneration();

    const winner = await store().commitObject(newObject(bucket, "race", newer), undefined);
    const loser = newObject(bucket, "race", older);
    const dropped = await store().commitObject(loser, undefined);

    expect(dropped.generation).toBe(older);
    const live = await store().getObject(bucket, "race");
    expect(live?.generation).toBe(newer);
    expect(live?.versionId).toBe(winner.versionId);
    expect(await store().getObject(bucket, "race", older)).toBeUndefined();
    expect(await queuedVersionIds(bucket)).toEqual([loser.versionId]);
  });

  test("deleteObject missing and preconditions", async () => {
    const bucket = await freshBucket();

    const missing = await storageFailure(store().deleteObject(bucket, "missing", undefined));
    expect(missing.kind).toBe("not_found");

    const committed = await commit(bucket, "object");
    const mismatch = await storageFailure(store().deleteObject(bucket, "object", committed.generation + 1));
    expect(mismatch.kind).toBe("failed_precondition");
    const mustNotExist = await storageFailure(store().deleteObject(bucket, "object", 0));
    expect(mustNotExist.kind).toBe("failed_precondition");
    expect((await store().getObject(bucket, "object"))?.generation).toBe(committed.generation);

    const deleted = await store().deleteObject(bucket, "object", committed.generation);
    expect(deleted.deleted.versionId).toBe(committed.versionId);
    expect(deleted.deleteMarker).toBeUndefined();
    expect(await store().getObject(bucket, "object")).toBeUndefined();
    expect(await queuedVersionIds(bucket)).toEqual([committed.versionId]);

    const again = await storageFailure(store().deleteObject(bucket, "object", undefined));
    expect(again.kind).toBe("not_found");
  });

  test("commit into missing bucket", async () => {
    const failure = await storageFailure(commit("contract-no-such-bucket", "object"));
    expect(failure.kind).toBe("not_found");
    expect(failure.message).toContain("contract-no-such-bucket");
  });

  test("listObjects bounds and limit", async () => {
    const bucket = await freshBucket();
    for (const key of ["k1", "k2", "k3", "k4", "k5"]) {
      await commit(bucket, key);
    }
    const keys = async (startAt: string, endBefore: string | undefined, limit: number) =>
      (await store().listObjects({ bucket, startAt, endBefore, limit })).map((object) => object.key);

    expect(await keys("", undefined, 100)).toEqual(["k1", "k2", "k3", "k4", "k5"]);
    expect(await keys("k2", undefined, 100)).toEqual(["k2", "k3", "k4", "k5"]);
    expect(await keys("k2", "k4", 100)).toEqual(["k2", "k3"]);
    expect(await keys("k2", "k4", 1)).toEqual(["k2"]);
    expect(await keys("", undefined, 2)).toEqual(["k1", "k2"]);
    expect(await keys("k3", "k3", 100)).toEqual([]);
    expect(await keys("k6", undefined, 100)).toEqual([]);

    await store().deleteObject(bucket, "k3", undefined);
    expect(await keys("k2", "k5", 100)).toEqual(["k2", "k4"]);
  });

  test("listObjects in UTF-8 byte order", async () => {
    const bucket = await freshBucket();
    for (const key of [...UNICODE_KEYS].reverse()) {
      await commit(bucket, key);
    }
    const expected = [...UNICODE_KEYS].sort(compareUtf8);

    const listed = (await store().listObjects({ bucket, startAt: "", endBefore: undefined, limit: 100 })).map((object) => object.key);
    expect(listed).toEqual(expected);

    // Bounds compare bytes too: from "a0" up to the fullwidth "Ａ" (EF BC A1).
    const bounded = (await store().listObjects({ bucket, startAt: "a0", endBefore: "Ａ", limit: 100 })).map((object) => object.key);
    expect(bounded).toEqual(["a0", "b", "é", "世界"]);
  });

  test("metadata and tags round trip", async () => {
    const bucket = await freshBucket();
    const metadata = { quote: 'say "hi" and \'bye\'', backslash: "C:\\models\\w.bin", "ключ": "значение 世界 😀", empty: "", json: '{"a":[1]}' };
    const tags = { "team\"x": "ml'ops", "é": "\u00e9\u0301", newline: "line1\nline2" };

    const committed = await commit(bucket, "labelled", undefined, { metadata, tags, contentType: "text/plain; charset=utf-8", storageClass: "GLACIER" });
    expect(committed.metadata).toEqual(metadata);
    expect(committed.tags).toEqual(tags);

    const read = await store().getObject(bucket, "labelled");
    expect(read?.metadata).toEqual(metadata);
    expect(read?.tags).toEqual(tags);
    expect(read?.contentType).toBe("text/plain; charset=utf-8");
    expect(read?.storageClass).toBe("GLACIER");
  });

  test("large numbers round trip", async () => {
    const bucket = await freshBucket();
    const size = 5 * 1024 ** 4;
    const crc32c = 0xffffffff;

    await commit(bucket, "big", undefined, { size, crc32c });
    const read = await store().getObject(bucket, "big");
    expect(read?.size).toBe(size);
    expect(read?.crc32c).toBe(crc32c);
    expect(read?.readCount).toBe(0);
    expect(read?.lastReadAt).toBeNull();
  });

  test("getBucketStats counts live objects", async () => {
    const bucket = await freshBucket();
    expect(await store().getBucketStats(bucket)).toEqual({ objectCount: 0, totalBytes: 0, versionCount: 0, versionBytes: 0 });

    await commit(bucket, "one", undefined, { size: 10 });
    await commit(bucket, "two", undefined, { size: 32 });
    expect(await store().getBucketStats(bucket)).toEqual({ objectCount: 2, totalBytes: 42, versionCount: 2, versionBytes: 42 });

    await commit(bucket, "two", undefined, { size: 100 });
    expect(await store().getBucketStats(bucket)).toEqual({ objectCount: 2, totalBytes: 110, versionCount: 2, versionBytes: 110 });

    await store().deleteObject(bucket, "one", undefined);
    expect(await store().getBucketStats(bucket)).toEqual({ objectCount: 1, totalBytes: 100, versionCount: 1, versionBytes: 100 });
  });

  test("blob deletions list and remove", async () => {
    const bucket = await freshBucket();
    const replaced: string[] = [];
    for (const key of ["d1", "d2", "d3"]) {
      replaced.push((await commit(bucket, key)).versionId);
      await commit(bucket, key);
    }

    const future = new Date(Date.now() + 60_000);
    const ours = (await store().listBlobDeletions(future, 10_000)).filter((deletion) => deletion.bucket === bucket);
    expect(ours.map((deletion) => deletion.versionId)).toEqual(replaced);
    expect(ours.map((deletion) => deletion.key)).toEqual(["d1", "d2", "d3"]);
    expect(await store().listBlobDeletions(new Date(0), 10_000)).toEqual([]);
    expect(await store().listBlobDeletions(future, 1)).toHaveLength(1);

    await store().removeBlobDeletions([ours[0]!.id, ours[2]!.id]);
    await store().removeBlobDeletions([]);
    expect(await queuedVersionIds(bucket)).toEqual([replaced[1]]);
  });

  test("recordReads adds counts", async () => {
    const bucket = await freshBucket();
    const committed = await commit(bucket, "read-me");
    const read = (count: number, lastReadAt: Date) => ({ bucket, key: "read-me", generation: committed.generation, count, lastReadAt });
    const t1 = new Date("2030-01-01T00:00:01.000Z");
    const t0 = new Date("2030-01-01T00:00:00.000Z");
    const t2 = new Date("2030-01-01T00:00:02.000Z");

    await store().recordReads([read(2, t1)]);
    await store().recordReads([read(3, t0)]);
    let object = await store().getObject(bucket, "read-me");
    expect(object?.readCount).toBe(5);
    expect(object?.lastReadAt?.toISOString()).toBe(t1.toISOString());

    await store().recordReads([read(1, t2), read(4, t0)]);
    object = await store().getObject(bucket, "read-me");
    expect(object?.readCount).toBe(10);
    expect(object?.lastReadAt?.toISOString()).toBe(t2.toISOString());

    // Reads of a version that is gone are ignored.
    await store().recordReads([{ ...read(1, t2), generation: committed.generation + 1_000_000 }]);
    await store().recordReads([]);
    expect((await store().getObject(bucket, "read-me"))?.readCount).toBe(10);
  });

  test("restoreObjects moves the sequence past", async () => {
    const fresh = await backend.open();
    try {
      await fresh.store.ensureBuckets(["restored"]);
      const generations = [5, 1_000_123, 42];
      const objects = generations.map((generation, index) => newObject("restored", `key-${index}`, generation));
      await fresh.store.restoreObjects(objects);
      await fresh.store.restoreObjects([]);

      for (const object of objects) {
        const read = await fresh.store.getObject("restored", object.key);
        expect(read?.generation).toBe(object.generation);
        expect(read?.versionId).toBe(object.versionId);
      }
      expect(await fresh.store.reserveGeneration()).toBeGreaterThan(1_000_123);
      expect(await fresh.store.getBucketStats("restored")).toEqual({ objectCount: 3, totalBytes: 30, versionCount: 3, versionBytes: 30 });
    } finally {
      await fresh.destroy();
    }
  });

  it.skipIf(backend.skip || backend.name !== "postgres")("concurrent first commits both complete", async () => {
    const bucket = await freshBucket();
    const keys = Array.from({ length: 20 }, (_, index) => `same-key-${index}`);

    // The two commits of each key start together, so they overlap on
    // different pool connections.
    const results = await Promise.allSettled(
      keys.flatMap((key) => [commit(bucket, key), commit(bucket, key)]),
    );
    const failures = results.filter((result) => result.status === "rejected").map((result) => String((result as PromiseRejectedResult).reason));
    expect(failures).toEqual([]);

    const committed = results.map((result) => (result as PromiseFulfilledResult<ObjectRecord>).value);
    const queued = new Set(await queuedVersionIds(bucket));
    for (const key of keys) {
      const pair = committed.filter((object) => object.key === key);
      expect(pair).toHaveLength(2);
      const [lower, higher] = [...pair].sort((left, right) => left.generation - right.generation);

      const live = await store().getObject(bucket, key);
      expect(live?.generation).toBe(higher!.generation);
      expect(queued.has(lower!.versionId)).toBe(true);
    }
    expect(await store().getBucketStats(bucket)).toEqual({ objectCount: keys.length, totalBytes: keys.length * 10, versionCount: keys.length, versionBytes: keys.length * 10 });
  });
});
