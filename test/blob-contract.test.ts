import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { BlobHeaders, BlobRef, BlobStore } from "../src/blob/blob-store.js";
import { FsBlobStore } from "../src/blob/fs/fs-blob-store.js";
import { MAX_PARTS, MIN_PART_BYTES, partSizeFor } from "../src/blob/s3/s3-blob-writer.js";
import { S3BlobStore, objectNameOf } from "../src/blob/s3/s3-blob-store.js";
import { isStorageError } from "../src/service/errors.js";
import { minioClientFor, s3Peers, s3StoreFor } from "./support/backends.js";
import { MiB, random, sha256Hex } from "./support/objects.js";

const BUCKET = "mnemos-models";

interface StoreUnderTest {
  name: string;
  /** Null when the server is not installed here. */
  open: (() => Promise<{ store: BlobStore; cleanup: () => Promise<void> }>) | null;
}

const stores: StoreUnderTest[] = [
  {
    name: "filesystem",
    open: async () => {
      const dir = await mkdtemp(join(tmpdir(), "engram-blobs-"));
      return { store: new FsBlobStore(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
    },
  },
  ...s3Peers().map(({ name, peer }) => ({
    name,
    open: peer ? async () => ({ store: s3StoreFor(peer), cleanup: async () => {} }) : null,
  })),
];

function headersOf(content: Buffer, generation = 1): BlobHeaders {
  return {
    generation,
    contentType: "application/octet-stream",
    storageClass: "STANDARD",
    metadata: { origin: "test", "note-ü": "naïve 'quoted' <value>" },
    tags: { team: "ml" },
    sha256: sha256Hex(content),
    crc32c: 0,
    size: content.length,
  };
}

function refOf(key: string): BlobRef {
  return { bucket: BUCKET, key, versionId: randomUUID() };
}

async function put(store: BlobStore, ref: BlobRef, content: Buffer, chunkBytes = MiB): Promise<void> {
  const writer = await store.createWriter(ref, {});
  for (let offset = 0; offset < content.length; offset += chunkBytes) {
    await writer.write(content.subarray(offset, offset + chunkBytes));
  }
  await writer.finish(headersOf(content));
}

async function readAll(store: BlobStore, ref: BlobRef, start: number, end: number): Promise<Buffer> {
  const stream = await store.read(ref, { start, end });
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function readError(store: BlobStore, ref: BlobRef, size: number): Promise<unknown> {
  return readAll(store, ref, 0, size).then(
    () => undefined,
    (err: unknown) => err,
  );
}

describe("partSizeFor", () => {
  it("unknown size uses the configured part", () => {
    expect(partSizeFor(undefined, 16 * MiB)).toBe(16 * MiB);
  });

  it("small declared size uses 5 MiB", () => {
    expect(partSizeFor(10, 16 * MiB)).toBe(MIN_PART_BYTES);
  });

  it("100 GB fits in 10,000 parts", () => {
    const size = 100 * 1024 ** 3;
    const part = partSizeFor(size, 16 * MiB);
    expect(Math.ceil(size / part)).toBeLessThanOrEqual(MAX_PARTS);
    expect(part % MiB).toBe(0);
  });
});

describe.each(stores)("BlobStore on $name", ({ name, open }) => {
  let store: BlobStore;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    if (!open) return;
    ({ store, cleanup } = await open());
    await store.ensureBuckets([BUCKET]);
    await store.ensureBuckets([BUCKET]);
  });

  afterAll(async () => {
    await cleanup?.();
  });

  it.skipIf(!open)("round trip and ranges", async () => {
    const content = random(3 * MiB + 11);
    const ref = refOf("blob/round-trip");
    await put(store, ref, content);

    expect((await readAll(store, ref, 0, content.length)).equals(content)).toBe(true);
    expect((await readAll(store, ref, 100, 2 * MiB)).equals(content.subarray(100, 2 * MiB))).toBe(true);
    expect((await readAll(store, ref, 5, 5)).length).toBe(0);
  });

  it.skipIf(!open)("multipart blob of 12 MiB", async () => {
    const content = random(12 * MiB + 1);
    const ref = refOf("blob/multipart");
    await put(store, ref, content, 4 * MiB);
    expect(sha256Hex(await readAll(store, ref, 0, content.length))).toBe(sha256Hex(content));
  });

  it.skipIf(!open)("empty blob", async () => {
    const ref = refOf("blob/empty");
    await put(store, ref, Buffer.alloc(0));
    expect((await readAll(store, ref, 0, 0)).length).toBe(0);
    const scanned = [];
    for await (const blob of store.scan(BUCKET)) if (blob.ref.versionId === ref.versionId) scanned.push(blob);
    expect(scanned).toHaveLength(1);
  });

  it.skipIf(!open)("missing blob is DATA_LOSS", async () => {
    const err = await readError(store, refOf("blob/never-written"), 10);
    expect(isStorageError(err, "data_loss")).toBe(true);
  });

  it.skipIf(!open)("abort before finish leaves nothing", async () => {
    const ref = refOf("blob/aborted");
    const writer = await store.createWriter(ref, {});
    await writer.write(random(7 * MiB));
    await writer.write(random(4 * MiB));
    await writer.abort();
    await writer.abort();

    expect(isStorageError(await readError(store, ref, 10), "data_loss")).toBe(true);
    if (store instanceof S3BlobStore) {
      const peer = s3Peers().find((entry) => entry.name === name)!.peer!;
      const uploads = [];
      for await (const upload of minioClientFor(peer).listIncompleteUploads(store.s3BucketOf(BUCKET), objectNameOf(ref), true)) uploads.push(upload);
      expect(uploads).toEqual([]);
    }
  });

  it.skipIf(!open)("abort after finish removes the blob", async () => {
    const ref = refOf("blob/aborted-late");
    const content = random(100);
    const writer = await store.createWriter(ref, {});
    await writer.write(content);
    await writer.finish(headersOf(content));
    await writer.abort();
    expect(isStorageError(await readError(store, ref, 100), "data_loss")).toBe(true);
  });

  it.skipIf(!open)("delete removes and tolerates missing", async () => {
    const ref = refOf("blob/deleted");
    await put(store, ref, random(10));
    await store.delete(ref);
    await store.delete(ref);
    expect(isStorageError(await readError(store, ref, 10), "data_loss")).toBe(true);
  });

  it.skipIf(!open)("scan returns finished blobs with exact keys", async () => {
    const keys = ["scan/o?ne", "scan/t#wo", "scan/a b+c.txt", "scan/100%.csv", "scan/x&y", "scan/<tag>", "scan/it's", "scan/世界", "scan/Ünïcödé"];
    const refs = keys.map(refOf);
    for (const ref of refs) await put(store, ref, Buffer.from(ref.key));
    const unfinished = refOf("scan/unfinished");
    const writer = await store.createWriter(unfinished, {});
    await writer.write(random(10));

    const found = new Map<string, BlobHeaders>();
    for await (const blob of store.scan(BUCKET)) {
      if (blob.ref.key.startsWith("scan/")) found.set(`${blob.ref.key}@${blob.ref.versionId}`, blob.headers);
    }
    await writer.abort();

    expect([...found.keys()].sort()).toEqual(refs.map((ref) => `${ref.key}@${ref.versionId}`).sort());
    const headers = found.get(`${refs[0]!.key}@${refs[0]!.versionId}`);
    expect(headers?.metadata).toEqual({ origin: "test", "note-ü": "naïve 'quoted' <value>" });
    expect(headers?.sha256).toBe(sha256Hex(Buffer.from(keys[0]!)));
    expect(headers?.size).toBe(Buffer.byteLength(keys[0]!));
  });

  it.skipIf(!open)("ping answers", async () => {
    await expect(store.ping()).resolves.toBeUndefined();
  });
});
