import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";

import type { Client } from "@connectrpc/connect";
import { inject } from "vitest";

import type { StorageService } from "../../gen/engram/v1/storage_service_pb.js";
import { minioClientFor } from "./backends.js";
import type { TestEngram } from "./engram.js";

export { failure } from "./uploads.js";

/** Returns a bucket name no other test uses. */
export function uniqueBucketName(label: string): string {
  return `${label}-${randomBytes(4).toString("hex")}`;
}

export interface Usage {
  objectCount: bigint;
  totalBytes: bigint;
  versionCount: bigint;
  versionBytes: bigint;
}

/** Computes a bucket's usage figures from a full listing of every version, two per page. */
export async function usageByScan(client: Client<typeof StorageService>, bucket: string): Promise<Usage> {
  const usage: Usage = { objectCount: 0n, totalBytes: 0n, versionCount: 0n, versionBytes: 0n };
  let pageToken = "";
  do {
    const page = await client.listObjects({ bucket, versions: true, pageSize: 2, pageToken });
    for (const version of page.objects) {
      if (version.deleteMarker) continue;
      usage.versionCount += 1n;
      usage.versionBytes += version.size;
      if (!version.noncurrent) {
        usage.objectCount += 1n;
        usage.totalBytes += version.size;
      }
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return usage;
}

/** Returns the usage figures GetBucket reports. */
export async function usageReported(client: Client<typeof StorageService>, bucket: string): Promise<Usage> {
  const { bucket: record } = await client.getBucket({ name: bucket });
  return { objectCount: record!.objectCount, totalBytes: record!.totalBytes, versionCount: record!.versionCount, versionBytes: record!.versionBytes };
}

/** Names of every file or S3 object in a bucket's part of the blob store; empty when it has none. */
export async function blobNames(engram: TestEngram, bucket: string): Promise<string[]> {
  if (engram.config.blobStore === "fs") {
    const root = join(engram.dataDir, "blobs", bucket);
    const names: string[] = [];
    for (const shard of await readdir(root).catch(() => [])) {
      for (const name of await readdir(join(root, shard))) names.push(name);
    }
    return names;
  }
  const s3 = minioClientFor(inject("minio")!);
  const s3Bucket = `${engram.config.s3.bucketPrefix}${bucket}`;
  if (!(await s3.bucketExists(s3Bucket))) return [];
  const names: string[] = [];
  for await (const item of s3.listObjectsV2(s3Bucket, "", true) as AsyncIterable<{ name?: string }>) {
    if (item.name !== undefined) names.push(item.name);
  }
  return names;
}

/** Tells whether the blob store has a container for the bucket (always true on the filesystem once written). */
export async function physicalBucketExists(engram: TestEngram, bucket: string): Promise<boolean> {
  if (engram.config.blobStore === "fs") return true;
  return minioClientFor(inject("minio")!).bucketExists(`${engram.config.s3.bucketPrefix}${bucket}`);
}
