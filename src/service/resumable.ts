/*
 * Resumable single-stream uploads, on the multipart session machinery. The
 * stream is stored as consecutive segments, each a part blob recorded in
 * order with appendSegment. A segment is recorded when it reaches
 * SEGMENT_BYTES, when the stream ends, and when the stream fails or is
 * cancelled, so everything that arrived intact counts toward the persisted
 * size. finish_write joins the segments like CompleteMultipartUpload does.
 */
import type { BlobStore, BlobWriter } from "../blob/blob-store.js";
import type { MetadataStore, ObjectRecord, PartRecord, UploadSessionRecord } from "../metadata/metadata-store.js";
import { abortable } from "./abortable.js";
import { ObjectHasher, checkChunk } from "./checksum.js";
import { StorageError, invalidArgument, notFound } from "./errors.js";
import type { Limits } from "./limits.js";
import { partBlobHeaders, partBlobRef, type MultipartService } from "./multipart.js";
import type { UploadChunk, UploadSpec } from "./upload.js";

/** Size at which a segment is recorded, so a server crash loses at most this much plus one chunk. */
const SEGMENT_BYTES = 16 * 1024 * 1024;

export interface WriteStatus {
  /** Bytes persisted so far; never goes down. */
  readonly persistedSize: number;
  /** The committed object, once the upload is finished. */
  readonly object: ObjectRecord | undefined;
  /** True when this call committed the object, false when an earlier call did or none has yet. */
  readonly committedNow: boolean;
}

/** The segment being written: its blob, its offset in the object and its digests. */
interface OpenSegment {
  readonly writer: BlobWriter;
  readonly versionId: string;
  readonly offset: number;
  readonly hasher: ObjectHasher;
}

export class ResumableService {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly limits: Limits,
    private readonly multipart: MultipartService,
    private readonly expiryMs: number,
  ) {}

  async start(spec: UploadSpec): Promise<UploadSessionRecord> {
    return this.multipart.create(spec, undefined, true);
  }

  async status(uploadId: string): Promise<WriteStatus> {
    const session = await this.requireResumable(uploadId);
    if (session.finishedGeneration !== undefined) {
      return this.finishedStatus(session);
    }
    return { persistedSize: sizeOf(await this.metadata.listParts(uploadId)), object: undefined, committedNow: false };
  }

  /**
   * Appends chunks from the persisted size on, skipping data below it. On
   * finish_write joins the segments and commits the object. A finished
   * upload returns its object without reading the chunks.
   */
  async write(uploadId: string, chunks: AsyncIterable<UploadChunk>, signal?: AbortSignal): Promise<WriteStatus> {
    const session = await this.requireResumable(uploadId);
    if (session.finishedGeneration !== undefined) {
      return this.finishedStatus(session);
    }

    const maxSize = session.spec.size ?? this.limits.maxObjectBytes;
    let persisted = sizeOf(await this.metadata.listParts(uploadId));
    let segment: OpenSegment | undefined;
    let finished = false;

    const flush = async (): Promise<void> => {
      if (segment === undefined) return;
      const open = segment;
      segment = undefined;
      await this.recordSegment(session, open);
      persisted = open.offset + open.hasher.size;
    };

    try {
      for await (const chunk of abortable(chunks, signal, "upload")) {
        if (finished) {
          throw invalidArgument("message received after finish_write: finish_write must be set on the last message only");
        }
        const cursor = segment === undefined ? persisted : segment.offset + segment.hasher.size;
        const data = this.acceptChunk(chunk, cursor, maxSize, session);
        if (data.byteLength > 0) {
          segment ??= await this.openSegment(session, cursor, signal);
          segment.hasher.update(data);
          await segment.writer.write(data);
          if (segment.hasher.size >= SEGMENT_BYTES) await flush();
        }
        finished = chunk.finishWrite;
      }
      await flush();
    } catch (err) {
      // What arrived intact before the failure is kept, so the client can
      // resume from there. A segment that cannot be recorded is dropped by
      // recordSegment, and the client receives the first error.
      await flush().catch(() => undefined);
      throw err;
    }

    if (!finished) return { persistedSize: persisted, object: undefined, committedNow: false };
    if (session.spec.size !== undefined && persisted !== session.spec.size) {
      throw new StorageError("out_of_range", `upload has ${persisted} bytes but declared a size of ${session.spec.size} bytes: send the rest, then finish_write`);
    }
    const parts = await this.metadata.listParts(uploadId);
    const object = await this.multipart.joinAndCommit(session, parts, { sha256: undefined, crc32c: undefined }, signal);
    return { persistedSize: object.size, object, committedNow: true };
  }

  /** Checks one chunk and returns the part of its data at or after `cursor`. */
  private acceptChunk(chunk: UploadChunk, cursor: number, maxSize: number, session: UploadSessionRecord): Uint8Array {
    checkChunk(chunk.data, chunk.crc32c, chunk.writeOffset, this.limits.maxUploadChunkBytes, "send it again");
    if (chunk.writeOffset < 0 || chunk.writeOffset > cursor) {
      throw invalidArgument(`write_offset ${chunk.writeOffset} is invalid: the upload has ${cursor} bytes, so resume at write_offset ${cursor} or lower`);
    }

    const data = chunk.data.subarray(Math.min(cursor - chunk.writeOffset, chunk.data.byteLength));
    if (cursor + data.byteLength > maxSize) {
      throw session.spec.size === undefined
        ? invalidArgument(`upload exceeds the maximum object size of ${this.limits.maxObjectBytes} bytes`)
        : new StorageError("out_of_range", `upload exceeds its declared size of ${session.spec.size} bytes: declare the real size`);
    }
    return data;
  }

  private async openSegment(session: UploadSessionRecord, offset: number, signal: AbortSignal | undefined): Promise<OpenSegment> {
    const ref = partBlobRef(session, `at-${offset}`);
    const writer = await this.blobs.createWriter(ref, { signal, generation: session.generation, contentType: "application/octet-stream" });
    return { writer, versionId: ref.versionId, offset, hasher: new ObjectHasher() };
  }

  /** Finishes a segment's blob and appends it; drops the blob when it cannot be recorded. */
  private async recordSegment(session: UploadSessionRecord, segment: OpenSegment): Promise<void> {
    const { sha256, crc32c } = segment.hasher.digest();
    try {
      await segment.writer.finish(partBlobHeaders(session, sha256, crc32c, segment.hasher.size));
      await this.metadata.appendSegment(
        { uploadId: session.uploadId, versionId: segment.versionId, size: segment.hasher.size, sha256, crc32c },
        segment.offset,
        this.expiryMs,
      );
    } catch (err) {
      await segment.writer.abort();
      throw err;
    }
  }

  private async requireResumable(uploadId: string): Promise<UploadSessionRecord> {
    const session = await this.multipart.requireSession(uploadId, true);
    if (!session.resumable) {
      throw invalidArgument(`upload ${uploadId} is a multipart upload: send its data with UploadPart`);
    }
    return session;
  }

  private async finishedStatus(session: UploadSessionRecord): Promise<WriteStatus> {
    const object = await this.metadata.getObject(session.bucket, session.key, session.finishedGeneration);
    if (!object) {
      throw notFound(`upload ${session.uploadId} finished, but its object ${session.bucket}/${session.key} was since replaced or deleted`);
    }
    return { persistedSize: object.size, object, committedNow: false };
  }
}

function sizeOf(parts: readonly PartRecord[]): number {
  return parts.reduce((sum, part) => sum + part.size, 0);
}
