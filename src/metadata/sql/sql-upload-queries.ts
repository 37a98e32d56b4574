/*
 * Queries on multipart upload sessions and their parts. Expiry is compared
 * with the database clock, so replicas whose clocks differ agree on it.
 */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";

import { StorageError, notFound } from "../../service/errors.js";
import type { ListUploadsQuery, NewPart, NewUploadSession, PartRecord, UploadSessionRecord, UploadSessionSpec } from "../metadata-store.js";
import type { Database, UploadPartsTable, UploadSessionsTable } from "./schema.js";

type Db = Kysely<Database> | Transaction<Database>;

/** Key of the PostgreSQL advisory lock that one replica holds while it sweeps expired uploads. */
const SWEEP_LOCK_NAME = "engram.expired-upload-sweep";

function expiryAfter(ttlMs: number) {
  return sql<Date>`now() + ${ttlMs} * interval '1 millisecond'`;
}

export async function createUploadSession(db: Db, session: NewUploadSession, ttlMs: number): Promise<UploadSessionRecord> {
  const row = await db
    .insertInto("upload_sessions")
    .values({
      upload_id: session.uploadId,
      bucket: session.bucket,
      key: session.key,
      generation: session.generation,
      version_id: session.versionId,
      spec: JSON.stringify(session.spec),
      part_size: session.partSize,
      resumable: session.resumable,
      expires_at: expiryAfter(ttlMs),
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return sessionFromRow(row);
}

export async function getUploadSession(db: Db, uploadId: string): Promise<UploadSessionRecord | undefined> {
  const row = await db
    .selectFrom("upload_sessions")
    .selectAll()
    .where("upload_id", "=", uploadId)
    .where(sql<boolean>`expires_at > now()`)
    .executeTakeFirst();
  return row && sessionFromRow(row);
}

export async function listUploadSessions(db: Db, query: ListUploadsQuery): Promise<UploadSessionRecord[]> {
  let select = db
    .selectFrom("upload_sessions")
    .selectAll()
    .where("bucket", "=", query.bucket)
    .where("finished_generation", "is", null)
    .where(sql<boolean>`expires_at > now()`);
  if (query.prefix !== "") {
    select = select.where(sql<boolean>`starts_with(key, ${query.prefix})`);
  }
  if (query.after !== undefined) {
    select = select.where(sql<boolean>`(key, upload_id) > (${query.after.key}, ${query.after.uploadId})`);
  }
  const rows = await select.orderBy("key").orderBy("upload_id").limit(query.limit).execute();
  return rows.map(sessionFromRow);
}

/** Locks an unexpired, unfinished session row until the transaction ends, or throws NOT_FOUND. */
export async function lockSession(trx: Transaction<Database>, uploadId: string): Promise<Selectable<UploadSessionsTable>> {
  const row = await trx
    .selectFrom("upload_sessions")
    .selectAll()
    .where("upload_id", "=", uploadId)
    .where("finished_generation", "is", null)
    .where(sql<boolean>`expires_at > now()`)
    .forUpdate()
    .executeTakeFirst();
  if (!row) throw uploadNotFound(uploadId);
  return row;
}

/** Moves the expiry of a locked session to `ttlMs` from now and returns it. */
export async function extendSession(trx: Transaction<Database>, uploadId: string, ttlMs: number): Promise<Date> {
  const { expires_at } = await trx
    .updateTable("upload_sessions")
    .set({ expires_at: expiryAfter(ttlMs) })
    .where("upload_id", "=", uploadId)
    .returning("expires_at")
    .executeTakeFirstOrThrow();
  return expires_at;
}

export async function appendSegment(trx: Transaction<Database>, segment: Omit<NewPart, "partNumber">, offset: number, ttlMs: number): Promise<PartRecord> {
  await lockSession(trx, segment.uploadId);
  const stored = await trx
    .selectFrom("upload_parts")
    .select([sql<string>`count(*)`.as("count"), sql<string | null>`sum(size)`.as("bytes")])
    .where("upload_id", "=", segment.uploadId)
    .executeTakeFirstOrThrow();
  const persisted = Number(stored.bytes ?? 0);
  if (persisted !== offset) {
    throw new StorageError(
      "aborted",
      `upload ${segment.uploadId} now has ${persisted} bytes, not ${offset}: another writer is sending it; call QueryWriteStatus and resume from its persisted_size`,
    );
  }

  const row = await trx
    .insertInto("upload_parts")
    .values({
      upload_id: segment.uploadId,
      part_number: Number(stored.count) + 1,
      version_id: segment.versionId,
      size: segment.size,
      sha256: segment.sha256,
      crc32c: segment.crc32c,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await extendSession(trx, segment.uploadId, ttlMs);
  return partFromRow(row);
}

export async function recordPart(trx: Transaction<Database>, part: NewPart, ttlMs: number): Promise<{ part: PartRecord; expiresAt: Date }> {
  return recordPartLocked(trx, await lockSession(trx, part.uploadId), part, ttlMs);
}

/** Records a part of a session that the transaction has locked. */
export async function recordPartLocked(
  trx: Transaction<Database>,
  session: Selectable<UploadSessionsTable>,
  part: NewPart,
  ttlMs: number,
): Promise<{ part: PartRecord; expiresAt: Date }> {

  const replaced = await trx
    .selectFrom("upload_parts")
    .select("version_id")
    .where("upload_id", "=", part.uploadId)
    .where("part_number", "=", part.partNumber)
    .executeTakeFirst();
  if (replaced) {
    await trx.insertInto("blob_deletions").values({ bucket: session.bucket, key: session.key, version_id: replaced.version_id }).execute();
  }

  const row = await trx
    .insertInto("upload_parts")
    .values({
      upload_id: part.uploadId,
      part_number: part.partNumber,
      version_id: part.versionId,
      size: part.size,
      sha256: part.sha256,
      crc32c: part.crc32c,
    })
    .onConflict((conflict) =>
      conflict.columns(["upload_id", "part_number"]).doUpdateSet({
        version_id: part.versionId,
        size: part.size,
        sha256: part.sha256,
        crc32c: part.crc32c,
        created_at: sql<Date>`now()`,
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();

  const expiresAt = await extendSession(trx, part.uploadId, ttlMs);
  return { part: partFromRow(row), expiresAt };
}

export async function listParts(db: Db, uploadId: string): Promise<PartRecord[]> {
  const rows = await db.selectFrom("upload_parts").selectAll().where("upload_id", "=", uploadId).orderBy("part_number").execute();
  return rows.map(partFromRow);
}

/**
 * Deletes an upload with its part rows and queues every part blob for
 * deletion. With `expected`, first checks that each of those parts still
 * has the blob it had when it was read.
 */
export async function removeUpload(
  trx: Transaction<Database>,
  uploadId: string,
  expected: readonly PartRecord[] | undefined,
  finishedGeneration?: number,
): Promise<void> {
  const session = await lockSession(trx, uploadId);
  const parts = await listParts(trx, uploadId);

  if (expected !== undefined) {
    const current = new Map(parts.map((part) => [part.partNumber, part.versionId]));
    for (const part of expected) {
      if (current.get(part.partNumber) !== part.versionId) {
        throw new StorageError("aborted", `part ${part.partNumber} of upload ${uploadId} was replaced while the upload was completing: retry CompleteMultipartUpload`);
      }
    }
  }

  await queuePartBlobs(trx, session, parts);
  await queueChunkBlobs(trx, session);
  if (session.resumable && finishedGeneration !== undefined) {
    await trx.deleteFrom("upload_parts").where("upload_id", "=", uploadId).execute();
    await trx.updateTable("upload_sessions").set({ finished_generation: finishedGeneration }).where("upload_id", "=", uploadId).execute();
    return;
  }
  await trx.deleteFrom("upload_sessions").where("upload_id", "=", uploadId).execute();
}

export async function sweepExpiredUploads(trx: Transaction<Database>, limit: number): Promise<number | undefined> {
  const lock = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(hashtextextended(${SWEEP_LOCK_NAME}, 0)) as locked`.execute(trx);
  if (!lock.rows[0]?.locked) return undefined;

  const expired = await trx
    .selectFrom("upload_sessions")
    .selectAll()
    .where(sql<boolean>`expires_at <= now()`)
    .orderBy("expires_at")
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
  for (const session of expired) {
    await removeSession(trx, session);
  }
  return expired.length;
}

/** Removes an upload and queues the blobs of its parts and part chunks for deletion. */
export async function removeSession(trx: Transaction<Database>, session: Selectable<UploadSessionsTable>): Promise<void> {
  await queuePartBlobs(trx, session, await listParts(trx, session.upload_id));
  await queueChunkBlobs(trx, session);
  await trx.deleteFrom("upload_sessions").where("upload_id", "=", session.upload_id).execute();
}

export async function queuePartBlobs(trx: Transaction<Database>, session: Selectable<UploadSessionsTable>, parts: readonly PartRecord[]): Promise<void> {
  if (parts.length === 0) return;
  await trx
    .insertInto("blob_deletions")
    .values(parts.map((part) => ({ bucket: session.bucket, key: session.key, version_id: part.versionId })))
    .execute();
}

/** Queues the blobs of every unfinished part chunk of an upload for deletion; the rows go with the session. */
async function queueChunkBlobs(trx: Transaction<Database>, session: Selectable<UploadSessionsTable>): Promise<void> {
  const chunks = await trx.selectFrom("upload_part_chunks").select("version_id").where("upload_id", "=", session.upload_id).execute();
  if (chunks.length === 0) return;
  await trx
    .insertInto("blob_deletions")
    .values(chunks.map((chunk) => ({ bucket: session.bucket, key: session.key, version_id: chunk.version_id })))
    .execute();
}

export function uploadNotFound(uploadId: string): StorageError {
  return notFound(`upload ${JSON.stringify(uploadId)} not found: it was completed, aborted or has expired; start a new upload`);
}

function sessionFromRow(row: Selectable<UploadSessionsTable>): UploadSessionRecord {
  return {
    uploadId: row.upload_id,
    bucket: row.bucket,
    key: row.key,
    generation: Number(row.generation),
    versionId: row.version_id,
    spec: row.spec as UploadSessionSpec,
    partSize: Number(row.part_size),
    resumable: row.resumable,
    finishedGeneration: row.finished_generation === null ? undefined : Number(row.finished_generation),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

function partFromRow(row: Selectable<UploadPartsTable>): PartRecord {
  return {
    uploadId: row.upload_id,
    partNumber: row.part_number,
    versionId: row.version_id,
    size: Number(row.size),
    sha256: row.sha256,
    crc32c: Number(row.crc32c),
    createdAt: row.created_at,
  };
}
