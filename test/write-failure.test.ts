import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { BlobRef, BlobWriter } from "../src/blob/blob-store.js";
import { FsBlobStore } from "../src/blob/fs/fs-blob-store.js";
import { StorageError } from "../src/service/errors.js";
import { startTestEngram, storageClient, type TestEngram } from "./support/engram.js";
import { MiB, random, upload } from "./support/objects.js";

const BUCKET = "mnemos-artifacts";

/**
 * A filesystem store whose writers fail as a full disk does, after a
 * number of writes. A full disk cannot be produced on the test machine
 * without affecting everything else on it.
 */
class FillingFsBlobStore extends FsBlobStore {
  failAfterWrites = Number.POSITIVE_INFINITY;
  aborted = 0;

  override async createWriter(ref: BlobRef): Promise<BlobWriter> {
    const writer = await super.createWriter(ref);
    let writes = 0;
    return {
      write: async (chunk) => {
        writes += 1;
        if (writes > this.failAfterWrites) {
          // Fails later than it is called, as a real write does.
          await new Promise((resolve) => setTimeout(resolve, 20));
          throw new StorageError("resource_exhausted", "failed to write blob: the disk is full; free space or raise the quota");
        }
        await writer.write(chunk);
      },
      finish: (headers) => writer.finish(headers),
      abort: async () => {
        this.aborted += 1;
        await writer.abort();
      },
    };
  }
}

/** Lists the paths of the files under a directory, sorted, without the directories. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

describe("blob write failure during an upload", () => {
  let engram: TestEngram;
  let blobDir: string;
  let store: FillingFsBlobStore;

  beforeAll(async () => {
    blobDir = await mkdtemp(join(tmpdir(), "engram-filling-"));
    store = new FillingFsBlobStore(blobDir);
    engram = await startTestEngram({}, { blobs: store });
  });

  afterAll(async () => {
    await engram?.destroy();
    await rm(blobDir, { recursive: true, force: true });
  });

  it("fails the call and stores nothing", async () => {
    const client = storageClient("grpc", engram.url);
    const key = "full-disk/model.bin";
    store.failAfterWrites = 2;
    const filesBefore = await filesUnder(blobDir);

    const error = await upload(client, BUCKET, key, random(6 * MiB)).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(error?.code).toBe(Code.ResourceExhausted);
    expect(error?.rawMessage).toContain("the disk is full");
    expect(store.aborted).toBe(1);

    const missing = await client.getObject({ bucket: BUCKET, key }).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(missing?.code).toBe(Code.NotFound);
    // The aborted writer removed its partial blob.
    expect(await filesUnder(blobDir)).toEqual(filesBefore);

    store.failAfterWrites = Number.POSITIVE_INFINITY;
    const object = await upload(client, BUCKET, key, random(3 * MiB));
    expect(object.size).toBe(BigInt(3 * MiB));
  });

  it("fails a multipart part", async () => {
    const client = storageClient("grpc", engram.url);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key: "full-disk/parts.bin" } });
    const content = random(6 * MiB);
    async function* part() {
      yield { uploadId, partNumber: 1 };
      for (let offset = 0; offset < content.length; offset += MiB) {
        yield { writeOffset: BigInt(offset), data: { content: content.subarray(offset, offset + MiB) } };
      }
      yield { writeOffset: BigInt(content.length), finishWrite: true };
    }
    store.failAfterWrites = 2;
    const abortedBefore = store.aborted;

    const error = await client.uploadPart(part()).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(error?.code).toBe(Code.ResourceExhausted);
    expect(store.aborted).toBe(abortedBefore + 1);

    store.failAfterWrites = Number.POSITIVE_INFINITY;
    const { parts } = await client.listParts({ uploadId });
    expect(parts).toEqual([]);
    const { part: stored } = await client.uploadPart(part());
    expect(stored?.size).toBe(BigInt(6 * MiB));
  });
});
