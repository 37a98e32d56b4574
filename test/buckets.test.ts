import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { BucketStatus, VersioningState } from "../gen/engram/v1/object_pb.js";
import { backendsUnderTest } from "./support/backends.js";
import { blobNames, failure, physicalBucketExists, uniqueBucketName } from "./support/buckets.js";
import { TEST_AUTHORIZATION, storageClient, type TestEngram } from "./support/engram.js";
import { download, random, upload } from "./support/objects.js";

const backends = await backendsUnderTest();

describe.each(backends)("on $name", (backend) => {
  let engram: TestEngram;
  const client = () => storageClient("grpc", engram.url);

  beforeAll(async () => {
    if (backend.available) engram = await backend.start();
  });

  afterAll(async () => {
    await engram?.destroy();
  });

  describe.skipIf(!backend.available)("buckets", () => {
    it("configured buckets have default settings", async () => {
      const { buckets } = await client().listBuckets({});
      const models = buckets.find((bucket) => bucket.name === "mnemos-models");
      expect(models?.status).toBe(BucketStatus.ACTIVE);
      expect(models?.versioning).toBe(VersioningState.UNVERSIONED);
      expect(models?.lifecycleRules).toEqual([]);
      expect(models?.metageneration).toBe(1n);
    });

    it("create, get and delete", async () => {
      const name = uniqueBucketName("create");
      const { bucket } = await client().createBucket({ bucket: { name } });
      expect(bucket?.name).toBe(name);
      expect(bucket?.versioning).toBe(VersioningState.UNVERSIONED);
      expect(bucket?.status).toBe(BucketStatus.ACTIVE);
      expect(bucket?.objectCount).toBe(0n);
      expect(bucket?.createTime).toBeDefined();
      expect(await physicalBucketExists(engram, name)).toBe(true);

      const again = await failure(() => client().createBucket({ bucket: { name } }));
      expect(again.code).toBe(Code.AlreadyExists);
      const bad = await failure(() => client().createBucket({ bucket: { name: "Bad_Name" } }));
      expect(bad.code).toBe(Code.InvalidArgument);
      expect(bad.rawMessage).toContain("Bad_Name");

      await upload(client(), name, "a", random(10));
      const busy = await failure(() => client().deleteBucket({ name }));
      expect(busy.code).toBe(Code.FailedPrecondition);
      expect(busy.rawMessage).toContain("1 object versions");

      await client().deleteObject({ bucket: name, key: "a" });
      await client().deleteBucket({ name });
      expect((await failure(() => client().getBucket({ name }))).code).toBe(Code.NotFound);
      expect(await blobNames(engram, name)).toEqual([]);
      if (engram.config.blobStore === "s3") {
        expect(await physicalBucketExists(engram, name)).toBe(false);
      }
      expect((await failure(() => client().deleteBucket({ name }))).code).toBe(Code.NotFound);
    });

    it("delete refused while an upload is open", async () => {
      const name = uniqueBucketName("uploads");
      await client().createBucket({ bucket: { name } });
      const { uploadId } = await client().createMultipartUpload({ spec: { bucket: name, key: "big" } });
      const busy = await failure(() => client().deleteBucket({ name }));
      expect(busy.code).toBe(Code.FailedPrecondition);
      expect(busy.rawMessage).toContain("unfinished uploads");
      await client().abortMultipartUpload({ uploadId });
      await client().deleteBucket({ name });
    });

    it("update checks mask and metageneration", async () => {
      const name = uniqueBucketName("update");
      await client().createBucket({ bucket: { name } });

      const { bucket } = await client().updateBucket({
        bucket: { name, versioning: VersioningState.ENABLED },
        updateMask: { paths: ["versioning"] },
        ifMetagenerationMatch: 1n,
      });
      expect(bucket?.versioning).toBe(VersioningState.ENABLED);
      expect(bucket?.metageneration).toBe(2n);

      const stale = await failure(() =>
        client().updateBucket({ bucket: { name, status: BucketStatus.ARCHIVED }, updateMask: { paths: ["status"] }, ifMetagenerationMatch: 1n }),
      );
      expect(stale.code).toBe(Code.FailedPrecondition);
      expect(stale.rawMessage).toContain("metageneration is 2");

      const empty = await failure(() => client().updateBucket({ bucket: { name }, updateMask: { paths: [] } }));
      expect(empty.code).toBe(Code.InvalidArgument);
      const unknown = await failure(() => client().updateBucket({ bucket: { name }, updateMask: { paths: ["name"] } }));
      expect(unknown.code).toBe(Code.InvalidArgument);
      const back = await failure(() =>
        client().updateBucket({ bucket: { name, versioning: VersioningState.UNVERSIONED }, updateMask: { paths: ["versioning"] } }),
      );
      expect(back.code).toBe(Code.InvalidArgument);
      expect(back.rawMessage).toContain("suspended");

      const tooMany = Array.from({ length: 101 }, (_, i) => ({ id: `r${i}`, enabled: true, expirationDays: 1 }));
      const many = await failure(() => client().updateBucket({ bucket: { name, lifecycleRules: tooMany }, updateMask: { paths: ["lifecycle_rules"] } }));
      expect(many.code).toBe(Code.InvalidArgument);
      expect(many.rawMessage).toContain("at most 100");
      const noAction = await failure(() =>
        client().updateBucket({ bucket: { name, lifecycleRules: [{ id: "x", enabled: true }] }, updateMask: { paths: ["lifecycle_rules"] } }),
      );
      expect(noAction.code).toBe(Code.InvalidArgument);

      const rules = [{ id: "logs", enabled: true, prefix: "logs/", expirationDays: 30 }];
      const updated = await client().updateBucket({ bucket: { name, lifecycleRules: rules }, updateMask: { paths: ["lifecycle_rules"] } });
      expect(updated.bucket?.lifecycleRules).toHaveLength(1);
      expect(updated.bucket?.lifecycleRules[0]).toMatchObject({ id: "logs", prefix: "logs/", expirationDays: 30 });
      expect(updated.bucket?.versioning).toBe(VersioningState.ENABLED);
    });

    it("JSON always lists versioning and rules", async () => {
      const response = await fetch(`${engram.url}/engram.v1.StorageService/GetBucket`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: TEST_AUTHORIZATION },
        body: JSON.stringify({ name: "mnemos-logs" }),
      });
      const body = (await response.json()) as { bucket: Record<string, unknown> };
      expect(body.bucket.versioning).toBe("VERSIONING_STATE_UNVERSIONED");
      expect(body.bucket.status).toBe("BUCKET_STATUS_ACTIVE");
      expect(body.bucket.lifecycleRules).toEqual([]);
    });

    it("README lifecycle example over JSON", async () => {
      const name = uniqueBucketName("readme");
      await client().createBucket({ bucket: { name } });
      // The request body of the lifecycle example in README.md.
      const body = {
        bucket: {
          name,
          lifecycleRules: [
            { id: "job-logs", enabled: true, prefix: "jobs/", expirationDays: 30 },
            { id: "stale-uploads", enabled: true, abortIncompleteUploadDays: 7 },
          ],
        },
        updateMask: "lifecycleRules",
      };
      const response = await fetch(`${engram.url}/engram.v1.StorageService/UpdateBucket`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: TEST_AUTHORIZATION },
        body: JSON.stringify(body),
      });
      expect(response.status).toBe(200);
      const { bucket } = (await response.json()) as { bucket: { lifecycleRules: unknown[]; metageneration: string } };
      expect(bucket.lifecycleRules).toHaveLength(2);
      expect(bucket.metageneration).toBe("2");
    });

    it("suspended and archived take reads only", async () => {
      const name = uniqueBucketName("status");
      await client().createBucket({ bucket: { name } });
      const content = random(100);
      await upload(client(), name, "kept", content);

      for (const status of [BucketStatus.SUSPENDED, BucketStatus.ARCHIVED]) {
        await client().updateBucket({ bucket: { name, status }, updateMask: { paths: ["status"] } });
        const write = await failure(() => upload(client(), name, "new", random(10)));
        expect(write.code).toBe(Code.FailedPrecondition);
        expect(write.rawMessage).toContain("accepts reads only");
        const remove = await failure(() => client().deleteObject({ bucket: name, key: "kept" }));
        expect(remove.code).toBe(Code.FailedPrecondition);
        const multipart = await failure(() => client().createMultipartUpload({ spec: { bucket: name, key: "big" } }));
        expect(multipart.code).toBe(Code.FailedPrecondition);

        const read = await download(client(), { bucket: name, key: "kept" });
        expect(read.content.equals(content)).toBe(true);
        const { objects } = await client().listObjects({ bucket: name });
        expect(objects.map((object) => object.key)).toEqual(["kept"]);
      }

      await client().updateBucket({ bucket: { name, status: BucketStatus.ACTIVE }, updateMask: { paths: ["status"] } });
      await upload(client(), name, "new", random(10));
    });
  });
});
