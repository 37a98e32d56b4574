/*
 * Queries that add and remove object versions. Every change to the
 * versions of a key runs under that key's lock (lockKey), and records its
 * effect on the bucket's usage in a UsageLedger that the caller flushes at
 * the end of the transaction.
 *
 * Versioning follows S3. In an unversioned bucket every version is the
 * key's null version, and a write or delete removes it. In an enabled
 * bucket a write or delete keeps the current version as noncurrent, and a
 * delete adds a delete marker. In a suspended bucket a write or delete
 * removes the key's null version wherever it is, keeps a current version
 * written while versioning was enabled as noncurrent, and the new version
 * or delete marker becomes the null version.
 */
import { sql, type Selectable, type Transaction } from "kysely";

import { assertWritable } from "../../service/bucket-status.js";
import { StorageError, notFound } from "../../service/errors.js";
import type { DeleteResult, NewObject, ObjectRecord, StorageClassName, VersioningState } from "../metadata-store.js";
import type { Database, ObjectsTable } from "./schema.js";
import { bucketNotFound } from "./sql-bucket-queries.js";
import type { UsageLedger } from "./usage-ledger.js";

export type ObjectRow = Selectable<ObjectsTable>;

/** A key locked for changes, with its bucket's versioning state and its current version. */
interface LockedKey {
  readonly versioning: VersioningState;
  /** The live row, which may be a delete marker. */
  readonly current: ObjectRow | undefined;
}

/** Options of changes that the lifecycle worker makes rather than a client. */
export interface ChangeOptions {
  /** Skips the bucket status check: lifecycle rules run in archived buckets too. */
  readonly byLifecycle?: boolean;
}

/** Makes a new version the live one, in the caller's transaction; see MetadataStore.commitObject. */
export async function commitInTransaction(
  trx: Transaction<Database>,
  object: NewObject,
  ifGenerationMatch: number | undefined,
  ledger: UsageLedger,
): Promise<ObjectRecord> {
  const { versioning, current } = await lockKey(trx, object.bucket, object.key, {});
  checkGeneration(object.bucket, object.key, current, ifGenerationMatch);

  if (current && Number(current.generation) > object.generation) {
    // The live version started later and wins. A versioned bucket keeps
    // this one as noncurrent, as if it had been overwritten at once.
    if (versioning === "enabled") {
      const row = await insertVersion(trx, { ...rowOf(object), live: false, noncurrent_at: sql<Date>`now()` });
      ledger.add(row);
      return objectFromRow(row);
    }
    await trx.insertInto("blob_deletions").values({ bucket: object.bucket, key: object.key, version_id: object.versionId }).execute();
    const now = new Date();
    return { ...object, createdAt: now, lastReadAt: null, readCount: 0, deleteMarker: false, live: false, noncurrentAt: now };
  }

  await retireCurrent(trx, versioning, object.bucket, object.key, current, ledger);
  const row = await insertVersion(trx, { ...rowOf(object), null_version: versioning !== "enabled" });
  ledger.add(row);
  return objectFromRow(row);
}

/** Deletes the live version or one generation, in the caller's transaction; see MetadataStore.deleteObject. */
export async function deleteInTransaction(
  trx: Transaction<Database>,
  bucket: string,
  key: string,
  ifGenerationMatch: number | undefined,
  generation: number,
  ledger: UsageLedger,
  options: ChangeOptions = {},
): Promise<DeleteResult> {
  const { versioning, current } = await lockKey(trx, bucket, key, options);
  checkGeneration(bucket, key, current, ifGenerationMatch);

  if (generation !== 0) {
    const row = current && Number(current.generation) === generation ? current : await selectVersion(trx, bucket, key, generation);
    if (!row) {
      throw notFound(`generation ${generation} of ${bucket}/${key} not found: list the versions with ListObjects and versions set`);
    }
    await removeVersion(trx, row, ledger);
    if (row.live) {
      await promoteNewest(trx, bucket, key, ledger);
    }
    return { deleted: objectFromRow(row), deleteMarker: undefined };
  }

  if (!current || current.delete_marker) {
    throw notFound(`object ${bucket}/${key} not found: check the key with ListObjects`);
  }
  if (versioning === "unversioned") {
    await removeVersion(trx, current, ledger);
    return { deleted: objectFromRow(current), deleteMarker: undefined };
  }

  await retireCurrent(trx, versioning, bucket, key, current, ledger);
  const { generation: markerGeneration } = await sql<{ generation: string | number | bigint }>`select nextval('object_generation_seq') as generation`
    .execute(trx)
    .then((result) => result.rows[0]!);
  const marker = await insertVersion(trx, {
    bucket,
    key,
    generation: Number(markerGeneration),
    version_id: "",
    live: true,
    size: 0,
    content_type: "",
    storage_class: "STANDARD",
    metadata: "{}",
    tags: "{}",
    sha256: "",
    crc32c: 0,
    etag: "",
    created_at: sql<Date>`now()`,
    delete_marker: true,
    null_version: versioning === "suspended",
  });
  ledger.add(marker);
  return { deleted: objectFromRow(current), deleteMarker: objectFromRow(marker) };
}

/**
 * Locks one key until the transaction ends, then returns its bucket's
 * versioning state and its live row, locked for update. Checks that the
 * bucket accepts writes, unless the lifecycle worker makes the change.
 */
export async function lockKey(trx: Transaction<Database>, bucket: string, key: string, options: ChangeOptions): Promise<LockedKey> {
  const bucketRow = await trx.selectFrom("buckets").select(["name", "status", "versioning"]).where("name", "=", bucket).executeTakeFirst();
  if (!bucketRow) {
    throw bucketNotFound(bucket);
  }
  if (!options.byLifecycle) {
    assertWritable(bucket, bucketRow.status);
  }
  // FOR UPDATE locks nothing when the key has no live version yet, so two
  // first commits of one key would both insert and one would fail on
  // objects_live_key. The advisory lock makes the second one wait. Under
  // READ COMMITTED its next statement then reads the row the first one
  // committed. Bucket names contain no "/", so "bucket/key" names one key,
  // and a hash collision only serializes two unrelated keys.
  await sql`select pg_advisory_xact_lock(hashtextextended(${`${bucket}/${key}`}, 0))`.execute(trx);
  const current = await trx
    .selectFrom("objects")
    .selectAll()
    .where("bucket", "=", bucket)
    .where("key", "=", key)
    .where("live", "=", true)
    .forUpdate()
    .executeTakeFirst();
  return { versioning: bucketRow.versioning as VersioningState, current };
}

/** Checks if_generation_match against the live version; a delete marker counts as no object (0). */
function checkGeneration(bucket: string, key: string, current: ObjectRow | undefined, ifGenerationMatch: number | undefined): void {
  if (ifGenerationMatch === undefined) return;
  const exists = current !== undefined && !current.delete_marker;
  const actual = exists ? Number(current.generation) : 0;
  if (actual !== ifGenerationMatch) {
    const state = exists ? `its live generation is ${actual}` : "it does not exist";
    throw new StorageError(
      "failed_precondition",
      `precondition failed for ${bucket}/${key}: if_generation_match is ${ifGenerationMatch} but ${state}; read the object again and retry`,
    );
  }
}

/**
 * Gets the current version out of the way of a new one: removes the key's
 * null version unless versioning is enabled, and keeps a current version
 * that remains as noncurrent.
 */
async function retireCurrent(
  trx: Transaction<Database>,
  versioning: VersioningState,
  bucket: string,
  key: string,
  current: ObjectRow | undefined,
  ledger: UsageLedger,
): Promise<void> {
  if (versioning !== "enabled") {
    const nullVersion = current?.null_version
      ? current
      : await trx
          .selectFrom("objects")
          .selectAll()
          .where("bucket", "=", bucket)
          .where("key", "=", key)
          .where("null_version", "=", true)
          .forUpdate()
          .executeTakeFirst();
    if (nullVersion) {
      await removeVersion(trx, nullVersion, ledger);
    }
    if (nullVersion === current) return;
  }
  if (current) {
    await trx
      .updateTable("objects")
      .set({ live: false, noncurrent_at: sql<Date>`now()` })
      .where("bucket", "=", bucket)
      .where("key", "=", key)
      .where("generation", "=", Number(current.generation))
      .execute();
    ledger.remove(current);
    ledger.add({ ...current, live: false });
  }
}

/** Makes the newest remaining version of a key live, after its live version was removed. */
async function promoteNewest(trx: Transaction<Database>, bucket: string, key: string, ledger: UsageLedger): Promise<void> {
  const newest = await trx
    .selectFrom("objects")
    .selectAll()
    .where("bucket", "=", bucket)
    .where("key", "=", key)
    .orderBy("generation", "desc")
    .limit(1)
    .forUpdate()
    .executeTakeFirst();
  if (!newest) return;
  await trx
    .updateTable("objects")
    .set({ live: true, noncurrent_at: null })
    .where("bucket", "=", bucket)
    .where("key", "=", key)
    .where("generation", "=", Number(newest.generation))
    .execute();
  ledger.remove(newest);
  ledger.add({ ...newest, live: true });
}

async function selectVersion(trx: Transaction<Database>, bucket: string, key: string, generation: number): Promise<ObjectRow | undefined> {
  return trx
    .selectFrom("objects")
    .selectAll()
    .where("bucket", "=", bucket)
    .where("key", "=", key)
    .where("generation", "=", generation)
    .forUpdate()
    .executeTakeFirst();
}

/** Drops a version row and queues its blob (a delete marker has none), in the caller's transaction. */
export async function removeVersion(trx: Transaction<Database>, row: ObjectRow, ledger: UsageLedger): Promise<void> {
  await trx
    .deleteFrom("objects")
    .where("bucket", "=", row.bucket)
    .where("key", "=", row.key)
    .where("generation", "=", Number(row.generation))
    .execute();
  if (!row.delete_marker) {
    await trx.insertInto("blob_deletions").values({ bucket: row.bucket, key: row.key, version_id: row.version_id }).execute();
  }
  ledger.remove(row);
}

type NewRow = ReturnType<typeof rowOf> & { delete_marker?: boolean; null_version?: boolean; noncurrent_at?: ReturnType<typeof sql<Date>> };

async function insertVersion(trx: Transaction<Database>, values: NewRow): Promise<ObjectRow> {
  return trx.insertInto("objects").values(values).returningAll().executeTakeFirstOrThrow();
}

/** Returns the row of a new live version, created now. */
export function rowOf(object: NewObject) {
  return {
    bucket: object.bucket,
    key: object.key,
    generation: object.generation,
    version_id: object.versionId,
    live: true,
    size: object.size,
    content_type: object.contentType,
    storage_class: object.storageClass as string,
    metadata: JSON.stringify(object.metadata),
    tags: JSON.stringify(object.tags),
    sha256: object.sha256,
    crc32c: object.crc32c,
    etag: object.etag,
    created_at: sql<Date>`now()`,
  };
}

export function objectFromRow(row: ObjectRow): ObjectRecord {
  return {
    bucket: row.bucket,
    key: row.key,
    generation: Number(row.generation),
    versionId: row.version_id,
    size: Number(row.size),
    contentType: row.content_type,
    storageClass: row.storage_class as StorageClassName,
    metadata: row.metadata,
    tags: row.tags,
    sha256: row.sha256,
    crc32c: Number(row.crc32c),
    etag: row.etag,
    createdAt: row.created_at,
    lastReadAt: row.last_read_at,
    readCount: Number(row.read_count),
    deleteMarker: row.delete_marker,
    live: row.live,
    noncurrentAt: row.noncurrent_at,
  };
}
