import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";

import { StorageClass, VersioningState } from "../gen/engram/v1/object_pb.js";
import type { Clock } from "../src/service/lifecycle-worker.js";
import { backendsUnderTest } from "./support/backends.js";
import { blobNames, failure, uniqueBucketName, usageByScan, usageReported } from "./support/buckets.js";
import { storageClient, type TestEngram } from "./support/engram.js";
import { random, upload } from "./support/objects.js";

const DAY_MS = 24 * 60 * 60 * 1000;
const BATCH_SIZE = 4;

const backends = await backendsUnderTest();

describe.each(backends)("on $name", (backend) => {
  let engram: TestEngram;
  const client = () => storageClient("grpc", engram.url);
  /** How far the worker's clock runs ahead of the real one. */
  let daysAhead = 0;
  const clock: Clock = { now: () => new Date(Date.now() + daysAhead * DAY_MS) };

  beforeAll(async () => {
    if (backend.available) {
      engram = await backend.start({ ENGRAM_BLOB_DELETE_GRACE_SECONDS: "0" }, { clock, lifecycleBatchSize: BATCH_SIZE });
    }
  });

  afterAll(async () => {
    await engram?.destroy();
  });

  beforeEach(() => {
    daysAhead = 0;
    if (engram) engram.lifecycle.beforeItem = undefined;
  });

  async function bucketWithRules(label: string, rules: object[], versioning = VersioningState.UNVERSIONED): Promise<string> {
    const name = uniqueBucketName(label);
    await client().createBucket({ bucket: { name, versioning, lifecycleRules: rules } });
    return name;
  }

  async function keysOf(bucket: string): Promise<string[]> {
    return (await client().listObjects({ bucket })).objects.map((object) => object.key);
  }

  async function expectUsageExact(bucket: string): Promise<void> {
    expect(await usageReported(client(), bucket)).toEqual(await usageByScan(client(), bucket));
  }

  describe.skipIf(!backend.available)("lifecycle", () => {
    it("expires logs after the rule's days", async () => {
      const bucket = await bucketWithRules("expire", [{ id: "logs", enabled: true, prefix: "logs/", expirationDays: 30 }]);
      for (const key of ["logs/a", "logs/b", "jobs/out"]) await upload(client(), bucket, key, random(64));

      daysAhead = 29;
      await engram.lifecycle.run();
      expect(await keysOf(bucket)).toEqual(["jobs/out", "logs/a", "logs/b"]);

      daysAhead = 31;
      expect(await engram.lifecycle.run()).toBeGreaterThanOrEqual(2);
      expect(await keysOf(bucket)).toEqual(["jobs/out"]);
      expect((await failure(() => client().getObject({ bucket, key: "logs/a" }))).code).toBe(Code.NotFound);
      await expectUsageExact(bucket);

      const line = engram.logs.find((entry) => entry.msg === "lifecycle batch applied" && entry.bucket === bucket);
      expect(line).toMatchObject({ rule: "logs", action: "expire_current", count: 2 });
      const metrics = await (await fetch(`${engram.metricsUrl}/metrics`)).text();
      expect(metrics).toContain(`engram_lifecycle_actions_total{action="expire_current",bucket="${bucket}"} 2`);
    });

    it("disabled rule and tag filter", async () => {
      const bucket = await bucketWithRules("filters", [
        { id: "off", enabled: false, prefix: "", expirationDays: 1 },
        { id: "tagged", enabled: true, prefix: "", tags: { temp: "yes" }, expirationDays: 1 },
      ]);
      await upload(client(), bucket, "keep", random(8));
      await upload(client(), bucket, "scratch", random(8), { tags: { temp: "yes" } });
      daysAhead = 2;
      await engram.lifecycle.run();
      expect(await keysOf(bucket)).toEqual(["keep"]);
    });

    it("versioned expiry adds a delete marker", async () => {
      const bucket = await bucketWithRules("marker", [{ id: "all", enabled: true, prefix: "", expirationDays: 1 }], VersioningState.ENABLED);
      const v1 = await upload(client(), bucket, "a", random(8));
      daysAhead = 2;
      await engram.lifecycle.run();
      expect(await keysOf(bucket)).toEqual([]);
      const { objects } = await client().listObjects({ bucket, versions: true });
      expect(objects.map((object) => object.deleteMarker)).toEqual([true, false]);
      expect(objects[1]?.generation).toBe(v1.generation);
      await expectUsageExact(bucket);
    });

    it("expiring every version removes the marker", async () => {
      const rules = [{ id: "all", enabled: true, prefix: "tmp/", expirationDays: 1, noncurrentExpirationDays: 1 }];
      const bucket = await bucketWithRules("lone", rules, VersioningState.ENABLED);
      await upload(client(), bucket, "tmp/a", random(8));
      await upload(client(), bucket, "tmp/a", random(9));
      await upload(client(), bucket, "kept", random(10));

      daysAhead = 2;
      await engram.lifecycle.run();
      const { objects } = await client().listObjects({ bucket, versions: true });
      expect(objects.map((object) => object.key)).toEqual(["kept"]);
      await expectUsageExact(bucket);
    });

    it("keeps the newest 2 noncurrent versions", async () => {
      const bucket = await bucketWithRules("newest", [{ id: "keep2", enabled: true, prefix: "", noncurrentNewerVersions: 2 }], VersioningState.ENABLED);
      const generations = [];
      for (let i = 0; i < 6; i += 1) generations.push((await upload(client(), bucket, "model", random(100 + i))).generation);
      await upload(client(), bucket, "other", random(10));

      await engram.lifecycle.run();
      const { objects } = await client().listObjects({ bucket, prefix: "model", versions: true });
      expect(objects.map((object) => object.generation)).toEqual(generations.slice(3).reverse());
      expect(objects.map((object) => object.noncurrent)).toEqual([false, true, true]);
      await expectUsageExact(bucket);
    });

    it("expires noncurrent versions by age", async () => {
      const bucket = await bucketWithRules("age", [{ id: "old", enabled: true, prefix: "", noncurrentExpirationDays: 10 }], VersioningState.ENABLED);
      await upload(client(), bucket, "a", random(10));
      const live = await upload(client(), bucket, "a", random(20));
      daysAhead = 9;
      await engram.lifecycle.run();
      expect((await client().listObjects({ bucket, versions: true })).objects).toHaveLength(2);
      daysAhead = 11;
      await engram.lifecycle.run();
      const { objects } = await client().listObjects({ bucket, versions: true });
      expect(objects.map((object) => object.generation)).toEqual([live.generation]);
      await expectUsageExact(bucket);
    });

    it("aborts an old upload and removes its parts", async () => {
      const bucket = await bucketWithRules("abort", [{ id: "uploads", enabled: true, prefix: "", abortIncompleteUploadDays: 7 }]);
      const { uploadId } = await client().createMultipartUpload({ spec: { bucket, key: "big" } });
      const part = random(1000);
      await client().uploadPart(
        (async function* () {
          yield { uploadId, partNumber: 1 };
          yield { writeOffset: 0n, data: { content: part } };
          yield { writeOffset: BigInt(part.length), finishWrite: true };
        })(),
      );
      // Part 2 is unfinished: one chunk sent with a unary call, stored as a blob of its own.
      const partOnly = (await blobNames(engram, bucket)).length;
      await client().uploadPartChunk({ uploadId, partNumber: 2, writeOffset: 0n, data: { content: random(500) } });
      expect((await blobNames(engram, bucket)).length).toBeGreaterThan(partOnly);

      daysAhead = 6;
      await engram.lifecycle.run();
      expect((await client().listParts({ uploadId })).parts).toHaveLength(1);

      daysAhead = 8;
      await engram.lifecycle.run();
      expect((await failure(() => client().listParts({ uploadId }))).code).toBe(Code.NotFound);
      expect((await client().listMultipartUploads({ bucket })).uploads).toEqual([]);
      await engram.catalog.sweepNow();
      expect(await engram.metadata.listBlobDeletions(new Date(Date.now() + DAY_MS), 100)).toEqual([]);
      expect(await blobNames(engram, bucket)).toEqual([]);
      await client().deleteBucket({ name: bucket });
    });

    it("transition records the storage class", async () => {
      const bucket = await bucketWithRules("cold", [
        { id: "cold", enabled: true, prefix: "ckpt/", transition: { days: 30, storageClass: StorageClass.GLACIER } },
      ]);
      await upload(client(), bucket, "ckpt/1", random(10));
      await upload(client(), bucket, "hot", random(10));
      daysAhead = 31;
      await engram.lifecycle.run();
      expect((await client().getObject({ bucket, key: "ckpt/1" })).object?.storageClass).toBe(StorageClass.GLACIER);
      expect((await client().getObject({ bucket, key: "hot" })).object?.storageClass).toBe(StorageClass.STANDARD);
    });

    it("interrupted batch leaves a consistent state", async () => {
      const bucket = await bucketWithRules("interrupt", [{ id: "logs", enabled: true, prefix: "logs/", expirationDays: 1 }], VersioningState.ENABLED);
      for (let i = 0; i < 10; i += 1) await upload(client(), bucket, `logs/${String(i).padStart(2, "0")}`, random(10 + i));
      await upload(client(), bucket, "kept", random(5));

      // Fail the third item of the second batch: the first batch commits,
      // the second rolls back as a whole.
      let items = 0;
      engram.lifecycle.beforeItem = () => {
        items += 1;
        if (items === BATCH_SIZE + 3) throw new Error("worker interrupted");
      };
      daysAhead = 2;
      expect(await engram.lifecycle.run()).toBe(BATCH_SIZE);
      expect(await keysOf(bucket)).toHaveLength(11 - BATCH_SIZE);
      await expectUsageExact(bucket);
      expect(engram.logs.some((entry) => entry.msg === "lifecycle run failed; will retry")).toBe(true);

      engram.lifecycle.beforeItem = undefined;
      await engram.lifecycle.run();
      expect(await keysOf(bucket)).toEqual(["kept"]);
      const { objects } = await client().listObjects({ bucket, versions: true, prefix: "logs/" });
      expect(objects.filter((object) => object.deleteMarker)).toHaveLength(10);
      expect(objects.filter((object) => !object.deleteMarker && object.noncurrent)).toHaveLength(10);
      await expectUsageExact(bucket);
    });

    it.runIf(backend.name !== "embedded")("waits while another replica holds the lock", async () => {
      const bucket = await bucketWithRules("lock", [{ id: "all", enabled: true, prefix: "", expirationDays: 1 }]);
      await upload(client(), bucket, "a", random(10));
      const other = new pg.Client({ connectionString: engram.config.postgres.url });
      await other.connect();
      try {
        await other.query("select pg_advisory_lock(hashtextextended('engram.lifecycle', 0))");
        daysAhead = 2;
        expect(await engram.lifecycle.run()).toBe(0);
        expect(await keysOf(bucket)).toEqual(["a"]);
        await other.query("select pg_advisory_unlock(hashtextextended('engram.lifecycle', 0))");
        expect(await engram.lifecycle.run()).toBeGreaterThanOrEqual(1);
        expect(await keysOf(bucket)).toEqual([]);
      } finally {
        await other.end();
      }
    });
  });
});
