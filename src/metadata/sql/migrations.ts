import { sql, type Kysely, type Migration, type MigrationProvider } from "kysely";

/*
 * Schema migrations, shared by PGlite and PostgreSQL. Keys use the "C"
 * collation so that listing order is the byte order of their UTF-8, as in
 * S3, on every server whatever its locale.
 */
const migrations: Record<string, Migration> = {
  "0001_objects": {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`create sequence object_generation_seq`.execute(db);

      await sql`
        create table buckets (
          name text primary key,
          created_at timestamptz not null default now()
        )`.execute(db);

      // Every version of every object. A version is live when it is the one
      // reads see; non-live rows are kept only once buckets get versioning.
      await sql`
        create table objects (
          bucket text not null references buckets (name),
          key text collate "C" not null,
          generation bigint not null,
          version_id text not null,
          live boolean not null,
          size bigint not null,
          content_type text not null,
          storage_class text not null,
          metadata jsonb not null,
          tags jsonb not null,
          sha256 text not null,
          crc32c bigint not null,
          etag text not null,
          created_at timestamptz not null,
          last_read_at timestamptz,
          read_count bigint not null default 0,
          primary key (bucket, key, generation)
        )`.execute(db);
      await sql`create unique index objects_live_key on objects (bucket, key) where live`.execute(db);

      // Blobs that no object refers to any more. A sweeper deletes them
      // after a grace period, so downloads already in flight can finish.
      await sql`
        create table blob_deletions (
          id bigserial primary key,
          bucket text not null,
          key text collate "C" not null,
          version_id text not null,
          enqueued_at timestamptz not null default now()
        )`.execute(db);
      await sql`create index blob_deletions_enqueued_at on blob_deletions (enqueued_at)`.execute(db);
    },
  },

  "0002_multipart_uploads": {
    async up(db: Kysely<unknown>): Promise<void> {
      // Multipart upload sessions. The generation is reserved at creation,
      // as for a single-stream upload, and version_id names the blob family
      // of the object and its parts. A session past expires_at is treated
      // as gone and swept.
      await sql`
        create table upload_sessions (
          upload_id text primary key,
          bucket text not null references buckets (name),
          key text collate "C" not null,
          generation bigint not null,
          version_id text not null,
          spec jsonb not null,
          part_size bigint not null,
          created_at timestamptz not null default now(),
          expires_at timestamptz not null
        )`.execute(db);
      await sql`create index upload_sessions_bucket_key on upload_sessions (bucket, key, upload_id)`.execute(db);
      await sql`create index upload_sessions_expires_at on upload_sessions (expires_at)`.execute(db);

      // One row per stored part. A retried part replaces the row, and the
      // blob of the attempt it replaces goes to blob_deletions.
      await sql`
        create table upload_parts (
          upload_id text not null references upload_sessions (upload_id) on delete cascade,
          part_number integer not null,
          version_id text not null,
          size bigint not null,
          sha256 text not null,
          crc32c bigint not null,
          created_at timestamptz not null default now(),
          primary key (upload_id, part_number)
        )`.execute(db);
    },
  },

  "0003_resumable_uploads": {
    async up(db: Kysely<unknown>): Promise<void> {
      // A resumable upload is a session whose parts are consecutive
      // segments of one stream. Once finished, its row stays until it
      // expires, with the committed generation, so a retried finish returns
      // the object instead of NOT_FOUND.
      await sql`alter table upload_sessions add column resumable boolean not null default false`.execute(db);
      await sql`alter table upload_sessions add column finished_generation bigint`.execute(db);
    },
  },

  "0004_bucket_versioning": {
    async up(db: Kysely<unknown>): Promise<void> {
      // Bucket settings, and usage counters that every transaction adding or
      // removing a version keeps current, so reading usage never scans.
      // object_count and total_bytes cover live objects; version_count and
      // version_bytes cover every stored version. Delete markers count in
      // neither.
      await sql`
        alter table buckets
          add column status text not null default 'active'
            check (status in ('active', 'suspended', 'archived')),
          add column versioning text not null default 'unversioned'
            check (versioning in ('unversioned', 'enabled', 'suspended')),
          add column lifecycle_rules jsonb not null default '[]',
          add column metageneration bigint not null default 1,
          add column updated_at timestamptz not null default now(),
          add column object_count bigint not null default 0,
          add column total_bytes bigint not null default 0,
          add column version_count bigint not null default 0,
          add column version_bytes bigint not null default 0`.execute(db);

      // A delete marker is a version without a blob (version_id is empty).
      // The null version is the one S3 calls "null": every version written
      // while versioning is off or suspended; a later such write replaces it.
      // Rows from before this migration were all written unversioned.
      await sql`
        alter table objects
          add column delete_marker boolean not null default false,
          add column null_version boolean not null default false,
          add column noncurrent_at timestamptz`.execute(db);
      await sql`update objects set null_version = true`.execute(db);
      await sql`create index objects_noncurrent on objects (bucket, key, generation) where not live`.execute(db);

      await sql`
        update buckets b set
          object_count = u.objects, total_bytes = u.bytes,
          version_count = u.objects, version_bytes = u.bytes
        from (select bucket, count(*) as objects, sum(size) as bytes from objects group by bucket) u
        where u.bucket = b.name`.execute(db);
    },
  },

  "0005_part_chunks": {
    async up(db: Kysely<unknown>): Promise<void> {
      // Chunks of a part sent with UploadPartChunk, each a blob of its own,
      // kept until the call with finish_write joins them into the part. The
      // chunks of one part are consecutive from offset 0.
      await sql`
        create table upload_part_chunks (
          upload_id text not null references upload_sessions (upload_id) on delete cascade,
          part_number integer not null,
          write_offset bigint not null,
          version_id text not null,
          size bigint not null,
          created_at timestamptz not null default now(),
          primary key (upload_id, part_number, write_offset)
        )`.execute(db);
    },
  },

  "0006_access_control": {
    async up(db: Kysely<unknown>): Promise<void> {
      // Access keys created through AdminService. Only the SHA-256 of each
      // token is kept. A revoked key keeps its row, so its id is never
      // reused and the audit log can still name it.
      await sql`
        create table access_keys (
          key_id text primary key,
          principal text not null,
          description text not null,
          grants jsonb not null,
          token_sha256 text not null,
          created_at timestamptz not null default now(),
          revoked_at timestamptz
        )`.execute(db);

      // Writes, deletes, presigns and admin calls, allowed or denied.
      await sql`
        create table audit_events (
          id bigserial primary key,
          time timestamptz not null default now(),
          principal text not null,
          action text not null,
          bucket text not null,
          key text collate "C" not null,
          result text not null,
          operation text not null
        )`.execute(db);
      await sql`create index audit_events_principal on audit_events (principal, id)`.execute(db);
      await sql`create index audit_events_bucket on audit_events (bucket, id)`.execute(db);
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
