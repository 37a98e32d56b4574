import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, describe, expect, it } from "vitest";

import { ConfigError, DEFAULT_BUCKETS, readConfig, secretSource } from "../src/config.js";

const work = mkdtempSync(join(tmpdir(), "engram-config-"));

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe("readConfig", () => {
  it("defaults run the embedded store on port 9000", () => {
    const config = readConfig({});
    expect(config.port).toBe(9000);
    expect(config.host).toBe("127.0.0.1");
    expect(config.buckets).toEqual([...DEFAULT_BUCKETS]);
    expect(config.corsOrigins).toEqual([]);
    expect(config.maxObjectBytes).toBe(5 * 1024 ** 4);
    expect(config.uploadExpiryMs).toBe(24 * 60 * 60 * 1000);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("pretty log format is accepted", () => {
    expect(readConfig({ ENGRAM_LOG_FORMAT: "pretty" }).logFormat).toBe("pretty");
    expect(readConfig({}).logFormat).toBe("json");
  });

  it("reads every variable", () => {
    const config = readConfig({
      ENGRAM_HOST: "0.0.0.0",
      ENGRAM_PORT: "9100",
      ENGRAM_DATA_DIR: "/tmp/engram-x",
      ENGRAM_BUCKETS: "alpha, beta-2",
      ENGRAM_CORS_ORIGINS: "https://ui.example.test,http://localhost:5173",
      ENGRAM_LOG_LEVEL: "warn",
      ENGRAM_MAX_OBJECT_BYTES: "1000",
      ENGRAM_MAX_UPLOAD_CHUNK_BYTES: "65536",
      ENGRAM_SHUTDOWN_GRACE_SECONDS: "3",
      ENGRAM_HEALTH_INTERVAL_MS: "300",
      ENGRAM_METRICS_PORT: "9101",
      ENGRAM_UPLOAD_EXPIRY_SECONDS: "600",
    });
    expect(config.host).toBe("0.0.0.0");
    expect(config.port).toBe(9100);
    expect(config.dataDir).toBe("/tmp/engram-x");
    expect(config.buckets).toEqual(["alpha", "beta-2"]);
    expect(config.corsOrigins).toEqual(["https://ui.example.test", "http://localhost:5173"]);
    expect(config.logLevel).toBe("warn");
    expect(config.maxObjectBytes).toBe(1000);
    expect(config.maxUploadChunkBytes).toBe(65536);
    expect(config.shutdownGraceMs).toBe(3000);
    expect(config.healthIntervalMs).toBe(300);
    expect(config.metricsPort).toBe(9101);
    expect(config.uploadExpiryMs).toBe(600_000);
  });

  it.each([
    ["ENGRAM_PORT", "ninety", /ENGRAM_PORT.*not a whole number/],
    ["ENGRAM_PORT", "70000", /ENGRAM_PORT=70000 is out of range/],
    ["ENGRAM_LOG_LEVEL", "loud", /ENGRAM_LOG_LEVEL.*use one of/],
    ["ENGRAM_LOG_FORMAT", "xml", /ENGRAM_LOG_FORMAT.*use one of json, pretty/],
    ["ENGRAM_BUCKETS", "Bad_Bucket", /ENGRAM_BUCKETS: bucket name "Bad_Bucket" is invalid/],
    ["ENGRAM_MAX_UPLOAD_CHUNK_BYTES", "10", /ENGRAM_MAX_UPLOAD_CHUNK_BYTES=10 is out of range/],
    ["ENGRAM_UPLOAD_EXPIRY_SECONDS", "0", /ENGRAM_UPLOAD_EXPIRY_SECONDS=0 is out of range: set it to an integer from 1 to 2592000/],
    ["ENGRAM_UPLOAD_EXPIRY_SECONDS", "2592001", /ENGRAM_UPLOAD_EXPIRY_SECONDS=2592001 is out of range/],
    ["ENGRAM_UPLOAD_EXPIRY_SECONDS", "1d", /ENGRAM_UPLOAD_EXPIRY_SECONDS="1d" is not a whole number/],
  ])("%s=%s is rejected", (name, value, message) => {
    expect(() => readConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => readConfig({ [name]: value })).toThrow(message);
  });

  it("environment value wins over _FILE", () => {
    const file = join(work, "secret-key");
    writeFileSync(file, "from-file\n");
    expect(readConfig({ ENGRAM_S3_SECRET_KEY: "from-env", ENGRAM_S3_SECRET_KEY_FILE: file }).s3.secretKey).toBe("from-env");
    expect(readConfig({ ENGRAM_S3_SECRET_KEY_FILE: file }).s3.secretKey).toBe("from-file");
  });

  it("empty _FILE is rejected", () => {
    const file = join(work, "empty");
    writeFileSync(file, "\n");
    expect(() => readConfig({ ENGRAM_POSTGRES_PASSWORD_FILE: file })).toThrow(`ENGRAM_POSTGRES_PASSWORD_FILE=${file} is empty`);
  });

  it("unreadable _FILE is rejected", () => {
    const file = join(work, "absent");
    expect(() => readConfig({ ENGRAM_S3_ACCESS_KEY_FILE: file })).toThrow(`ENGRAM_S3_ACCESS_KEY_FILE=${file} cannot be read`);
  });

  it("access control settings are checked", () => {
    expect(readConfig({}).auth).toEqual({ enabled: true, adminToken: "", policyFile: "", jwt: undefined });
    expect(readConfig({ ENGRAM_AUTH: "off" }).auth.enabled).toBe(false);
    expect(() => readConfig({ ENGRAM_AUTH: "maybe" })).toThrow(/ENGRAM_AUTH/);
    expect(() => readConfig({ ENGRAM_ADMIN_TOKEN: "short" })).toThrow(/ENGRAM_ADMIN_TOKEN is too weak/);
    expect(() => readConfig({ ENGRAM_JWT_ISSUER: "https://id.test" })).toThrow(/ENGRAM_JWT_AUDIENCE is missing/);
    const jwt = readConfig({ ENGRAM_JWT_ISSUER: "https://id.test", ENGRAM_JWT_AUDIENCE: "engram", ENGRAM_JWT_JWKS_FILE: "/etc/jwks.json" }).auth.jwt;
    expect(jwt).toEqual({ issuer: "https://id.test", audience: "engram", jwksFile: "/etc/jwks.json", principalClaim: "sub" });
  });

  it("secretSource follows the precedence", () => {
    expect(secretSource({ X: "a", X_FILE: "/f", X_VAULT_FIELD: "x" }, "X")).toBe("env");
    expect(secretSource({ X_FILE: "/f", X_VAULT_FIELD: "x" }, "X")).toBe("file");
    expect(secretSource({ X: "", X_VAULT_FIELD: "x" }, "X")).toBe("vault");
    expect(secretSource({}, "X")).toBe("unset");
  });

  it.each([
    ["not a url", /^ENGRAM_POSTGRES_URL is not a URL/],
    ["mysql://engram:hunter2@db/engram", /^ENGRAM_POSTGRES_URL starts with mysql:\/\/ but must start with postgres:\/\//],
  ])("ENGRAM_POSTGRES_URL %s is rejected without its value", (url, message) => {
    const read = () => readConfig({ ENGRAM_METADATA_STORE: "postgres", ENGRAM_POSTGRES_URL: url });
    expect(read).toThrow(message);
    expect(read).not.toThrow(/hunter2/);
  });

  it.each([
    [{ ENGRAM_BLOB_STORE: "s3" }, /^ENGRAM_S3_ENDPOINT is missing: ENGRAM_BLOB_STORE=s3 needs it/],
    [{ ENGRAM_BLOB_STORE: "s3", ENGRAM_S3_ENDPOINT: "http://minio:9000" }, /^ENGRAM_S3_ACCESS_KEY is missing: ENGRAM_BLOB_STORE=s3 needs it/],
    [{ ENGRAM_METADATA_STORE: "postgres" }, /^ENGRAM_POSTGRES_URL is missing: ENGRAM_METADATA_STORE=postgres needs it/],
  ])("backend without its settings is rejected: %o", (env, message) => {
    expect(() => readConfig(env)).toThrow(message);
  });
});
