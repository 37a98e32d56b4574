import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";

import { crc32cOf } from "../src/service/checksum.js";
import { backendsUnderTest } from "./support/backends.js";
import { storageClient, type TestEngram } from "./support/engram.js";
import { MiB, download, random, sha256Hex } from "./support/objects.js";
import { failure, partBlobNames, partsOf, startReplica } from "./support/uploads.js";

const BUCKET = "mnemos-models";
const CHUNK = 2 * MiB;
const backends = await backendsUnderTest();
const started: TestEngram[] = [];

afterEach(async () => {
  // The later engrams share the first one's database, which the first one's destroy drops.
  for (const engram of started.splice(0).reverse()) await engram.destroy();
});

describe.each(backends)("part chunks on $name", (backend) => {
  const start = async (env: Record<string, string> = {}) => {
    const engram = await backend.start(env);
    started.push(engram);
    return engram;
  };

  const replicaOf = async (first: TestEngram) => {
    // The embedded stores belong to one process, so there all calls go to one server.
    if (backend.name === "embedded") return first;
    const replica = await startReplica(first);
    started.push(replica);
    return replica;
  };

  it.skipIf(!backend.available)("object in unary chunks over Connect", async () => {
    const first = await start();
    const second = await replicaOf(first);
    // The Connect protocol over HTTP/1.1 with unary calls only, as Connect-Web in a browser.
    const clients = [storageClient("connect", first.url), storageClient("connect", second.url)];
    const content = random(64 * MiB);
    const partSize = 8 * MiB;
    const key = "chunks/browser.safetensors";
    const created = await clients[0]!.createMultipartUpload({ spec: { bucket: BUCKET, key, size: BigInt(content.length) }, partSize: BigInt(partSize) });

    let call = 0;
    let lastExpiry = timestampDate(created.expireTime!);
    for (let partNumber = 1; partNumber <= 8; partNumber++) {
      const part = content.subarray((partNumber - 1) * partSize, partNumber * partSize);
      for (let offset = 0; offset < part.length; offset += CHUNK) {
        const data = part.subarray(offset, offset + CHUNK);
        const finishWrite = offset + CHUNK >= part.length;
        // Consecutive chunks go to alternate replicas.
        const client = clients[call++ % 2]!;
        const response = await client.uploadPartChunk({
          uploadId: created.uploadId,
          partNumber,
          writeOffset: BigInt(offset),
          data: { content: data, crc32c: crc32cOf(data) },
          finishWrite,
        });
        expect(response.persistedSize).toBe(BigInt(offset + data.length));
        expect(timestampDate(response.expireTime!).getTime()).toBeGreaterThanOrEqual(lastExpiry.getTime());
        lastExpiry = timestampDate(response.expireTime!);
        if (finishWrite) {
          expect(response.part?.partNumber).toBe(partNumber);
          expect(response.part?.size).toBe(BigInt(part.length));
          expect(Buffer.from(response.part!.checksums!.sha256).toString("hex")).toBe(sha256Hex(part));
        } else {
          expect(response.part).toBeUndefined();
        }
      }
    }
    // Every stored chunk moved the expiry later.
    expect(lastExpiry.getTime()).toBeGreaterThan(timestampDate(created.expireTime!).getTime());

    const listed = await clients[1]!.listParts({ uploadId: created.uploadId });
    expect(listed.parts.map((part) => part.partNumber)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const { object } = await clients[0]!.completeMultipartUpload({
      uploadId: created.uploadId,
      parts: partsOf(8),
      expectedChecksums: { sha256: Buffer.from(sha256Hex(content), "hex") },
    });
    expect(object?.size).toBe(BigInt(content.length));
    expect(Buffer.from(object!.checksums!.sha256).toString("hex")).toBe(sha256Hex(content));

    const downloaded = await download(clients[1]!, { bucket: BUCKET, key });
    expect(sha256Hex(downloaded.content)).toBe(sha256Hex(content));
  });

  it.skipIf(!backend.available)("retried chunks are skipped", async () => {
    const engram = await start({ ENGRAM_BLOB_DELETE_GRACE_SECONDS: "0" });
    const client = storageClient("connect", engram.url);
    const part = random(5 * MiB + 3);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key: "chunks/retried.bin" } });

    const first = await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: 0n, data: { content: part.subarray(0, 3 * MiB) } });
    expect(first.persistedSize).toBe(BigInt(3 * MiB));
    // The same chunk again, as after a lost response: nothing new is stored.
    const blobsBefore = await partBlobNames(engram, BUCKET);
    const again = await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: 0n, data: { content: part.subarray(0, 3 * MiB) } });
    expect(again.persistedSize).toBe(BigInt(3 * MiB));
    expect(await partBlobNames(engram, BUCKET)).toEqual(blobsBefore);
    // A call without data returns where to resume.
    const status = await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: 0n });
    expect(status.persistedSize).toBe(BigInt(3 * MiB));
    expect(status.part).toBeUndefined();

    // A chunk that overlaps the persisted size stores only its new bytes.
    const overlap = await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: BigInt(2 * MiB), data: { content: part.subarray(2 * MiB, 4 * MiB) } });
    expect(overlap.persistedSize).toBe(BigInt(4 * MiB));
    const finished = await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: BigInt(4 * MiB), data: { content: part.subarray(4 * MiB) }, finishWrite: true });
    expect(Buffer.from(finished.part!.checksums!.sha256).toString("hex")).toBe(sha256Hex(part));

    // The final call again returns the recorded part.
    const finishedAgain = await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: BigInt(4 * MiB), data: { content: part.subarray(4 * MiB) }, finishWrite: true });
    expect(finishedAgain.part?.checksums?.sha256).toEqual(finished.part?.checksums?.sha256);
    expect(finishedAgain.persistedSize).toBe(BigInt(part.length));

    const { object } = await client.completeMultipartUpload({ uploadId, parts: partsOf(1) });
    expect(Buffer.from(object!.checksums!.sha256).toString("hex")).toBe(sha256Hex(part));
    // The chunk blobs were queued for deletion when the part was recorded.
    await engram.catalog.sweepNow();
    expect(await partBlobNames(engram, BUCKET)).toEqual([]);
  });

  it.skipIf(!backend.available)("chunk rejections come before bytes", async () => {
    const engram = await start();
    const client = storageClient("connect", engram.url);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key: "chunks/rejected.bin", size: BigInt(12 * MiB) }, partSize: BigInt(5 * MiB) });
    const data = random(MiB);

    const cases: [string, Parameters<typeof client.uploadPartChunk>[0]][] = [
      ["part number 0", { uploadId, partNumber: 0, writeOffset: 0n, data: { content: data } }],
      ["part number 10001", { uploadId, partNumber: 10_001, writeOffset: 0n, data: { content: data } }],
      ["part number past the declared size", { uploadId, partNumber: 4, writeOffset: 0n, data: { content: data } }],
      ["offset gap", { uploadId, partNumber: 1, writeOffset: 5n, data: { content: data } }],
      ["negative offset", { uploadId, partNumber: 1, writeOffset: -1n, data: { content: data } }],
      ["bad chunk crc32c", { uploadId, partNumber: 1, writeOffset: 0n, data: { content: data, crc32c: crc32cOf(data) + 1 } }],
      ["declared non-final part under 5 MiB", { uploadId, partNumber: 1, writeOffset: 0n, partSize: BigInt(MiB), data: { content: data } }],
      ["non-final part under 5 MiB at finish", { uploadId, partNumber: 1, writeOffset: 0n, data: { content: data }, finishWrite: true }],
    ];
    for (const [name, request] of cases) {
      const error = await failure(() => client.uploadPartChunk(request));
      expect(error.code, name).toBe(Code.InvalidArgument);
      expect(await partBlobNames(engram, BUCKET), name).toEqual([]);
    }

    // A gap after stored chunks is rejected too, and stores nothing more.
    await client.uploadPartChunk({ uploadId, partNumber: 2, writeOffset: 0n, data: { content: data } });
    const stored = await partBlobNames(engram, BUCKET);
    expect(stored).toHaveLength(1);
    const gap = await failure(() => client.uploadPartChunk({ uploadId, partNumber: 2, writeOffset: BigInt(2 * MiB), data: { content: data } }));
    expect(gap.code).toBe(Code.InvalidArgument);
    expect(gap.rawMessage).toContain(`write_offset ${MiB}`);
    const short = await failure(() => client.uploadPartChunk({ uploadId, partNumber: 2, writeOffset: BigInt(MiB), data: { content: data }, finishWrite: true }));
    expect(short.code).toBe(Code.InvalidArgument);
    expect(await partBlobNames(engram, BUCKET)).toEqual(stored);

    const missing = await failure(() => client.uploadPartChunk({ uploadId: "no-such-upload", partNumber: 1, writeOffset: 0n, data: { content: data } }));
    expect(missing.code).toBe(Code.NotFound);
  });

  it.skipIf(!backend.available)("part checksum mismatch drops chunks", async () => {
    const engram = await start({ ENGRAM_BLOB_DELETE_GRACE_SECONDS: "0" });
    const client = storageClient("connect", engram.url);
    const part = random(3 * MiB);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key: "chunks/mismatch.bin" } });

    await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: 0n, data: { content: part.subarray(0, MiB) } });
    const wrong = Buffer.from(sha256Hex(random(8)), "hex");
    const mismatch = await failure(() =>
      client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: BigInt(MiB), data: { content: part.subarray(MiB) }, expectedChecksums: { sha256: wrong }, finishWrite: true }),
    );
    expect(mismatch.code).toBe(Code.InvalidArgument);
    expect((await client.listParts({ uploadId })).parts).toEqual([]);
    await engram.catalog.sweepNow();
    expect(await partBlobNames(engram, BUCKET)).toEqual([]);

    // The part starts again from offset 0.
    const again = await client.uploadPartChunk({
      uploadId,
      partNumber: 1,
      writeOffset: 0n,
      data: { content: part },
      expectedChecksums: { sha256: Buffer.from(sha256Hex(part), "hex") },
      finishWrite: true,
    });
    expect(again.part?.size).toBe(BigInt(part.length));
  });

  it.skipIf(!backend.available)("abort removes unfinished chunks", async () => {
    const engram = await start({ ENGRAM_BLOB_DELETE_GRACE_SECONDS: "0" });
    const client = storageClient("connect", engram.url);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key: "chunks/aborted.bin" } });
    await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: 0n, data: { content: random(MiB) } });
    await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: BigInt(MiB), data: { content: random(MiB) } });
    expect(await partBlobNames(engram, BUCKET)).toHaveLength(2);

    await client.abortMultipartUpload({ uploadId });
    await engram.catalog.sweepNow();
    expect(await partBlobNames(engram, BUCKET)).toEqual([]);
  });
});
