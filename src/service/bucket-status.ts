import type { BucketStatus } from "../metadata/metadata-store.js";
import { StorageError } from "./errors.js";

/** Throws FAILED_PRECONDITION unless the bucket takes writes and deletes. */
export function assertWritable(bucket: string, status: BucketStatus | string): void {
  if (status === "active") return;
  throw new StorageError(
    "failed_precondition",
    `bucket ${bucket} is ${status} and accepts reads only: set its status to active with UpdateBucket to write or delete`,
  );
}
