/*
 * Engram in its production shape for the benchmarks: blobs in a MinIO the
 * benchmark starts, metadata in a fresh PostgreSQL database.
 */
import { createBenchDatabase, type BenchDatabase } from "./postgres.js";
import { startEngramServer, startMinioServer, type EngramServer, type MinioServer } from "./processes.js";

export interface EngramOnMinio {
  readonly minio: MinioServer;
  readonly engram: EngramServer;
  /** Metadata store, for the results: "PostgreSQL", or PGlite with the reason. */
  readonly metadata: string;
  /** Stops Engram and MinIO and drops the database. */
  stop(): Promise<void>;
}

/**
 * Starts MinIO, then Engram on it with the given ENGRAM_* settings added.
 * The metadata goes to PostgreSQL when a database can be created on
 * loopback, else to PGlite, which is logged.
 */
export async function startEngramOnMinio(
  minioBinary: string,
  log: (line: string) => void,
  nodeArgs: readonly string[] = [],
  settings: Record<string, string> = {},
): Promise<EngramOnMinio> {
  let minio: MinioServer | undefined;
  let database: BenchDatabase | undefined;
  const stop = async (engram?: EngramServer): Promise<void> => {
    await engram?.stop();
    await database?.drop();
    await minio?.stop();
  };

  try {
    minio = await startMinioServer(minioBinary);
    const env: Record<string, string> = {
      ENGRAM_BLOB_STORE: "s3",
      ENGRAM_S3_ENDPOINT: minio.endpoint,
      ENGRAM_S3_ACCESS_KEY: minio.accessKey,
      ENGRAM_S3_SECRET_KEY: minio.secretKey,
      ENGRAM_S3_REGION: "us-east-1",
      ENGRAM_S3_BUCKET_PREFIX: "engram-",
      ...settings,
    };
    let metadata = "PostgreSQL";
    const created = await createBenchDatabase();
    if ("url" in created) {
      database = created;
      env.ENGRAM_METADATA_STORE = "postgres";
      env.ENGRAM_POSTGRES_URL = created.url;
    } else {
      metadata = `PGlite (${created.unavailable})`;
      log(`  metadata in PGlite: ${created.unavailable}`);
    }

    const engram = await startEngramServer({ env, nodeArgs });
    return { minio, engram, metadata, stop: () => stop(engram) };
  } catch (err) {
    await stop();
    throw err;
  }
}
