import type { Readable } from "node:stream";

import type { BlobStore } from "../blob/blob-store.js";
import type { MetadataStore, ObjectRecord } from "../metadata/metadata-store.js";
import { crc32cCombine, crc32cOf } from "./checksum.js";
import { StorageError, invalidArgument, notFound } from "./errors.js";
import type { Limits } from "./limits.js";
import { validateBucketName, validateGeneration, validateKey } from "./names.js";
import type { ReadCounter } from "./read-counter.js";

export interface DownloadRequestSpec {
  readonly bucket: string;
  readonly key: string;
  /** 0 reads the live generation. */
  readonly generation: number;
  /** Negative counts from the end. */
  readonly readOffset: number;
  /** 0 reads to the end. */
  readonly readLimit: number;
}

export interface OpenedDownload {
  readonly object: ObjectRecord;
  /** [start, end) of the object. */
  readonly start: number;
  readonly end: number;
  /** Content chunks of at most the download chunk size. */
  readonly chunks: AsyncIterable<DownloadChunk>;
}

/** One chunk of content with its CRC32C, computed once for the message and for the whole-object check. */
export interface DownloadChunk {
  readonly content: Uint8Array;
  readonly crc32c: number;
}

/** Smallest chunk Download sends, however many downloads run at once. */
export const MIN_DOWNLOAD_CHUNK_BYTES = 64 * 1024;

export class DownloadService {
  /** Number of downloads between the opening of their blob and their end. */
  private streaming = 0;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly limits: Limits,
    private readonly reads: ReadCounter,
  ) {}

  /**
   * Resolves the object and the range, and returns the content as a lazy
   * stream: the blob is opened when the first chunk is pulled and closed as
   * soon as the consumer stops.
   */
  async open(request: DownloadRequestSpec, signal?: AbortSignal): Promise<OpenedDownload> {
    validateBucketName(request.bucket);
    validateKey(request.key);
    validateGeneration(request.generation);

    const object = await this.metadata.getObject(request.bucket, request.key, request.generation);
    if (!object) {
      const which = request.generation === 0 ? "" : ` generation ${request.generation}`;
      throw notFound(`object ${request.bucket}/${request.key}${which} not found: check the key with ListObjects`);
    }
    if (object.deleteMarker) {
      throw notFound(
        `generation ${request.generation} of ${request.bucket}/${request.key} is a delete marker and has no content: download an older generation`,
      );
    }

    const { start, end } = resolveRange(object.size, request.readOffset, request.readLimit);
    const wholeObject = start === 0 && end === object.size;
    this.reads.record(object);

    return { object, start, end, chunks: this.stream(object, start, end, wholeObject, signal) };
  }

  private async *stream(object: ObjectRecord, start: number, end: number, verify: boolean, signal?: AbortSignal): AsyncGenerator<DownloadChunk> {
    if (end <= start) return;

    this.streaming += 1;
    let counted = true;
    let source: Readable | undefined;
    // A consumer that stops reading may never resume this generator (the
    // transport waits for a drain that a cancelled stream never sends), so
    // the blob and the download's share of the budget are released on the
    // abort signal, not only in `finally`.
    const release = (): void => {
      source?.destroy();
      if (counted) this.streaming -= 1;
      counted = false;
    };
    signal?.addEventListener("abort", release, { once: true });
    // A whole-object read is checked against the stored CRC32C, not the
    // sha256: it detects the same corruption of stored bytes at a fraction
    // of the CPU time. The sha256 is still computed on every upload.
    let crc = verify ? 0 : undefined;
    let sent = 0;
    try {
      source = await this.blobs.read(object, { start, end, readBytes: this.chunkBytes() }, signal);
      if (signal?.aborted) source.destroy();
      for await (const content of gatherChunks(source as AsyncIterable<Buffer>, () => this.chunkBytes())) {
        const chunkCrc = crc32cOf(content);
        if (crc !== undefined) crc = crc32cCombine(crc, chunkCrc, content.length);
        sent += content.length;
        yield { content, crc32c: chunkCrc };
      }
    } finally {
      signal?.removeEventListener("abort", release);
      release();
    }

    if (sent !== end - start) {
      throw new StorageError("data_loss", `stored blob of ${object.bucket}/${object.key} ended after ${sent} of ${end - start} bytes: restore it from a backup`);
    }
    if (crc !== undefined && crc !== object.crc32c) {
      throw new StorageError("data_loss", `stored blob of ${object.bucket}/${object.key} does not match its crc32c: restore it from a backup`);
    }
  }

  /** Counts the downloads that have opened their blob and not ended. These share the download budget. */
  get activeDownloads(): number {
    return this.streaming;
  }

  /**
   * Size of the next chunk: the full download chunk size while the open
   * downloads fit the budget, and an equal share of the budget, in whole
   * multiples of the minimum, when more run at once.
   */
  private chunkBytes(): number {
    const share = Math.floor(this.limits.downloadBudgetBytes / Math.max(1, this.streaming));
    const shareInSteps = share - (share % MIN_DOWNLOAD_CHUNK_BYTES);
    return Math.min(this.limits.downloadChunkBytes, Math.max(MIN_DOWNLOAD_CHUNK_BYTES, shareInSteps));
  }
}

/**
 * Re-slices a byte stream into chunks of exactly `chunkBytes()` bytes, requested
 * anew for every chunk (the last one may be shorter). Large pieces are split
 * without copying. Small pieces, such as the socket reads of an S3 response,
 * are copied together, because every message sent costs encoding, framing
 * and a write, whatever its size.
 */
export async function* gatherChunks(pieces: AsyncIterable<Uint8Array>, chunkBytes: () => number): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let target = chunkBytes();
  for await (let piece of pieces) {
    if (pendingBytes > 0) {
      const take = Math.min(target - pendingBytes, piece.length);
      pending.push(piece.subarray(0, take));
      pendingBytes += take;
      piece = piece.subarray(take);
      if (pendingBytes < target) continue;
      yield Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      target = chunkBytes();
    }
    let offset = 0;
    for (; offset + target <= piece.length; target = chunkBytes()) {
      yield piece.subarray(offset, offset + target);
      offset += target;
    }
    if (offset < piece.length) {
      pending.push(piece.subarray(offset));
      pendingBytes = piece.length - offset;
    }
  }
  if (pendingBytes > 0) yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
}

/**
 * Turns a read offset and limit into [start, end). A plain read (offset 0,
 * limit 0) of any object is valid, even an empty one; any other read must
 * start inside the object.
 */
export function resolveRange(size: number, readOffset: number, readLimit: number): { start: number; end: number } {
  if (!Number.isSafeInteger(readLimit) || readLimit < 0) {
    throw invalidArgument(`read_limit ${readLimit} is invalid: give 0 to read to the end or a positive byte count`);
  }
  if (!Number.isSafeInteger(readOffset)) {
    throw invalidArgument(`read_offset ${readOffset} is invalid`);
  }
  if (readOffset === 0 && readLimit === 0) {
    return { start: 0, end: size };
  }

  const start = readOffset < 0 ? Math.max(0, size + readOffset) : readOffset;
  if (start >= size) {
    throw new StorageError(
      "out_of_range",
      `read_offset ${readOffset} is past the end of the object, which has ${size} bytes: read from an offset below ${size}`,
    );
  }
  const end = readLimit === 0 ? size : Math.min(size, start + readLimit);
  return { start, end };
}
