/*
 * Multipart uploads. A session row in the metadata store contains the object
 * spec, the reserved generation and the part size, so any replica can take
 * any call. Each part attempt streams into a blob of its own, named
 * <session version id>.part-<number>.<attempt uuid> under the object's key,
 * and is recorded only when complete. A retried part replaces the row in
 * one transaction, so exactly one attempt is recorded however the attempts
 * overlap, and the replaced blob goes to the blob sweeper.
 *
 * Complete reads the listed parts in order, computing the whole-object
 * SHA-256 and CRC32C on the way and checking each part's SHA-256 against
 * the one recorded at upload. SHA-256 cannot be combined from per-part
 * digests, and Node's hash exposes no state to persist between parts, so
 * one sequential pass over the bytes is the only way to get the digest.
 * A store that can join blobs itself (S3, with UploadPartCopy) then joins
 * them. Otherwise, as on the filesystem or for segments under 5 MiB, the
 * same pass writes the joined blob through the store's ordinary writer.
 * Memory stays bounded by one read buffer and the writer's buffers.
 *
 * NOTE: Complete reads the whole object once, so for 100 GB it takes as
 * long as reading 100 GB from the store, and clients should give it a
 * deadline to match.
 */
import { randomUUID } from "node:crypto";

import type { BlobHeaders, BlobRef, BlobStore } from "../blob/blob-store.js";
import type { MetadataStore, ObjectRecord, PartRecord, UploadSessionRecord } from "../metadata/metadata-store.js";
import { abortable } from "./abortable.js";
import { requireBucket, requireWritableBucket } from "./buckets.js";
import { ObjectHasher, checkChunk } from "./checksum.js";
import { StorageError, invalidArgument, notFound } from "./errors.js";
import type { Limits } from "./limits.js";
import { validateBucketName } from "./names.js";
import { newObjectOf } from "./new-object.js";
import { checkPreconditionEarly, validateUploadSpec, verifyChecksums, type UploadChunk, type UploadSpec } from "./upload.js";

const MiB = 1024 * 1024;
/** Part numbers run from 1 to this, as in S3. */
export const MAX_PART_NUMBER = 10_000;
/** Every part but the last must have at least this many bytes, as in S3. */
export const MIN_PART_BYTES = 5 * MiB;
/** Largest part, as in S3. */
export const MAX_PART_BYTES = 5 * 1024 * MiB;
/** Part size recommended when the client declares neither the total size nor a part size. */
const DEFAULT_PART_BYTES = 16 * MiB;

/** First message of a part stream. */
export interface PartHead {
  readonly uploadId: string;
  readonly partNumber: number;
  /** Declared part size; any other length fails the part. */
  readonly size: number | undefined;
  readonly expectedSha256: string | undefined;
  readonly expectedCrc32c: number | undefined;
}

/** A part to join, in the order the client lists them. */
export interface CompletedPartSpec {
  readonly partNumber: number;
  /** Hex SHA-256 the stored part must have, if the client gives one. */
  readonly sha256: string | undefined;
}

export interface ListUploadsRequestSpec {
  readonly bucket: string;
  readonly prefix: string;
  /** 0 means the maximum. */
  readonly pageSize: number;
  readonly pageToken: string;
}

export class MultipartService {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly limits: Limits,
    private readonly expiryMs: number,
  ) {}

  /**
   * Validates the spec and the part size, reserves a generation and records
   * the session. A resumable session takes its parts as consecutive segments.
   */
  async create(spec: UploadSpec, partSize: number | undefined, resumable = false): Promise<UploadSessionRecord> {
    validateUploadSpec(spec, this.limits);
    const chosenPartSize = this.partSizeOf(spec.size, partSize);
    await requireWritableBucket(this.metadata, spec.bucket);
    await checkPreconditionEarly(this.metadata, spec);

    const generation = await this.metadata.reserveGeneration();
    const { bucket, key, ...stored } = spec;
    return this.metadata.createUploadSession(
      { uploadId: randomUUID(), bucket, key, generation, versionId: randomUUID(), spec: stored, partSize: chosenPartSize, resumable },
      this.expiryMs,
    );
  }

  /**
   * Streams one part into a blob of its own and records it. Everything
   * that can be checked from the first message is checked before the blob
   * is created.
   */
  async uploadPart(head: PartHead, chunks: AsyncIterable<UploadChunk>, signal?: AbortSignal): Promise<{ part: PartRecord; expiresAt: Date }> {
    const session = await this.requireSession(head.uploadId);
    this.validatePartHead(session, head);

    const ref = partBlobRef(session, String(head.partNumber));
    const writer = await this.blobs.createWriter(ref, { size: head.size, signal, generation: session.generation, contentType: "application/octet-stream" });
    try {
      const maxSize = head.size ?? this.expectedPartSize(session, head.partNumber) ?? MAX_PART_BYTES;
      const hasher = await this.receivePart(head, maxSize, abortable(chunks, signal, "part upload"), (data) => writer.write(data));
      const { sha256, crc32c } = hasher.digest();
      verifyPartChecksums(head, sha256, crc32c);
      this.checkPartSizeKnown(session, head.partNumber, hasher.size);

      await writer.finish(partBlobHeaders(session, sha256, crc32c, hasher.size));
      signal?.throwIfAborted();
      return await this.metadata.recordPart(
        { uploadId: session.uploadId, partNumber: head.partNumber, versionId: ref.versionId, size: hasher.size, sha256, crc32c },
        this.expiryMs,
      );
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  async listParts(uploadId: string): Promise<{ parts: PartRecord[]; expiresAt: Date }> {
    const session = await this.requireSession(uploadId);
    return { parts: await this.metadata.listParts(uploadId), expiresAt: session.expiresAt };
  }

  async listUploads(request: ListUploadsRequestSpec): Promise<{ uploads: UploadSessionRecord[]; nextPageToken: string }> {
    validateBucketName(request.bucket);
    await requireBucket(this.metadata, request.bucket);
    const max = this.limits.maxListPageSize;
    if (!Number.isInteger(request.pageSize) || request.pageSize < 0 || request.pageSize > max) {
      throw invalidArgument(`page_size ${request.pageSize} is invalid: give 1 to ${max}, or 0 for ${max}`);
    }
    const pageSize = request.pageSize === 0 ? max : request.pageSize;
    const after = request.pageToken === "" ? undefined : decodeUploadsToken(request.pageToken);

    const rows = await this.metadata.listUploadSessions({ bucket: request.bucket, prefix: request.prefix, after, limit: pageSize + 1 });
    if (rows.length <= pageSize) return { uploads: rows, nextPageToken: "" };
    const uploads = rows.slice(0, pageSize);
    const last = uploads[uploads.length - 1]!;
    return { uploads, nextPageToken: encodeUploadsToken(last) };
  }

  /**
   * Joins the listed parts into a fresh blob and commits the object in
   * the transaction that removes the session.
   */
  async complete(
    uploadId: string,
    listed: readonly CompletedPartSpec[],
    expected: { sha256: string | undefined; crc32c: number | undefined },
    signal?: AbortSignal,
  ): Promise<ObjectRecord> {
    const session = await this.requireSession(uploadId);
    if (session.resumable) {
      throw invalidArgument(`upload ${uploadId} is a resumable upload: finish it with finish_write on Upload or WriteChunk`);
    }
    const parts = await this.resolveParts(session, listed);
    return this.joinAndCommit(session, parts, expected, signal);
  }

  /**
   * Streams `parts` in order into a fresh blob of the object, checks the
   * sizes and checksums, and commits the object in the transaction that
   * ends the session.
   */
  async joinAndCommit(
    session: UploadSessionRecord,
    parts: readonly PartRecord[],
    expected: { sha256: string | undefined; crc32c: number | undefined },
    signal?: AbortSignal,
  ): Promise<ObjectRecord> {
    const { uploadId } = session;
    const size = parts.reduce((sum, part) => sum + part.size, 0);
    if (session.spec.size !== undefined && size !== session.spec.size) {
      throw new StorageError(
        "out_of_range",
        `the listed parts have ${size} bytes but the upload declared a size of ${session.spec.size} bytes: list every part, or upload the missing ones`,
      );
    }
    if (size > this.limits.maxObjectBytes) {
      throw invalidArgument(`the listed parts have ${size} bytes, more than the maximum object size of ${this.limits.maxObjectBytes} bytes`);
    }
    await checkPreconditionEarly(this.metadata, { bucket: session.bucket, key: session.key, ifGenerationMatch: session.spec.ifGenerationMatch });

    const ref: BlobRef = { bucket: session.bucket, key: session.key, versionId: randomUUID() };
    const writerOptions = { size, signal, generation: session.generation, contentType: session.spec.contentType };
    const joinInStore = this.blobs.concat !== undefined && this.blobs.writeHeaders !== undefined && parts.slice(0, -1).every((part) => part.size >= MIN_PART_BYTES);
    const writer = joinInStore ? undefined : await this.blobs.createWriter(ref, writerOptions);
    const discard = async (): Promise<void> => {
      if (writer) await writer.abort();
      else await this.blobs.delete(ref).catch(() => undefined);
    };
    try {
      // With concat the store joins the parts itself, and this pass only
      // reads them for the digests.
      const hasher = new ObjectHasher();
      const write = writer ? (data: Uint8Array) => writer.write(data) : async () => {};
      for (const part of parts) {
        await this.copyPart(session, part, hasher, write, signal);
      }
      const { sha256, crc32c } = hasher.digest();
      verifyChecksums(session.spec, sha256, crc32c);
      verifyChecksums({ expectedSha256: expected.sha256, expectedCrc32c: expected.crc32c }, sha256, crc32c);

      const { spec } = session;
      const headers = {
        generation: session.generation,
        contentType: spec.contentType,
        storageClass: spec.storageClass,
        metadata: spec.metadata,
        tags: spec.tags,
        sha256,
        crc32c,
        size,
      };
      if (writer) {
        await writer.finish(headers);
      } else {
        const sources = parts.map((part) => ({ bucket: session.bucket, key: session.key, versionId: part.versionId }));
        await this.blobs.concat!(ref, sources, writerOptions);
        await this.blobs.writeHeaders!(ref, headers);
      }
      signal?.throwIfAborted();

      return await this.metadata.completeUpload(uploadId, parts, newObjectOf(ref, headers), spec.ifGenerationMatch);
    } catch (err) {
      await discard();
      throw err;
    }
  }

  async abort(uploadId: string): Promise<void> {
    await this.metadata.abortUpload(uploadId);
  }

  /** Returns an unexpired session; a finished one only with `allowFinished`. */
  async requireSession(uploadId: string, allowFinished = false): Promise<UploadSessionRecord> {
    if (uploadId === "") {
      throw invalidArgument("upload_id is empty: give the upload_id that CreateMultipartUpload or StartResumableWrite returned");
    }
    const session = await this.metadata.getUploadSession(uploadId);
    if (!session || (!allowFinished && session.finishedGeneration !== undefined)) {
      throw notFound(`upload ${JSON.stringify(uploadId)} not found: it was completed, aborted or has expired; start a new upload`);
    }
    return session;
  }

  /** Returns the part size to use, or rejects one outside 5 MiB to 5 GiB or one that needs too many parts. */
  private partSizeOf(declaredSize: number | undefined, requested: number | undefined): number {
    if (requested !== undefined && (!Number.isSafeInteger(requested) || requested < MIN_PART_BYTES || requested > MAX_PART_BYTES)) {
      throw invalidArgument(`part_size ${requested} is out of range: give ${MIN_PART_BYTES} to ${MAX_PART_BYTES} bytes (5 MiB to 5 GiB)`);
    }
    if (declaredSize === undefined) return requested ?? DEFAULT_PART_BYTES;

    const partSize = requested ?? Math.max(DEFAULT_PART_BYTES, Math.ceil(declaredSize / MAX_PART_NUMBER / MiB) * MiB);
    const partCount = Math.ceil(declaredSize / partSize);
    if (partCount > MAX_PART_NUMBER) {
      const smallest = Math.ceil(declaredSize / MAX_PART_NUMBER);
      throw invalidArgument(
        `declared size of ${declaredSize} bytes needs ${partCount} parts of ${partSize} bytes, more than the maximum of ${MAX_PART_NUMBER}: use a part_size of at least ${smallest} bytes`,
      );
    }
    if (partSize > MAX_PART_BYTES) {
      throw invalidArgument(`declared size of ${declaredSize} bytes needs parts larger than ${MAX_PART_BYTES} bytes: the maximum multipart object is ${MAX_PART_NUMBER} parts of 5 GiB`);
    }
    return partSize;
  }

  /** Highest part number the session accepts: bounded by the declared size when there is one. */
  private partCountOf(session: UploadSessionRecord): number {
    if (session.spec.size === undefined) return MAX_PART_NUMBER;
    return Math.max(1, Math.ceil(session.spec.size / session.partSize));
  }

  /** Checks the part number and the declared part size of a part about to be sent. */
  validatePartHead(session: UploadSessionRecord, head: PartHead): void {
    if (!Number.isInteger(head.partNumber) || head.partNumber < 1 || head.partNumber > MAX_PART_NUMBER) {
      throw invalidArgument(`part_number ${head.partNumber} is out of range: give 1 to ${MAX_PART_NUMBER}`);
    }
    const partCount = this.partCountOf(session);
    if (head.partNumber > partCount) {
      throw invalidArgument(
        `part_number ${head.partNumber} is out of range: the declared size of ${session.spec.size} bytes in parts of ${session.partSize} bytes has parts 1 to ${partCount}`,
      );
    }
    if (head.size === undefined) return;
    if (!Number.isSafeInteger(head.size) || head.size < 0 || head.size > MAX_PART_BYTES) {
      throw invalidArgument(`part size ${head.size} is out of range: give 0 to ${MAX_PART_BYTES} bytes`);
    }
    this.checkPartSizeKnown(session, head.partNumber, head.size);
  }

  /**
   * Returns the size a part must have when the upload declared its total
   * size: part_size for every part but the last, and the rest for the
   * last. Without a declared size, parts may differ, and only Complete can
   * check the 5 MiB minimum.
   */
  expectedPartSize(session: UploadSessionRecord, partNumber: number): number | undefined {
    if (session.spec.size === undefined) return undefined;
    const partCount = this.partCountOf(session);
    return partNumber < partCount ? session.partSize : session.spec.size - (partCount - 1) * session.partSize;
  }

  /** Rejects a part whose size does not fit the declared total size, or one under 5 MiB that cannot be the last. */
  checkPartSizeKnown(session: UploadSessionRecord, partNumber: number, size: number): void {
    const expected = this.expectedPartSize(session, partNumber);
    if (expected === undefined || size === expected) return;
    const partCount = this.partCountOf(session);
    throw invalidArgument(
      `part ${partNumber} has ${size} bytes, but the declared object size of ${session.spec.size} bytes in parts of ${session.partSize} bytes ` +
        `needs ${expected} bytes for it: send parts 1 to ${partCount - 1} with part_size bytes each and part ${partCount} with the rest`,
    );
  }

  /** Reads a part stream, checking offsets, chunk sizes, chunk checksums and the part's size limit. */
  private async receivePart(head: PartHead, maxSize: number, chunks: AsyncIterable<UploadChunk>, write: (data: Uint8Array) => Promise<void>): Promise<ObjectHasher> {
    const hasher = new ObjectHasher();
    let finished = false;

    for await (const chunk of chunks) {
      if (finished) {
        throw invalidArgument("message received after finish_write: finish_write must be set on the last message only");
      }
      if (chunk.writeOffset !== hasher.size) {
        throw invalidArgument(`write_offset is ${chunk.writeOffset} but ${hasher.size} bytes of the part were received so far: send chunks in order`);
      }
      const chunkCrc32c = checkChunk(chunk.data, chunk.crc32c, chunk.writeOffset, this.limits.maxUploadChunkBytes, "retry the part");
      if (hasher.size + chunk.data.byteLength > maxSize) {
        throw head.size === undefined
          ? invalidArgument(`part ${head.partNumber} exceeds its maximum of ${maxSize} bytes: send part_size bytes per part, the rest in the last one, and at most ${MAX_PART_BYTES} bytes without a declared object size`)
          : new StorageError("out_of_range", `part exceeds its declared size of ${head.size} bytes: declare the real size`);
      }

      hasher.update(chunk.data, chunkCrc32c);
      if (chunk.data.byteLength > 0) await write(chunk.data);
      finished = chunk.finishWrite;
    }

    if (!finished) {
      throw invalidArgument(`part stream ended after ${hasher.size} bytes without finish_write: the part was not stored; send it again`);
    }
    if (head.size !== undefined && hasher.size !== head.size) {
      throw new StorageError("out_of_range", `part has ${hasher.size} bytes but declared a size of ${head.size} bytes: the part was not stored`);
    }
    return hasher;
  }

  /** Checks the completion list against the stored parts and returns those parts in order. */
  private async resolveParts(session: UploadSessionRecord, listed: readonly CompletedPartSpec[]): Promise<PartRecord[]> {
    if (listed.length === 0) {
      throw invalidArgument("parts is empty: list every part of the object in increasing part_number order");
    }
    for (let i = 1; i < listed.length; i++) {
      if (listed[i]!.partNumber <= listed[i - 1]!.partNumber) {
        throw invalidArgument(
          `parts are out of order: part ${listed[i]!.partNumber} follows part ${listed[i - 1]!.partNumber}; list each part once, in increasing part_number order`,
        );
      }
    }

    const stored = new Map((await this.metadata.listParts(session.uploadId)).map((part) => [part.partNumber, part]));
    const parts: PartRecord[] = [];
    for (const [index, entry] of listed.entries()) {
      const part = stored.get(entry.partNumber);
      if (!part) {
        throw invalidArgument(`part ${entry.partNumber} was not uploaded: upload it, or leave it out of parts; ListParts shows the stored parts`);
      }
      if (entry.sha256 !== undefined && entry.sha256 !== part.sha256) {
        throw invalidArgument(`part ${entry.partNumber} has sha256 ${part.sha256}, not the listed ${entry.sha256}: it was replaced; list it with its current checksum or upload it again`);
      }
      if (index < listed.length - 1 && part.size < MIN_PART_BYTES) {
        throw invalidArgument(`part ${entry.partNumber} has ${part.size} bytes: every part but the last must have at least ${MIN_PART_BYTES} bytes (5 MiB)`);
      }
      parts.push(part);
    }
    return parts;
  }

  /** Streams one stored part into the joined blob, checking it against the SHA-256 recorded at upload. */
  private async copyPart(
    session: UploadSessionRecord,
    part: PartRecord,
    objectHasher: ObjectHasher,
    write: (data: Uint8Array) => Promise<void>,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const partHasher = new ObjectHasher();
    const ref: BlobRef = { bucket: session.bucket, key: session.key, versionId: part.versionId };
    const stream = await this.blobs.read(ref, { start: 0, end: part.size }, signal);
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        signal?.throwIfAborted();
        partHasher.update(chunk);
        objectHasher.update(chunk);
        await write(chunk);
      }
    } finally {
      stream.destroy();
    }
    const { sha256 } = partHasher.digest();
    if (partHasher.size !== part.size || sha256 !== part.sha256) {
      throw new StorageError("data_loss", `stored part ${part.partNumber} of upload ${session.uploadId} no longer matches its checksum: upload the part again`);
    }
  }
}

/** Names the blob of one attempt at a part, or of one segment of a resumable upload. */
export function partBlobRef(session: UploadSessionRecord, label: string): BlobRef {
  return { bucket: session.bucket, key: session.key, versionId: `${session.versionId}.part-${label}.${randomUUID()}` };
}

/** Returns the headers of a part, segment or chunk blob: those of a plain byte blob of the session's generation. */
export function partBlobHeaders(session: UploadSessionRecord, sha256: string, crc32c: number, size: number): BlobHeaders {
  return { generation: session.generation, contentType: "application/octet-stream", storageClass: session.spec.storageClass, metadata: {}, tags: {}, sha256, crc32c, size };
}

/** Rejects a part whose digests differ from the ones the client expects. */
export function verifyPartChecksums(head: PartHead, sha256: string, crc32c: number): void {
  if (head.expectedSha256 !== undefined && head.expectedSha256 !== sha256) {
    throw invalidArgument(`sha256 of part ${head.partNumber} is ${sha256} but ${head.expectedSha256} was expected: the part was not stored; send it again`);
  }
  if (head.expectedCrc32c !== undefined && head.expectedCrc32c !== crc32c) {
    throw invalidArgument(`crc32c of part ${head.partNumber} is ${crc32c} but ${head.expectedCrc32c} was expected: the part was not stored; send it again`);
  }
}

function encodeUploadsToken(last: UploadSessionRecord): string {
  return Buffer.from(JSON.stringify({ key: last.key, uploadId: last.uploadId })).toString("base64url");
}

function decodeUploadsToken(token: string): { key: string; uploadId: string } {
  try {
    const cursor = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { key?: unknown; uploadId?: unknown };
    if (typeof cursor.key === "string" && typeof cursor.uploadId === "string") return { key: cursor.key, uploadId: cursor.uploadId };
  } catch {
    // Falls through to the error below.
  }
  throw invalidArgument("page_token is invalid: pass the next_page_token of the previous page unchanged");
}
