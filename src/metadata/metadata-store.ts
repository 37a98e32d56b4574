import type { AccessStore } from "./access-store.js";

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

/** Object properties a multipart upload keeps until it is completed. */
export interface UploadSessionSpec {
  readonly contentType: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tags: Readonly<Record<string, string>>;
  readonly storageClass: StorageClassName;
  /** Declared total size in bytes. */
  readonly size: number | undefined;
  /** Hex SHA-256 the whole object must have. */
  readonly expectedSha256: string | undefined;
  readonly expectedCrc32c: number | undefined;
  readonly ifGenerationMatch: number | undefined;
}

/** A multipart upload in progress. */
export interface UploadSessionRecord {
  readonly uploadId: string;
  readonly bucket: string;
  readonly key: string;
  /** Generation reserved when the upload started. */
  readonly generation: number;
  /** Prefix of the version ids of the upload's part blobs. */
  readonly versionId: string;
  readonly spec: UploadSessionSpec;
  /** Size of every part but the last, in bytes. */
  readonly partSize: number;
  /** True for a resumable single-stream upload, whose parts are consecutive segments. */
  readonly resumable: boolean;
  /** Generation of the object a finished resumable upload committed. */
  readonly finishedGeneration: number | undefined;
  readonly createdAt: Date;
  readonly expiresAt: Date;
}

export type NewUploadSession = Omit<UploadSessionRecord, "createdAt" | "expiresAt" | "finishedGeneration">;

/** One stored part of a multipart upload. */
export interface PartRecord {
  readonly uploadId: string;
  readonly partNumber: number;
  /** Version id of the part's blob, under the object's key. */
  readonly versionId: string;
  readonly size: number;
  /** Hex SHA-256 of the part. */
  readonly sha256: string;
  readonly crc32c: number;
  readonly createdAt: Date;
}

export type NewPart = Omit<PartRecord, "createdAt">;

export interface ListUploadsQuery {
  readonly bucket: string;
  readonly prefix: string;
  /** Exclusive lower bound on (key, upload id), from the previous page. */
  readonly after: { readonly key: string; readonly uploadId: string } | undefined;
  readonly limit: number;
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
  /** Access keys and the audit log, in the same database. */
  readonly access: AccessStore;
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
  /** Records a new multipart upload that expires `ttlMs` from now, by the database clock. */
  createUploadSession(session: NewUploadSession, ttlMs: number): Promise<UploadSessionRecord>;
  /** Returns an upload that has not expired, finished or not, or undefined. */
  getUploadSession(uploadId: string): Promise<UploadSessionRecord | undefined>;
  /** Lists unexpired uploads of a bucket in (key, upload id) order. */
  listUploadSessions(query: ListUploadsQuery): Promise<UploadSessionRecord[]>;
  /**
   * Records a part and moves the upload's expiry to `ttlMs` from now. A
   * part with the same number is replaced and its blob queued for
   * deletion. Throws NOT_FOUND when the upload is gone or expired.
   */
  recordPart(part: NewPart, ttlMs: number): Promise<{ part: PartRecord; expiresAt: Date }>;
  /**
   * Appends a segment to a resumable upload as the part after the last
   * one. Throws ABORTED when the stored segments do not end at
   * `offset`, because another writer appended first.
   */
  appendSegment(part: Omit<NewPart, "partNumber">, offset: number, ttlMs: number): Promise<PartRecord>;
  /** Returns the parts of an upload by part number. */
  listParts(uploadId: string): Promise<PartRecord[]>;
  /**
   * Commits the object of a multipart upload as commitObject does, and in
   * the same transaction removes the upload and queues every part blob for
   * deletion. Throws NOT_FOUND when the upload is gone, and ABORTED when a
   * part in `parts` was replaced since it was read. A resumable upload's
   * row stays, marked finished, until it expires.
   */
  completeUpload(uploadId: string, parts: readonly PartRecord[], object: NewObject, ifGenerationMatch: number | undefined): Promise<ObjectRecord>;
  /** Removes an upload and queues its part blobs for deletion. Throws NOT_FOUND when it is gone. */
  abortUpload(uploadId: string): Promise<void>;
  /**
   * Removes up to `limit` expired uploads and queues their part blobs for
   * deletion. One replica at a time does this: returns undefined when
   * another one holds the sweep lock, else the number removed.
   */
  sweepExpiredUploads(limit: number): Promise<number | undefined>;
  ping(): Promise<void>;
  /** Returns the connection pool counters; absent when the store has no pool. */
  poolStats?(): PoolStats;
  close(): Promise<void>;
}
