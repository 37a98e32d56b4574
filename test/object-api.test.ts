import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { StorageClass } from "../gen/engram/v1/object_pb.js";
import { backendsUnderTest } from "./support/backends.js";
import { PROTOCOLS, TEST_AUTHORIZATION, storageClient, type TestEngram } from "./support/engram.js";
import { MiB, download, random, sha256Hex, upload, uploadMessages } from "./support/objects.js";

const BUCKET = "mnemos-artifacts";

/** Runs a call and returns the ConnectError it fails with. */
async function failure(call: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await call();
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded but was expected to fail");
}

const backends = await backendsUnderTest();

describe.each(backends)("on $name", (backend) => {
let engram: TestEngram;

beforeAll(async () => {
  if (backend.available) engram = await backend.start();
});

afterAll(async () => {
  await engram?.destroy();
});

describe.skipIf(!backend.available).each(PROTOCOLS)("object API over %s", (protocol) => {
  const client = () => storageClient(protocol, engram.url);
  const prefix = `${protocol}/`;

  it.each([
    ["0 bytes", 0],
    ["1 byte", 1],
    ["chunk - 1", MiB - 1],
    ["chunk", MiB],
    ["chunk + 1", MiB + 1],
    ["10 MiB", 10 * MiB],
  ])("round trip of %s", async (_name, size) => {
    const content = random(size);
    const key = `${prefix}round-trip/${size}`;
    const object = await upload(client(), BUCKET, key, content, { contentType: "application/x-test", metadata: { run: "7" } });

    expect(object.size).toBe(BigInt(size));
    expect(Buffer.from(object.checksums!.sha256).toString("hex")).toBe(sha256Hex(content));
    expect(object.generation).toBeGreaterThan(0n);

    const { first, content: downloaded, chunks } = await download(client(), { bucket: BUCKET, key });
    expect(sha256Hex(downloaded)).toBe(sha256Hex(content));
    expect(first.metadata?.contentType).toBe("application/x-test");
    expect(first.metadata?.metadata).toEqual({ run: "7" });
    expect(first.contentRange).toMatchObject({ start: 0n, end: BigInt(size), completeLength: BigInt(size) });
    expect(Buffer.from(first.objectChecksums!.sha256).toString("hex")).toBe(sha256Hex(content));
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(MiB);
    }
  });

  it("empty object plain download has no data", async () => {
    const key = `${prefix}empty`;
    await upload(client(), BUCKET, key, new Uint8Array(0));
    const { first, content, messages } = await download(client(), { bucket: BUCKET, key });
    expect(messages).toBe(1);
    expect(first.metadata?.size).toBe(0n);
    expect(content.length).toBe(0);

    const ranged = await failure(() => download(client(), { bucket: BUCKET, key, readOffset: 0n, readLimit: 1n }));
    expect(ranged.code).toBe(Code.OutOfRange);
    const suffix = await failure(() => download(client(), { bucket: BUCKET, key, readOffset: -1n }));
    expect(suffix.code).toBe(Code.OutOfRange);
  });

  it("ranges by offset, limit and from the end", async () => {
    const content = random(3 * MiB + 17);
    const key = `${prefix}ranges`;
    await upload(client(), BUCKET, key, content);

    const middle = await download(client(), { bucket: BUCKET, key, readOffset: 1000n, readLimit: 2n * BigInt(MiB) });
    expect(middle.content.equals(content.subarray(1000, 1000 + 2 * MiB))).toBe(true);
    expect(middle.first.contentRange).toMatchObject({ start: 1000n, end: BigInt(1000 + 2 * MiB) });

    const tail = await download(client(), { bucket: BUCKET, key, readOffset: -100n });
    expect(tail.content.equals(content.subarray(content.length - 100))).toBe(true);

    const clipped = await download(client(), { bucket: BUCKET, key, readOffset: BigInt(content.length - 5), readLimit: 100n });
    expect(clipped.content.equals(content.subarray(content.length - 5))).toBe(true);

    const whole = await download(client(), { bucket: BUCKET, key, readOffset: -BigInt(content.length) * 2n });
    expect(whole.content.equals(content)).toBe(true);

    const past = await failure(() => download(client(), { bucket: BUCKET, key, readOffset: BigInt(content.length) }));
    expect(past.code).toBe(Code.OutOfRange);
    expect(past.rawMessage).toContain(String(content.length));

    const negativeLimit = await failure(() => download(client(), { bucket: BUCKET, key, readLimit: -1n }));
    expect(negativeLimit.code).toBe(Code.InvalidArgument);
  });

  it.each(["t/o?ne", "t/t#wo", "t/世界", "t/a b+c.txt", "t/100%.csv"])("key %s round-trips exactly", async (name) => {
    const key = `${prefix}${name}`;
    const content = random(1000);
    const object = await upload(client(), BUCKET, key, content);
    expect(object.key).toBe(key);

    const { object: stat } = await client().getObject({ bucket: BUCKET, key });
    expect(stat?.key).toBe(key);

    const listed = await client().listObjects({ bucket: BUCKET, prefix: key });
    expect(listed.objects.map((entry) => entry.key)).toEqual([key]);

    const { content: downloaded } = await download(client(), { bucket: BUCKET, key });
    expect(downloaded.equals(content)).toBe(true);

    await client().deleteObject({ bucket: BUCKET, key });
    const gone = await failure(() => client().getObject({ bucket: BUCKET, key }));
    expect(gone.code).toBe(Code.NotFound);
  });

  it.each([
    ["/lead", "/lead"],
    ["a//b", "a//b"],
    ["a/./b", "a/./b"],
    ["../x", "../x"],
    ["trail/", "trail/"],
    ["NUL byte", "a\u0000b"],
    ["1025 bytes", "k".repeat(1025)],
    ["empty", ""],
  ])("key %s is INVALID_ARGUMENT", async (_name, key) => {
    const err = await failure(() => upload(client(), BUCKET, key, random(10)));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/key/);

    const stat = await failure(() => client().getObject({ bucket: BUCKET, key }));
    expect(stat.code).toBe(Code.InvalidArgument);
  });

  it("key of 1024 bytes is accepted", async () => {
    const key = `${prefix}${"k".repeat(1024 - prefix.length)}`;
    const object = await upload(client(), BUCKET, key, random(3));
    expect(object.key).toBe(key);
  });

  it("stream without finish_write creates nothing", async () => {
    const key = `${prefix}unfinished`;
    async function* messages() {
      yield { spec: { bucket: BUCKET, key } };
      yield { writeOffset: 0n, data: { content: random(1000) } };
    }
    const err = await failure(() => client().upload(messages()));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("finish_write");
    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();
  });

  it("declared size mismatch creates nothing", async () => {
    const key = `${prefix}short`;
    const tooShort = await failure(() => upload(client(), BUCKET, key, random(1000), { size: 1001n }));
    expect(tooShort.code).toBe(Code.OutOfRange);
    const tooLong = await failure(() => upload(client(), BUCKET, key, random(1000), { size: 999n }));
    expect(tooLong.code).toBe(Code.OutOfRange);
    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();
  });

  it("sha256 and crc32c mismatch creates nothing", async () => {
    const key = `${prefix}corrupt`;
    const content = random(5000);
    const wrongSha = await failure(() => upload(client(), BUCKET, key, content, { expectedChecksums: { sha256: Buffer.alloc(32, 1) } }));
    expect(wrongSha.code).toBe(Code.InvalidArgument);
    expect(wrongSha.rawMessage).toContain("sha256");

    const wrongCrc = await failure(() => upload(client(), BUCKET, key, content, { expectedChecksums: { crc32c: 12345 } }));
    expect(wrongCrc.code).toBe(Code.InvalidArgument);

    const shortSha = await failure(() => upload(client(), BUCKET, key, content, { expectedChecksums: { sha256: Buffer.alloc(5) } }));
    expect(shortSha.code).toBe(Code.InvalidArgument);
    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();

    const right = await upload(client(), BUCKET, key, content, { expectedChecksums: { sha256: Buffer.from(sha256Hex(content), "hex") } });
    expect(right.size).toBe(5000n);
  });

  it("chunk crc32c mismatch is INVALID_ARGUMENT", async () => {
    const key = `${prefix}chunk-crc`;
    async function* messages() {
      yield { spec: { bucket: BUCKET, key } };
      yield { writeOffset: 0n, data: { content: random(100), crc32c: 1 } };
      yield { writeOffset: 100n, finishWrite: true };
    }
    const err = await failure(() => client().upload(messages()));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("crc32c");
    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();
  });

  it("write_offset gap is INVALID_ARGUMENT", async () => {
    const key = `${prefix}gap`;
    async function* messages() {
      yield { spec: { bucket: BUCKET, key } };
      yield { writeOffset: 0n, data: { content: random(100) } };
      yield { writeOffset: 200n, data: { content: random(100) } };
      yield { writeOffset: 300n, finishWrite: true };
    }
    const err = await failure(() => client().upload(messages()));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("write_offset is 200");
  });

  it("first message without spec is INVALID_ARGUMENT", async () => {
    async function* messages() {
      yield { writeOffset: 0n, data: { content: random(10) }, finishWrite: true };
    }
    const err = await failure(() => client().upload(messages()));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain("spec");
  });

  it("if_generation_match guards writes and deletes", async () => {
    const key = `${prefix}guarded`;
    const first = await upload(client(), BUCKET, key, random(10), { ifGenerationMatch: 0n });

    const exists = await failure(() => upload(client(), BUCKET, key, random(10), { ifGenerationMatch: 0n }));
    expect(exists.code).toBe(Code.FailedPrecondition);

    const second = await upload(client(), BUCKET, key, random(20), { ifGenerationMatch: first.generation });
    expect(second.generation).toBeGreaterThan(first.generation);

    const stale = await failure(() => client().deleteObject({ bucket: BUCKET, key, ifGenerationMatch: first.generation }));
    expect(stale.code).toBe(Code.FailedPrecondition);
    await client().deleteObject({ bucket: BUCKET, key, ifGenerationMatch: second.generation });

    const missing = await failure(() => client().deleteObject({ bucket: BUCKET, key }));
    expect(missing.code).toBe(Code.NotFound);
  });

  it("overwrite serves the new content", async () => {
    const key = `${prefix}overwrite`;
    await upload(client(), BUCKET, key, Buffer.from("old"));
    await upload(client(), BUCKET, key, Buffer.from("new content"));
    const { content } = await download(client(), { bucket: BUCKET, key });
    expect(content.toString()).toBe("new content");
  });

  it("missing bucket and object are NOT_FOUND", async () => {
    const bucket = await failure(() => upload(client(), "no-such-bucket", "k", random(1)));
    expect(bucket.code).toBe(Code.NotFound);
    expect(bucket.rawMessage).toContain("no-such-bucket");

    const object = await failure(() => download(client(), { bucket: BUCKET, key: `${prefix}missing` }));
    expect(object.code).toBe(Code.NotFound);
    expect(object.rawMessage).toContain(`${prefix}missing`);

    const invalid = await failure(() => client().getBucket({ name: "Bad_Name" }));
    expect(invalid.code).toBe(Code.InvalidArgument);
  });

  it("spec fields are stored", async () => {
    const key = `${prefix}spec`;
    await upload(client(), BUCKET, key, random(1), {
      storageClass: StorageClass.GLACIER,
      tags: { team: "vision" },
      metadata: { "model-name": "resnet" },
      contentType: "application/octet-stream",
    });
    const { object } = await client().getObject({ bucket: BUCKET, key });
    expect(object?.storageClass).toBe(StorageClass.GLACIER);
    expect(object?.tags).toEqual({ team: "vision" });
    expect(object?.metadata).toEqual({ "model-name": "resnet" });
    expect(object?.etag).toMatch(/^"[0-9a-f]{64}"$/);
  });
});

describe.skipIf(!backend.available)("buckets and limits", () => {
  const client = () => storageClient("grpc", engram.url);

  it("lists the four MNEMOS buckets", async () => {
    const { buckets } = await client().listBuckets({});
    expect(buckets.map((bucket) => bucket.name)).toEqual(["mnemos-artifacts", "mnemos-backups", "mnemos-logs", "mnemos-models"]);
  });

  it("GetBucket counts objects and bytes", async () => {
    await upload(client(), "mnemos-logs", "count/a", random(100));
    await upload(client(), "mnemos-logs", "count/b", random(23));
    const { bucket } = await client().getBucket({ name: "mnemos-logs" });
    expect(bucket?.objectCount).toBe(2n);
    expect(bucket?.totalBytes).toBe(123n);
  });

  it("capabilities publish the limits", async () => {
    const caps = await client().getCapabilities({});
    expect(caps.maxUploadChunkBytes).toBe(BigInt(4 * MiB));
    expect(caps.maxDownloadChunkBytes).toBe(BigInt(MiB));
    expect(caps.maxMessageBytes).toBeGreaterThan(caps.maxUploadChunkBytes);
    expect(caps.maxListPageSize).toBe(1000);
    expect(caps.maxKeyBytes).toBe(1024);
  });

  it.each(PROTOCOLS)("64 MiB message is RESOURCE_EXHAUSTED over %s", async (protocol) => {
    const key = "too-big";
    const err = await failure(() =>
      storageClient(protocol, engram.url).upload(uploadMessages({ bucket: BUCKET, key }, random(64 * MiB), 64 * MiB)),
    );
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();
  });

  it("negative generation is INVALID_ARGUMENT", async () => {
    await upload(client(), BUCKET, "negative-generation", random(10));
    const get = await failure(() => client().getObject({ bucket: BUCKET, key: "negative-generation", generation: -1n }));
    expect(get.code).toBe(Code.InvalidArgument);
    expect(get.rawMessage).toContain("generation -1 is invalid");
    const remove = await failure(() => client().deleteObject({ bucket: BUCKET, key: "negative-generation", generation: -1n }));
    expect(remove.code).toBe(Code.InvalidArgument);
    expect(await engram.metadata.getObject(BUCKET, "negative-generation")).toBeDefined();
  });

  it("full chunk accepted as Connect JSON", async () => {
    // JSON carries bytes in base64, a third longer than the chunk itself.
    const { uploadId } = await client().startResumableWrite({ spec: { bucket: BUCKET, key: "json-chunk", size: BigInt(4 * MiB) } });
    const content = random(4 * MiB);
    const response = await fetch(`${engram.url}/engram.v1.StorageService/WriteChunk`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: TEST_AUTHORIZATION },
      body: JSON.stringify({ uploadId, writeOffset: "0", data: { content: content.toString("base64") }, finishWrite: true }),
    });
    const body = (await response.json()) as { persistedSize?: string; object?: { size?: string } };
    expect(response.status).toBe(200);
    expect(body.persistedSize).toBe(String(4 * MiB));
    expect((await engram.metadata.getObject(BUCKET, "json-chunk"))?.sha256).toBe(sha256Hex(content));
  });

  it("chunk over the chunk limit is INVALID_ARGUMENT", async () => {
    const key = "big-chunk";
    const size = 4 * MiB + 1;
    const err = await failure(() => client().upload(uploadMessages({ bucket: BUCKET, key }, random(size), size)));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain(`${size} bytes`);
    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();
  });
});

describe.skipIf(!backend.available)("gRPC status message", () => {
  it("non-ASCII key survives in the error message", async () => {
    const key = "missing/世界 100%";
    const err = await failure(() => storageClient("grpc", engram.url).getObject({ bucket: BUCKET, key }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toContain(key);
  });
});
});
