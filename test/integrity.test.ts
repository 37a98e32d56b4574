import { readdir, rm, truncate, writeFile, readFile } from "node:fs/promises";
import { join } from "node:path";

import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { startTestEngram, storageClient, type TestEngram } from "./support/engram.js";
import { download, random, upload } from "./support/objects.js";

const BUCKET = "mnemos-models";

let engram: TestEngram;

beforeAll(async () => {
  // No grace period, so the sweeper deletes replaced blobs at once.
  engram = await startTestEngram({ ENGRAM_BLOB_DELETE_GRACE_SECONDS: "0" });
});

afterAll(async () => {
  await engram.destroy();
});

/** Paths of the data files that hold a key's blobs. */
async function blobPaths(): Promise<string[]> {
  const root = join(engram.dataDir, "blobs");
  const entries = await readdir(root, { recursive: true });
  return entries.filter((entry) => entry.endsWith(".data")).map((entry) => join(root, entry));
}

async function blobPathOf(key: string): Promise<string> {
  const object = await engram.metadata.getObject(BUCKET, key);
  const paths = (await blobPaths()).filter((path) => path.includes(object!.versionId));
  expect(paths).toHaveLength(1);
  return paths[0]!;
}

async function downloadError(key: string): Promise<ConnectError | undefined> {
  return download(storageClient("grpc", engram.url), { bucket: BUCKET, key }).then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
}

describe("stored data", () => {
  it("missing blob is DATA_LOSS", async () => {
    const key = "integrity/missing";
    await upload(storageClient("grpc", engram.url), BUCKET, key, random(1000));
    await rm(await blobPathOf(key));

    const err = await downloadError(key);
    expect(err?.code).toBe(Code.DataLoss);
  });

  it("truncated blob is DATA_LOSS", async () => {
    const key = "integrity/truncated";
    await upload(storageClient("grpc", engram.url), BUCKET, key, random(1000));
    await truncate(await blobPathOf(key), 10);

    const err = await downloadError(key);
    expect(err?.code).toBe(Code.DataLoss);
    expect(err?.rawMessage).toContain("10 bytes");
  });

  it("changed blob content is DATA_LOSS", async () => {
    const key = "integrity/flipped";
    await upload(storageClient("grpc", engram.url), BUCKET, key, random(3000));
    const path = await blobPathOf(key);
    const content = await readFile(path);
    content[1500] = content[1500]! ^ 0xff;
    await writeFile(path, content);

    const err = await downloadError(key);
    expect(err?.code).toBe(Code.DataLoss);
    expect(err?.rawMessage).toContain("crc32c");
  });

  it("blob keeps a headers file for rebuilding the index", async () => {
    const key = "integrity/headers";
    await upload(storageClient("grpc", engram.url), BUCKET, key, random(10), { contentType: "text/x-test", metadata: { a: "b" } });
    const path = await blobPathOf(key);
    const headers = JSON.parse(await readFile(path.replace(/\.data$/, ".json"), "utf8")) as Record<string, unknown>;
    expect(headers).toMatchObject({ bucket: BUCKET, key, contentType: "text/x-test", metadata: { a: "b" }, size: 10 });
  });
});

describe("blob sweeper", () => {
  it("deletes the blobs of replaced and deleted objects", async () => {
    const client = storageClient("grpc", engram.url);
    const key = "sweep/object";
    await upload(client, BUCKET, key, random(100));
    const firstPath = await blobPathOf(key);
    await upload(client, BUCKET, key, random(200));
    const secondPath = await blobPathOf(key);

    await engram.catalog.sweepNow();
    let paths = await blobPaths();
    expect(paths).not.toContain(firstPath);
    expect(paths).toContain(secondPath);

    await client.deleteObject({ bucket: BUCKET, key });
    await engram.catalog.sweepNow();
    paths = await blobPaths();
    expect(paths).not.toContain(secondPath);
    expect(await engram.metadata.listBlobDeletions(new Date(Date.now() + 1000), 10)).toEqual([]);
  });
});

describe("read statistics", () => {
  it("downloads update read count and time", async () => {
    const client = storageClient("grpc", engram.url);
    const key = "reads/object";
    await upload(client, BUCKET, key, random(10));
    await download(client, { bucket: BUCKET, key });
    await download(client, { bucket: BUCKET, key });
    await engram.close(0).catch(() => undefined);
    // close() flushed the counters; reopen to read them.
    const reopened = await startTestEngram({}, { dataDir: engram.dataDir });
    try {
      const object = await reopened.metadata.getObject(BUCKET, key);
      expect(object?.readCount).toBe(2);
      expect(object?.lastReadAt).toBeInstanceOf(Date);
    } finally {
      await reopened.close(0);
    }
  });
});
