import { randomBytes } from "node:crypto";

import { Client } from "minio";
import { inject } from "vitest";

import { S3BlobStore } from "../../src/blob/s3/s3-blob-store.js";
import type { S3Peer } from "./s3-peers.js";

/** The S3 servers this run started; null when one is not installed here. */
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

/** A bucket prefix unique to one test, so tests sharing a server never meet. */
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
