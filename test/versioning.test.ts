import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { VersioningState } from "../gen/engram/v1/object_pb.js";
import { createLogger } from "../src/log.js";
import { openPGliteMetadataStore } from "../src/metadata/pglite/open-pglite.js";
import { rebuildIndex } from "../src/service/rebuild-index.js";
import { backendsUnderTest } from "./support/backends.js";
import { failure, uniqueBucketName, usageByScan, usageReported } from "./support/buckets.js";
import { storageClient, type TestEngram } from "./support/engram.js";
import { MiB, download, random, sha256Hex, upload } from "./support/objects.js";

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

  async function versionedBucket(label: string, versioning = VersioningState.ENABLED): Promise<string> {
    const name = uniqueBucketName(label);
    await client().createBucket({ bucket: { name, versioning } });
    return name;
  }

  /** Lists every version of the bucket as "key@generation" with a flag for markers and noncurrent versions. */
  async function versionsOf(bucket: string): Promise<string[]> {
    const { objects } = await client().listObjects({ bucket, versions: true });
    return objects.map((object) => `${object.key}@${object.generation}${object.deleteMarker ? " marker" : ""}${object.noncurrent ? " noncurrent" : ""}`);
  }

  describe.skipIf(!backend.available)("versioning", () => {
    it("overwrite, delete, restore and remove", async () => {
      const bucket = await versionedBucket("seq");
      const first = random(2 * MiB + 3);
      const second = random(1000);

      const v1 = await upload(client(), bucket, "model", first);
      const v2 = await upload(client(), bucket, "model", second);
      expect((await client().getObject({ bucket, key: "model" })).object?.generation).toBe(v2.generation);
      expect(await versionsOf(bucket)).toEqual([`model@${v2.generation}`, `model@${v1.generation} noncurrent`]);

      const old = await download(client(), { bucket, key: "model", generation: v1.generation });
      expect(sha256Hex(old.content)).toBe(sha256Hex(first));
      const oldMeta = await client().getObject({ bucket, key: "model", generation: v1.generation });
      expect(oldMeta.object?.noncurrent).toBe(true);
      expect(oldMeta.object?.noncurrentTime).toBeDefined();

      const deleted = await client().deleteObject({ bucket, key: "model" });
      const marker = deleted.deleteMarkerGeneration;
      expect(marker).toBeGreaterThan(v2.generation);
      expect((await failure(() => client().getObject({ bucket, key: "model" }))).code).toBe(Code.NotFound);
      expect((await failure(() => download(client(), { bucket, key: "model" }))).code).toBe(Code.NotFound);
      expect((await client().listObjects({ bucket })).objects).toEqual([]);
      expect(await versionsOf(bucket)).toEqual([`model@${marker} marker`, `model@${v2.generation} noncurrent`, `model@${v1.generation} noncurrent`]);

      // A delete marker's generation returns the marker; it has no content.
      const markerMeta = await client().getObject({ bucket, key: "model", generation: marker });
      expect(markerMeta.object?.deleteMarker).toBe(true);
      expect(markerMeta.object?.size).toBe(0n);
      const markerRead = await failure(() => download(client(), { bucket, key: "model", generation: marker }));
      expect(markerRead.code).toBe(Code.NotFound);
      expect(markerRead.rawMessage).toContain("delete marker");
      expect((await failure(() => client().deleteObject({ bucket, key: "model" }))).code).toBe(Code.NotFound);

      const restored = await client().restoreObject({ bucket, key: "model", generation: v1.generation });
      expect(restored.object?.generation).toBeGreaterThan(marker);
      expect(Buffer.from(restored.object!.checksums!.sha256).toString("hex")).toBe(sha256Hex(first));
      expect(restored.object?.checksums?.crc32c).toBe(v1.checksums?.crc32c);
      const back = await download(client(), { bucket, key: "model" });
      expect(back.content.equals(first)).toBe(true);
      expect(Buffer.from(back.first.objectChecksums!.sha256).toString("hex")).toBe(sha256Hex(first));
      const fromMarker = await failure(() => client().restoreObject({ bucket, key: "model", generation: marker }));
      expect(fromMarker.code).toBe(Code.FailedPrecondition);

      expect((await failure(() => client().deleteBucket({ name: bucket }))).code).toBe(Code.FailedPrecondition);
      expect((await failure(() => client().deleteObject({ bucket, key: "model", generation: 999_999_999n }))).code).toBe(Code.NotFound);

      for (const generation of [v1.generation, v2.generation, marker]) {
        await client().deleteObject({ bucket, key: "model", generation });
      }
      expect(await versionsOf(bucket)).toEqual([`model@${restored.object!.generation}`]);
      await client().deleteObject({ bucket, key: "model", generation: restored.object!.generation });
      expect(await versionsOf(bucket)).toEqual([]);
      await client().deleteBucket({ name: bucket });
    });

    it("removing the marker brings the object back", async () => {
      const bucket = await versionedBucket("undelete");
      const content = random(500);
      const v1 = await upload(client(), bucket, "a", content);
      const { deleteMarkerGeneration } = await client().deleteObject({ bucket, key: "a" });
      await client().deleteObject({ bucket, key: "a", generation: deleteMarkerGeneration });
      const { object } = await client().getObject({ bucket, key: "a" });
      expect(object?.generation).toBe(v1.generation);
      expect(object?.noncurrent).toBe(false);
      expect((await download(client(), { bucket, key: "a" })).content.equals(content)).toBe(true);
    });

    it("unversioned keeps one version", async () => {
      const bucket = await versionedBucket("plain", VersioningState.UNSPECIFIED);
      expect((await client().getBucket({ name: bucket })).bucket?.versioning).toBe(VersioningState.UNVERSIONED);
      await upload(client(), bucket, "a", random(10));
      const v2 = await upload(client(), bucket, "a", random(20));
      expect(await versionsOf(bucket)).toEqual([`a@${v2.generation}`]);
      const { deleteMarkerGeneration } = await client().deleteObject({ bucket, key: "a" });
      expect(deleteMarkerGeneration).toBe(0n);
      expect(await versionsOf(bucket)).toEqual([]);
    });

    it("suspended replaces the null version", async () => {
      const bucket = await versionedBucket("null", VersioningState.UNSPECIFIED);
      const n1 = await upload(client(), bucket, "k", random(10));
      await client().updateBucket({ bucket: { name: bucket, versioning: VersioningState.ENABLED }, updateMask: { paths: ["versioning"] } });
      const e1 = await upload(client(), bucket, "k", random(11));
      expect(await versionsOf(bucket)).toEqual([`k@${e1.generation}`, `k@${n1.generation} noncurrent`]);

      await client().updateBucket({ bucket: { name: bucket, versioning: VersioningState.SUSPENDED }, updateMask: { paths: ["versioning"] } });
      // The null version written before versioning goes; the enabled-era one stays.
      const s1 = await upload(client(), bucket, "k", random(12));
      expect(await versionsOf(bucket)).toEqual([`k@${s1.generation}`, `k@${e1.generation} noncurrent`]);
      const s2 = await upload(client(), bucket, "k", random(13));
      expect(await versionsOf(bucket)).toEqual([`k@${s2.generation}`, `k@${e1.generation} noncurrent`]);

      const { deleteMarkerGeneration } = await client().deleteObject({ bucket, key: "k" });
      expect(await versionsOf(bucket)).toEqual([`k@${deleteMarkerGeneration} marker`, `k@${e1.generation} noncurrent`]);
      const s3 = await upload(client(), bucket, "k", random(14));
      expect(await versionsOf(bucket)).toEqual([`k@${s3.generation}`, `k@${e1.generation} noncurrent`]);
    });

    it("version listing pages and rolls up prefixes", async () => {
      const bucket = await versionedBucket("pages");
      const expected: string[] = [];
      for (const key of ["a", "b", "dir/x"]) {
        const generations = [];
        for (let i = 0; i < 3; i += 1) generations.push((await upload(client(), bucket, key, random(5))).generation);
        expected.push(...generations.reverse().map((generation) => `${key}@${generation}`));
      }

      const seen: string[] = [];
      let pageToken = "";
      do {
        const page = await client().listObjects({ bucket, versions: true, pageSize: 2, pageToken });
        seen.push(...page.objects.map((object) => `${object.key}@${object.generation}`));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      expect(seen).toEqual(expected);

      const rolled = await client().listObjects({ bucket, versions: true, delimiter: "/" });
      expect(rolled.prefixes).toEqual(["dir/"]);
      expect(rolled.objects).toHaveLength(6);
      const token = (await client().listObjects({ bucket, versions: true, pageSize: 1 })).nextPageToken;
      expect((await failure(() => client().listObjects({ bucket, pageToken: token }))).code).toBe(Code.InvalidArgument);
    });

    it("usage figures match a full scan", async () => {
      const bucket = await versionedBucket("usage");
      const check = async (): Promise<void> => {
        expect(await usageReported(client(), bucket)).toEqual(await usageByScan(client(), bucket));
      };

      await upload(client(), bucket, "a", random(100));
      await upload(client(), bucket, "b", random(MiB));
      await check();
      const a2 = await upload(client(), bucket, "a", random(250));
      await upload(client(), bucket, "a", random(7));
      await check();
      await client().deleteObject({ bucket, key: "b" });
      await check();
      await client().deleteObject({ bucket, key: "a", generation: a2.generation });
      await check();
      const versions = (await client().listObjects({ bucket, versions: true })).objects;
      const b1 = versions.find((object) => object.key === "b" && !object.deleteMarker)!;
      await client().restoreObject({ bucket, key: "b", generation: b1.generation });
      await check();
      await client().updateBucket({ bucket: { name: bucket, versioning: VersioningState.SUSPENDED }, updateMask: { paths: ["versioning"] } });
      await upload(client(), bucket, "a", random(40));
      await upload(client(), bucket, "a", random(41));
      await client().deleteObject({ bucket, key: "b" });
      await check();

      const { uploadId } = await client().createMultipartUpload({ spec: { bucket, key: "c" } });
      const part = random(3000);
      await client().uploadPart(
        (async function* () {
          yield { uploadId, partNumber: 1 };
          yield { writeOffset: 0n, data: { content: part } };
          yield { writeOffset: BigInt(part.length), finishWrite: true };
        })(),
      );
      await client().completeMultipartUpload({ uploadId, parts: [{ partNumber: 1 }] });
      await check();

      const usage = await usageReported(client(), bucket);
      expect(usage.objectCount).toBe(2n);
      expect(usage.totalBytes).toBe(41n + 3000n);
      expect(usage.versionCount).toBeGreaterThan(usage.objectCount);
    });

    it("usage stays exact under parallel writes", async () => {
      const bucket = await versionedBucket("parallel");
      const writes = Array.from({ length: 24 }, (_, i) => async () => {
        const key = `k${i % 4}`;
        await upload(client(), bucket, key, random(100 + i));
        if (i % 3 !== 0) return;
        // Another write may have deleted the key already: only NOT_FOUND is expected.
        await client()
          .deleteObject({ bucket, key })
          .catch((err: unknown) => {
            if (ConnectError.from(err).code !== Code.NotFound) throw err;
          });
      });
      await Promise.all(writes.map((write) => write()));
      expect(await usageReported(client(), bucket)).toEqual(await usageByScan(client(), bucket));
    });

    it.runIf(backend.name === "embedded")("rebuild restores the restored version", async () => {
      const bucket = await versionedBucket("rebuild");
      const first = random(300);
      const v1 = await upload(client(), bucket, "m", first);
      await upload(client(), bucket, "m", random(400));
      const restored = await client().restoreObject({ bucket, key: "m", generation: v1.generation });

      const dir = await mkdtemp(join(tmpdir(), "engram-rebuild-"));
      const fresh = await openPGliteMetadataStore(dir);
      try {
        await rebuildIndex(fresh, engram.blobs, [bucket], createLogger("silent"));
        const live = await fresh.getObject(bucket, "m");
        expect(live?.generation).toBe(Number(restored.object!.generation));
        expect(live?.sha256).toBe(sha256Hex(first));
      } finally {
        await fresh.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
