/*
 * Converters between service records and the generated Protobuf messages.
 * int64 fields arrive as bigint; the services use numbers, which hold every
 * size up to 2^53 bytes (8 PiB), far above the maximum object size.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

import { ObjectChecksumsSchema, ObjectSchema, StorageClass, type Object$ as ObjectMessage, type ObjectChecksums, type ObjectSpec } from "../../gen/engram/v1/object_pb.js";
import { STORAGE_CLASSES, type ObjectRecord, type StorageClassName } from "../metadata/metadata-store.js";
import { invalidArgument } from "../service/errors.js";
import type { UploadSpec } from "../service/upload.js";

export const DEFAULT_CONTENT_TYPE = "application/octet-stream";

/** Converts an int64 field to a number, rejecting values past 2^53. */
export function numberFromInt64(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw invalidArgument(`${field} ${value} is out of range: give a value between ${Number.MIN_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}`);
  }
  return Number(value);
}

export function storageClassFromProto(value: StorageClass): StorageClassName {
  switch (value) {
    case StorageClass.UNSPECIFIED:
    case StorageClass.STANDARD:
      return "STANDARD";
    case StorageClass.REDUCED_REDUNDANCY:
      return "REDUCED_REDUNDANCY";
    case StorageClass.GLACIER:
      return "GLACIER";
    case StorageClass.DEEP_ARCHIVE:
      return "DEEP_ARCHIVE";
    default:
      throw invalidArgument(`storage_class ${value} is unknown: use one of ${STORAGE_CLASSES.join(", ")}`);
  }
}

export function storageClassToProto(value: StorageClassName): StorageClass {
  return StorageClass[value];
}

export function uploadSpecFromProto(spec: ObjectSpec): UploadSpec {
  return {
    bucket: spec.bucket,
    key: spec.key,
    contentType: spec.contentType === "" ? DEFAULT_CONTENT_TYPE : spec.contentType,
    metadata: { ...spec.metadata },
    tags: { ...spec.tags },
    storageClass: storageClassFromProto(spec.storageClass),
    size: spec.size === undefined ? undefined : numberFromInt64(spec.size, "size"),
    expectedSha256: sha256FromProto(spec.expectedChecksums),
    expectedCrc32c: spec.expectedChecksums?.crc32c,
    ifGenerationMatch: spec.ifGenerationMatch === undefined ? undefined : numberFromInt64(spec.ifGenerationMatch, "if_generation_match"),
  };
}

/** Returns a SHA-256 digest field as hex, or undefined when it is empty. */
export function sha256FromProto(checksums: ObjectChecksums | undefined): string | undefined {
  const digest = checksums?.sha256;
  if (digest === undefined || digest.length === 0) return undefined;
  if (digest.length !== 32) {
    throw invalidArgument(`expected sha256 has ${digest.length} bytes: a SHA-256 digest has 32 bytes`);
  }
  return Buffer.from(digest).toString("hex");
}

export function checksumsToProto(object: ObjectRecord): ObjectChecksums | undefined {
  if (object.deleteMarker) return undefined;
  return create(ObjectChecksumsSchema, { sha256: Buffer.from(object.sha256, "hex"), crc32c: object.crc32c });
}

export function objectToProto(object: ObjectRecord): ObjectMessage {
  return create(ObjectSchema, {
    bucket: object.bucket,
    key: object.key,
    generation: BigInt(object.generation),
    size: BigInt(object.size),
    contentType: object.contentType,
    storageClass: storageClassToProto(object.storageClass),
    metadata: { ...object.metadata },
    tags: { ...object.tags },
    checksums: checksumsToProto(object),
    etag: object.etag,
    createTime: timestampFromDate(object.createdAt),
    ...(object.lastReadAt ? { lastReadTime: timestampFromDate(object.lastReadAt) } : {}),
    readCount: BigInt(object.readCount),
    deleteMarker: object.deleteMarker,
    noncurrent: !object.live,
    ...(object.noncurrentAt ? { noncurrentTime: timestampFromDate(object.noncurrentAt) } : {}),
  });
}
