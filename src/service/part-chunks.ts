/*
 * Parts sent in unary calls, one chunk per call, for clients that cannot
 * stream a request body. Each chunk is stored as a blob of its own, named
 * <session version id>.part-<number>-at-<offset>.<uuid>, and recorded in
 * the metadata store, so the next chunk may reach any replica. The persisted
 * size of a part is the sum of its recorded chunks and never goes down.
 * The call with finish_write joins the chunks into one part blob, or uses
 * the only chunk as the part blob, and records the part as UploadPart does.
 * Memory stays bounded by one chunk and one read buffer.
 */
import type { BlobRef, BlobStore, BlobWriter } from "../blob/blob-store.js";
import type { MetadataStore, PartChunkRecord, PartRecord, UploadSessionRecord } from "../metadata/metadata-store.js";
import { ObjectHasher, checkChunk } from "./checksum.js";
import { StorageError, invalidArgument } from "./errors.js";
import type { Limits } from "./limits.js";
import { MAX_PART_BYTES, partBlobHeaders, partBlobRef, verifyPartChecksums, type MultipartService, type PartHead } from "./multipart.js";

/** One unary call's chunk of a part, with the part's declared size and checksums. */
export interface PartChunkRequest extends PartHead {
  readonly writeOffset: number;
  readonly data: Uint8Array;
  /** CRC32C of `data`, when the client sends one. */
  readonly crc32c: number | undefined;
  readonly finishWrite: boolean;
}

export interface PartChunkStatus {
  /** Bytes of the part persisted so far. */
  readonly persistedSize: number;
  /** The recorded part, after finish_write. */
  readonly part: PartRecord | undefined;
  readonly expiresAt: Date;
}

/** A chunk blob written by this call, with its digests and the upload's new expiry. */
interface WrittenChunk {
  readonly record: PartChunkRecord;
  readonly sha256: string;
  readonly crc32c: number;
  readonly expiresAt: Date;
}

export class PartChunkService {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly limits: Limits,
    private readonly multipart: MultipartService,
    private readonly expiryMs: number,
  ) {}

  /**
   * Stores the part of the chunk at or after the part's persisted size and,
   * on finish_write, records the part. Every check that the request allows
   * runs before a byte is stored.
   */
  async write(request: PartChunkRequest, signal?: AbortSignal): Promise<PartChunkStatus> {
    const session = await this.multipart.requireSession(request.uploadId);
    this.multipart.validatePartHead(session, request);
    this.checkChunk(request);

    const stored = await this.metadata.listPartChunks(session.uploadId, request.partNumber);
    const persisted = stored.reduce((sum, chunk) => sum + chunk.size, 0);
    if (stored.length === 0 && request.writeOffset > 0 && request.finishWrite) {
      // A retried final call whose first attempt recorded the part finds no chunks left.
      const recorded = await this.recordedPart(session, request);
      if (recorded) return { persistedSize: recorded.size, part: recorded, expiresAt: session.expiresAt };
    }
    if (request.writeOffset > persisted) {
      throw invalidArgument(
        `write_offset ${request.writeOffset} is past the ${persisted} bytes of part ${request.partNumber} stored so far: send the chunk at write_offset ${persisted}`,
      );
    }

    const data = request.data.subarray(Math.min(persisted - request.writeOffset, request.data.byteLength));
    const end = persisted + data.byteLength;
    this.checkPartEnd(session, request, end);

    let expiresAt = session.expiresAt;
    let written: WrittenChunk | undefined;
    if (data.byteLength > 0) {
      written = await this.storeChunk(session, request.partNumber, persisted, data, signal);
      expiresAt = written.expiresAt;
    }
    if (!request.finishWrite) {
      return { persistedSize: end, part: undefined, expiresAt };
    }

    const chunks = written ? [...stored, written.record] : stored;
    let finished;
    try {
      finished = await this.finishPart(session, request, chunks, written, signal);
    } catch (err) {
      // Chunks whose part fails its checksums are dropped, so that the
      // client can send the part again from offset 0.
      if (err instanceof StorageError && err.kind === "invalid_argument") {
        await this.metadata.removePartChunks(session.uploadId, request.partNumber);
      }
      throw err;
    }
    return { persistedSize: finished.part.size, part: finished.part, expiresAt: finished.expiresAt };
  }

  private checkChunk(request: PartChunkRequest): void {
    if (!Number.isSafeInteger(request.writeOffset) || request.writeOffset < 0) {
      throw invalidArgument(`write_offset ${request.writeOffset} is invalid: give the offset of the chunk in the part, 0 or more`);
    }
    checkChunk(request.data, request.crc32c, request.writeOffset, this.limits.maxUploadChunkBytes, "send it again");
  }

  /** Rejects a chunk that takes the part past its size limit, or a finished part of the wrong size. */
  private checkPartEnd(session: UploadSessionRecord, request: PartChunkRequest, end: number): void {
    const maxSize = request.size ?? this.multipart.expectedPartSize(session, request.partNumber) ?? MAX_PART_BYTES;
    if (end > maxSize) {
      throw request.size === undefined
        ? invalidArgument(`part ${request.partNumber} exceeds its maximum of ${maxSize} bytes: send part_size bytes per part, the rest in the last one, and at most ${MAX_PART_BYTES} bytes without a declared object size`)
        : new StorageError("out_of_range", `part exceeds its declared size of ${request.size} bytes: declare the real size`);
    }
    if (!request.finishWrite) return;
    if (request.size !== undefined && end !== request.size) {
      throw new StorageError("out_of_range", `part has ${end} bytes but declared a size of ${request.size} bytes: send the rest of the part, then finish_write`);
    }
    this.multipart.checkPartSizeKnown(session, request.partNumber, end);
  }

  private async recordedPart(session: UploadSessionRecord, request: PartChunkRequest): Promise<PartRecord | undefined> {
    const parts = await this.metadata.listParts(session.uploadId);
    const part = parts.find((candidate) => candidate.partNumber === request.partNumber);
    return part?.size === request.writeOffset + request.data.byteLength ? part : undefined;
  }

  private async storeChunk(
    session: UploadSessionRecord,
    partNumber: number,
    offset: number,
    data: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<WrittenChunk> {
    const ref = partBlobRef(session, `${partNumber}-at-${offset}`);
    const hasher = new ObjectHasher();
    hasher.update(data);
    const { sha256, crc32c } = hasher.digest();

    const writer = await this.blobs.createWriter(ref, { size: data.byteLength, signal, generation: session.generation, contentType: "application/octet-stream" });
    let finished = false;
    try {
      await writer.write(data);
      await writer.finish(partBlobHeaders(session, sha256, crc32c, data.byteLength));
      finished = true;
      signal?.throwIfAborted();
      const record: PartChunkRecord = { uploadId: session.uploadId, partNumber, writeOffset: offset, versionId: ref.versionId, size: data.byteLength };
      const { expiresAt } = await this.metadata.appendPartChunk(record, this.expiryMs);
      return { record, sha256, crc32c, expiresAt };
    } catch (err) {
      await this.discard(ref, writer, finished);
      throw err;
    }
  }

  /** Joins the chunks into the part blob, checks the part's checksums and records it. */
  private async finishPart(
    session: UploadSessionRecord,
    request: PartChunkRequest,
    chunks: readonly PartChunkRecord[],
    written: WrittenChunk | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ part: PartRecord; expiresAt: Date }> {
    const size = chunks.reduce((sum, chunk) => sum + chunk.size, 0);
    // The only chunk, written by this call, already is the whole part.
    if (chunks.length === 1 && written !== undefined) {
      verifyPartChecksums(request, written.sha256, written.crc32c);
      const part = { uploadId: session.uploadId, partNumber: request.partNumber, versionId: written.record.versionId, size, sha256: written.sha256, crc32c: written.crc32c };
      return this.metadata.finishPartChunks(part, chunks, this.expiryMs);
    }

    const ref = partBlobRef(session, String(request.partNumber));
    const writer = await this.blobs.createWriter(ref, { size, signal, generation: session.generation, contentType: "application/octet-stream" });
    let finished = false;
    try {
      const hasher = new ObjectHasher();
      for (const chunk of chunks) {
        await this.copyChunk(session, chunk, hasher, writer, signal);
      }
      const { sha256, crc32c } = hasher.digest();
      verifyPartChecksums(request, sha256, crc32c);

      await writer.finish(partBlobHeaders(session, sha256, crc32c, size));
      finished = true;
      signal?.throwIfAborted();
      const part = { uploadId: session.uploadId, partNumber: request.partNumber, versionId: ref.versionId, size, sha256, crc32c };
      return await this.metadata.finishPartChunks(part, chunks, this.expiryMs);
    } catch (err) {
      await this.discard(ref, writer, finished);
      throw err;
    }
  }

  private async copyChunk(session: UploadSessionRecord, chunk: PartChunkRecord, hasher: ObjectHasher, writer: BlobWriter, signal: AbortSignal | undefined): Promise<void> {
    const ref: BlobRef = { bucket: session.bucket, key: session.key, versionId: chunk.versionId };
    const stream = await this.blobs.read(ref, { start: 0, end: chunk.size }, signal);
    let copied = 0;
    try {
      for await (const data of stream as AsyncIterable<Buffer>) {
        signal?.throwIfAborted();
        hasher.update(data);
        copied += data.byteLength;
        await writer.write(data);
      }
    } finally {
      stream.destroy();
    }
    if (copied !== chunk.size) {
      throw new StorageError("data_loss", `stored chunk at offset ${chunk.writeOffset} of part ${chunk.partNumber} has ${copied} bytes, not ${chunk.size}: upload the part again`);
    }
  }

  /** Drops a blob this call wrote. A finished blob is deleted through the store, because its writer no longer owns it. */
  private async discard(ref: BlobRef, writer: BlobWriter, finished: boolean): Promise<void> {
    if (finished) await this.blobs.delete(ref).catch(() => undefined);
    else await writer.abort();
  }
}
