import { readdir, stat } from "node:fs/promises";
import http2 from "node:http2";
import { join } from "node:path";

import { toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { UploadRequestSchema } from "../gen/engram/v1/storage_service_pb.js";
import type { FsBlobStore } from "../src/blob/fs/fs-blob-store.js";
import { PROTOCOLS, TEST_AUTHORIZATION, errorLogs, startTestEngram, storageClient, type TestEngram } from "./support/engram.js";
import { waitFor } from "./support/wait.js";
import { MiB, random, upload } from "./support/objects.js";
import { create } from "@bufbuild/protobuf";

const BUCKET = "mnemos-models";

let engram: TestEngram;

beforeAll(async () => {
  engram = await startTestEngram();
});

afterAll(async () => {
  await engram.destroy();
});

/** Lists every blob data file under the data directory, with its size. */
async function blobFiles(): Promise<{ path: string; size: number }[]> {
  const root = join(engram.dataDir, "blobs");
  const entries = await readdir(root, { recursive: true }).catch(() => [] as string[]);
  const files = [];
  for (const entry of entries) {
    if (entry.endsWith(".data")) {
      const path = join(root, entry);
      files.push({ path, size: (await stat(path)).size });
    }
  }
  return files;
}


/** Waits until the server logged the end of an Upload of this key's bucket. */
async function waitForUploadLog(countBefore: number): Promise<void> {
  await waitFor(() => engram.logs.filter((entry) => entry.rpc === "engram.v1.StorageService/Upload").length > countBefore, "the Upload log line");
}

function uploadLogCount(): number {
  return engram.logs.filter((entry) => entry.rpc === "engram.v1.StorageService/Upload").length;
}

/** Waits until the blob directory has a partial blob of at least `bytes`. */
async function waitForPartialBlob(bytes: number): Promise<void> {
  await waitFor(async () => (await blobFiles()).some((file) => file.size >= bytes), `a partial blob of ${bytes} bytes`);
}

describe.each(PROTOCOLS)("upload cancel over %s", (protocol) => {
  it("client abort after 3 MiB creates nothing", async () => {
    const key = `cancel/${protocol}/abort`;
    const controller = new AbortController();
    const logsBefore = uploadLogCount();
    const blobsBefore = (await blobFiles()).length;

    async function* messages() {
      yield { spec: { bucket: BUCKET, key } };
      for (let i = 0; i < 3; i++) {
        yield { writeOffset: BigInt(i * MiB), data: { content: random(MiB) } };
      }
      // Hold the stream open, as a client in the middle of a large file would.
      await new Promise((resolve) => setTimeout(resolve, 60_000));
    }

    const call = storageClient(protocol, engram.url).upload(messages(), { signal: controller.signal });
    const outcome = call.then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    await waitForPartialBlob(3 * MiB);
    controller.abort();

    const err = await outcome;
    expect(err?.code).toBe(Code.Canceled);
    await waitForUploadLog(logsBefore);
    await waitFor(async () => (await blobFiles()).length === blobsBefore, "the partial blob to be removed");

    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();
    const logged = engram.logs.filter((entry) => entry.rpc === "engram.v1.StorageService/Upload").at(-1);
    expect(logged?.code).toBe("Canceled");
    expect(errorLogs(engram.logs)).toEqual([]);
  });
});

describe("upload connection loss", () => {
  it("destroyed connection after 3 MiB creates nothing", async () => {
    const key = "cancel/destroyed";
    const logsBefore = uploadLogCount();
    const blobsBefore = (await blobFiles()).length;

    // A raw HTTP/2 gRPC stream, so the test can cut the TCP connection
    // itself rather than cancel the call politely.
    const session = http2.connect(engram.url);
    const stream = session.request({
      ":method": "POST",
      ":path": "/engram.v1.StorageService/Upload",
      "content-type": "application/grpc+proto",
      te: "trailers",
      authorization: TEST_AUTHORIZATION,
    });
    stream.on("error", () => undefined);
    session.on("error", () => undefined);

    stream.write(envelope(toBinary(UploadRequestSchema, create(UploadRequestSchema, { spec: { bucket: BUCKET, key } }))));
    for (let i = 0; i < 3; i++) {
      const message = create(UploadRequestSchema, { writeOffset: BigInt(i * MiB), data: { content: random(MiB) } });
      stream.write(envelope(toBinary(UploadRequestSchema, message)));
    }
    await waitForPartialBlob(3 * MiB);
    // destroy() closes the socket at once, with no GOAWAY or RST_STREAM.
    session.destroy();

    await waitForUploadLog(logsBefore);
    await waitFor(async () => (await blobFiles()).length === blobsBefore, "the partial blob to be removed");
    expect(await engram.metadata.getObject(BUCKET, key)).toBeUndefined();
    expect(errorLogs(engram.logs)).toEqual([]);
  });
});

describe("download cancel", () => {
  it("client abort stops reading the blob", async () => {
    const key = "cancel/download";
    const size = 64 * MiB;
    await upload(storageClient("grpc", engram.url), BUCKET, key, random(size));
    const blobs = engram.blobs as FsBlobStore;
    const readBefore = blobs.bytesRead;

    const controller = new AbortController();
    let received = 0;
    const responses = storageClient("grpc", engram.url).download({ bucket: BUCKET, key }, { signal: controller.signal });
    await expect(
      (async () => {
        for await (const response of responses) {
          received += response.data?.content.length ?? 0;
          if (received >= MiB) controller.abort();
        }
      })(),
    ).rejects.toThrow();

    await waitFor(() => blobs.openReads === 0, "the blob read stream to close", 5000);
    await waitFor(() => engram.logs.some((entry) => entry.rpc === "engram.v1.StorageService/Download" && entry.code === "Canceled"), "the cancelled Download log line", 5000);
    const read = blobs.bytesRead - readBefore;
    // The server may read ahead by the HTTP/2 windows and its read buffer,
    // but never the whole object.
    expect(read).toBeLessThan(size / 2);
    expect(errorLogs(engram.logs)).toEqual([]);
  });
});

/** Frames one gRPC message: flag byte, 4-byte big-endian length, payload. */
function envelope(payload: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}
