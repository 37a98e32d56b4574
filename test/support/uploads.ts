import { readdir } from "node:fs/promises";
import { join } from "node:path";

import { ConnectError } from "@connectrpc/connect";
import { inject } from "vitest";

import { minioClientFor, s3Env } from "./backends.js";
import { startTestEngram, type TestEngram } from "./engram.js";

/** Runs a call and returns the ConnectError it fails with. */
export async function failure(call: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await call();
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded but was expected to fail");
}

/** Returns the completion list of parts 1 to `count`. */
export function partsOf(count: number) {
  return Array.from({ length: count }, (_, i) => ({ partNumber: i + 1 }));
}

/** Names of the part and chunk blobs in one bucket of an engram's blob store. */
export async function partBlobNames(engram: TestEngram, bucket: string): Promise<string[]> {
  if (engram.config.blobStore === "fs") {
    const root = join(engram.dataDir, "blobs", bucket);
    const names: string[] = [];
    for (const shard of await readdir(root).catch(() => [])) {
      for (const name of await readdir(join(root, shard))) names.push(name);
    }
    return names.filter((name) => name.includes(".part-") && name.endsWith(".data"));
  }
  const s3 = minioClientFor(inject("minio")!);
  const names: string[] = [];
  for await (const item of s3.listObjectsV2(`${engram.config.s3.bucketPrefix}${bucket}`, "", true) as AsyncIterable<{ name?: string }>) {
    if (item.name?.includes(".part-") && !item.name.endsWith(".json")) names.push(item.name);
  }
  return names;
}

/**
 * Starts a second Engram on the same PostgreSQL database and MinIO buckets
 * as `first`. The caller destroys it before `first`, whose destroy drops
 * the database.
 */
export function startReplica(first: TestEngram): Promise<TestEngram> {
  return startTestEngram({
    ...s3Env(inject("minio")!, first.config.s3.bucketPrefix),
    ENGRAM_METADATA_STORE: "postgres",
    ENGRAM_POSTGRES_URL: first.config.postgres.url,
  });
}
