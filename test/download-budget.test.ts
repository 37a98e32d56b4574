import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { MIN_DOWNLOAD_CHUNK_BYTES } from "../src/service/download.js";
import { startTestEngram, storageClient, type TestEngram } from "./support/engram.js";
import { MiB, download, random, sha256Hex, upload } from "./support/objects.js";
import { waitFor } from "./support/wait.js";

const BUCKET = "mnemos-artifacts";
/** The server's defaults: 1 MiB chunks, 16 MiB for all open downloads together. */
const CHUNK_BYTES = MiB;
const BUDGET_BYTES = 16 * MiB;
/** More downloads than fit the budget at the full chunk size. */
const STALLED = 40;

describe("download chunk size under many downloads", () => {
  let engram: TestEngram;
  const content = random(4 * MiB);
  const key = "budget/model.bin";

  beforeAll(async () => {
    engram = await startTestEngram();
    await upload(storageClient("grpc", engram.url), BUCKET, key, content);
  });

  afterAll(async () => {
    await engram?.destroy();
  });

  it("shrinks chunks, then restores them", async () => {
    const full = await download(storageClient("grpc", engram.url), { bucket: BUCKET, key });
    expect(full.chunks.map((chunk) => chunk.length)).toEqual([CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES]);

    // One HTTP/2 connection with Node's default 64 KiB windows, never read:
    // every server stream blocks on flow control with its blob open.
    const stalledClient = storageClient("grpc", engram.url);
    const controller = new AbortController();
    const stalled = Array.from({ length: STALLED }, () => {
      const responses = stalledClient.download({ bucket: BUCKET, key }, { signal: controller.signal })[Symbol.asyncIterator]();
      return responses.next().catch(() => undefined);
    });
    try {
      await waitFor(() => engram.downloads.activeDownloads === STALLED, `${STALLED} downloads to block with their blob open`);

      const shared = await download(storageClient("grpc", engram.url), { bucket: BUCKET, key });
      const share = Math.floor(BUDGET_BYTES / (STALLED + 1));
      const expected = share - (share % MIN_DOWNLOAD_CHUNK_BYTES);
      expect(expected).toBeLessThan(CHUNK_BYTES);
      expect(Math.max(...shared.chunks.map((chunk) => chunk.length))).toBe(expected);
      expect(sha256Hex(shared.content)).toBe(sha256Hex(content));
    } finally {
      controller.abort();
      await Promise.all(stalled);
    }

    await waitFor(() => engram.downloads.activeDownloads === 0, "the cancelled downloads to release their blobs");
    const again = await download(storageClient("grpc", engram.url), { bucket: BUCKET, key });
    expect(again.chunks.map((chunk) => chunk.length)).toEqual([CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES]);
  });
});
