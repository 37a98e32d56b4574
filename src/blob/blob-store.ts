import type { Readable } from "node:stream";

/**
 * Identity of one stored blob. Every upload gets a fresh version id, so a
 * blob is written once and never overwritten. Bucket, key and version id
 * together let a scan of the blob store rebuild the metadata index.
 */
export interface BlobRef {
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string;
}

/** Metadata stored with the blob itself, so the index can be rebuilt. */
export interface BlobHeaders {
  readonly generation: number;
  readonly contentType: string;
  readonly storageClass: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tags: Readonly<Record<string, string>>;
  /** Hex SHA-256 of the content. */
  readonly sha256: string;
  readonly crc32c: number;
  readonly size: number;
}

/** A finished blob found by a scan of the store. */
export interface StoredBlob {
  readonly ref: BlobRef;
  readonly headers: BlobHeaders;
}

/** A blob being written. Nothing is readable until `finish` resolves. */
export interface BlobWriter {
  /**
   * Appends bytes and resolves when the store can take more (backpressure).
   * The store may still read `chunk` after that, until `finish` or `abort`
   * resolves, so the caller must not change it.
   */
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the blob durable with its headers. */
  finish(headers: BlobHeaders): Promise<void>;
  /** Drops everything written so far. Safe to call after a failure or twice. */
  abort(): Promise<void>;
}

/** Response headers a presigned GET makes the store send. */
export interface PresignResponseHeaders {
  readonly contentDisposition?: string | undefined;
  readonly contentType?: string | undefined;
}

export interface WriterOptions {
  /** Declared content length, if known; lets the store choose its part size. */
  readonly size?: number | undefined;
  /** Headers known when the upload starts, stored on the blob itself where the store can. */
  readonly generation?: number | undefined;
  readonly contentType?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface BlobReadRange {
  /** First byte, inclusive. */
  readonly start: number;
  /** Last byte, exclusive. */
  readonly end: number;
  /**
   * Size of each read from the store, where the adapter chooses it. The
   * filesystem store also reads one such piece ahead.
   */
  readonly readBytes?: number;
}

/**
 * Port for the byte store. Adapters: filesystem (embedded default) and S3.
 * Adapters translate their own errors into StorageError and keep the
 * original as `cause`.
 */
export interface BlobStore {
  readonly kind: string;
  /** Creates the store's containers for these buckets if they are missing. */
  ensureBuckets(buckets: readonly string[]): Promise<void>;
  /** Starts writing a new blob. The ref must not exist yet. */
  createWriter(ref: BlobRef, options?: WriterOptions): Promise<BlobWriter>;
  /** Opens a byte range for reading; destroying the stream releases it. */
  read(ref: BlobRef, range: BlobReadRange, signal?: AbortSignal): Promise<Readable>;
  /** Lists every finished blob in one bucket with its headers, for rebuilding the index. */
  scan(bucket: string): AsyncIterable<StoredBlob>;
  /** Removes a blob; a missing blob is not an error. */
  delete(ref: BlobRef): Promise<void>;
  /**
   * Writes a new blob with the content of `source` and the given headers,
   * inside the store, without sending the bytes through Engram. The target
   * must not exist yet.
   */
  copy(source: BlobRef, target: BlobRef, headers: BlobHeaders): Promise<void>;
  /**
   * Removes every blob of a bucket, finished or not, and the bucket's
   * container where the store creates containers itself.
   */
  removeBucket(bucket: string): Promise<void>;
  /**
   * Returns a URL that clients use to GET a blob from the store directly,
   * signed without a network call. Stores that cannot serve clients
   * directly, like the filesystem, leave it out.
   */
  presignGet?(ref: BlobRef, expiresInSeconds: number, response: PresignResponseHeaders): Promise<string>;
  /** Returns a URL that clients use to PUT the content of a new blob into the store directly. */
  presignPut?(ref: BlobRef, expiresInSeconds: number): Promise<string>;
  /** Returns the size of a blob written through a presigned URL, or undefined while it is missing. */
  sizeOf?(ref: BlobRef): Promise<number | undefined>;
  /** Marks a blob written through a presigned URL as finished by storing its headers. */
  writeHeaders?(ref: BlobRef, headers: BlobHeaders): Promise<void>;
  /**
   * Writes a new blob whose content is the given blobs joined in order,
   * inside the store, without sending the bytes through Engram. Every
   * source but the last must have at least 5 MiB. The new blob has no
   * headers until `writeHeaders`. Stores that cannot join inside the store
   * leave it out.
   */
  concat?(target: BlobRef, sources: readonly BlobRef[], options: WriterOptions): Promise<void>;
  /** Checks that the store is reachable, or rejects with an `unavailable` StorageError. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
