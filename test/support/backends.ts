import { randomBytes } from "node:crypto";

import { Client } from "minio";
import { inject } from "vitest";

import { S3BlobStore } from "../../src/blob/s3/s3-blob-store.js";
import type { StartOptions } from "../../src/engram.js";
import { startTestEngram, type TestEngram } from "./engram.js";
import { createTestDatabase, requirePostgres } from "./postgres.js";
import type { S3Peer } from "./s3-peers.js";

/** Returns the S3 servers this run started, with null for one not installed here. */
export function s3Peers(): { name: string; peer: S3Peer | null }[] {
  return [
    { name: "MinIO", peer: inject("minio") },
    { name: "Ceph RGW", peer: inject("cephRgw") },
  ];
}

export function minioClientFor(peer: S3Peer): Client {
  const url = new URL(peer.endpoint);
  return new Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: false,
    accessKey: peer.accessKey,
    secretKey: peer.secretKey,
    region: "us-east-1",
    pathStyle: true,
  });
}

/** Returns a bucket prefix unique to one test, so tests sharing a server never meet. */
export function uniqueBucketPrefix(): string {
  return `t${randomBytes(4).toString("hex")}-`;
}

/** Settings of an Engram on the given S3 server, as environment variables. */
export function s3Env(peer: S3Peer, bucketPrefix = uniqueBucketPrefix()): Record<string, string> {
  return {
    ENGRAM_BLOB_STORE: "s3",
    ENGRAM_S3_ENDPOINT: peer.endpoint,
    ENGRAM_S3_ACCESS_KEY: peer.accessKey,
    ENGRAM_S3_SECRET_KEY: peer.secretKey,
    ENGRAM_S3_REGION: "us-east-1",
    ENGRAM_S3_BUCKET_PREFIX: bucketPrefix,
    ENGRAM_S3_PART_SIZE_BYTES: String(5 * 1024 * 1024),
  };
}

export function s3StoreFor(peer: S3Peer, bucketPrefix = uniqueBucketPrefix()): S3BlobStore {
  return new S3BlobStore(minioClientFor(peer), {
    bucketPrefix,
    region: "us-east-1",
    createBuckets: true,
    partSizeBytes: 5 * 1024 * 1024,
    partsInFlight: 2,
  });
}

/** One combination of blob and metadata store that a suite runs on. */
export interface Backend {
  readonly name: string;
  /** False when a server it needs is not installed here (never in CI). */
  readonly available: boolean;
  start(env?: Record<string, string>, options?: Partial<StartOptions>): Promise<TestEngram>;
}

/**
 * Lists the combinations every end-to-end suite runs on: embedded (filesystem
 * and PGlite) and production (MinIO and PostgreSQL, each database fresh).
 */
export async function backendsUnderTest(): Promise<Backend[]> {
  const minio = inject("minio");
  const postgres = await requirePostgres("the MinIO + PostgreSQL suites");
  return [
    { name: "embedded", available: true, start: (env = {}, options = {}) => startTestEngram(env, options) },
    {
      name: "MinIO + PostgreSQL",
      available: minio !== null && !postgres.skip,
      async start(env = {}, options = {}) {
        postgres.assertAvailable();
        const database = await createTestDatabase();
        const engram = await startTestEngram({ ...s3Env(minio!), ENGRAM_METADATA_STORE: "postgres", ENGRAM_POSTGRES_URL: database.url, ...env }, options);
        return {
          ...engram,
          async destroy() {
            await engram.destroy();
            await database.drop();
          },
        };
      },
    },
  ];
}
