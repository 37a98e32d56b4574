import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";

import { StorageService, type UploadPartRequestSchema } from "../gen/engram/v1/storage_service_pb.js";
import { backendsUnderTest } from "./support/backends.js";
import { TEST_ADMIN_TOKEN, bearer, storageClient, type TestEngram } from "./support/engram.js";
import { MiB, download, random, sha256Hex } from "./support/objects.js";
import { failure, partBlobNames, partsOf, startReplica } from "./support/uploads.js";
import { waitFor } from "./support/wait.js";

const BUCKET = "mnemos-models";
const backends = await backendsUnderTest();
const started: TestEngram[] = [];

afterEach(async () => {
  // The later engrams share the first one's database, which the first one's destroy drops.
  for (const engram of started.splice(0).reverse()) await engram.destroy();
});

type StorageClient = Client<typeof StorageService>;
type PartRequest = MessageInitShape<typeof UploadPartRequestSchema>;

async function* partMessages(uploadId: string, partNumber: number, content: Uint8Array, head: { size?: bigint } = {}): AsyncGenerator<PartRequest> {
  yield { uploadId, partNumber, ...head };
  for (let offset = 0; offset < content.length; offset += MiB) {
    yield { writeOffset: BigInt(offset), data: { content: content.subarray(offset, offset + MiB) } };
  }
  yield { writeOffset: BigInt(content.length), finishWrite: true };
}

function uploadPart(client: StorageClient, uploadId: string, partNumber: number, content: Uint8Array, head: { size?: bigint } = {}) {
  return client.uploadPart(partMessages(uploadId, partNumber, content, head));
}

async function replicaOf(first: TestEngram): Promise<TestEngram> {
  const replica = await startReplica(first);
  started.push(replica);
  return replica;
}

describe.each(backends)("multipart on $name", (backend) => {
  const start = async (env: Record<string, string> = {}) => {
    const engram = await backend.start(env);
    started.push(engram);
    return engram;
  };

  it.skipIf(!backend.available)("parallel parts over four connections", async () => {
    const first = await start();
    // Two processes share one database and one blob store in production; the
    // embedded store belongs to one process, so there both go to one server.
    const second = backend.name === "embedded" ? first : await replicaOf(first);
    const content = random(64 * MiB);
    const partSize = 8 * MiB;
    const key = "multipart/parallel.safetensors";

    const creator = storageClient("grpc", first.url);
    const created = await creator.createMultipartUpload({ spec: { bucket: BUCKET, key, size: BigInt(content.length) }, partSize: BigInt(partSize) });
    expect(created.partSize).toBe(BigInt(partSize));
    expect(created.maxPartCount).toBe(8);
    expect(created.expireTime).toBeDefined();

    // Each client has its own HTTP/2 connection; two go to each server.
    const clients = [first, second, first, second].map((engram) => storageClient("grpc", engram.url));
    const queue = [1, 2, 3, 4, 5, 6, 7, 8];
    await Promise.all(
      clients.map(async (client) => {
        for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
          const bytes = content.subarray((part - 1) * partSize, part * partSize);
          const { part: stored } = await uploadPart(client, created.uploadId, part, bytes);
          expect(Buffer.from(stored!.checksums!.sha256).toString("hex")).toBe(sha256Hex(bytes));
        }
      }),
    );

    const listed = await clients[1]!.listParts({ uploadId: created.uploadId });
    expect(listed.parts.map((part) => part.partNumber)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(listed.parts.every((part) => part.size === BigInt(partSize))).toBe(true);

    const { object } = await clients[1]!.completeMultipartUpload({
      uploadId: created.uploadId,
      parts: partsOf(8),
      expectedChecksums: { sha256: Buffer.from(sha256Hex(content), "hex") },
    });
    expect(object?.size).toBe(BigInt(content.length));
    expect(Buffer.from(object!.checksums!.sha256).toString("hex")).toBe(sha256Hex(content));

    const downloaded = await download(storageClient("grpc", second.url), { bucket: BUCKET, key });
    expect(sha256Hex(downloaded.content)).toBe(sha256Hex(content));
    // On S3 the parts are joined inside the store with UploadPartCopy.
    const durations = await second.metrics.registry.getSingleMetricAsString("engram_storage_operations_duration_seconds");
    expect(durations.includes('operation="blob.concat"')).toBe(backend.name !== "embedded");
    const gone = await failure(() => creator.listParts({ uploadId: created.uploadId }));
    expect(gone.code).toBe(Code.NotFound);
  });

  it.skipIf(!backend.available)("part cut off midway resumes", async () => {
    const engram = await start();
    const client = storageClient("grpc", engram.url);
    const content = random(4 * 5 * MiB + 123);
    const partSize = 5 * MiB;
    const key = "multipart/resumed.bin";
    const partBytes = (part: number) => content.subarray((part - 1) * partSize, part * partSize);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key }, partSize: BigInt(partSize) });

    await uploadPart(client, uploadId, 1, partBytes(1));
    await uploadPart(client, uploadId, 2, partBytes(2));

    // Part 3 goes over a connection of its own, which is then destroyed.
    const connection = new Http2SessionManager(engram.url);
    const cutClient = createClient(StorageService, createGrpcTransport({ baseUrl: engram.url, sessionManager: connection, acceptCompression: [], interceptors: [bearer(TEST_ADMIN_TOKEN)] }));
    const sent = { bytes: 0 };
    async function* cutOff(): AsyncGenerator<PartRequest> {
      yield { uploadId, partNumber: 3 };
      for (let offset = 0; offset < 3 * MiB; offset += MiB) {
        yield { writeOffset: BigInt(offset), data: { content: partBytes(3).subarray(offset, offset + MiB) } };
        sent.bytes += MiB;
      }
      await new Promise((resolve) => setTimeout(resolve, 60_000));
    }
    const outcome = cutClient.uploadPart(cutOff()).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    await waitFor(() => sent.bytes >= 3 * MiB, "3 MiB of part 3 to be sent");
    connection.abort();
    expect(await outcome).toBeInstanceOf(ConnectError);

    const afterCut = await client.listParts({ uploadId });
    expect(afterCut.parts.map((part) => part.partNumber)).toEqual([1, 2]);

    for (const part of [3, 4, 5]) await uploadPart(client, uploadId, part, partBytes(part));
    const { object } = await client.completeMultipartUpload({ uploadId, parts: partsOf(5) });
    expect(Buffer.from(object!.checksums!.sha256).toString("hex")).toBe(sha256Hex(content));
    const { content: downloaded } = await download(client, { bucket: BUCKET, key });
    expect(downloaded.equals(content)).toBe(true);
  });

  it.skipIf(!backend.available)("part retried concurrently records one", async () => {
    const engram = await start();
    const client = storageClient("grpc", engram.url);
    const attempts = [random(6 * MiB), random(6 * MiB)];
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key: "multipart/retried.bin" } });

    await Promise.all(attempts.map((bytes) => uploadPart(client, uploadId, 1, bytes)));

    const { parts } = await client.listParts({ uploadId });
    expect(parts).toHaveLength(1);
    const recorded = Buffer.from(parts[0]!.checksums!.sha256).toString("hex");
    expect(attempts.map(sha256Hex)).toContain(recorded);
    expect(await engram.catalog.sweepNow()).toBe(0);

    const { object } = await client.completeMultipartUpload({ uploadId, parts: [{ partNumber: 1, checksums: { sha256: Buffer.from(recorded, "hex") } }] });
    expect(Buffer.from(object!.checksums!.sha256).toString("hex")).toBe(recorded);
  });

  it.skipIf(!backend.available)("rejections come before part bytes", async () => {
    const engram = await start();
    const client = storageClient("grpc", engram.url);
    const key = "multipart/rejected.bin";

    const tooManyParts = await failure(() =>
      client.createMultipartUpload({ spec: { bucket: BUCKET, key, size: BigInt(10_001 * 5 * MiB) }, partSize: BigInt(5 * MiB) }),
    );
    expect(tooManyParts.code).toBe(Code.InvalidArgument);
    expect(tooManyParts.rawMessage).toContain("10000");
    const smallPartSize = await failure(() => client.createMultipartUpload({ spec: { bucket: BUCKET, key }, partSize: BigInt(MiB) }));
    expect(smallPartSize.code).toBe(Code.InvalidArgument);
    expect(smallPartSize.rawMessage).toContain(`${5 * MiB} to ${5 * 1024 * MiB}`);

    const declared = await client.createMultipartUpload({ spec: { bucket: BUCKET, key, size: BigInt(12 * MiB) }, partSize: BigInt(5 * MiB) });
    for (const partNumber of [0, 10_001, -1]) {
      const err = await failure(() => uploadPart(client, declared.uploadId, partNumber, random(MiB)));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain("1 to 10000");
    }
    const pastDeclared = await failure(() => uploadPart(client, declared.uploadId, 4, random(MiB)));
    expect(pastDeclared.code).toBe(Code.InvalidArgument);
    expect(pastDeclared.rawMessage).toContain("parts 1 to 3");
    const smallDeclaredPart = await failure(() => uploadPart(client, declared.uploadId, 1, random(MiB), { size: BigInt(MiB) }));
    expect(smallDeclaredPart.code).toBe(Code.InvalidArgument);
    expect(smallDeclaredPart.rawMessage).toContain(String(5 * MiB));
    // With a declared object size, each part has a fixed size: 5, 5 and 2 MiB here.
    const largePart = await failure(() => uploadPart(client, declared.uploadId, 1, random(6 * MiB)));
    expect(largePart.code).toBe(Code.InvalidArgument);
    expect(largePart.rawMessage).toContain(`exceeds its maximum of ${5 * MiB} bytes`);
    const shortLastPart = await failure(() => uploadPart(client, declared.uploadId, 3, random(MiB)));
    expect(shortLastPart.code).toBe(Code.InvalidArgument);
    expect(shortLastPart.rawMessage).toContain(`needs ${2 * MiB} bytes`);
    expect((await client.listParts({ uploadId: declared.uploadId })).parts).toEqual([]);
    expect(await partBlobNames(engram, BUCKET)).toEqual([]);

    const open = await client.createMultipartUpload({ spec: { bucket: BUCKET, key } });
    await uploadPart(client, open.uploadId, 1, random(MiB));
    await uploadPart(client, open.uploadId, 2, random(5 * MiB));
    const outOfOrder = await failure(() => client.completeMultipartUpload({ uploadId: open.uploadId, parts: [{ partNumber: 2 }, { partNumber: 1 }] }));
    expect(outOfOrder.code).toBe(Code.InvalidArgument);
    expect(outOfOrder.rawMessage).toContain("increasing part_number order");
    const smallNonFinal = await failure(() => client.completeMultipartUpload({ uploadId: open.uploadId, parts: partsOf(2) }));
    expect(smallNonFinal.code).toBe(Code.InvalidArgument);
    expect(smallNonFinal.rawMessage).toContain("at least 5242880 bytes");
    const missing = await failure(() => client.completeMultipartUpload({ uploadId: open.uploadId, parts: [{ partNumber: 2 }, { partNumber: 3 }] }));
    expect(missing.code).toBe(Code.InvalidArgument);
    expect(missing.rawMessage).toContain("part 3 was not uploaded");
    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();
  });

  it.skipIf(!backend.available)("precondition checked at complete", async () => {
    const engram = await start();
    const client = storageClient("grpc", engram.url);
    const key = "multipart/precondition.bin";
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key, ifGenerationMatch: 0n } });
    await uploadPart(client, uploadId, 1, random(MiB));
    await client.upload(
      (async function* () {
        yield { spec: { bucket: BUCKET, key } };
        yield { writeOffset: 0n, finishWrite: true };
      })(),
    );

    const err = await failure(() => client.completeMultipartUpload({ uploadId, parts: partsOf(1) }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect((await client.getObject({ bucket: BUCKET, key })).object?.size).toBe(0n);
  });

  it.skipIf(!backend.available)("abort removes the parts", async () => {
    const engram = await start({ ENGRAM_BLOB_DELETE_GRACE_SECONDS: "0" });
    const client = storageClient("grpc", engram.url);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key: "multipart/aborted.bin" } });
    await uploadPart(client, uploadId, 1, random(2 * MiB));
    expect(await partBlobNames(engram, BUCKET)).toHaveLength(1);

    await client.abortMultipartUpload({ uploadId });
    expect((await failure(() => client.listParts({ uploadId }))).code).toBe(Code.NotFound);
    expect((await failure(() => client.abortMultipartUpload({ uploadId }))).code).toBe(Code.NotFound);
    await engram.catalog.sweepNow();
    expect(await partBlobNames(engram, BUCKET)).toEqual([]);
  });

  it.skipIf(!backend.available)("expired upload is swept", async () => {
    const engram = await start({ ENGRAM_BLOB_DELETE_GRACE_SECONDS: "0", ENGRAM_UPLOAD_EXPIRY_SECONDS: "3" });
    const client = storageClient("grpc", engram.url);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key: "multipart/expired.bin" } });
    await uploadPart(client, uploadId, 1, random(2 * MiB));
    // An unfinished part sent in unary chunks is swept too.
    await client.uploadPartChunk({ uploadId, partNumber: 2, writeOffset: 0n, data: { content: random(MiB) } });
    expect(await partBlobNames(engram, BUCKET)).toHaveLength(2);

    const expired = () =>
      client.listParts({ uploadId }).then(
        () => false,
        (err: unknown) => ConnectError.from(err).code === Code.NotFound,
      );
    await waitFor(expired, "the upload to expire", 10_000);
    expect((await failure(() => uploadPart(client, uploadId, 2, random(MiB)))).code).toBe(Code.NotFound);
    expect((await failure(() => client.uploadPartChunk({ uploadId, partNumber: 2, writeOffset: BigInt(MiB), data: { content: random(MiB) } }))).code).toBe(Code.NotFound);
    expect((await failure(() => client.completeMultipartUpload({ uploadId, parts: partsOf(1) }))).code).toBe(Code.NotFound);
    expect((await client.listMultipartUploads({ bucket: BUCKET })).uploads).toEqual([]);

    expect(await engram.uploadSweeper.sweep()).toBe(1);
    await engram.catalog.sweepNow();
    expect(await partBlobNames(engram, BUCKET)).toEqual([]);
  });

  it.skipIf(backend.name === "embedded" || !backend.available)("sweep skipped while another replica sweeps", async () => {
    const engram = await start();
    const other = new pg.Client({ connectionString: engram.config.postgres.url });
    await other.connect();
    try {
      await other.query("select pg_advisory_lock(hashtextextended('engram.expired-upload-sweep', 0))");
      expect(await engram.metadata.sweepExpiredUploads(10)).toBeUndefined();
      await other.query("select pg_advisory_unlock_all()");
      expect(await engram.metadata.sweepExpiredUploads(10)).toBe(0);
    } finally {
      await other.end();
    }
  });

  it.skipIf(!backend.available)("uploads list by prefix in pages", async () => {
    const engram = await start();
    const client = storageClient("connect", engram.url);
    const keys = ["list/a", "list/b", "list/c", "other/d"];
    for (const key of keys) await client.createMultipartUpload({ spec: { bucket: BUCKET, key } });

    const first = await client.listMultipartUploads({ bucket: BUCKET, prefix: "list/", pageSize: 2 });
    expect(first.uploads.map((upload) => upload.key)).toEqual(["list/a", "list/b"]);
    expect(first.nextPageToken).not.toBe("");
    const second = await client.listMultipartUploads({ bucket: BUCKET, prefix: "list/", pageSize: 2, pageToken: first.nextPageToken });
    expect(second.uploads.map((upload) => upload.key)).toEqual(["list/c"]);
    expect(second.nextPageToken).toBe("");
  });
});
