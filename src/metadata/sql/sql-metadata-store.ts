/*
 * MetadataStore on Kysely. The same queries run on PGlite (embedded
 * default) and PostgreSQL; only the dialect differs.
 */
import { Migrator, sql, type Kysely, type Transaction } from "kysely";

import { StorageError } from "../../service/errors.js";
import type {
  BlobDeletion,
  BucketRecord,
  BucketSettings,
  BucketStats,
  DeleteResult,
  LifecycleBatch,
  ListObjectsQuery,
  MetadataStore,
  NewObject,
  ObjectRead,
  ListUploadsQuery,
  NewPart,
  NewUploadSession,
  ObjectRecord,
  PartChunkRecord,
  PartRecord,
  PoolStats,
  UploadSessionRecord,
} from "../metadata-store.js";
import type { AccessStore } from "../access-store.js";
import { migrationProvider } from "./migrations.js";
import * as buckets from "./sql-bucket-queries.js";
import { applyLifecycleBatch } from "./sql-lifecycle-queries.js";
import { commitInTransaction, deleteInTransaction, objectFromRow, rowOf } from "./sql-object-queries.js";
import * as chunks from "./sql-part-chunk-queries.js";
import { SqlAccessStore } from "./sql-access-store.js";
import * as uploads from "./sql-upload-queries.js";
import type { Database } from "./schema.js";
import { UsageLedger } from "./usage-ledger.js";

export interface SqlMetadataStoreOptions {
  /** Closes what the Kysely instance does not own, such as the PGlite database. */
  readonly onClose?: () => Promise<void>;
  /** Reads the connection pool counters; leave unset when there is no pool. */
  readonly poolStats?: () => PoolStats;
  /**
   * Advice to the operator at the end of every "metadata database is
   * unavailable" message, such as which setting to check.
   */
  readonly unavailableHint?: string;
}

export class SqlMetadataStore implements MetadataStore {
  readonly poolStats?: () => PoolStats;
  readonly access: AccessStore;
  private readonly onClose: () => Promise<void>;
  private readonly unavailableHint: string;

  constructor(
    readonly kind: string,
    private readonly db: Kysely<Database>,
    options: SqlMetadataStoreOptions = {},
  ) {
    this.onClose = options.onClose ?? (async () => {});
    this.unavailableHint = options.unavailableHint ?? "retry later";
    if (options.poolStats) this.poolStats = options.poolStats;
    this.access = translatingErrors(new SqlAccessStore(db), this.unavailableHint);
  }

  /** Applies pending migrations; call once before first use. */
  async migrate(): Promise<void> {
    // Migrations added on parallel branches may land out of name order, so a
    // database may already have a later one than a newly merged one.
    const migrator = new Migrator({ db: this.db, provider: migrationProvider, allowUnorderedMigrations: true });
    const { error, results } = await migrator.migrateToLatest();
    if (error) {
      // A database that cannot be reached is not a broken migration: report
      // it as unavailable, with the hint, like any other query.
      const translated = translateDatabaseError(error, this.unavailableHint);
      if (translated.kind === "unavailable") throw translated;
      const failed = results?.find((result) => result.status === "Error")?.migrationName ?? "unknown";
      throw new StorageError("internal", `database migration ${failed} failed: ${String((error as Error).message ?? error)}`, { cause: error });
    }
  }

  async ensureBuckets(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    await this.run(() =>
      this.db
        .insertInto("buckets")
        .values(names.map((name) => ({ name })))
        .onConflict((conflict) => conflict.column("name").doNothing())
        .execute(),
    );
  }

  listBuckets(): Promise<BucketRecord[]> {
    return this.run(() => buckets.listBuckets(this.db));
  }

  getBucket(name: string): Promise<BucketRecord | undefined> {
    return this.run(() => buckets.getBucket(this.db, name));
  }

  async getBucketStats(name: string): Promise<BucketStats> {
    const bucket = await this.getBucket(name);
    return {
      objectCount: bucket?.objectCount ?? 0,
      totalBytes: bucket?.totalBytes ?? 0,
      versionCount: bucket?.versionCount ?? 0,
      versionBytes: bucket?.versionBytes ?? 0,
    };
  }

  createBucket(name: string, settings: BucketSettings): Promise<BucketRecord> {
    return this.run(() => buckets.createBucket(this.db, name, settings));
  }

  updateBucket(name: string, changes: Partial<BucketSettings>, ifMetagenerationMatch: number | undefined): Promise<BucketRecord> {
    return this.run(() => this.db.transaction().execute((trx) => buckets.updateBucket(trx, name, changes, ifMetagenerationMatch)));
  }

  deleteBucket(name: string, ifMetagenerationMatch: number | undefined): Promise<void> {
    return this.run(() => this.db.transaction().execute((trx) => buckets.deleteBucket(trx, name, ifMetagenerationMatch)));
  }

  async getObject(bucket: string, key: string, generation = 0): Promise<ObjectRecord | undefined> {
    let query = this.db.selectFrom("objects").selectAll().where("bucket", "=", bucket).where("key", "=", key);
    query = generation === 0 ? query.where("live", "=", true).where("delete_marker", "=", false) : query.where("generation", "=", generation);
    const row = await this.run(() => query.executeTakeFirst());
    return row && objectFromRow(row);
  }

  async listObjects(q: ListObjectsQuery): Promise<ObjectRecord[]> {
    let query = this.db.selectFrom("objects").selectAll().where("bucket", "=", q.bucket);
    if (q.versions) {
      const before = q.startBeforeGeneration;
      query = before === undefined
        ? query.where("key", ">=", q.startAt)
        : query.where((eb) => eb.or([eb("key", ">", q.startAt), eb.and([eb("key", "=", q.startAt), eb("generation", "<", before)])]));
    } else {
      query = query.where("live", "=", true).where("delete_marker", "=", false).where("key", ">=", q.startAt);
    }
    if (q.endBefore !== undefined) {
      query = query.where("key", "<", q.endBefore);
    }
    const rows = await this.run(() => query.orderBy("key").orderBy("generation", "desc").limit(q.limit).execute());
    return rows.map(objectFromRow);
  }

  async reserveGeneration(): Promise<number> {
    const result = await this.run(() => sql<{ generation: string | number | bigint }>`select nextval('object_generation_seq') as generation`.execute(this.db));
    return Number(result.rows[0]!.generation);
  }

  commitObject(object: NewObject, ifGenerationMatch: number | undefined): Promise<ObjectRecord> {
    return this.inTransaction((trx, ledger) => commitInTransaction(trx, object, ifGenerationMatch, ledger));
  }

  deleteObject(bucket: string, key: string, ifGenerationMatch: number | undefined, generation = 0): Promise<DeleteResult> {
    return this.inTransaction((trx, ledger) => deleteInTransaction(trx, bucket, key, ifGenerationMatch, generation, ledger));
  }

  applyLifecycleBatch(batch: LifecycleBatch): Promise<number | undefined> {
    return this.run(() => this.db.transaction().execute((trx) => applyLifecycleBatch(trx, batch)));
  }

  async listBlobDeletions(olderThan: Date, limit: number): Promise<BlobDeletion[]> {
    const rows = await this.run(() =>
      this.db.selectFrom("blob_deletions").selectAll().where("enqueued_at", "<", olderThan).orderBy("id").limit(limit).execute(),
    );
    return rows.map((row) => ({ id: Number(row.id), bucket: row.bucket, key: row.key, versionId: row.version_id }));
  }

  async removeBlobDeletions(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.run(() => this.db.deleteFrom("blob_deletions").where("id", "in", [...ids]).execute());
  }

  async restoreObjects(objects: readonly NewObject[]): Promise<void> {
    if (objects.length === 0) return;
    await this.inTransaction(async (trx, ledger) => {
      for (const object of objects) {
        const row = await trx
          .insertInto("objects")
          .values({ ...rowOf(object), null_version: true })
          .returningAll()
          .executeTakeFirstOrThrow();
        ledger.add(row);
      }
      const highest = Math.max(...objects.map((object) => object.generation));
      await sql`select setval('object_generation_seq', greatest(${highest}, (select last_value from object_generation_seq)))`.execute(trx);
    });
  }

  async recordReads(reads: readonly ObjectRead[]): Promise<void> {
    for (const read of reads) {
      await this.run(() =>
        this.db
          .updateTable("objects")
          .set({
            read_count: sql<number>`read_count + ${read.count}`,
            last_read_at: sql<Date>`greatest(coalesce(last_read_at, ${read.lastReadAt}), ${read.lastReadAt})`,
          })
          .where("bucket", "=", read.bucket)
          .where("key", "=", read.key)
          .where("generation", "=", read.generation)
          .execute(),
      );
    }
  }

  createUploadSession(session: NewUploadSession, ttlMs: number): Promise<UploadSessionRecord> {
    return this.run(() => uploads.createUploadSession(this.db, session, ttlMs));
  }

  getUploadSession(uploadId: string): Promise<UploadSessionRecord | undefined> {
    return this.run(() => uploads.getUploadSession(this.db, uploadId));
  }

  listUploadSessions(query: ListUploadsQuery): Promise<UploadSessionRecord[]> {
    return this.run(() => uploads.listUploadSessions(this.db, query));
  }

  recordPart(part: NewPart, ttlMs: number): Promise<{ part: PartRecord; expiresAt: Date }> {
    return this.run(() => this.db.transaction().execute((trx) => uploads.recordPart(trx, part, ttlMs)));
  }

  appendSegment(segment: Omit<NewPart, "partNumber">, offset: number, ttlMs: number): Promise<PartRecord> {
    return this.run(() => this.db.transaction().execute((trx) => uploads.appendSegment(trx, segment, offset, ttlMs)));
  }

  listPartChunks(uploadId: string, partNumber: number): Promise<PartChunkRecord[]> {
    return this.run(() => chunks.listPartChunks(this.db, uploadId, partNumber));
  }

  appendPartChunk(chunk: PartChunkRecord, ttlMs: number): Promise<{ expiresAt: Date }> {
    return this.run(() => this.db.transaction().execute((trx) => chunks.appendPartChunk(trx, chunk, ttlMs)));
  }

  finishPartChunks(part: NewPart, joined: readonly PartChunkRecord[], ttlMs: number): Promise<{ part: PartRecord; expiresAt: Date }> {
    return this.run(() => this.db.transaction().execute((trx) => chunks.finishPartChunks(trx, part, joined, ttlMs)));
  }

  removePartChunks(uploadId: string, partNumber: number): Promise<void> {
    return this.run(() => this.db.transaction().execute((trx) => chunks.removePartChunks(trx, uploadId, partNumber)));
  }

  listParts(uploadId: string): Promise<PartRecord[]> {
    return this.run(() => uploads.listParts(this.db, uploadId));
  }

  completeUpload(uploadId: string, parts: readonly PartRecord[], object: NewObject, ifGenerationMatch: number | undefined): Promise<ObjectRecord> {
    return this.inTransaction(async (trx, ledger) => {
      await uploads.removeUpload(trx, uploadId, parts, object.generation);
      return commitInTransaction(trx, object, ifGenerationMatch, ledger);
    });
  }

  abortUpload(uploadId: string): Promise<void> {
    return this.run(() => this.db.transaction().execute((trx) => uploads.removeUpload(trx, uploadId, undefined)));
  }

  sweepExpiredUploads(limit: number): Promise<number | undefined> {
    return this.run(() => this.db.transaction().execute((trx) => uploads.sweepExpiredUploads(trx, limit)));
  }

  async ping(): Promise<void> {
    await this.run(() => sql`select 1`.execute(this.db));
  }

  async close(): Promise<void> {
    await this.db.destroy();
    await this.onClose();
  }

  /** Runs work in a transaction that writes its usage changes to the buckets at the end. */
  private inTransaction<T>(work: (trx: Transaction<Database>, ledger: UsageLedger) => Promise<T>): Promise<T> {
    return this.run(() =>
      this.db.transaction().execute(async (trx) => {
        const ledger = new UsageLedger();
        const result = await work(trx, ledger);
        await ledger.flush(trx);
        return result;
      }),
    );
  }

  /** Runs a query and turns database errors into StorageError. */
  private async run<T>(query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (err) {
      throw translateDatabaseError(err, this.unavailableHint);
    }
  }
}

/** Node.js socket and DNS error codes that mean the server cannot be reached. */
const CONNECTION_ERROR_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EPIPE"]);

/**
 * Messages of node-postgres 8 (pg and pg-pool) errors that carry no code:
 * a connection that closed or timed out while connecting, a pool that found
 * no free connection within its connection timeout, and a client whose
 * connection already failed.
 */
const CONNECTION_ERROR_MESSAGES = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect$/,
  /^timeout expired$/,
  /is not queryable$/,
];

/**
 * Converts a database error into a StorageError, keeping it as `cause`.
 * `unavailableHint` ends the message when the database cannot be reached.
 */
export function translateDatabaseError(err: unknown, unavailableHint = "retry later"): StorageError {
  if (err instanceof StorageError) return err;
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === "23505") {
    return new StorageError("aborted", "another write to the same object committed first: retry the request", { cause: err });
  }
  if (code === "23503") {
    return new StorageError("not_found", "bucket not found: list buckets with ListBuckets", { cause: err });
  }
  if (code === "57014") {
    return new StorageError("unavailable", "metadata query timed out: retry later", { cause: err });
  }
  // SQLSTATE classes: 08 connection exception, 53 insufficient resources,
  // 57P operator intervention (such as a server shutdown), 28 invalid
  // authorization; 3D000 is a database that does not exist.
  const unreachable =
    (typeof code === "string" && (/^(08|53|57P|28)/.test(code) || code === "3D000")) || isConnectionFailure(err);
  if (unreachable) {
    return new StorageError("unavailable", `metadata database is unavailable: ${describeError(err)}; ${unavailableHint}`, { cause: err });
  }
  return new StorageError("internal", `metadata query failed: ${describeError(err)}`, { cause: err });
}

/** Looks through `cause` and AggregateError members, as Node.js nests connect errors. */
function isConnectionFailure(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 5) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && CONNECTION_ERROR_CODES.has(code)) return true;
  if (CONNECTION_ERROR_MESSAGES.some((pattern) => pattern.test(err.message))) return true;
  if (err instanceof AggregateError && err.errors.some((inner) => isConnectionFailure(inner, depth + 1))) return true;
  return isConnectionFailure(err.cause, depth + 1);
}

/** Returns the message, or the members' messages of an AggregateError, which Node.js leaves empty. */
function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.message === "") {
    return err.errors.map((inner) => (inner as Error)?.message ?? String(inner)).join(", ");
  }
  return (err as Error | undefined)?.message ?? String(err);
}

/** Wraps every method of an access store so database errors become StorageErrors, as in SqlMetadataStore. */
function translatingErrors(inner: AccessStore, unavailableHint: string): AccessStore {
  return new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } catch (err) {
          throw translateDatabaseError(err, unavailableHint);
        }
      };
    },
  });
}
