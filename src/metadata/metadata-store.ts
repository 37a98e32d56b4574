/** Storage classes, as S3 names them. */
export const STORAGE_CLASSES = ["STANDARD", "REDUCED_REDUNDANCY", "GLACIER", "DEEP_ARCHIVE"] as const;
export type StorageClassName = (typeof STORAGE_CLASSES)[number];

export interface BucketRecord {
  readonly name: string;
  readonly createdAt: Date;
}

export interface BucketStats {
  readonly objectCount: number;
  readonly totalBytes: number;
}

/** One committed object version. */
export interface ObjectRecord {
  readonly bucket: string;
  readonly key: string;
  readonly generation: number;
  /** Version id of the blob that contains the content. */
  readonly versionId: string;
  readonly size: number;
  readonly contentType: string;
  readonly storageClass: StorageClassName;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tags: Readonly<Record<string, string>>;
  /** Hex SHA-256 of the content. */
  readonly sha256: string;
  /** CRC32C of the content, as an unsigned 32-bit integer. */
  readonly crc32c: number;
  readonly etag: string;
  readonly createdAt: Date;
  readonly lastReadAt: Date | null;
  readonly readCount: number;
}

/**
 * An object version to commit. Its generation was reserved when the upload
 * started, so the blob's own headers can record it; the store sets the time.
 */
export type NewObject = Omit<ObjectRecord, "createdAt" | "lastReadAt" | "readCount">;

/** A blob no object refers to any more, waiting to be deleted. */
export interface BlobDeletion {
  readonly id: number;
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string;
}

export interface ListObjectsQuery {
  readonly bucket: string;
  /** Inclusive lower bound on the key. */
  readonly startAt: string;
  /** Exclusive upper bound on the key, if any. */
  readonly endBefore: string | undefined;
  readonly limit: number;
}

export interface ObjectRead {
  readonly bucket: string;
  readonly key: string;
  readonly generation: number;
  readonly count: number;
  readonly lastReadAt: Date;
}

/** Connection pool counters, for metrics. */
export interface PoolStats {
  /** Open connections, idle or in use. */
  readonly total: number;
  /** Open connections that no query is using. */
  readonly idle: number;
  /** Callers queued for a connection because every one is in use. */
  readonly waiting: number;
}

/**
 * Port for the metadata index. Every write is one transaction, and that
 * transaction is the commit point that makes an object visible. Adapters
 * translate database errors into StorageError.
 */
export interface MetadataStore {
  readonly kind: string;
  /** Creates the buckets that do not exist yet. */
  ensureBuckets(names: readonly string[]): Promise<void>;
  listBuckets(): Promise<BucketRecord[]>;
  getBucket(name: string): Promise<BucketRecord | undefined>;
  getBucketStats(name: string): Promise<BucketStats>;
  /** Returns the live version, or the given generation when it is not 0. */
  getObject(bucket: string, key: string, generation?: number): Promise<ObjectRecord | undefined>;
  /** Returns live objects in byte order of their keys. */
  listObjects(query: ListObjectsQuery): Promise<ObjectRecord[]>;
  /** Takes the next generation number; numbers are unique and increasing. */
  reserveGeneration(): Promise<number>;
  /**
   * Makes a new version the live one, atomically checking
   * `ifGenerationMatch` (0: no live version may exist). The version it
   * replaces is removed and its blob queued for deletion. When a version
   * with a higher generation is already live, that one started later and
   * wins: the new version is dropped at once, as if it had been overwritten.
   */
  commitObject(object: NewObject, ifGenerationMatch: number | undefined): Promise<ObjectRecord>;
  /** Removes the live version and queues its blob for deletion. */
  deleteObject(bucket: string, key: string, ifGenerationMatch: number | undefined): Promise<ObjectRecord>;
  /** Returns queued blob deletions older than the given time. */
  listBlobDeletions(olderThan: Date, limit: number): Promise<BlobDeletion[]>;
  /** Forgets blob deletions that were carried out. */
  removeBlobDeletions(ids: readonly number[]): Promise<void>;
  /**
   * Inserts objects recovered from the blob store into an empty index and
   * moves the generation sequence past them.
   */
  restoreObjects(objects: readonly NewObject[]): Promise<void>;
  /** Adds download counts and keeps the latest read time, with one short statement per read. */
  recordReads(reads: readonly ObjectRead[]): Promise<void>;
  ping(): Promise<void>;
  /** Returns the connection pool counters; absent when the store has no pool. */
  poolStats?(): PoolStats;
  close(): Promise<void>;
}
