/*
 * One batch of a lifecycle rule per transaction. A batch either applies
 * completely or, when interrupted, not at all, and its usage changes and
 * blob deletions commit with it, so stopping the worker at any point
 * leaves a consistent state.
 */
import { sql, type Expression, type SqlBool, type Transaction } from "kysely";

import { isStorageError } from "../../service/errors.js";
import type { LifecycleBatch } from "../metadata-store.js";
import type { Database } from "./schema.js";
import { deleteInTransaction, removeVersion, type ObjectRow } from "./sql-object-queries.js";
import { removeSession } from "./sql-upload-queries.js";
import { UsageLedger } from "./usage-ledger.js";

/** Key of the PostgreSQL advisory lock that one replica holds while it applies lifecycle rules. */
const LIFECYCLE_LOCK_NAME = "engram.lifecycle";

export async function applyLifecycleBatch(trx: Transaction<Database>, batch: LifecycleBatch): Promise<number | undefined> {
  const lock = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(hashtextextended(${LIFECYCLE_LOCK_NAME}, 0)) as locked`.execute(trx);
  if (!lock.rows[0]?.locked) return undefined;

  const ledger = new UsageLedger();
  let applied: number;
  switch (batch.action) {
    case "expire_current":
      applied = await expireCurrent(trx, batch, batch.createdBefore, ledger);
      break;
    case "expire_noncurrent":
      applied = await expireNoncurrent(trx, batch, batch.noncurrentBefore, batch.keepNewest, ledger);
      break;
    case "abort_uploads":
      applied = await abortUploads(trx, batch, batch.createdBefore);
      break;
    case "transition":
      applied = await transition(trx, batch, batch.createdBefore, batch.storageClass);
      break;
  }
  await ledger.flush(trx);
  return applied;
}

/** Deletes live versions created before the cutoff, as a client's delete would. */
async function expireCurrent(trx: Transaction<Database>, batch: LifecycleBatch, createdBefore: Date, ledger: UsageLedger): Promise<number> {
  const candidates = await trx
    .selectFrom("objects")
    .select(["key", "generation"])
    .where("bucket", "=", batch.bucket)
    .where("live", "=", true)
    .where("delete_marker", "=", false)
    .where("created_at", "<", createdBefore)
    .where(matches(batch))
    .orderBy("key")
    .limit(batch.limit)
    .execute();

  let applied = 0;
  for (const candidate of candidates) {
    batch.beforeItem?.();
    // The key may have changed since the query: expire only the version
    // that was read, and only once the key is locked. The generation check
    // runs in JavaScript, so skipping a changed key leaves the transaction
    // usable.
    try {
      await deleteInTransaction(trx, batch.bucket, candidate.key, Number(candidate.generation), 0, ledger, { byLifecycle: true });
      applied += 1;
    } catch (err) {
      if (!isStorageError(err, "failed_precondition")) throw err;
    }
  }
  return applied;
}

/**
 * Removes noncurrent versions and delete markers that are older than the
 * cutoff, beyond the newest `keepNewest` of their key, or both when both
 * are set.
 */
async function expireNoncurrent(
  trx: Transaction<Database>,
  batch: LifecycleBatch,
  noncurrentBefore: Date | undefined,
  keepNewest: number | undefined,
  ledger: UsageLedger,
): Promise<number> {
  const tags = Object.keys(batch.tags).length === 0 ? sql`true` : sql`tags @> ${JSON.stringify(batch.tags)}::jsonb`;
  const result = await sql<ObjectRow>`
    select * from (
      select objects.*, row_number() over (partition by key order by generation desc) as newer_rank
      from objects
      where bucket = ${batch.bucket} and not live and starts_with(key, ${batch.prefix})
    ) ranked
    where ${tags}
      and (${keepNewest ?? null}::integer is null or newer_rank > ${keepNewest ?? null}::integer)
      and (${noncurrentBefore ?? null}::timestamptz is null or noncurrent_at < ${noncurrentBefore ?? null}::timestamptz)
    order by key, generation
    limit ${batch.limit}`.execute(trx);

  let applied = 0;
  for (const candidate of result.rows) {
    batch.beforeItem?.();
    // SKIP LOCKED: a version that a writer has locked is left for the next run.
    const row = await trx
      .selectFrom("objects")
      .selectAll()
      .where("bucket", "=", batch.bucket)
      .where("key", "=", candidate.key)
      .where("generation", "=", Number(candidate.generation))
      .where("live", "=", false)
      .forUpdate()
      .skipLocked()
      .executeTakeFirst();
    if (!row) continue;
    await removeVersion(trx, row, ledger);
    applied += 1;
  }

  if (applied < batch.limit && Object.keys(batch.tags).length === 0) {
    applied += await removeLoneDeleteMarkers(trx, batch, batch.limit - applied, ledger);
  }
  return applied;
}

/**
 * Removes live delete markers that are the only version left of their key,
 * as S3 does with expired object delete markers. Otherwise a key whose
 * versions all expired would keep its bucket from being deleted.
 */
async function removeLoneDeleteMarkers(trx: Transaction<Database>, batch: LifecycleBatch, limit: number, ledger: UsageLedger): Promise<number> {
  const markers = await trx
    .selectFrom("objects as marker")
    .selectAll()
    .where("marker.bucket", "=", batch.bucket)
    .where("marker.live", "=", true)
    .where("marker.delete_marker", "=", true)
    .where(sql<boolean>`starts_with(marker.key, ${batch.prefix})`)
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom("objects as other")
            .select("other.generation")
            .whereRef("other.bucket", "=", "marker.bucket")
            .whereRef("other.key", "=", "marker.key")
            .whereRef("other.generation", "<>", "marker.generation"),
        ),
      ),
    )
    .orderBy("marker.key")
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
  for (const marker of markers) {
    batch.beforeItem?.();
    await removeVersion(trx, marker, ledger);
  }
  return markers.length;
}

/** Aborts unfinished multipart and resumable uploads started before the cutoff. */
async function abortUploads(trx: Transaction<Database>, batch: LifecycleBatch, createdBefore: Date): Promise<number> {
  const sessions = await trx
    .selectFrom("upload_sessions")
    .selectAll()
    .where("bucket", "=", batch.bucket)
    .where("finished_generation", "is", null)
    .where("created_at", "<", createdBefore)
    .where(sql<boolean>`starts_with(key, ${batch.prefix})`)
    .orderBy("key")
    .limit(batch.limit)
    .forUpdate()
    .skipLocked()
    .execute();
  for (const session of sessions) {
    batch.beforeItem?.();
    await removeSession(trx, session);
  }
  return sessions.length;
}

/** Records another storage class on live versions created before the cutoff. */
async function transition(trx: Transaction<Database>, batch: LifecycleBatch, createdBefore: Date, storageClass: string): Promise<number> {
  const rows = await trx
    .selectFrom("objects")
    .select(["key", "generation"])
    .where("bucket", "=", batch.bucket)
    .where("live", "=", true)
    .where("delete_marker", "=", false)
    .where("storage_class", "<>", storageClass)
    .where("created_at", "<", createdBefore)
    .where(matches(batch))
    .orderBy("key")
    .limit(batch.limit)
    .forUpdate()
    .skipLocked()
    .execute();
  for (const row of rows) {
    batch.beforeItem?.();
    await trx
      .updateTable("objects")
      .set({ storage_class: storageClass })
      .where("bucket", "=", batch.bucket)
      .where("key", "=", row.key)
      .where("generation", "=", Number(row.generation))
      .execute();
  }
  return rows.length;
}

/** Builds the condition on object rows of a rule's prefix and tag filter. */
function matches(batch: LifecycleBatch): Expression<SqlBool> {
  if (Object.keys(batch.tags).length === 0) {
    return sql<SqlBool>`starts_with(key, ${batch.prefix})`;
  }
  return sql<SqlBool>`starts_with(key, ${batch.prefix}) and tags @> ${JSON.stringify(batch.tags)}::jsonb`;
}
