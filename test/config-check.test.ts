import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";


import { runCommand } from "./support/cli.js";
import { startFakeVault, type FakeVault } from "./support/fake-vault.js";

const TOKEN = "hvs.check-token-5f2a9c";
const ACCESS_KEY = "AKIACHECKACCESSKEY77";
const SECRET_KEY = "check-secret-key-d41d8cd98f";
const URL_PASSWORD = "url-password-9e107d9d";
const POSTGRES_URL = `postgres://engram:${URL_PASSWORD}@db:5432/engram?sslmode=require&password=${URL_PASSWORD}q`;
const POSTGRES_PASSWORD = "file-password-e4d909c2";

/** Runs an engram command in this process. */
const engram = runCommand;

let vault: FakeVault;
let work: string;
let env: Record<string, string>;

beforeAll(async () => {
  vault = await startFakeVault({
    token: TOKEN,
    secrets: { "secret/mnemos/engram": { minio_secret_key: SECRET_KEY, postgres_url: POSTGRES_URL } },
  });
  work = await mkdtemp(join(tmpdir(), "engram-config-check-"));
  const passwordFile = join(work, "postgres-password");
  await writeFile(passwordFile, `${POSTGRES_PASSWORD}\n`);
  env = {
    ENGRAM_PORT: "9100",
    ENGRAM_DATA_DIR: join(work, "data"),
    ENGRAM_BLOB_STORE: "s3",
    ENGRAM_S3_ENDPOINT: "http://minio:9000",
    ENGRAM_S3_ACCESS_KEY: ACCESS_KEY,
    ENGRAM_S3_SECRET_KEY_VAULT_FIELD: "minio_secret_key",
    ENGRAM_METADATA_STORE: "postgres",
    ENGRAM_POSTGRES_URL_VAULT_FIELD: "postgres_url",
    ENGRAM_POSTGRES_PASSWORD_FILE: passwordFile,
    ENGRAM_VAULT_ADDR: vault.url,
    ENGRAM_VAULT_TOKEN: TOKEN,
    ENGRAM_VAULT_PATH: "mnemos/engram",
  };
});

afterAll(async () => {
  await vault.close();
  await rm(work, { recursive: true, force: true });
});

describe("engram config check", () => {
  it("prints every setting with secrets redacted", async () => {
    const result = await engram(["config", "check"], env);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);

    const printed = JSON.parse(result.stdout) as Record<string, any>;
    expect(printed.port).toBe(9100);
    expect(printed.host).toBe("127.0.0.1");
    expect(printed.dataDir).toBe(join(work, "data"));
    expect(printed.blobStore).toBe("s3");
    expect(printed.metadataStore).toBe("postgres");
    expect(printed.s3.endpoint).toBe("http://minio:9000");
    expect(printed.s3.accessKey).toBe("AKIA<redacted>");
    expect(printed.s3.secretKey).toBe("<redacted>");
    expect(printed.s3.partsInFlight).toBe(4);
    expect(printed.uploadExpiryMs).toBe(86_400_000);
    expect(printed.postgres.url).toBe("postgres://engram:<redacted>@db:5432/engram?sslmode=require&password=<redacted>");
    expect(printed.postgres.password).toBe("<redacted>");
    expect(printed.postgres.poolSize).toBe(10);
    expect(printed.vault).toEqual({
      addr: vault.url,
      token: "<redacted>",
      mount: "secret",
      path: "mnemos/engram",
      timeoutMs: 5000,
      fields: { ENGRAM_S3_SECRET_KEY: "minio_secret_key", ENGRAM_POSTGRES_URL: "postgres_url" },
    });
    expect(printed.secretSources).toEqual({
      ENGRAM_S3_ACCESS_KEY: "env",
      ENGRAM_S3_SECRET_KEY: "vault",
      ENGRAM_POSTGRES_URL: "vault",
      ENGRAM_POSTGRES_PASSWORD: "file",
    });
  });

  it("prints no secret value", async () => {
    const result = await engram(["config", "check"], env);
    expect(result.code).toBe(0);
    const output = result.stdout + result.stderr;
    for (const value of [TOKEN, ACCESS_KEY, SECRET_KEY, URL_PASSWORD, POSTGRES_URL, POSTGRES_PASSWORD]) {
      expect(output).not.toContain(value);
    }
  });

  it("prints unset optional settings as null", async () => {
    const result = await engram(["config", "check"], {});
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as Record<string, any>;
    expect(printed.postgres.password).toBeNull();
    expect(printed.s3.secretKey).toBe("");
    expect(printed.vault.token).toBe("");
    expect(printed.secretSources.ENGRAM_S3_SECRET_KEY).toBe("unset");
  });

  it("fully redacts a short access key", async () => {
    const result = await engram(["config", "check"], { ENGRAM_S3_ACCESS_KEY: "qxzv7k" });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).s3.accessKey).toBe("<redacted>");
    expect(result.stdout).not.toContain("qxzv");
  });

  it("redacts the admin token", async () => {
    const token = "admin-token-marker-0123456789abcdef0123";
    const result = await engram(["config", "check"], { ENGRAM_ADMIN_TOKEN: token });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).auth.adminToken).toBe("<redacted>");
    expect(result.stdout).not.toContain(token);
  });

  it("exits 2 naming an invalid variable", async () => {
    const result = await engram(["config", "check"], { ...env, ENGRAM_S3_PARTS_IN_FLIGHT: "many" });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe('engram: invalid configuration: ENGRAM_S3_PARTS_IN_FLIGHT="many" is not a whole number: set it to an integer from 1 to 64\n');
  });

  it("exits 2 naming the token on a Vault 403", async () => {
    const result = await engram(["config", "check"], { ...env, ENGRAM_VAULT_TOKEN: "hvs.revoked-token-31" });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("engram: invalid configuration: cannot read ENGRAM_S3_SECRET_KEY, ENGRAM_POSTGRES_URL from Vault");
    expect(result.stderr).toContain("HTTP 403");
    expect(result.stderr).toContain("ENGRAM_VAULT_TOKEN");
    expect(result.stderr).not.toContain("hvs.revoked-token-31");
  });

  it("rejects an unknown config command", async () => {
    const result = await engram(["config", "show"], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('engram: unknown config command "show": use check');
  });

  it("is listed in the usage text", async () => {
    const result = await engram(["--help"], {});
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("config check");
  });
});
