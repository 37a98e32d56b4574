import { randomUUID } from "node:crypto";

import type { BlobRef, BlobStore } from "../blob/blob-store.js";
import type { MetadataStore, ObjectRecord } from "../metadata/metadata-store.js";
import { requireWritableBucket } from "./buckets.js";
import { StorageError, invalidArgument, notFound } from "./errors.js";
import { validateKey } from "./names.js";

export interface RestoreRequestSpec {
  readonly bucket: string;
  readonly key: string;
  /** Generation to copy. */
  readonly generation: number;
  readonly ifGenerationMatch: number | undefined;
}

/**
 * Restores an older version: the blob store copies its blob to a fresh
 * version id, and the copy is committed as a new generation, so no bytes
 * pass through Engram. The copy's blob headers record the new generation,
 * so a rebuild of the index also finds the restored version as the newest.
 */
export class RestoreService {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
  ) {}

  async restore(request: RestoreRequestSpec): Promise<ObjectRecord> {
    validateKey(request.key);
    if (!Number.isSafeInteger(request.generation) || request.generation <= 0) {
      throw invalidArgument(`generation ${request.generation} is invalid: give the generation to restore, as ListObjects with versions set lists it`);
    }
    await requireWritableBucket(this.metadata, request.bucket);
    const source = await this.metadata.getObject(request.bucket, request.key, request.generation);
    if (!source) {
      throw notFound(`generation ${request.generation} of ${request.bucket}/${request.key} not found: list the versions with ListObjects and versions set`);
    }
    if (source.deleteMarker) {
      throw new StorageError(
        "failed_precondition",
        `generation ${request.generation} of ${request.bucket}/${request.key} is a delete marker and has no content: restore a generation that is not a delete marker`,
      );
    }

    const generation = await this.metadata.reserveGeneration();
    const target: BlobRef = { bucket: source.bucket, key: source.key, versionId: randomUUID() };
    const { contentType, storageClass, metadata, tags, sha256, crc32c, size } = source;
    const content = { contentType, storageClass, metadata, tags, sha256, crc32c, size };
    await this.blobs.copy(source, target, { generation, ...content });
    try {
      return await this.metadata.commitObject(
        { bucket: source.bucket, key: source.key, generation, versionId: target.versionId, etag: source.etag, ...content },
        request.ifGenerationMatch,
      );
    } catch (err) {
      await this.blobs.delete(target).catch(() => undefined);
      throw err;
    }
  }
}
