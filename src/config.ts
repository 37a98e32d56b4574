import { readFileSync } from "node:fs";
import { resolve } from "node:path";

import type { JwtConfig } from "./auth/jwt.js";
import { readKvSecret, VaultError } from "./secrets/vault.js";
import { prettyLogsAvailable, type LogFormat } from "./log.js";
import { validateBucketName } from "./service/names.js";

/** Engram's settings, read once from the environment at start. */
export interface Config {
  /** Address the API listens on. */
  readonly host: string;
  /** Port of the API: gRPC, gRPC-Web and Connect on one port. */
  readonly port: number;
  /** Port of /metrics, /healthz and /readyz; 0 picks a free one. */
  readonly metricsPort: number;
  /** How often the stores are probed for the health status. */
  readonly healthIntervalMs: number;
  /** Directory of the embedded blob store and PGlite database. */
  readonly dataDir: string;
  /** Buckets created at start if missing. */
  readonly buckets: readonly string[];
  /** Origins allowed to call from a browser; empty turns CORS off, "*" allows any. */
  readonly corsOrigins: readonly string[];
  /**
   * Base URL that clients use to reach this Engram's HTTP data plane, put
   * into the URLs it signs; empty means the URL it listens on.
   */
  readonly publicUrl: string;
  /**
   * Server of presigned URLs. With "engram" the data plane serves them and
   * checks the creator's grants at every use. With "store" the S3 store
   * serves them, which takes the bytes off Engram, but it cannot see a
   * revoked key.
   */
  readonly presignUrls: "engram" | "store";
  /** Keys for signing data plane URLs, the first one active; empty means one generated into the data directory. */
  readonly signingKeys: readonly { readonly id: string; readonly secret: string }[];
  readonly logLevel: string;
  /** JSON lines, or human-readable text through pino-pretty. */
  readonly logFormat: LogFormat;
  readonly maxObjectBytes: number;
  readonly maxUploadChunkBytes: number;
  /** How long a replaced or deleted blob is kept for downloads in flight. */
  readonly blobDeleteGraceMs: number;
  /** How often download counts are written to the metadata store. */
  readonly readFlushIntervalMs: number;
  /** How often the lifecycle worker applies the buckets' lifecycle rules. */
  readonly lifecycleIntervalMs: number;
  /** How long in-flight calls may run on after SIGTERM. */
  readonly shutdownGraceMs: number;
  /** How long a multipart or resumable upload lives after its creation or its latest stored data. */
  readonly uploadExpiryMs: number;
  /** Store for bytes: the local filesystem, or an S3-compatible store. */
  readonly blobStore: "fs" | "s3";
  /** Store for metadata: embedded PGlite, or a PostgreSQL server. */
  readonly metadataStore: "pglite" | "postgres";
  readonly s3: S3Config;
  readonly postgres: PostgresConfig;
  readonly vault: VaultConfig;
  readonly auth: AuthConfig;
}

/** Access control: who may call, and with which grants. */
export interface AuthConfig {
  /** False only with ENGRAM_AUTH=off, which allows every call without credentials. */
  readonly enabled: boolean;
  /** Bearer token of a built-in admin with every grant; empty when unset. */
  readonly adminToken: string;
  /** JSON file of principals, their token hashes and grants; empty when unset. */
  readonly policyFile: string;
  /** JWTs of an identity service; undefined when not accepted. */
  readonly jwt: JwtConfig | undefined;
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
  /** Endpoint that clients reach, for presigned URLs; empty means the same as `endpoint`. */
  readonly publicEndpoint: string;
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

/** HashiCorp Vault KV version 2 secret that secret settings may be read from. */
export interface VaultConfig {
  /** Base URL of the Vault server, such as https://vault:8200; empty when Vault is not used. */
  readonly addr: string;
  readonly token: string;
  /** Mount path of the KV version 2 engine, such as secret. */
  readonly mount: string;
  /** Path of the secret below the mount, such as mnemos/engram. */
  readonly path: string;
  readonly timeoutMs: number;
  /** Field of the Vault secret for each secret setting that names one. */
  readonly fields: Readonly<Partial<Record<SecretVariable, string>>>;
}

/** Settings that contain credentials, so they may come from a file or from Vault. */
export const SECRET_VARIABLES = ["ENGRAM_S3_ACCESS_KEY", "ENGRAM_S3_SECRET_KEY", "ENGRAM_POSTGRES_URL", "ENGRAM_POSTGRES_PASSWORD"] as const;
export type SecretVariable = (typeof SECRET_VARIABLES)[number];

/** Source of a secret setting's value; the first three are in order of precedence. */
export type SecretSource = "env" | "file" | "vault" | "unset";

export const DEFAULT_BUCKETS = ["mnemos-models", "mnemos-artifacts", "mnemos-backups", "mnemos-logs"] as const;

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;

/** A setting with a bad value; the message names the variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/**
 * Reads and validates the configuration without network access; the result
 * is frozen. Use loadConfig when a secret may come from Vault.
 *
 * @throws ConfigError naming the variable of an invalid setting.
 * @throws Error when a secret setting is left to Vault, which only
 * loadConfig reads.
 */
export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const pending = SECRET_VARIABLES.filter((name) => secretSource(env, name) === "vault");
  if (pending.length > 0) {
    throw new Error(`${pending.join(", ")} must be read from Vault (${pending[0]}_VAULT_FIELD is set): load the configuration with loadConfig, not readConfig`);
  }
  return buildConfig(env, {});
}

/**
 * Reads the configuration like readConfig, but first reads from Vault every
 * secret setting that has a NAME_VAULT_FIELD and neither NAME nor
 * NAME_FILE. It makes one request, and only when some secret needs it.
 *
 * @throws ConfigError naming the variable of an invalid setting, or the
 * ENGRAM_VAULT_* variable to fix when the Vault read fails.
 */
export async function loadConfig(env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const vault = readVaultConfig(env);
  const pending = SECRET_VARIABLES.filter((name) => secretSource(env, name) === "vault");
  if (pending.length === 0) return buildConfig(env, {}, vault);

  let fields: Record<string, unknown>;
  try {
    fields = await readKvSecret(vault);
  } catch (err) {
    if (err instanceof VaultError) throw new ConfigError(`cannot read ${pending.join(", ")} from Vault: ${err.message}`, { cause: err });
    throw err;
  }

  const values: Partial<Record<SecretVariable, string>> = {};
  for (const name of pending) {
    values[name] = vaultField(vault, name, fields);
  }
  return buildConfig(env, values, vault);
}

/**
 * Returns where the value of a secret setting comes from: the variable
 * itself wins over NAME_FILE, which wins over NAME_VAULT_FIELD.
 */
export function secretSource(env: NodeJS.ProcessEnv, name: string): SecretSource {
  if (env[name] !== undefined && env[name] !== "") return "env";
  if (env[`${name}_FILE`]?.trim()) return "file";
  if (env[`${name}_VAULT_FIELD`]?.trim()) return "vault";
  return "unset";
}

function buildConfig(env: NodeJS.ProcessEnv, fromVault: Partial<Record<SecretVariable, string>>, vault = readVaultConfig(env)): Config {
  const config: Config = {
    host: text(env, "ENGRAM_HOST", "127.0.0.1"),
    port: integer(env, "ENGRAM_PORT", 9000, 0, 65535),
    metricsPort: integer(env, "ENGRAM_METRICS_PORT", 9001, 0, 65535),
    healthIntervalMs: integer(env, "ENGRAM_HEALTH_INTERVAL_MS", 2000, 100, 60_000),
    dataDir: resolve(text(env, "ENGRAM_DATA_DIR", "data")),
    buckets: bucketList(env, "ENGRAM_BUCKETS"),
    corsOrigins: list(env, "ENGRAM_CORS_ORIGINS"),
    publicUrl: urlSetting(env, "ENGRAM_PUBLIC_URL", ""),
    presignUrls: oneOf(env, "ENGRAM_PRESIGN_URLS", "engram", ["engram", "store"]) as "engram" | "store",
    signingKeys: signingKeys(env, fromVault),
    logLevel: oneOf(env, "ENGRAM_LOG_LEVEL", "info", ["trace", "debug", "info", "warn", "error", "fatal", "silent"]),
    logFormat: logFormat(env),
    maxObjectBytes: integer(env, "ENGRAM_MAX_OBJECT_BYTES", 5 * TiB, 0, Number.MAX_SAFE_INTEGER),
    // 4 MiB chunks move data fastest; the message limit adds room for the
    // other fields and stays far below what would strain memory.
    maxUploadChunkBytes: integer(env, "ENGRAM_MAX_UPLOAD_CHUNK_BYTES", 4 * MiB, 1024, 16 * MiB),
    blobDeleteGraceMs: integer(env, "ENGRAM_BLOB_DELETE_GRACE_SECONDS", 300, 0, 86_400) * 1000,
    readFlushIntervalMs: integer(env, "ENGRAM_READ_FLUSH_SECONDS", 5, 1, 3600) * 1000,
    lifecycleIntervalMs: integer(env, "ENGRAM_LIFECYCLE_INTERVAL_SECONDS", 3600, 1, 86_400) * 1000,
    shutdownGraceMs: integer(env, "ENGRAM_SHUTDOWN_GRACE_SECONDS", 30, 0, 3600) * 1000,
    uploadExpiryMs: integer(env, "ENGRAM_UPLOAD_EXPIRY_SECONDS", 86_400, 1, 30 * 86_400) * 1000,
    blobStore: oneOf(env, "ENGRAM_BLOB_STORE", "fs", ["fs", "s3"]) as "fs" | "s3",
    metadataStore: oneOf(env, "ENGRAM_METADATA_STORE", "pglite", ["pglite", "postgres"]) as "pglite" | "postgres",
    s3: Object.freeze(readS3Config(env, fromVault)),
    postgres: Object.freeze(readPostgresConfig(env, fromVault)),
    vault: Object.freeze(vault),
    auth: Object.freeze(readAuthConfig(env)),
  };
  if (config.blobStore === "s3") {
    if (!env.ENGRAM_S3_ENDPOINT?.trim()) {
      throw new ConfigError("ENGRAM_S3_ENDPOINT is missing: ENGRAM_BLOB_STORE=s3 needs it, so set it to the S3 server's URL, such as http://minio:9000");
    }
    requireSecret("ENGRAM_S3_ACCESS_KEY", config.s3.accessKey, "ENGRAM_BLOB_STORE=s3");
    requireSecret("ENGRAM_S3_SECRET_KEY", config.s3.secretKey, "ENGRAM_BLOB_STORE=s3");
  }
  if (config.metadataStore === "postgres") requireSecret("ENGRAM_POSTGRES_URL", config.postgres.url, "ENGRAM_METADATA_STORE=postgres");
  return Object.freeze(config);
}

function readS3Config(env: NodeJS.ProcessEnv, fromVault: Partial<Record<SecretVariable, string>>): S3Config {
  // No default: 127.0.0.1:9000, MinIO's usual address, is Engram's own API port.
  const endpoint = text(env, "ENGRAM_S3_ENDPOINT", "");
  if (endpoint !== "") {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new ConfigError(`ENGRAM_S3_ENDPOINT=${JSON.stringify(endpoint)} is not a URL: use a form such as http://minio:9000`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new ConfigError(`ENGRAM_S3_ENDPOINT=${JSON.stringify(endpoint)} must start with http:// or https://`);
    }
  }
  return {
    endpoint,
    accessKey: secret(env, "ENGRAM_S3_ACCESS_KEY", fromVault) ?? "",
    secretKey: secret(env, "ENGRAM_S3_SECRET_KEY", fromVault) ?? "",
    region: text(env, "ENGRAM_S3_REGION", "us-east-1"),
    bucketPrefix: text(env, "ENGRAM_S3_BUCKET_PREFIX", ""),
    publicEndpoint: urlSetting(env, "ENGRAM_S3_PUBLIC_ENDPOINT", ""),
    createBuckets: oneOf(env, "ENGRAM_S3_CREATE_BUCKETS", "true", ["true", "false"]) === "true",
    partSizeBytes: integer(env, "ENGRAM_S3_PART_SIZE_BYTES", 16 * MiB, 5 * MiB, 5 * 1024 * MiB),
    partsInFlight: integer(env, "ENGRAM_S3_PARTS_IN_FLIGHT", 4, 1, 64),
  };
}

function readAuthConfig(env: NodeJS.ProcessEnv): AuthConfig {
  const adminToken = secret(env, "ENGRAM_ADMIN_TOKEN", {}) ?? "";
  if (adminToken !== "" && (adminToken.length < 32 || /\s/.test(adminToken))) {
    throw new ConfigError("ENGRAM_ADMIN_TOKEN is too weak: use 32 or more characters without spaces, such as the output of openssl rand -hex 32");
  }
  const policyFile = text(env, "ENGRAM_POLICY_FILE", "");
  return {
    enabled: oneOf(env, "ENGRAM_AUTH", "on", ["on", "off"]) === "on",
    adminToken,
    policyFile: policyFile === "" ? "" : resolve(policyFile),
    jwt: readJwtConfig(env),
  };
}

function readJwtConfig(env: NodeJS.ProcessEnv): JwtConfig | undefined {
  const issuer = text(env, "ENGRAM_JWT_ISSUER", "");
  const audience = text(env, "ENGRAM_JWT_AUDIENCE", "");
  const jwksFile = text(env, "ENGRAM_JWT_JWKS_FILE", "");
  if (issuer === "" && audience === "" && jwksFile === "") return undefined;
  for (const [name, value] of [["ENGRAM_JWT_ISSUER", issuer], ["ENGRAM_JWT_AUDIENCE", audience], ["ENGRAM_JWT_JWKS_FILE", jwksFile]] as const) {
    if (value === "") throw new ConfigError(`${name} is missing: JWTs need ENGRAM_JWT_ISSUER, ENGRAM_JWT_AUDIENCE and ENGRAM_JWT_JWKS_FILE together`);
  }
  return Object.freeze({ issuer, audience, jwksFile: resolve(jwksFile), principalClaim: text(env, "ENGRAM_JWT_PRINCIPAL_CLAIM", "sub") });
}

function readPostgresConfig(env: NodeJS.ProcessEnv, fromVault: Partial<Record<SecretVariable, string>>): PostgresConfig {
  const url = secret(env, "ENGRAM_POSTGRES_URL", fromVault) ?? "";
  if (url !== "") validatePostgresUrl(url, secretSource(env, "ENGRAM_POSTGRES_URL"));
  return {
    url,
    password: secret(env, "ENGRAM_POSTGRES_PASSWORD", fromVault),
    poolSize: integer(env, "ENGRAM_POSTGRES_POOL_SIZE", 10, 1, 1000),
    statementTimeoutMs: integer(env, "ENGRAM_POSTGRES_STATEMENT_TIMEOUT_MS", 30_000, 0, 3_600_000),
    idleInTransactionTimeoutMs: integer(env, "ENGRAM_POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000, 0, 3_600_000),
  };
}

/** Checks the URL form before any connection; the message leaves the URL out because it may contain the password. */
function validatePostgresUrl(value: string, source: SecretSource): void {
  const from = source === "env" ? "" : ` (from ${source === "file" ? "ENGRAM_POSTGRES_URL_FILE" : "ENGRAM_POSTGRES_URL_VAULT_FIELD"})`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`ENGRAM_POSTGRES_URL${from} is not a URL: use a form such as postgres://engram@db:5432/engram`);
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ConfigError(`ENGRAM_POSTGRES_URL${from} starts with ${url.protocol}// but must start with postgres:// or postgresql://`);
  }
}

/**
 * Reads the Vault settings. They are required only when some secret setting
 * names a Vault field, so that a typo fails at start and not at the first
 * read.
 */
function readVaultConfig(env: NodeJS.ProcessEnv): VaultConfig {
  const fields: Partial<Record<SecretVariable, string>> = {};
  for (const name of SECRET_VARIABLES) {
    const field = env[`${name}_VAULT_FIELD`]?.trim();
    if (field) fields[name] = field;
  }
  const users = Object.keys(fields).map((name) => `${name}_VAULT_FIELD`);
  const neededBy = users.length > 0 ? `, which ${users.join(", ")} need${users.length === 1 ? "s" : ""}` : "";

  const addr = text(env, "ENGRAM_VAULT_ADDR", "");
  if (addr !== "") validateVaultAddr(addr);
  const config: VaultConfig = {
    addr,
    token: secret(env, "ENGRAM_VAULT_TOKEN", {}) ?? "",
    mount: vaultPath(env, "ENGRAM_VAULT_MOUNT", "secret"),
    path: vaultPath(env, "ENGRAM_VAULT_PATH", ""),
    timeoutMs: integer(env, "ENGRAM_VAULT_TIMEOUT_SECONDS", 5, 1, 300) * 1000,
    fields: Object.freeze(fields),
  };
  if (users.length === 0) return config;

  if (config.addr === "") {
    throw new ConfigError(`ENGRAM_VAULT_ADDR is missing${neededBy}: set it to the Vault server's URL, such as https://vault:8200`);
  }
  if (config.token === "") {
    throw new ConfigError(`ENGRAM_VAULT_TOKEN is missing${neededBy}: set it, or ENGRAM_VAULT_TOKEN_FILE, to a Vault token that may read the secret`);
  }
  if (config.path === "") {
    throw new ConfigError(`ENGRAM_VAULT_PATH is missing${neededBy}: set it to the secret's path below ENGRAM_VAULT_MOUNT, such as mnemos/engram`);
  }
  return config;
}

function validateVaultAddr(addr: string): void {
  let url: URL;
  try {
    url = new URL(addr);
  } catch {
    throw new ConfigError(`ENGRAM_VAULT_ADDR=${JSON.stringify(addr)} is not a URL: use a form such as https://vault:8200`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`ENGRAM_VAULT_ADDR=${JSON.stringify(addr)} must start with http:// or https://, such as https://vault:8200`);
  }
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    // The value is left out because a user name or password in it may be secret.
    throw new ConfigError("ENGRAM_VAULT_ADDR must contain only scheme, host, port and path: remove the user name, password, query or fragment");
  }
}

/**
 * Reads a mount or secret path and removes leading and trailing slashes.
 * Empty, "." and ".." segments are rejected, because URL parsing would
 * remove them and the request would go to another Vault path.
 */
function vaultPath(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const value = text(env, name, fallback).replace(/^\/+|\/+$/g, "");
  if (value === "") return value;
  for (const segment of value.split("/")) {
    if (segment === "" || segment === "." || segment === "..") {
      throw new ConfigError(`${name}=${JSON.stringify(value)} contains an empty, "." or ".." segment: use a plain path such as mnemos/engram`);
    }
  }
  return value;
}

/** Returns the value of the field that NAME_VAULT_FIELD names, which must be a non-empty string. */
function vaultField(vault: VaultConfig, name: SecretVariable, fields: Record<string, unknown>): string {
  const field = vault.fields[name] ?? "";
  const where = `Vault secret ${vault.mount}/${vault.path} at ${vault.addr}`;
  if (!Object.hasOwn(fields, field)) {
    const known = Object.keys(fields);
    throw new ConfigError(
      `${name}_VAULT_FIELD=${field}: ${where} has no field ${JSON.stringify(field)} (it has ${known.length === 0 ? "no fields" : known.join(", ")}): set ${name}_VAULT_FIELD to one of them, or add the field with vault kv patch -mount=${vault.mount} ${vault.path} ${field}=VALUE`,
    );
  }
  const value = fields[field];
  if (typeof value !== "string") {
    throw new ConfigError(`${name}_VAULT_FIELD=${field}: field ${JSON.stringify(field)} of ${where} is a ${value === null ? "null" : typeof value}, not a string: store the value as a string`);
  }
  if (value.trim() === "") {
    throw new ConfigError(`${name}_VAULT_FIELD=${field}: field ${JSON.stringify(field)} of ${where} is empty: store the value in it`);
  }
  return value.trim();
}

/** Reads an optional http(s) URL setting, without a trailing slash. */
function urlSetting(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const value = text(env, name, fallback);
  if (value === "") return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${name}=${JSON.stringify(value)} is not a URL: use a form such as https://files.example.test`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`${name}=${JSON.stringify(value)} must start with http:// or https://`);
  }
  return value.replace(/\/+$/, "");
}

/** Reads ENGRAM_SIGNING_KEYS: comma-separated ID=SECRET pairs, the first one used for new URLs. */
function signingKeys(env: NodeJS.ProcessEnv, fromVault: Partial<Record<string, string>>): { id: string; secret: string }[] {
  const raw = secret(env, "ENGRAM_SIGNING_KEYS", fromVault) ?? "";
  const keys = [];
  for (const pair of raw.split(",").map((item) => item.trim()).filter(Boolean)) {
    const at = pair.indexOf("=");
    const id = pair.slice(0, at);
    const value = pair.slice(at + 1);
    if (at <= 0 || !/^[A-Za-z0-9_-]{1,32}$/.test(id) || value.length < 32) {
      throw new ConfigError("ENGRAM_SIGNING_KEYS has an entry that is not ID=SECRET with an ID of letters, digits, _ or - and a secret of at least 32 characters: fix the entry");
    }
    keys.push({ id, secret: value });
  }
  return keys;
}

/**
 * Reads NAME, else the file that NAME_FILE names (as Docker and Kubernetes
 * mount secrets), else the value read from the Vault field NAME_VAULT_FIELD.
 */
function secret(env: NodeJS.ProcessEnv, name: string, fromVault: Partial<Record<string, string>>): string | undefined {
  const value = env[name];
  if (value !== undefined && value !== "") return value;

  const file = env[`${name}_FILE`]?.trim();
  if (file) {
    let content: string;
    try {
      content = readFileSync(file, "utf8").trim();
    } catch (err) {
      throw new ConfigError(`${name}_FILE=${file} cannot be read: ${(err as Error).message}`);
    }
    if (content === "") throw new ConfigError(`${name}_FILE=${file} is empty: write the value into the file, or unset ${name}_FILE`);
    return content;
  }
  return fromVault[name];
}

function requireSecret(name: SecretVariable, value: string, backend: string): void {
  if (value === "") {
    throw new ConfigError(`${name} is missing: ${backend} needs it, so set ${name}, ${name}_FILE, or ${name}_VAULT_FIELD with the ENGRAM_VAULT_* settings`);
  }
}

function logFormat(env: NodeJS.ProcessEnv): LogFormat {
  const format = oneOf(env, "ENGRAM_LOG_FORMAT", "json", ["json", "pretty"]) as LogFormat;
  if (format === "pretty" && !prettyLogsAvailable()) {
    throw new ConfigError("ENGRAM_LOG_FORMAT=pretty needs the pino-pretty package: run npm install (it is a development dependency) or use json");
  }
  return format;
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
