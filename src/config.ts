import { readFileSync } from "node:fs";
import { resolve } from "node:path";

import { validateBucketName } from "./service/names.js";

/** Engram's settings, read once from the environment at start. */
export interface Config {
  /** Address the API listens on. */
  readonly host: string;
  /** Port of the API: gRPC, gRPC-Web and Connect on one port. */
  readonly port: number;
  /** Directory of the embedded blob store and PGlite database. */
  readonly dataDir: string;
  /** Buckets created at start if missing. */
  readonly buckets: readonly string[];
  /** Origins allowed to call from a browser; empty turns CORS off, "*" allows any. */
  readonly corsOrigins: readonly string[];
  readonly logLevel: string;
  readonly maxObjectBytes: number;
  readonly maxUploadChunkBytes: number;
  /** How long a replaced or deleted blob is kept for downloads in flight. */
  readonly blobDeleteGraceMs: number;
  /** How often download counts are written to the metadata store. */
  readonly readFlushIntervalMs: number;
  /** How long in-flight calls may run on after SIGTERM. */
  readonly shutdownGraceMs: number;
  /** Store for bytes: the local filesystem, or an S3-compatible store. */
  readonly blobStore: "fs" | "s3";
  /** Store for metadata: embedded PGlite, or a PostgreSQL server. */
  readonly metadataStore: "pglite" | "postgres";
  readonly s3: S3Config;
  readonly postgres: PostgresConfig;
}

export interface S3Config {
  /** Endpoint URL; https turns TLS on. */
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  /** Region used for signing; set explicitly so no region lookup call is made. */
  readonly region: string;
  /** Prepended to every Engram bucket name to form the S3 bucket name. */
  readonly bucketPrefix: string;
  /** Creates missing S3 buckets at start. */
  readonly createBuckets: boolean;
  /** Part size for uploads of unknown size, in bytes. */
  readonly partSizeBytes: number;
  /** Parts uploaded at once per upload. */
  readonly partsInFlight: number;
}

export interface PostgresConfig {
  /** Connection string, such as postgres://engram@db:5432/engram. */
  readonly url: string;
  readonly password: string | undefined;
  readonly poolSize: number;
  readonly statementTimeoutMs: number;
  readonly idleInTransactionTimeoutMs: number;
}

export const DEFAULT_BUCKETS = ["mnemos-models", "mnemos-artifacts", "mnemos-backups", "mnemos-logs"] as const;

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;

/** A setting with a bad value; the message names the variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Reads and validates the configuration; the result is frozen. */
export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const config: Config = {
    host: text(env, "ENGRAM_HOST", "127.0.0.1"),
    port: integer(env, "ENGRAM_PORT", 9000, 0, 65535),
    dataDir: resolve(text(env, "ENGRAM_DATA_DIR", "data")),
    buckets: bucketList(env, "ENGRAM_BUCKETS"),
    corsOrigins: list(env, "ENGRAM_CORS_ORIGINS"),
    logLevel: oneOf(env, "ENGRAM_LOG_LEVEL", "info", ["trace", "debug", "info", "warn", "error", "fatal", "silent"]),
    maxObjectBytes: integer(env, "ENGRAM_MAX_OBJECT_BYTES", 5 * TiB, 0, Number.MAX_SAFE_INTEGER),
    // 4 MiB chunks move data fastest; the message limit adds room for the
    // other fields and stays far below what would strain memory.
    maxUploadChunkBytes: integer(env, "ENGRAM_MAX_UPLOAD_CHUNK_BYTES", 4 * MiB, 1024, 16 * MiB),
    blobDeleteGraceMs: integer(env, "ENGRAM_BLOB_DELETE_GRACE_SECONDS", 300, 0, 86_400) * 1000,
    readFlushIntervalMs: integer(env, "ENGRAM_READ_FLUSH_SECONDS", 5, 1, 3600) * 1000,
    shutdownGraceMs: integer(env, "ENGRAM_SHUTDOWN_GRACE_SECONDS", 30, 0, 3600) * 1000,
    blobStore: oneOf(env, "ENGRAM_BLOB_STORE", "fs", ["fs", "s3"]) as "fs" | "s3",
    metadataStore: oneOf(env, "ENGRAM_METADATA_STORE", "pglite", ["pglite", "postgres"]) as "pglite" | "postgres",
    s3: Object.freeze(readS3Config(env)),
    postgres: Object.freeze(readPostgresConfig(env)),
  };
  if (config.blobStore === "s3") requireSettings(env, ["ENGRAM_S3_ENDPOINT", "ENGRAM_S3_ACCESS_KEY", "ENGRAM_S3_SECRET_KEY"]);
  if (config.metadataStore === "postgres") requireSettings(env, ["ENGRAM_POSTGRES_URL"]);
  return Object.freeze(config);
}

function readS3Config(env: NodeJS.ProcessEnv): S3Config {
  const endpoint = text(env, "ENGRAM_S3_ENDPOINT", "http://127.0.0.1:9000");
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ConfigError(`ENGRAM_S3_ENDPOINT=${JSON.stringify(endpoint)} is not a URL: use a form such as http://minio:9000`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`ENGRAM_S3_ENDPOINT=${JSON.stringify(endpoint)} must start with http:// or https://`);
  }
  return {
    endpoint,
    accessKey: secret(env, "ENGRAM_S3_ACCESS_KEY") ?? "",
    secretKey: secret(env, "ENGRAM_S3_SECRET_KEY") ?? "",
    region: text(env, "ENGRAM_S3_REGION", "us-east-1"),
    bucketPrefix: text(env, "ENGRAM_S3_BUCKET_PREFIX", ""),
    createBuckets: oneOf(env, "ENGRAM_S3_CREATE_BUCKETS", "true", ["true", "false"]) === "true",
    partSizeBytes: integer(env, "ENGRAM_S3_PART_SIZE_BYTES", 16 * MiB, 5 * MiB, 5 * 1024 * MiB),
    partsInFlight: integer(env, "ENGRAM_S3_PARTS_IN_FLIGHT", 4, 1, 64),
  };
}

function readPostgresConfig(env: NodeJS.ProcessEnv): PostgresConfig {
  return {
    url: secret(env, "ENGRAM_POSTGRES_URL") ?? "",
    password: secret(env, "ENGRAM_POSTGRES_PASSWORD"),
    poolSize: integer(env, "ENGRAM_POSTGRES_POOL_SIZE", 10, 1, 1000),
    statementTimeoutMs: integer(env, "ENGRAM_POSTGRES_STATEMENT_TIMEOUT_MS", 30_000, 0, 3_600_000),
    idleInTransactionTimeoutMs: integer(env, "ENGRAM_POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000, 0, 3_600_000),
  };
}

/** Reads NAME, or the file that NAME_FILE points to (as Docker and Kubernetes secrets are mounted). */
function secret(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const file = env[`${name}_FILE`]?.trim();
  if (file) {
    try {
      return readFileSync(file, "utf8").trim();
    } catch (err) {
      throw new ConfigError(`${name}_FILE=${file} cannot be read: ${(err as Error).message}`);
    }
  }
  const value = env[name];
  return value === undefined || value === "" ? undefined : value;
}

function requireSettings(env: NodeJS.ProcessEnv, names: readonly string[]): void {
  for (const name of names) {
    if (!env[name] && !env[`${name}_FILE`]) {
      throw new ConfigError(`${name} is missing: set it (or ${name}_FILE) for the chosen backend`);
    }
  }
}

function text(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const value = env[name]?.trim();
  return value === undefined || value === "" ? fallback : value;
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is not a whole number: set it to an integer from ${min} to ${max}`);
  }
  const value = Number(raw);
  if (value < min || value > max) {
    throw new ConfigError(`${name}=${value} is out of range: set it to an integer from ${min} to ${max}`);
  }
  return value;
}

function oneOf(env: NodeJS.ProcessEnv, name: string, fallback: string, allowed: readonly string[]): string {
  const value = text(env, name, fallback);
  if (!allowed.includes(value)) {
    throw new ConfigError(`${name}=${JSON.stringify(value)} is invalid: use one of ${allowed.join(", ")}`);
  }
  return value;
}

function list(env: NodeJS.ProcessEnv, name: string): string[] {
  return (env[name] ?? "")
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

function bucketList(env: NodeJS.ProcessEnv, name: string): string[] {
  const buckets = env[name] === undefined ? [...DEFAULT_BUCKETS] : list(env, name);
  for (const bucket of buckets) {
    try {
      validateBucketName(bucket);
    } catch (err) {
      throw new ConfigError(`${name}: ${(err as Error).message}`);
    }
  }
  return buckets;
}
