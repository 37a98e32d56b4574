import type { Logger } from "pino";

import type { BlobStore, StoredBlob } from "../blob/blob-store.js";
import type { MetadataStore } from "../metadata/metadata-store.js";
import { newObjectOf } from "./new-object.js";
import { StorageError } from "./errors.js";

const BATCH_SIZE = 500;

export interface RebuildReport {
  readonly bucket: string;
  /** Objects restored as live. */
  readonly restored: number;
  /** Older versions found and left out, because a newer generation of the key exists. */
  readonly superseded: number;
}

/**
 * Restores the metadata index from the blob store: for every key, the blob
 * with the highest generation becomes the live object. Only finished blobs
 * count (those with headers), so unfinished uploads stay invisible. The
 * buckets must hold no objects yet, so a rebuild never overwrites live
 * metadata.
 *
 * NOTE: a blob that was replaced or deleted but not yet swept is still in
 * the store, so a deleted object whose blob remains comes back as live.
 */
export async function rebuildIndex(metadata: MetadataStore, blobs: BlobStore, buckets: readonly string[], log: Logger): Promise<RebuildReport[]> {
  await metadata.ensureBuckets(buckets);
  for (const bucket of buckets) {
    const stats = await metadata.getBucketStats(bucket);
    if (stats.objectCount > 0) {
      throw new StorageError(
        "failed_precondition",
        `bucket ${bucket} already has ${stats.objectCount} objects in the metadata database: rebuild the index only into an empty database`,
      );
    }
  }

  const reports: RebuildReport[] = [];
  for (const bucket of buckets) {
    const newest = new Map<string, StoredBlob>();
    let found = 0;
    for await (const blob of blobs.scan(bucket)) {
      found += 1;
      const previous = newest.get(blob.ref.key);
      if (!previous || previous.headers.generation < blob.headers.generation) {
        newest.set(blob.ref.key, blob);
      }
    }

    const objects = [...newest.values()].map(({ ref, headers }) => newObjectOf(ref, headers));
    for (let start = 0; start < objects.length; start += BATCH_SIZE) {
      await metadata.restoreObjects(objects.slice(start, start + BATCH_SIZE));
    }
    const report = { bucket, restored: objects.length, superseded: found - objects.length };
    log.info(report, "bucket index rebuilt");
    reports.push(report);
  }
  return reports;
}

