import type { BlobHeaders, BlobRef } from "../blob/blob-store.js";
import type { NewObject, StorageClassName } from "../metadata/metadata-store.js";
import { etagOf } from "./checksum.js";

/**
 * Builds the metadata record of an object from its blob and the headers
 * stored with it, so that the record and the blob always agree.
 */
export function newObjectOf(ref: BlobRef, headers: BlobHeaders): NewObject {
  return {
    bucket: ref.bucket,
    key: ref.key,
    generation: headers.generation,
    versionId: ref.versionId,
    size: headers.size,
    contentType: headers.contentType,
    // Headers written by Engram carry one of the storage class names.
    storageClass: headers.storageClass as StorageClassName,
    metadata: headers.metadata,
    tags: headers.tags,
    sha256: headers.sha256,
    crc32c: headers.crc32c,
    etag: etagOf(headers.sha256),
  };
}
