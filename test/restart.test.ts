import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, expect, it } from "vitest";

import { startTestEngram, storageClient } from "./support/engram.js";
import { MiB, download, random, sha256Hex, upload } from "./support/objects.js";

const dirs: string[] = [];

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

it("restart on the same data directory keeps objects", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "engram-restart-"));
  dirs.push(dataDir);
  const contents = new Map([
    ["weights/model.safetensors", random(3 * MiB + 5)],
    ["logs/run-1.txt", Buffer.from("epoch 1 done\n")],
    ["empty", Buffer.alloc(0)],
  ]);

  const first = await startTestEngram({}, { dataDir });
  let lastGeneration = 0n;
  for (const [key, content] of contents) {
    lastGeneration = (await upload(storageClient("grpc", first.url), "mnemos-models", key, content)).generation;
  }
  await first.close(0);

  const second = await startTestEngram({}, { dataDir });
  try {
    const client = storageClient("grpc", second.url);
    for (const [key, content] of contents) {
      const { content: downloaded } = await download(client, { bucket: "mnemos-models", key });
      expect(sha256Hex(downloaded)).toBe(sha256Hex(content));
    }
    const listed = await client.listObjects({ bucket: "mnemos-models" });
    expect(listed.objects).toHaveLength(contents.size);

    const next = await upload(client, "mnemos-models", "after-restart", random(10));
    expect(next.generation).toBeGreaterThan(lastGeneration);
  } finally {
    await second.close(0);
  }
});
