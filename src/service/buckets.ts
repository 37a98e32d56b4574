import type { BucketRecord, MetadataStore } from "../metadata/metadata-store.js";
import { assertWritable } from "./bucket-status.js";
import { notFound } from "./errors.js";
import { validateBucketName } from "./names.js";

/** Returns a bucket, or throws NOT_FOUND naming it. */
export async function requireBucket(metadata: MetadataStore, name: string): Promise<BucketRecord> {
  validateBucketName(name);
  const bucket = await metadata.getBucket(name);
  if (!bucket) {
    throw notFound(`bucket ${JSON.stringify(name)} not found: list buckets with ListBuckets`);
  }
  return bucket;
}

/** Returns a bucket that accepts writes; throws NOT_FOUND or FAILED_PRECONDITION. */
export async function requireWritableBucket(metadata: MetadataStore, name: string): Promise<BucketRecord> {
  const bucket = await requireBucket(metadata, name);
  assertWritable(name, bucket.status);
  return bucket;
}
