import { randomUUID } from "node:crypto";

import type { BlobRef, BlobStore, BlobWriter } from "../blob/blob-store.js";
import type { MetadataStore, ObjectRecord, StorageClassName } from "../metadata/metadata-store.js";
import { abortable } from "./abortable.js";
import { ObjectHasher, checkChunk } from "./checksum.js";
import { newObjectOf } from "./new-object.js";
import { StorageError, invalidArgument } from "./errors.js";
import type { Limits } from "./limits.js";
import { validateBucketName, validateKey } from "./names.js";
import { requireWritableBucket } from "./buckets.js";

/** Properties of an object to create. */
export interface UploadSpec {
  readonly bucket: string;
  readonly key: string;
  readonly contentType: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tags: Readonly<Record<string, string>>;
  readonly storageClass: StorageClassName;
  /** Declared content length; any other length fails the upload. */
  readonly size: number | undefined;
  /** Hex SHA-256 the content must have. */
  readonly expectedSha256: string | undefined;
  readonly expectedCrc32c: number | undefined;
  /** Generation the live object must have; 0: it must not exist. */
  readonly ifGenerationMatch: number | undefined;
}

/** One message of an upload stream after the spec. */
export interface UploadChunk {
  readonly writeOffset: number;
  readonly data: Uint8Array;
  /** CRC32C of `data` alone, if the client sent one. */
  readonly crc32c: number | undefined;
  readonly finishWrite: boolean;
}

/**
 * Streams an upload into a fresh blob and commits it. The object becomes
 * visible only in the metadata transaction at the end; on any failure the
 * blob is removed and nothing is committed.
 */
export class UploadService {
  /** Uploads between their first message and their end, successful or not. */
  activeUploads = 0;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly limits: Limits,
  ) {}

  async upload(spec: UploadSpec, chunks: AsyncIterable<UploadChunk>, signal?: AbortSignal): Promise<ObjectRecord> {
    this.activeUploads += 1;
    try {
      return await this.store(spec, chunks, signal);
    } finally {
      this.activeUploads -= 1;
    }
  }

  private async store(spec: UploadSpec, chunks: AsyncIterable<UploadChunk>, signal?: AbortSignal): Promise<ObjectRecord> {
    validateUploadSpec(spec, this.limits);
    await requireWritableBucket(this.metadata, spec.bucket);
    await checkPreconditionEarly(this.metadata, spec);

    const generation = await this.metadata.reserveGeneration();
    const ref: BlobRef = { bucket: spec.bucket, key: spec.key, versionId: randomUUID() };
    const writer = await this.blobs.createWriter(ref, { size: spec.size, signal, generation, contentType: spec.contentType });
    try {
      const hasher = await this.receive(spec, abortable(chunks, signal, "upload"), writer);
      const { sha256, crc32c } = hasher.digest();
      verifyChecksums(spec, sha256, crc32c);

      const headers = {
        generation,
        contentType: spec.contentType,
        storageClass: spec.storageClass,
        metadata: spec.metadata,
        tags: spec.tags,
        sha256,
        crc32c,
        size: hasher.size,
      };
      await writer.finish(headers);
      signal?.throwIfAborted();

      return await this.metadata.commitObject(
        newObjectOf(ref, headers),
        spec.ifGenerationMatch,
      );
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  /** Reads every chunk into the writer, checking offsets, sizes and chunk checksums. */
  private async receive(spec: UploadSpec, chunks: AsyncIterable<UploadChunk>, writer: BlobWriter): Promise<ObjectHasher> {
    const hasher = new ObjectHasher();
    const maxSize = spec.size ?? this.limits.maxObjectBytes;
    let finished = false;

    for await (const chunk of chunks) {
      if (finished) {
        throw invalidArgument("message received after finish_write: finish_write must be set on the last message only");
      }
      if (chunk.writeOffset !== hasher.size) {
        throw invalidArgument(
          `write_offset is ${chunk.writeOffset} but ${hasher.size} bytes were received so far: send chunks in order, each at the offset where the previous ended`,
        );
      }
      const chunkCrc32c = checkChunk(chunk.data, chunk.crc32c, chunk.writeOffset, this.limits.maxUploadChunkBytes, "retry the upload");
      if (hasher.size + chunk.data.byteLength > maxSize) {
        throw spec.size === undefined
          ? invalidArgument(`upload exceeds the maximum object size of ${this.limits.maxObjectBytes} bytes`)
          : new StorageError("out_of_range", `upload exceeds its declared size of ${spec.size} bytes: declare the real size`);
      }

      hasher.update(chunk.data, chunkCrc32c);
      if (chunk.data.byteLength > 0) {
        await writer.write(chunk.data);
      }
      finished = chunk.finishWrite;
    }

    if (!finished) {
      throw invalidArgument(`upload stream ended after ${hasher.size} bytes without finish_write: nothing was stored; set finish_write on the last message`);
    }
    if (spec.size !== undefined && hasher.size !== spec.size) {
      throw new StorageError(
        "out_of_range",
        `upload has ${hasher.size} bytes but declared a size of ${spec.size} bytes: nothing was stored; declare the real size`,
      );
    }
    return hasher;
  }
}

export function verifyChecksums(spec: Pick<UploadSpec, "expectedSha256" | "expectedCrc32c">, sha256: string, crc32c: number): void {
  if (spec.expectedSha256 !== undefined && spec.expectedSha256 !== sha256) {
    throw invalidArgument(`sha256 of the upload is ${sha256} but ${spec.expectedSha256} was expected: nothing was stored; check the file and retry`);
  }
  if (spec.expectedCrc32c !== undefined && spec.expectedCrc32c !== crc32c) {
    throw invalidArgument(`crc32c of the upload is ${crc32c} but ${spec.expectedCrc32c} was expected: nothing was stored; check the file and retry`);
  }
}

function validateLabels(field: string, labels: Readonly<Record<string, string>>, maxBytes: number, maxCount: number): void {
  const entries = Object.entries(labels);
  if (entries.length > maxCount) {
    throw invalidArgument(`${field} has ${entries.length} entries: the maximum is ${maxCount}`);
  }
  let bytes = 0;
  for (const [name, value] of entries) {
    if (name === "") {
      throw invalidArgument(`${field} has an empty name: give every entry a name`);
    }
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value);
  }
  if (bytes > maxBytes) {
    throw invalidArgument(`${field} is ${bytes} bytes: the maximum is ${maxBytes} bytes of names and values`);
  }
}

/** Checks names, sizes, checksums and labels of an upload spec before any bytes flow. */
export function validateUploadSpec(spec: UploadSpec, limits: Limits): void {
  validateBucketName(spec.bucket);
  validateKey(spec.key);
  if (spec.size !== undefined) {
    if (!Number.isSafeInteger(spec.size) || spec.size < 0) {
      throw invalidArgument(`declared size ${spec.size} is invalid: give a size of 0 or more bytes`);
    }
    if (spec.size > limits.maxObjectBytes) {
      throw invalidArgument(`declared size of ${spec.size} bytes exceeds the maximum object size of ${limits.maxObjectBytes} bytes`);
    }
  }
  if (spec.expectedSha256 !== undefined && !/^[0-9a-f]{64}$/.test(spec.expectedSha256)) {
    throw invalidArgument("expected sha256 must be 32 bytes");
  }
  validateLabels("metadata", spec.metadata, limits.maxMetadataBytes, Number.POSITIVE_INFINITY);
  validateLabels("tags", spec.tags, limits.maxMetadataBytes, limits.maxTags);
}

/** Fails fast, before bytes flow; the commit transaction checks again atomically. */
export async function checkPreconditionEarly(metadata: MetadataStore, spec: Pick<UploadSpec, "bucket" | "key" | "ifGenerationMatch">): Promise<void> {
  if (spec.ifGenerationMatch === undefined) return;
  const current = await metadata.getObject(spec.bucket, spec.key);
  const actual = current?.generation ?? 0;
  if (actual !== spec.ifGenerationMatch) {
    const state = current ? `its live generation is ${actual}` : "it does not exist";
    throw new StorageError(
      "failed_precondition",
      `precondition failed for ${spec.bucket}/${spec.key}: if_generation_match is ${spec.ifGenerationMatch} but ${state}; read the object again and retry`,
    );
  }
}
