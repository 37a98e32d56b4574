import type { ColumnType, Generated } from "kysely";

/** int8 columns: PGlite returns bigint, node-postgres a string. */
type Int8 = ColumnType<bigint | string | number, number | bigint, number | bigint>;
/** An int8 column with a default. */
type GeneratedInt8 = ColumnType<bigint | string | number, number | bigint | undefined, number | bigint>;
type Json = ColumnType<Record<string, string>, string, string>;

export interface BucketsTable {
  name: string;
  created_at: ColumnType<Date, Date | undefined, never>;
  status: ColumnType<string, string | undefined, string>;
  versioning: ColumnType<string, string | undefined, string>;
  lifecycle_rules: ColumnType<unknown, string | undefined, string>;
  metageneration: GeneratedInt8;
  updated_at: ColumnType<Date, Date | undefined, Date>;
  object_count: GeneratedInt8;
  total_bytes: GeneratedInt8;
  version_count: GeneratedInt8;
  version_bytes: GeneratedInt8;
}

export interface ObjectsTable {
  bucket: string;
  key: string;
  generation: Int8;
  version_id: string;
  live: boolean;
  size: Int8;
  content_type: string;
  storage_class: string;
  metadata: Json;
  tags: Json;
  sha256: string;
  crc32c: Int8;
  etag: string;
  created_at: ColumnType<Date, Date, never>;
  last_read_at: ColumnType<Date | null, never, Date>;
  read_count: GeneratedInt8;
  delete_marker: ColumnType<boolean, boolean | undefined, boolean>;
  null_version: ColumnType<boolean, boolean | undefined, boolean>;
  noncurrent_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

export interface BlobDeletionsTable {
  id: GeneratedInt8;
  bucket: string;
  key: string;
  version_id: string;
  enqueued_at: Generated<Date>;
}

export interface UploadSessionsTable {
  upload_id: string;
  bucket: string;
  key: string;
  generation: Int8;
  version_id: string;
  spec: ColumnType<unknown, string, string>;
  part_size: Int8;
  created_at: Generated<Date>;
  expires_at: Date;
  resumable: ColumnType<boolean, boolean | undefined, boolean>;
  finished_generation: ColumnType<bigint | string | number | null, never, number | bigint>;
}

export interface UploadPartsTable {
  upload_id: string;
  part_number: number;
  version_id: string;
  size: Int8;
  sha256: string;
  crc32c: Int8;
  created_at: Generated<Date>;
}

export interface UploadPartChunksTable {
  upload_id: string;
  part_number: number;
  write_offset: Int8;
  version_id: string;
  size: Int8;
  created_at: Generated<Date>;
}

export interface AccessKeysTable {
  key_id: string;
  principal: string;
  description: string;
  grants: ColumnType<unknown, string, string>;
  token_sha256: string;
  created_at: Generated<Date>;
  revoked_at: ColumnType<Date | null, never, Date>;
}

export interface AuditEventsTable {
  id: GeneratedInt8;
  time: Generated<Date>;
  principal: string;
  action: string;
  bucket: string;
  key: string;
  result: string;
  operation: string;
}

export interface Database {
  buckets: BucketsTable;
  objects: ObjectsTable;
  blob_deletions: BlobDeletionsTable;
  upload_sessions: UploadSessionsTable;
  upload_parts: UploadPartsTable;
  upload_part_chunks: UploadPartChunksTable;
  access_keys: AccessKeysTable;
  audit_events: AuditEventsTable;
}
