import type { Logger } from "pino";

import type { BlobStore } from "../blob/blob-store.js";
import type { BucketRecord, BucketSettings, MetadataStore, VersioningState } from "../metadata/metadata-store.js";
import { requireBucket } from "./buckets.js";
import { StorageError, invalidArgument } from "./errors.js";
import { validateLifecycleRules } from "./lifecycle-rules.js";
import { validateBucketName } from "./names.js";

/** Creates, reads, changes and deletes buckets, in the metadata and in the blob store. */
export class BucketService {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly log: Logger,
  ) {}

  listBuckets(): Promise<BucketRecord[]> {
    return this.metadata.listBuckets();
  }

  getBucket(name: string): Promise<BucketRecord> {
    return requireBucket(this.metadata, name);
  }

  /**
   * Creates the bucket's container in the blob store, then records the
   * bucket. A container left by a failed create is reused by the next one.
   */
  async createBucket(name: string, settings: BucketSettings): Promise<BucketRecord> {
    validateBucketName(name);
    validateLifecycleRules(settings.lifecycleRules);
    if (await this.metadata.getBucket(name)) {
      throw new StorageError("already_exists", `bucket ${name} already exists: choose another name`);
    }
    await this.blobs.ensureBuckets([name]);
    const bucket = await this.metadata.createBucket(name, settings);
    this.log.info({ bucket: name, versioning: settings.versioning }, "bucket created");
    return bucket;
  }

  async updateBucket(name: string, changes: Partial<BucketSettings>, ifMetagenerationMatch: number | undefined): Promise<BucketRecord> {
    const current = await requireBucket(this.metadata, name);
    if (changes.lifecycleRules !== undefined) {
      validateLifecycleRules(changes.lifecycleRules);
    }
    if (changes.versioning !== undefined) {
      checkVersioningChange(name, current.versioning, changes.versioning);
    }
    const bucket = await this.metadata.updateBucket(name, changes, ifMetagenerationMatch);
    this.log.info({ bucket: name, changed: Object.keys(changes), metageneration: bucket.metageneration }, "bucket updated");
    return bucket;
  }

  /**
   * Deletes an empty bucket from the metadata, then every blob left in its
   * container (blobs waiting for the sweeper, leftovers of failed uploads)
   * and the container itself.
   */
  async deleteBucket(name: string, ifMetagenerationMatch: number | undefined): Promise<void> {
    await requireBucket(this.metadata, name);
    await this.metadata.deleteBucket(name, ifMetagenerationMatch);
    // NOTE: a failure here leaves the container with unreferenced blobs. A
    // bucket created later under the same name reuses it, and only a
    // rebuild of the index would see those blobs.
    await this.blobs.removeBucket(name);
    this.log.info({ bucket: name }, "bucket deleted");
  }
}

/** Rejects a return to unversioned: once enabled, versioning can only be suspended, as in S3. */
function checkVersioningChange(name: string, from: VersioningState, to: VersioningState): void {
  if (to === "unversioned" && from !== "unversioned") {
    throw invalidArgument(`bucket ${name} has had versioning enabled, so it cannot become unversioned again: set versioning to suspended instead`);
  }
}
