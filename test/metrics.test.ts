import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { TEST_AUTHORIZATION, startTestEngram, storageClient, type TestEngram } from "./support/engram.js";
import { download, random, upload } from "./support/objects.js";
import { waitFor } from "./support/wait.js";

let engram: TestEngram;
let text: string;

/** Returns the value of one sample line, such as `engram_uploads_total{bucket="a"}`. */
function sample(name: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name} `)) return Number(line.slice(name.length + 1));
  }
  return undefined;
}

async function failure(call: () => Promise<unknown>): Promise<Code | undefined> {
  return call().then(
    () => undefined,
    (err: unknown) => ConnectError.from(err).code,
  );
}

beforeAll(async () => {
  engram = await startTestEngram();
  const client = storageClient("grpc", engram.url);

  await upload(client, "mnemos-models", "m/a", random(100));
  await upload(client, "mnemos-models", "m/b", random(200));
  await upload(client, "mnemos-logs", "l/a", random(50));
  expect(await failure(() => upload(client, "mnemos-models", "bad//key", random(10)))).toBe(Code.InvalidArgument);

  for (let i = 0; i < 3; i++) await download(client, { bucket: "mnemos-models", key: "m/a" });
  await download(client, { bucket: "mnemos-models", key: "m/b", readOffset: 50n, readLimit: 10n });
  expect(await failure(() => download(client, { bucket: "mnemos-models", key: "m/missing" }))).toBe(Code.NotFound);
  expect(await failure(() => client.getObject({ bucket: "mnemos-models", key: "m/missing" }))).toBe(Code.NotFound);

  const objects = `${engram.url}/v1/buckets/mnemos-models/objects`;
  const headers = { authorization: TEST_AUTHORIZATION };
  expect((await fetch(`${objects}/m/b`, { headers })).status).toBe(200);
  expect((await fetch(`${objects}/m/c`, { method: "PUT", body: random(40), headers })).status).toBe(200);
  expect((await fetch(`${objects}/m/none`, { headers })).status).toBe(404);

  const response = await fetch(`${engram.metricsUrl}/metrics`);
  expect(response.status).toBe(200);
  text = await response.text();
});

afterAll(async () => {
  await engram.destroy();
});

describe("metrics endpoint", () => {
  it("counts uploads by bucket", () => {
    expect(sample('engram_uploads_total{bucket="mnemos-models"}')).toBe(3);
    expect(sample('engram_uploads_bytes_total{bucket="mnemos-models"}')).toBe(340);
    expect(sample('engram_uploads_total{bucket="mnemos-logs"}')).toBe(1);
    expect(sample('engram_uploads_bytes_total{bucket="mnemos-logs"}')).toBe(50);
  });

  it("counts downloads and their bytes", () => {
    expect(sample('engram_downloads_total{bucket="mnemos-models"}')).toBe(5);
    expect(sample('engram_downloads_bytes_total{bucket="mnemos-models"}')).toBe(510);
  });

  it("counts failures by operation and code", () => {
    expect(sample('engram_failed_operations_total{operation="Upload",code="InvalidArgument"}')).toBe(1);
    expect(sample('engram_failed_operations_total{operation="Download",code="NotFound"}')).toBe(1);
    expect(sample('engram_failed_operations_total{operation="GetObject",code="NotFound"}')).toBe(1);
    expect(sample('engram_failed_operations_total{operation="http.GET",code="NotFound"}')).toBe(1);
  });

  it("active uploads return to zero", () => {
    expect(sample("engram_active_uploads")).toBe(0);
  });

  it("times store operations by backend", () => {
    expect(sample('engram_storage_operations_duration_seconds_count{operation="metadata.commitObject",backend="pglite"}')).toBe(4);
    expect(sample('engram_storage_operations_duration_seconds_count{operation="blob.finish",backend="fs"}')).toBe(4);
  });

  it("includes process metrics", () => {
    expect(text).toContain("process_cpu_user_seconds_total");
    expect(text).toContain("nodejs_eventloop_lag_seconds");
  });

  it("never labels with a key", () => {
    expect(text).not.toContain("m/a");
    expect(text).not.toContain("m/missing");
  });
});

describe("health endpoints", () => {
  it("healthz and readyz answer 200", async () => {
    expect((await fetch(`${engram.metricsUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${engram.metricsUrl}/readyz`)).status).toBe(200);
  });

  it("unknown path is 404", async () => {
    expect((await fetch(`${engram.metricsUrl}/nope`)).status).toBe(404);
  });
});

describe("upload metrics of multipart and resumable uploads", () => {
  async function scrape(name: string): Promise<number | undefined> {
    text = await (await fetch(`${engram.metricsUrl}/metrics`)).text();
    return sample(name);
  }

  it("completed multipart upload counts", async () => {
    const client = storageClient("connect", engram.url);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: "mnemos-artifacts", key: "metrics/multipart.bin" } });
    await client.uploadPartChunk({ uploadId, partNumber: 1, writeOffset: 0n, data: { content: random(1000) }, finishWrite: true });
    expect(await scrape('engram_uploads_total{bucket="mnemos-artifacts"}')).toBeUndefined();

    await client.completeMultipartUpload({ uploadId, parts: [{ partNumber: 1 }] });
    expect(await scrape('engram_uploads_total{bucket="mnemos-artifacts"}')).toBe(1);
    expect(sample('engram_uploads_bytes_total{bucket="mnemos-artifacts"}')).toBe(1000);
  });

  it("finished resumable upload counts once", async () => {
    const client = storageClient("connect", engram.url);
    const { uploadId } = await client.startResumableWrite({ spec: { bucket: "mnemos-backups", key: "metrics/resumable.bin" } });
    await client.writeChunk({ uploadId, writeOffset: 0n, data: { content: random(300) } });
    expect(await scrape('engram_uploads_total{bucket="mnemos-backups"}')).toBeUndefined();

    await client.writeChunk({ uploadId, writeOffset: 300n, finishWrite: true });
    // A retried finish returns the object without counting it again.
    await client.writeChunk({ uploadId, writeOffset: 300n, finishWrite: true });
    expect(await scrape('engram_uploads_total{bucket="mnemos-backups"}')).toBe(1);
    expect(sample('engram_uploads_bytes_total{bucket="mnemos-backups"}')).toBe(300);
  });

  it("part upload counts as active", async () => {
    const client = storageClient("grpc", engram.url);
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: "mnemos-artifacts", key: "metrics/active.bin" } });
    let release = (): void => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* messages() {
      yield { uploadId, partNumber: 1 };
      yield { writeOffset: 0n, data: { content: random(100) } };
      await gate;
      yield { writeOffset: 100n, finishWrite: true };
    }

    const part = client.uploadPart(messages());
    await waitFor(async () => (await scrape("engram_active_uploads")) === 1, "the part upload to count as active", 5000);
    release();
    expect((await part).part?.size).toBe(100n);
    expect(await scrape("engram_active_uploads")).toBe(0);
  });
});
