import { rm } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";

import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, describe, expect, inject, it } from "vitest";

import type { BlobRef, BlobWriter, WriterOptions } from "../src/blob/blob-store.js";
import { S3BlobStore, objectNameOf } from "../src/blob/s3/s3-blob-store.js";
import { run } from "../src/cli/run.js";
import { backendsUnderTest, minioClientFor, uniqueBucketPrefix } from "./support/backends.js";
import type { S3Peer } from "./support/s3-peers.js";
import { startTestEngram, storageClient, type TestEngram } from "./support/engram.js";
import { waitFor } from "./support/wait.js";
import { MiB, download, random, sha256Hex, upload } from "./support/objects.js";
import { createTestDatabase } from "./support/postgres.js";

const BUCKET = "mnemos-models";
const backends = await backendsUnderTest();
const production = backends.find((backend) => backend.name !== "embedded")!;
const started: TestEngram[] = [];
const databases: { drop(): Promise<void> }[] = [];

/** An S3 store that remembers which blobs it started writing. */
class RecordingS3BlobStore extends S3BlobStore {
  readonly refs: BlobRef[] = [];

  constructor(peer: S3Peer) {
    super(minioClientFor(peer), { bucketPrefix: uniqueBucketPrefix(), region: "us-east-1", createBuckets: true, partSizeBytes: 5 * MiB, partsInFlight: 2 });
  }

  override createWriter(ref: BlobRef, options?: WriterOptions): Promise<BlobWriter> {
    this.refs.push(ref);
    return super.createWriter(ref, options);
  }
}

afterAll(async () => {
  for (const engram of started) await engram.destroy();
  for (const database of databases) await database.drop();
});


describe.skipIf(!production.available)("MinIO upload cancel", () => {
  it("cancel after 10 MiB of 40 MiB leaves nothing", async () => {
    const peer = inject("minio")!;
    const store = new RecordingS3BlobStore(peer);
    const engram = await production.start({}, { blobs: store });
    started.push(engram);
    const s3 = minioClientFor(peer);
    const key = "cancel/forty";

    // MinIO lists the multipart uploads of one exact object name only.
    const incompleteUploads = async () => {
      const found = [];
      for (const ref of store.refs) {
        for await (const item of s3.listIncompleteUploads(store.s3BucketOf(BUCKET), objectNameOf(ref), true)) found.push(item);
      }
      return found;
    };

    const controller = new AbortController();
    async function* messages() {
      yield { spec: { bucket: BUCKET, key, size: BigInt(40 * MiB) } };
      for (let i = 0; i < 10; i++) {
        yield { writeOffset: BigInt(i * MiB), data: { content: random(MiB) } };
      }
      await new Promise((resolve) => setTimeout(resolve, 60_000));
    }
    const outcome = storageClient("grpc", engram.url)
      .upload(messages(), { signal: controller.signal })
      .then(
        () => undefined,
        (err: unknown) => ConnectError.from(err),
      );

    // A multipart upload starts once the first 5 MiB part is complete.
    await waitFor(async () => (await incompleteUploads()).length > 0, "the multipart upload to start");
    const cancelledAt = performance.now();
    controller.abort();
    const err = await outcome;
    const elapsedMs = performance.now() - cancelledAt;

    expect(err?.code).toBe(Code.Canceled);
    expect(elapsedMs).toBeLessThan(1000);
    await waitFor(() => engram.uploads.activeUploads === 0, "active uploads to return to 0", 5000);
    expect(await incompleteUploads()).toEqual([]);
    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();
  });
});

describe.each(backends)("on $name", (backend) => {
  it.skipIf(!backend.available)("concurrent uploads to one key keep one whole", async () => {
    const engram = await backend.start();
    started.push(engram);
    const client = storageClient("grpc", engram.url);
    const key = "race/model.bin";
    const contents = [random(32 * MiB), random(32 * MiB)];

    const results = await Promise.all(contents.map((content) => upload(client, BUCKET, key, content)));
    expect(results).toHaveLength(2);

    const { content, first } = await download(client, { bucket: BUCKET, key });
    const hashes = contents.map((candidate) => sha256Hex(candidate));
    expect(hashes).toContain(sha256Hex(content));
    expect(Buffer.from(first.metadata!.checksums!.sha256).toString("hex")).toBe(sha256Hex(content));
    expect(first.metadata?.size).toBe(BigInt(32 * MiB));
  });

  it.skipIf(!backend.available)("special keys list exactly", async () => {
    const engram = await backend.start();
    started.push(engram);
    const client = storageClient("grpc", engram.url);
    const keys = ["k/a?b", "k/a#b", "k/a+b", "k/100%", "k/a&b", "k/<a>", "k/it's", "k/a b", "k/Ünïcödé", "k/世界"];
    for (const key of keys) await upload(client, BUCKET, key, Buffer.from(key));

    const listed = await client.listObjects({ bucket: BUCKET, prefix: "k/" });
    expect(listed.objects.map((object) => object.key)).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    for (const key of keys) {
      const { content } = await download(client, { bucket: BUCKET, key });
      expect(content.toString()).toBe(key);
    }
  });

  it.skipIf(!backend.available)("rebuild-index restores every field", async () => {
    const engram = await backend.start();
    started.push(engram);
    const client = storageClient("grpc", engram.url);
    await upload(client, BUCKET, "rebuild/a.bin", random(7 * MiB), { contentType: "application/x-a", metadata: { epoch: "3", "ü": "ö" }, tags: { team: "vision" } });
    await upload(client, BUCKET, "rebuild/b.txt", Buffer.from("old"));
    await upload(client, BUCKET, "rebuild/b.txt", Buffer.from("new"), { contentType: "text/plain" });
    await upload(client, "mnemos-logs", "rebuild/empty", Buffer.alloc(0));
    const before = [
      ...(await client.listObjects({ bucket: BUCKET })).objects,
      ...(await client.listObjects({ bucket: "mnemos-logs" })).objects,
    ];
    expect(before).toHaveLength(3);

    // Lose the metadata: a fresh database (PostgreSQL) or a deleted PGlite directory.
    await engram.close(0);
    let env: Record<string, string> = { ...rebuildEnv(engram) };
    if (engram.config.metadataStore === "postgres") {
      const database = await createTestDatabase();
      databases.push(database);
      env = { ...env, ENGRAM_POSTGRES_URL: database.url };
    } else {
      await rm(join(engram.dataDir, "metadata"), { recursive: true, force: true });
    }

    let output = "";
    const stdout = new Writable({
      write(chunk: Buffer, _encoding, done) {
        output += chunk.toString();
        done();
      },
    });
    const code = await run(["admin", "rebuild-index"], { stdout, stderr: stdout, env });
    expect(output).toContain(`${BUCKET}: restored 2 objects, skipped 1 older versions`);
    expect(code).toBe(0);

    const rebuilt = await startTestEngram(env, { dataDir: engram.dataDir });
    started.push(rebuilt);
    const rebuiltClient = storageClient("grpc", rebuilt.url);
    const after = [
      ...(await rebuiltClient.listObjects({ bucket: BUCKET })).objects,
      ...(await rebuiltClient.listObjects({ bucket: "mnemos-logs" })).objects,
    ];
    const fields = (object: (typeof before)[number]) => ({
      bucket: object.bucket,
      key: object.key,
      generation: object.generation,
      size: object.size,
      contentType: object.contentType,
      storageClass: object.storageClass,
      metadata: object.metadata,
      tags: object.tags,
      sha256: Buffer.from(object.checksums!.sha256).toString("hex"),
      crc32c: object.checksums!.crc32c,
      etag: object.etag,
    });
    expect(after.map(fields)).toEqual(before.map(fields));

    const next = await upload(rebuiltClient, BUCKET, "rebuild/after", Buffer.from("x"));
    expect(next.generation).toBeGreaterThan(before.map((object) => object.generation).reduce((a, b) => (a > b ? a : b)));
    const { content } = await download(rebuiltClient, { bucket: BUCKET, key: "rebuild/b.txt" });
    expect(content.toString()).toBe("new");

    const again = await run(["admin", "rebuild-index"], { stdout, stderr: stdout, env: { ...env } }).catch(() => -1);
    expect(again).not.toBe(0);
  });
});

/** Returns the settings an engram was started with, as the CLI reads them. */
function rebuildEnv(engram: TestEngram): Record<string, string> {
  const config = engram.config;
  const env: Record<string, string> = { ENGRAM_DATA_DIR: config.dataDir, ENGRAM_LOG_LEVEL: "silent" };
  if (config.blobStore === "s3") {
    Object.assign(env, {
      ENGRAM_BLOB_STORE: "s3",
      ENGRAM_S3_ENDPOINT: config.s3.endpoint,
      ENGRAM_S3_ACCESS_KEY: config.s3.accessKey,
      ENGRAM_S3_SECRET_KEY: config.s3.secretKey,
      ENGRAM_S3_BUCKET_PREFIX: config.s3.bucketPrefix,
    });
  }
  if (config.metadataStore === "postgres") {
    Object.assign(env, { ENGRAM_METADATA_STORE: "postgres", ENGRAM_POSTGRES_URL: config.postgres.url });
  }
  return env;
}
