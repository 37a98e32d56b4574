/* AccessStore on Kysely, over the access_keys and audit_events tables. */
import { sql, type Kysely, type Selectable } from "kysely";

import type { AccessKeyRecord, AccessStore, AuditEvent, AuditQuery, AuditRecord, GrantRecord, NewAccessKey } from "../access-store.js";
import type { AccessKeysTable, Database } from "./schema.js";

export class SqlAccessStore implements AccessStore {
  constructor(private readonly db: Kysely<Database>) {}

  async createAccessKey(key: NewAccessKey): Promise<AccessKeyRecord> {
    const row = await this.db
      .insertInto("access_keys")
      .values({
        key_id: key.keyId,
        principal: key.principal,
        description: key.description,
        grants: JSON.stringify(key.grants),
        token_sha256: key.tokenSha256,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return accessKeyOf(row);
  }

  async getAccessKey(keyId: string): Promise<AccessKeyRecord | undefined> {
    const row = await this.db.selectFrom("access_keys").selectAll().where("key_id", "=", keyId).executeTakeFirst();
    return row && accessKeyOf(row);
  }

  async listAccessKeys(): Promise<AccessKeyRecord[]> {
    const rows = await this.db.selectFrom("access_keys").selectAll().orderBy("created_at").orderBy("key_id").execute();
    return rows.map(accessKeyOf);
  }

  async revokeAccessKey(keyId: string): Promise<AccessKeyRecord | undefined> {
    await this.db.updateTable("access_keys").set({ revoked_at: sql<Date>`now()` }).where("key_id", "=", keyId).where("revoked_at", "is", null).execute();
    return this.getAccessKey(keyId);
  }

  async countAccessKeys(): Promise<number> {
    const { count } = await this.db.selectFrom("access_keys").select((eb) => eb.fn.countAll().as("count")).executeTakeFirstOrThrow();
    return Number(count);
  }

  async appendAudit(event: AuditEvent): Promise<void> {
    await this.db.insertInto("audit_events").values(event).execute();
  }

  async listAudit(query: AuditQuery): Promise<AuditRecord[]> {
    let select = this.db.selectFrom("audit_events").selectAll();
    if (query.principal) select = select.where("principal", "=", query.principal);
    if (query.bucket) select = select.where("bucket", "=", query.bucket);
    if (query.beforeId !== undefined) select = select.where("id", "<", query.beforeId);
    const rows = await select.orderBy("id", "desc").limit(query.limit).execute();
    return rows.map((row) => ({
      id: Number(row.id),
      time: row.time,
      principal: row.principal,
      action: row.action,
      bucket: row.bucket,
      key: row.key,
      result: row.result,
      operation: row.operation,
    }));
  }
}

function accessKeyOf(row: Selectable<AccessKeysTable>): AccessKeyRecord {
  const grants = (typeof row.grants === "string" ? JSON.parse(row.grants) : row.grants) as GrantRecord[];
  return {
    keyId: row.key_id,
    principal: row.principal,
    description: row.description,
    grants,
    tokenSha256: row.token_sha256,
    createdAt: row.created_at,
    revokedAt: row.revoked_at ?? undefined,
  };
}
