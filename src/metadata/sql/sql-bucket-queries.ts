/*
 * Queries on buckets: settings, metageneration and the usage counters that
 * UsageLedger keeps current.
 */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";

import { StorageError, notFound } from "../../service/errors.js";
import type { BucketRecord, BucketSettings, BucketStatus, LifecycleRule, VersioningState } from "../metadata-store.js";
import type { BucketsTable, Database } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

export async function getBucket(db: Db, name: string): Promise<BucketRecord | undefined> {
  const row = await db.selectFrom("buckets").selectAll().where("name", "=", name).executeTakeFirst();
  return row && bucketFromRow(row);
}

export async function listBuckets(db: Db): Promise<BucketRecord[]> {
  const rows = await db.selectFrom("buckets").selectAll().orderBy("name").execute();
  return rows.map(bucketFromRow);
}

export async function createBucket(db: Db, name: string, settings: BucketSettings): Promise<BucketRecord> {
  const row = await db
    .insertInto("buckets")
    .values({ name, status: settings.status, versioning: settings.versioning, lifecycle_rules: JSON.stringify(settings.lifecycleRules) })
    .onConflict((conflict) => conflict.column("name").doNothing())
    .returningAll()
    .executeTakeFirst();
  if (!row) {
    throw new StorageError("already_exists", `bucket ${name} already exists: choose another name`);
  }
  return bucketFromRow(row);
}

export async function updateBucket(
  trx: Transaction<Database>,
  name: string,
  changes: Partial<BucketSettings>,
  ifMetagenerationMatch: number | undefined,
): Promise<BucketRecord> {
  await lockBucket(trx, name, ifMetagenerationMatch);
  const row = await trx
    .updateTable("buckets")
    .set({
      ...(changes.status === undefined ? {} : { status: changes.status }),
      ...(changes.versioning === undefined ? {} : { versioning: changes.versioning }),
      ...(changes.lifecycleRules === undefined ? {} : { lifecycle_rules: JSON.stringify(changes.lifecycleRules) }),
      metageneration: sql<number>`metageneration + 1`,
      updated_at: sql<Date>`now()`,
    })
    .where("name", "=", name)
    .returningAll()
    .executeTakeFirstOrThrow();
  return bucketFromRow(row);
}

export async function deleteBucket(trx: Transaction<Database>, name: string, ifMetagenerationMatch: number | undefined): Promise<void> {
  // The row lock makes a commit that starts now wait, and then fail on the
  // foreign key, so no version can slip in after the checks below.
  await lockBucket(trx, name, ifMetagenerationMatch);

  const versions = await trx
    .selectFrom("objects")
    .select(sql<string>`count(*)`.as("count"))
    .where("bucket", "=", name)
    .executeTakeFirstOrThrow();
  if (Number(versions.count) > 0) {
    throw new StorageError(
      "failed_precondition",
      `bucket ${name} still has ${versions.count} object versions or delete markers: delete them by generation (list them with ListObjects and versions set), then retry`,
    );
  }
  const uploads = await trx
    .selectFrom("upload_sessions")
    .select(sql<string>`count(*)`.as("count"))
    .where("bucket", "=", name)
    .where("finished_generation", "is", null)
    .where(sql<boolean>`expires_at > now()`)
    .executeTakeFirstOrThrow();
  if (Number(uploads.count) > 0) {
    throw new StorageError(
      "failed_precondition",
      `bucket ${name} still has ${uploads.count} unfinished uploads: abort them (list them with ListMultipartUploads), then retry`,
    );
  }

  // Finished and expired sessions, their parts and the queued blob
  // deletions go with the bucket: the blob store removes every blob of it.
  await trx.deleteFrom("upload_sessions").where("bucket", "=", name).execute();
  await trx.deleteFrom("blob_deletions").where("bucket", "=", name).execute();
  await trx.deleteFrom("buckets").where("name", "=", name).execute();
}

/** Locks a bucket row until the transaction ends and checks its metageneration. */
async function lockBucket(trx: Transaction<Database>, name: string, ifMetagenerationMatch: number | undefined): Promise<Selectable<BucketsTable>> {
  const row = await trx.selectFrom("buckets").selectAll().where("name", "=", name).forUpdate().executeTakeFirst();
  if (!row) {
    throw bucketNotFound(name);
  }
  const metageneration = Number(row.metageneration);
  if (ifMetagenerationMatch !== undefined && ifMetagenerationMatch !== metageneration) {
    throw new StorageError(
      "failed_precondition",
      `precondition failed for bucket ${name}: if_metageneration_match is ${ifMetagenerationMatch} but its metageneration is ${metageneration}; read the bucket again and retry`,
    );
  }
  return row;
}

export function bucketNotFound(name: string): StorageError {
  return notFound(`bucket ${JSON.stringify(name)} not found: list buckets with ListBuckets`);
}

export function bucketFromRow(row: Selectable<BucketsTable>): BucketRecord {
  return {
    name: row.name,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    metageneration: Number(row.metageneration),
    status: row.status as BucketStatus,
    versioning: row.versioning as VersioningState,
    lifecycleRules: row.lifecycle_rules as LifecycleRule[],
    objectCount: Number(row.object_count),
    totalBytes: Number(row.total_bytes),
    versionCount: Number(row.version_count),
    versionBytes: Number(row.version_bytes),
  };
}
