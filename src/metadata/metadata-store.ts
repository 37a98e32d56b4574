import type { AccessStore } from "./access-store.js";

/** Storage classes, as S3 names them. */
export const STORAGE_CLASSES = ["STANDARD", "REDUCED_REDUNDANCY", "GLACIER", "DEEP_ARCHIVE"] as const;
export type StorageClassName = (typeof STORAGE_CLASSES)[number];

export const BUCKET_STATUSES = ["active", "suspended", "archived"] as const;
/** Bucket status: active takes reads and writes, suspended and archived take reads only. */
export type BucketStatus = (typeof BUCKET_STATUSES)[number];

export const VERSIONING_STATES = ["unversioned", "enabled", "suspended"] as const;
export type VersioningState = (typeof VERSIONING_STATES)[number];

/** Maximum number of lifecycle rules per bucket. */
export const MAX_LIFECYCLE_RULES = 100;

/** A lifecycle rule; durations are whole days of 24 hours. */
export interface LifecycleRule {
  readonly id: string;
  readonly enabled: boolean;
  readonly prefix: string;
  /** Tags a version must all have for the rule to apply to it. */
  readonly tags: Readonly<Record<string, string>>;
  readonly expirationDays?: number | undefined;
  readonly noncurrentExpirationDays?: number | undefined;
  readonly noncurrentNewerVersions?: number | undefined;
  readonly abortIncompleteUploadDays?: number | undefined;
  readonly transition?: { readonly days: number; readonly storageClass: StorageClassName } | undefined;
}

/** The settings of a bucket that UpdateBucket changes. */
export interface BucketSettings {
  readonly status: BucketStatus;
  readonly versioning: VersioningState;
  readonly lifecycleRules: readonly LifecycleRule[];
}

/**
 * Usage counters of a bucket, kept current by every transaction that adds
 * or removes a version. Delete markers count in none of them.
 */
export interface BucketStats {
  /** Live objects. */
  readonly objectCount: number;
  /** Sum of the sizes of live objects. */
  readonly totalBytes: number;
  /** Stored versions, live and noncurrent. */
  readonly versionCount: number;
  /** Sum of the sizes of all stored versions. */
  readonly versionBytes: number;
}

export interface BucketRecord extends BucketSettings, BucketStats {
  readonly name: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** Starts at 1 and increases with every settings change. */
  readonly metageneration: number;
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
  /** True for a delete marker, which has no blob: its version id is empty. */
  readonly deleteMarker: boolean;
  /** True for the current version of its key, the one reads see. */
  readonly live: boolean;
  /** When an overwrite or delete made the version noncurrent. */
  readonly noncurrentAt: Date | null;
}

/**
 * An object version to commit. Its generation was reserved when the upload
 * started, so the blob's own headers can record it; the store sets the time.
 */
export type NewObject = Omit<ObjectRecord, "createdAt" | "lastReadAt" | "readCount" | "deleteMarker" | "live" | "noncurrentAt">;

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
  /** Returns every version and delete marker, newest generation first within a key. */
  readonly versions?: boolean;
  /** With versions: only generations below this one for the key `startAt`. */
  readonly startBeforeGeneration?: number | undefined;
}

/** Outcome of DeleteObject. */
export interface DeleteResult {
  /** The version that was removed or became noncurrent. */
  readonly deleted: ObjectRecord;
  /** The delete marker added in a versioned bucket. */
  readonly deleteMarker: ObjectRecord | undefined;
}

/** One bounded step of a lifecycle rule, run in one transaction. */
export type LifecycleBatch = {
  readonly bucket: string;
  readonly prefix: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly limit: number;
  /**
   * Called before each item is applied, inside the transaction; a throw
   * rolls the whole batch back. Tests use it to interrupt a batch.
   */
  readonly beforeItem?: () => void;
} & (
  | { readonly action: "expire_current"; readonly createdBefore: Date }
  | { readonly action: "expire_noncurrent"; readonly noncurrentBefore: Date | undefined; readonly keepNewest: number | undefined }
  | { readonly action: "abort_uploads"; readonly createdBefore: Date }
  | { readonly action: "transition"; readonly createdBefore: Date; readonly storageClass: StorageClassName }
);

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

/** One stored chunk of a part that is sent in unary calls and not yet finished. */
export interface PartChunkRecord {
  readonly uploadId: string;
  readonly partNumber: number;
  /** Offset of the chunk in the part. */
  readonly writeOffset: number;
  /** Version id of the chunk's blob, under the object's key. */
  readonly versionId: string;
  readonly size: number;
}

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
  /** Creates the buckets that do not exist yet, with default settings. */
  ensureBuckets(names: readonly string[]): Promise<void>;
  listBuckets(): Promise<BucketRecord[]>;
  getBucket(name: string): Promise<BucketRecord | undefined>;
  /** Returns the usage counters of a bucket, zero for a missing one. */
  getBucketStats(name: string): Promise<BucketStats>;
  /** Creates a bucket; throws ALREADY_EXISTS when the name is taken. */
  createBucket(name: string, settings: BucketSettings): Promise<BucketRecord>;
  /**
   * Changes the given settings and raises the metageneration, atomically
   * checking `ifMetagenerationMatch`. Throws NOT_FOUND or FAILED_PRECONDITION.
   */
  updateBucket(name: string, changes: Partial<BucketSettings>, ifMetagenerationMatch: number | undefined): Promise<BucketRecord>;
  /**
   * Deletes a bucket with no versions, delete markers or unfinished
   * uploads, and drops its queued blob deletions. Throws NOT_FOUND or
   * FAILED_PRECONDITION.
   */
  deleteBucket(name: string, ifMetagenerationMatch: number | undefined): Promise<void>;
  /**
   * Returns the live version (never a delete marker), or the given
   * generation when it is not 0, which may be a noncurrent version or a
   * delete marker.
   */
  getObject(bucket: string, key: string, generation?: number): Promise<ObjectRecord | undefined>;
  /** Returns live objects, or with `versions` every version, in byte order of their keys. */
  listObjects(query: ListObjectsQuery): Promise<ObjectRecord[]>;
  /** Takes the next generation number; numbers are unique and increasing. */
  reserveGeneration(): Promise<number>;
  /**
   * Makes a new version the live one, atomically checking the bucket's
   * status and `ifGenerationMatch` (0: no live version may exist). In a
   * versioned bucket the version it replaces becomes noncurrent; otherwise
   * the key's null version is removed and its blob queued for deletion.
   * When a version with a higher generation is already live, that one
   * started later and wins: the new version becomes noncurrent in a
   * versioned bucket, and is dropped at once otherwise.
   */
  commitObject(object: NewObject, ifGenerationMatch: number | undefined): Promise<ObjectRecord>;
  /**
   * Deletes the live version under the rules of the bucket's versioning
   * state, or, with a generation, removes that version or delete marker
   * permanently. Removed blobs are queued for deletion.
   */
  deleteObject(bucket: string, key: string, ifGenerationMatch: number | undefined, generation?: number): Promise<DeleteResult>;
  /**
   * Applies one batch of a lifecycle rule in one transaction. One replica
   * at a time does this: returns undefined when another one holds the
   * lifecycle lock, else the number of versions or uploads changed.
   */
  applyLifecycleBatch(batch: LifecycleBatch): Promise<number | undefined>;
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
  /** Returns the unfinished chunks of a part by offset. */
  listPartChunks(uploadId: string, partNumber: number): Promise<PartChunkRecord[]>;
  /**
   * Records a chunk of a part and moves the upload's expiry to `ttlMs` from
   * now. Throws ABORTED when the part's stored chunks do not end at the
   * chunk's offset, and NOT_FOUND when the upload is gone or expired.
   */
  appendPartChunk(chunk: PartChunkRecord, ttlMs: number): Promise<{ expiresAt: Date }>;
  /**
   * Records a part joined from `chunks` as recordPart does, removes the
   * chunk rows and queues the chunk blobs other than the part's own for
   * deletion. Throws ABORTED when the part's chunks are no longer `chunks`.
   */
  finishPartChunks(part: NewPart, chunks: readonly PartChunkRecord[], ttlMs: number): Promise<{ part: PartRecord; expiresAt: Date }>;
  /** Removes the unfinished chunks of a part and queues their blobs for deletion. */
  removePartChunks(uploadId: string, partNumber: number): Promise<void>;
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
