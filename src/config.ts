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
  };
  return Object.freeze(config);
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
