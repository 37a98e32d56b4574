/*
 * Queries on the chunks of parts sent with unary calls. Every write locks
 * the session row first, as the part queries do, so chunk appends and part
 * records of one upload are serialized across replicas.
 */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";

import { StorageError } from "../../service/errors.js";
import type { NewPart, PartChunkRecord, PartRecord } from "../metadata-store.js";
import type { Database, UploadPartChunksTable } from "./schema.js";
import { extendSession, lockSession, recordPartLocked } from "./sql-upload-queries.js";

type Db = Kysely<Database> | Transaction<Database>;

export async function listPartChunks(db: Db, uploadId: string, partNumber: number): Promise<PartChunkRecord[]> {
  const rows = await db
    .selectFrom("upload_part_chunks")
    .selectAll()
    .where("upload_id", "=", uploadId)
    .where("part_number", "=", partNumber)
    .orderBy("write_offset")
    .execute();
  return rows.map(chunkFromRow);
}

export async function appendPartChunk(trx: Transaction<Database>, chunk: PartChunkRecord, ttlMs: number): Promise<{ expiresAt: Date }> {
  await lockSession(trx, chunk.uploadId);
  const stored = await trx
    .selectFrom("upload_part_chunks")
    .select(sql<string | null>`sum(size)`.as("bytes"))
    .where("upload_id", "=", chunk.uploadId)
    .where("part_number", "=", chunk.partNumber)
    .executeTakeFirstOrThrow();
  const persisted = Number(stored.bytes ?? 0);
  if (persisted !== chunk.writeOffset) {
    throw new StorageError(
      "aborted",
      `part ${chunk.partNumber} of upload ${chunk.uploadId} now has ${persisted} bytes, not ${chunk.writeOffset}: another call is sending it; send the chunk again to skip what is stored`,
    );
  }

  await trx
    .insertInto("upload_part_chunks")
    .values({
      upload_id: chunk.uploadId,
      part_number: chunk.partNumber,
      write_offset: chunk.writeOffset,
      version_id: chunk.versionId,
      size: chunk.size,
    })
    .execute();
  return { expiresAt: await extendSession(trx, chunk.uploadId, ttlMs) };
}

export async function finishPartChunks(
  trx: Transaction<Database>,
  part: NewPart,
  chunks: readonly PartChunkRecord[],
  ttlMs: number,
): Promise<{ part: PartRecord; expiresAt: Date }> {
  const session = await lockSession(trx, part.uploadId);
  const current = await listPartChunks(trx, part.uploadId, part.partNumber);
  const unchanged = current.length === chunks.length && current.every((chunk, index) => chunk.versionId === chunks[index]!.versionId);
  if (!unchanged) {
    throw new StorageError(
      "aborted",
      `part ${part.partNumber} of upload ${part.uploadId} was finished or changed by another call: call ListParts to see whether it is stored`,
    );
  }

  await trx.deleteFrom("upload_part_chunks").where("upload_id", "=", part.uploadId).where("part_number", "=", part.partNumber).execute();
  const leftover = chunks.filter((chunk) => chunk.versionId !== part.versionId);
  if (leftover.length > 0) {
    await trx
      .insertInto("blob_deletions")
      .values(leftover.map((chunk) => ({ bucket: session.bucket, key: session.key, version_id: chunk.versionId })))
      .execute();
  }
  return recordPartLocked(trx, session, part, ttlMs);
}

export async function removePartChunks(trx: Transaction<Database>, uploadId: string, partNumber: number): Promise<void> {
  const session = await lockSession(trx, uploadId);
  const removed = await trx
    .deleteFrom("upload_part_chunks")
    .where("upload_id", "=", uploadId)
    .where("part_number", "=", partNumber)
    .returning("version_id")
    .execute();
  if (removed.length === 0) return;
  await trx
    .insertInto("blob_deletions")
    .values(removed.map((chunk) => ({ bucket: session.bucket, key: session.key, version_id: chunk.version_id })))
    .execute();
}

function chunkFromRow(row: Selectable<UploadPartChunksTable>): PartChunkRecord {
  return {
    uploadId: row.upload_id,
    partNumber: row.part_number,
    writeOffset: Number(row.write_offset),
    versionId: row.version_id,
    size: Number(row.size),
  };
}
