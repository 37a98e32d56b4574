import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";

import type { UploadRequestSchema } from "../gen/engram/v1/storage_service_pb.js";
import { backendsUnderTest } from "./support/backends.js";
import { storageClient, type TestEngram } from "./support/engram.js";
import { MiB, download, random, sha256Hex } from "./support/objects.js";
import { waitFor } from "./support/wait.js";

const BUCKET = "mnemos-models";
const backends = await backendsUnderTest();
const started: TestEngram[] = [];

afterEach(async () => {
  for (const engram of started.splice(0)) await engram.destroy();
});

type UploadRequest = MessageInitShape<typeof UploadRequestSchema>;

/** Upload messages that resume `uploadId` at `from`, with `finish` on the last. */
async function* resumeMessages(uploadId: string, content: Uint8Array, from: number, to: number, finish: boolean): AsyncGenerator<UploadRequest> {
  yield { uploadId };
  for (let offset = from; offset < to; offset += MiB) {
    yield { writeOffset: BigInt(offset), data: { content: content.subarray(offset, Math.min(offset + MiB, to)) } };
  }
  if (finish) yield { writeOffset: BigInt(to), finishWrite: true };
}

describe.each(backends)("resumable upload on $name", (backend) => {
  const start = async () => {
    const engram = await backend.start();
    started.push(engram);
    return engram;
  };

  it.skipIf(!backend.available)("interrupted stream resumes and finishes", async () => {
    const engram = await start();
    const client = storageClient("grpc", engram.url);
    const content = random(40 * MiB + 7);
    const key = "resumable/model.safetensors";
    const { uploadId } = await client.startResumableWrite({ spec: { bucket: BUCKET, key, size: BigInt(content.length) } });

    const controller = new AbortController();
    const sent = { bytes: 0 };
    async function* interrupted(): AsyncGenerator<UploadRequest> {
      yield { uploadId };
      for (let offset = 0; offset < 20 * MiB; offset += MiB) {
        yield { writeOffset: BigInt(offset), data: { content: content.subarray(offset, offset + MiB) } };
        sent.bytes += MiB;
      }
      await new Promise((resolve) => setTimeout(resolve, 60_000));
    }
    const outcome = client.upload(interrupted(), { signal: controller.signal }).then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    await waitFor(() => sent.bytes >= 20 * MiB, "20 MiB to be sent");
    controller.abort();
    expect((await outcome)?.code).toBe(Code.Canceled);

    // The server records the interrupted segment after the cancel, so the
    // persisted size grows to at most 20 MiB and never goes down.
    const sizes: number[] = [];
    await waitFor(async () => {
      const { persistedSize } = await client.queryWriteStatus({ uploadId });
      sizes.push(Number(persistedSize));
      return sizes.length >= 3 && sizes.at(-1) === sizes.at(-3) && persistedSize > 0n;
    }, "the persisted size to settle");
    const persisted = sizes.at(-1)!;
    expect(persisted).toBeGreaterThanOrEqual(16 * MiB);
    expect(persisted).toBeLessThanOrEqual(20 * MiB);
    expect(sizes).toEqual([...sizes].sort((a, b) => a - b));

    // Resuming a little early sends data the server already has: it is skipped.
    const from = Math.max(0, persisted - MiB - 3);
    const { object } = await client.upload(resumeMessages(uploadId, content, from, content.length, true));
    expect(object?.size).toBe(BigInt(content.length));
    expect(Buffer.from(object!.checksums!.sha256).toString("hex")).toBe(sha256Hex(content));
    const { content: downloaded } = await download(client, { bucket: BUCKET, key });
    expect(downloaded.equals(content)).toBe(true);

    const again = await client.upload(resumeMessages(uploadId, content, content.length, content.length, true));
    expect(again.object?.generation).toBe(object?.generation);
    const status = await client.queryWriteStatus({ uploadId });
    expect(status.persistedSize).toBe(BigInt(content.length));
    expect(status.object?.generation).toBe(object?.generation);
  });

  it.skipIf(!backend.available)("unary chunks over Connect", async () => {
    const engram = await start();
    // The Connect protocol over HTTP/1.1 with unary calls only, as Connect-Web in a browser.
    const client = storageClient("connect", engram.url);
    const content = random(12 * MiB + 5);
    const key = "resumable/browser.bin";
    const { uploadId } = await client.startResumableWrite({ spec: { bucket: BUCKET, key, contentType: "application/x-safetensors" } });

    let persisted = 0n;
    for (let offset = 0; offset < content.length; offset += MiB) {
      const chunk = content.subarray(offset, offset + MiB);
      const response = await client.writeChunk({ uploadId, writeOffset: BigInt(offset), data: { content: chunk } });
      expect(response.persistedSize).toBe(BigInt(offset + chunk.length));
      persisted = response.persistedSize;
    }
    const retried = await client.writeChunk({ uploadId, writeOffset: 0n, data: { content: content.subarray(0, MiB) } });
    expect(retried.persistedSize).toBe(persisted);
    const gap = await client.writeChunk({ uploadId, writeOffset: persisted + 1n, data: { content: new Uint8Array(1) } }).catch((err: unknown) => ConnectError.from(err));
    expect(gap).toBeInstanceOf(ConnectError);
    expect((gap as ConnectError).code).toBe(Code.InvalidArgument);

    const { object } = await client.writeChunk({ uploadId, writeOffset: persisted, finishWrite: true });
    expect(object?.contentType).toBe("application/x-safetensors");
    expect(Buffer.from(object!.checksums!.sha256).toString("hex")).toBe(sha256Hex(content));
    const { content: downloaded } = await download(client, { bucket: BUCKET, key });
    expect(downloaded.equals(content)).toBe(true);
  });
});
