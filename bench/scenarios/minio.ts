/*
 * Scenario 2: the same file through Engram on its production shape (blobs
 * in MinIO, metadata in PostgreSQL) against the `minio` package talking to
 * the same MinIO directly. Both sides are one client process and one
 * server process away from MinIO on loopback.
 */
import type { Client as MinioClient } from "minio";

import { connectGrpcClient, type EngramClient } from "../lib/engram-clients.js";
import { startEngramOnMinio, type EngramOnMinio } from "../lib/engram-on-minio.js";
import type { MinioServer } from "../lib/processes.js";
import { PresignedClient } from "../lib/presigned-client.js";
import { minioClient, minioDownload, minioUpload } from "../lib/reference-clients.js";
import { MiB } from "../lib/stats.js";
import { engramPath, fileSource, measurePaths, presignedPath, type DataFile, type PathMeasurements, type TransferPath } from "./streaming.js";

export interface MinioStreamingResult {
  readonly sizeBytes: number;
  readonly rounds: number;
  /** "PostgreSQL", or "PGlite" with the reason when no PostgreSQL was reachable. */
  readonly metadata: string;
  readonly paths: PathMeasurements[];
}

export interface MinioStreamingOptions {
  readonly minioBinary: string;
  readonly file: DataFile;
  readonly warmupFile: DataFile;
  readonly rounds: number;
  readonly log: (line: string) => void;
  readonly engramNodeArgs?: readonly string[];
}

const DIRECT_BUCKET = "bench-direct";
/** The `minio` package's default part size for a stream of known size under 640 GiB. */
const MINIO_PACKAGE_PART = "64 MiB";

export async function runMinioStreaming(options: MinioStreamingOptions): Promise<MinioStreamingResult> {
  const { file, warmupFile, rounds, log } = options;
  let started: EngramOnMinio | undefined;
  let client: EngramClient | undefined;
  let presigned: PresignedClient | undefined;
  try {
    // Presigned URLs point at MinIO itself, so that large transfers can skip
    // Engram's data path. The gRPC streams are the same in either mode.
    started = await startEngramOnMinio(options.minioBinary, log, options.engramNodeArgs, { ENGRAM_PRESIGN_URLS: "store" });
    const { minio, engram, metadata } = started;
    client = connectGrpcClient(engram.url);
    presigned = new PresignedClient(engram.url, "presigned URLs to the store, HTTP/1.1");

    const direct = minioClient(minio.endpoint, minio.accessKey, minio.secretKey);
    await direct.makeBucket(DIRECT_BUCKET, "us-east-1");
    const paths: TransferPath[] = [
      minioPath(minio, direct),
      engramPath(engram, client, `Engram on MinIO: ${client.name}`),
      presignedPath(engram, presigned, `Engram on MinIO: ${presigned.name}`),
    ];
    return { sizeBytes: file.size, rounds, metadata, paths: await measurePaths(paths, file, warmupFile, rounds, log) };
  } finally {
    client?.close();
    presigned?.close();
    await started?.stop();
  }
}

function minioPath(server: MinioServer, client: MinioClient): TransferPath {
  const keyOf = (round: string): string => `bench/streaming/${round}`;
  return {
    name: `MinIO direct: minio package, putObject (${MINIO_PACKAGE_PART} parts) / getObject`,
    role: "reference",
    serverPid: server.pid,
    async upload(file, round) {
      await minioUpload(client, DIRECT_BUCKET, keyOf(round), fileSource(file.path, MiB), file.size, file.sha256);
    },
    async download(file, round) {
      await minioDownload(client, DIRECT_BUCKET, keyOf(round), file.size, file.sha256);
    },
    async cleanup(round) {
      await client.removeObject(DIRECT_BUCKET, keyOf(round));
    },
  };
}

