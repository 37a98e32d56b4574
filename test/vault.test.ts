import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ConfigError, loadConfig, readConfig } from "../src/config.js";

import { closedPortUrl, startFakeVault, startSilentServer, type FakeVault } from "./support/fake-vault.js";

const TOKEN = "hvs.test-token-0123456789";
const ACCESS_KEY = "vault-access-key-0001";
const SECRET_KEY = "vault-secret-key-0002";
const POSTGRES_URL = "postgres://engram:vault-url-password-0003@db:5432/engram";
const POSTGRES_PASSWORD = "vault-password-0004";

let vault: FakeVault;
let work: string;

beforeAll(async () => {
  vault = await startFakeVault({
    token: TOKEN,
    secrets: {
      "secret/mnemos/engram": {
        minio_access_key: ACCESS_KEY,
        minio_secret_key: SECRET_KEY,
        postgres_url: POSTGRES_URL,
        postgres_password: POSTGRES_PASSWORD,
        port_number: 5432,
        blank: " ",
      },
      "kv/data/mnemos/engram": { minio_secret_key: SECRET_KEY },
    },
    deleted: ["secret/mnemos/old"],
    kvV1Mounts: ["kv"],
    redirects: { "secret/mnemos/moved": "http://127.0.0.1:1/v1/secret/data/mnemos/moved" },
  });
  work = await mkdtemp(join(tmpdir(), "engram-vault-"));
});

afterAll(async () => {
  await vault.close();
  await rm(work, { recursive: true, force: true });
});

/** Settings that read all four secrets from the fake Vault. */
function vaultEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    ENGRAM_BLOB_STORE: "s3",
    ENGRAM_S3_ENDPOINT: "http://127.0.0.1:9",
    ENGRAM_METADATA_STORE: "postgres",
    ENGRAM_VAULT_ADDR: vault.url,
    ENGRAM_VAULT_TOKEN: TOKEN,
    ENGRAM_VAULT_PATH: "mnemos/engram",
    ENGRAM_S3_ACCESS_KEY_VAULT_FIELD: "minio_access_key",
    ENGRAM_S3_SECRET_KEY_VAULT_FIELD: "minio_secret_key",
    ENGRAM_POSTGRES_URL_VAULT_FIELD: "postgres_url",
    ENGRAM_POSTGRES_PASSWORD_VAULT_FIELD: "postgres_password",
    ...overrides,
  };
}

/** Runs loadConfig and returns its ConfigError. */
async function configError(env: Record<string, string>): Promise<ConfigError> {
  const error = await loadConfig(env).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

/** Checks that a message contains none of the secret values. */
function expectNoSecret(message: string): void {
  for (const value of [TOKEN, ACCESS_KEY, SECRET_KEY, POSTGRES_URL, POSTGRES_PASSWORD, "vault-url-password-0003"]) {
    expect(message).not.toContain(value);
  }
}

describe("loadConfig with Vault", () => {
  it("reads every secret from one Vault request", async () => {
    const before = vault.requests.length;
    const config = await loadConfig(vaultEnv());

    expect(config.s3.accessKey).toBe(ACCESS_KEY);
    expect(config.s3.secretKey).toBe(SECRET_KEY);
    expect(config.postgres.url).toBe(POSTGRES_URL);
    expect(config.postgres.password).toBe(POSTGRES_PASSWORD);
    expect(vault.requests.slice(before)).toEqual(["/v1/secret/data/mnemos/engram"]);
    expect(config.vault.mount).toBe("secret");
    expect(config.vault.fields).toEqual({
      ENGRAM_S3_ACCESS_KEY: "minio_access_key",
      ENGRAM_S3_SECRET_KEY: "minio_secret_key",
      ENGRAM_POSTGRES_URL: "postgres_url",
      ENGRAM_POSTGRES_PASSWORD: "postgres_password",
    });
    expect(Object.isFrozen(config.vault)).toBe(true);
  });

  it("reads the token from ENGRAM_VAULT_TOKEN_FILE", async () => {
    const tokenFile = join(work, "vault-token");
    await writeFile(tokenFile, `${TOKEN}\n`);
    const env = vaultEnv({ ENGRAM_VAULT_TOKEN_FILE: tokenFile });
    delete env.ENGRAM_VAULT_TOKEN;

    const config = await loadConfig(env);
    expect(config.s3.secretKey).toBe(SECRET_KEY);
  });

  it("accepts a mount and path with slashes around them", async () => {
    const config = await loadConfig(vaultEnv({ ENGRAM_VAULT_MOUNT: "/secret/", ENGRAM_VAULT_PATH: "/mnemos/engram/", ENGRAM_VAULT_ADDR: `${vault.url}/` }));
    expect(config.vault.mount).toBe("secret");
    expect(config.vault.path).toBe("mnemos/engram");
    expect(config.s3.secretKey).toBe(SECRET_KEY);
  });

  it("environment value wins over file and Vault", async () => {
    const file = join(work, "secret-key-env");
    await writeFile(file, "from-file\n");
    const config = await loadConfig(vaultEnv({ ENGRAM_S3_SECRET_KEY: "from-env", ENGRAM_S3_SECRET_KEY_FILE: file }));
    expect(config.s3.secretKey).toBe("from-env");
    expect(config.s3.accessKey).toBe(ACCESS_KEY);
  });

  it("_FILE wins over Vault", async () => {
    const file = join(work, "postgres-password");
    await writeFile(file, "from-file\n");
    const config = await loadConfig(vaultEnv({ ENGRAM_POSTGRES_PASSWORD_FILE: file }));
    expect(config.postgres.password).toBe("from-file");
    expect(config.postgres.url).toBe(POSTGRES_URL);
  });

  it("sends no request when no secret is left to Vault", async () => {
    const before = vault.requests.length;
    const config = await loadConfig(
      vaultEnv({
        ENGRAM_S3_ACCESS_KEY: "a",
        ENGRAM_S3_SECRET_KEY: "b",
        ENGRAM_POSTGRES_URL: "postgres://engram@db/engram",
        ENGRAM_POSTGRES_PASSWORD: "c",
        ENGRAM_VAULT_ADDR: await closedPortUrl(),
      }),
    );
    expect(config.s3.secretKey).toBe("b");
    expect(vault.requests.length).toBe(before);
  });

  it("without Vault settings reads no Vault", async () => {
    const config = await loadConfig({});
    expect(config.vault.addr).toBe("");
    expect(config.vault.fields).toEqual({});
    expect(config.s3.secretKey).toBe("");
  });

  it("readConfig rejects secrets left to Vault", () => {
    expect(() => readConfig(vaultEnv())).toThrow(/ENGRAM_S3_ACCESS_KEY_VAULT_FIELD is set\): load the configuration with loadConfig/);
  });

  it("a Vault value is validated like any other", async () => {
    const error = await configError(vaultEnv({ ENGRAM_POSTGRES_URL_VAULT_FIELD: "minio_secret_key" }));
    expect(error.message).toMatch(/^ENGRAM_POSTGRES_URL \(from ENGRAM_POSTGRES_URL_VAULT_FIELD\) is not a URL/);
    expectNoSecret(error.message);
  });
});

describe("loadConfig Vault errors", () => {
  it("403 names the token variable", async () => {
    const error = await configError(vaultEnv({ ENGRAM_VAULT_TOKEN: "hvs.wrong-token" }));
    expect(error.message).toMatch(/^cannot read ENGRAM_S3_ACCESS_KEY, ENGRAM_S3_SECRET_KEY, ENGRAM_POSTGRES_URL, ENGRAM_POSTGRES_PASSWORD from Vault: /);
    expect(error.message).toContain("denied reading secret/mnemos/engram (HTTP 403: permission denied)");
    expect(error.message).toContain("ENGRAM_VAULT_TOKEN");
    expect(error.message).toContain('grants "read" on secret/data/mnemos/engram');
    expect(error.message).not.toContain("hvs.wrong-token");
    expectNoSecret(error.message);
  });

  it("404 names the mount and path variables", async () => {
    const error = await configError(vaultEnv({ ENGRAM_VAULT_PATH: "mnemos/missing" }));
    expect(error.message).toContain("has no secret secret/mnemos/missing (HTTP 404)");
    expect(error.message).toContain("ENGRAM_VAULT_MOUNT=secret");
    expect(error.message).toContain("ENGRAM_VAULT_PATH=mnemos/missing");
    expectNoSecret(error.message);
  });

  it("404 of a deleted version says how to restore it", async () => {
    const error = await configError(vaultEnv({ ENGRAM_VAULT_PATH: "mnemos/old" }));
    expect(error.message).toContain("the latest version (3) of Vault secret secret/mnemos/old");
    expect(error.message).toContain("was deleted at 2026-01-02T03:04:05.000000006Z");
    expect(error.message).toContain("vault kv undelete -mount=secret -versions=3 mnemos/old");
  });

  it("503 sealed names the address variable", async () => {
    vault.sealed = true;
    try {
      const error = await configError(vaultEnv());
      expect(error.message).toContain(`Vault at ENGRAM_VAULT_ADDR=${vault.url} is sealed (HTTP 503: Vault is sealed)`);
      expect(error.message).toContain("vault operator unseal");
      expectNoSecret(error.message);
    } finally {
      vault.sealed = false;
    }
  });

  it("missing field names the field variable", async () => {
    const error = await configError(vaultEnv({ ENGRAM_S3_SECRET_KEY_VAULT_FIELD: "nope" }));
    expect(error.message).toMatch(/^ENGRAM_S3_SECRET_KEY_VAULT_FIELD=nope: /);
    expect(error.message).toContain('has no field "nope"');
    expect(error.message).toContain("(it has minio_access_key, minio_secret_key, postgres_url, postgres_password, port_number, blank)");
    expect(error.message).toContain("vault kv patch -mount=secret mnemos/engram nope=VALUE");
    expectNoSecret(error.message);
  });

  it("field that is not a string is rejected", async () => {
    const error = await configError(vaultEnv({ ENGRAM_POSTGRES_PASSWORD_VAULT_FIELD: "port_number" }));
    expect(error.message).toMatch(/^ENGRAM_POSTGRES_PASSWORD_VAULT_FIELD=port_number: .* is a number, not a string/);
  });

  it("empty field is rejected", async () => {
    const error = await configError(vaultEnv({ ENGRAM_POSTGRES_PASSWORD_VAULT_FIELD: "blank" }));
    expect(error.message).toMatch(/^ENGRAM_POSTGRES_PASSWORD_VAULT_FIELD=blank: .* is empty/);
  });

  it("KV version 1 mount is named as the cause", async () => {
    const error = await configError(vaultEnv({ ENGRAM_VAULT_MOUNT: "kv" }));
    expect(error.message).toContain("returned no KV version 2 data for kv/mnemos/engram");
    expect(error.message).toContain("ENGRAM_VAULT_MOUNT=kv is a KV version 2 mount");
  });

  it("redirect is not followed", async () => {
    const before = vault.requests.length;
    const error = await configError(vaultEnv({ ENGRAM_VAULT_PATH: "mnemos/moved" }));
    expect(error.message).toContain("redirected to http://127.0.0.1:1/v1/secret/data/mnemos/moved (HTTP 307)");
    expect(error.message).toContain("set ENGRAM_VAULT_ADDR to the active Vault node");
    expect(vault.requests.length).toBe(before + 1);
  });

  it("closed port fails at once", async () => {
    const addr = await closedPortUrl();
    const started = Date.now();
    const error = await configError(vaultEnv({ ENGRAM_VAULT_ADDR: addr }));
    expect(Date.now() - started).toBeLessThan(3000);
    expect(error.message).toContain(`Vault at ENGRAM_VAULT_ADDR=${addr} cannot be reached (connect ECONNREFUSED`);
    expect(error.message).toContain("check the address and that Vault runs there");
  });

  it("silent server times out after the default 5 s", async () => {
    const silent = await startSilentServer();
    try {
      const started = Date.now();
      const error = await configError(vaultEnv({ ENGRAM_VAULT_ADDR: silent.url }));
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(4500);
      expect(elapsed).toBeLessThan(8000);
      expect(error.message).toContain(`Vault at ENGRAM_VAULT_ADDR=${silent.url} timed out after 5 s without a response`);
      expect(error.message).toContain("raise ENGRAM_VAULT_TIMEOUT_SECONDS");
    } finally {
      await silent.close();
    }
  });

  it("ENGRAM_VAULT_TIMEOUT_SECONDS shortens the wait", async () => {
    const silent = await startSilentServer();
    try {
      const started = Date.now();
      const error = await configError(vaultEnv({ ENGRAM_VAULT_ADDR: silent.url, ENGRAM_VAULT_TIMEOUT_SECONDS: "1" }));
      expect(Date.now() - started).toBeLessThan(3000);
      expect(error.message).toContain("timed out after 1 s without a response");
    } finally {
      await silent.close();
    }
  });
});

describe("loadConfig Vault settings", () => {
  it.each([
    ["ENGRAM_VAULT_ADDR", { ENGRAM_VAULT_ADDR: "" }, /^ENGRAM_VAULT_ADDR is missing, which ENGRAM_S3_ACCESS_KEY_VAULT_FIELD, .* need: set it to the Vault server's URL/],
    ["ENGRAM_VAULT_TOKEN", { ENGRAM_VAULT_TOKEN: "" }, /^ENGRAM_VAULT_TOKEN is missing, .*: set it, or ENGRAM_VAULT_TOKEN_FILE, to a Vault token/],
    ["ENGRAM_VAULT_PATH", { ENGRAM_VAULT_PATH: "" }, /^ENGRAM_VAULT_PATH is missing, .*: set it to the secret's path below ENGRAM_VAULT_MOUNT/],
    ["ENGRAM_VAULT_ADDR", { ENGRAM_VAULT_ADDR: "vault:8200" }, /^ENGRAM_VAULT_ADDR="vault:8200" must start with http:\/\/ or https:\/\//],
    ["ENGRAM_VAULT_ADDR", { ENGRAM_VAULT_ADDR: "not a url" }, /^ENGRAM_VAULT_ADDR="not a url" is not a URL/],
    ["ENGRAM_VAULT_ADDR", { ENGRAM_VAULT_ADDR: "http://user:pw@127.0.0.1:8200" }, /^ENGRAM_VAULT_ADDR must contain only scheme, host, port and path/],
    ["ENGRAM_VAULT_PATH", { ENGRAM_VAULT_PATH: "mnemos/../sys" }, /^ENGRAM_VAULT_PATH="mnemos\/..\/sys" contains an empty, "." or ".." segment/],
    ["ENGRAM_VAULT_MOUNT", { ENGRAM_VAULT_MOUNT: "a//b" }, /^ENGRAM_VAULT_MOUNT="a\/\/b" contains an empty/],
    ["ENGRAM_VAULT_TIMEOUT_SECONDS", { ENGRAM_VAULT_TIMEOUT_SECONDS: "0" }, /^ENGRAM_VAULT_TIMEOUT_SECONDS=0 is out of range/],
  ])("invalid %s is rejected", async (_name, overrides, message) => {
    const error = await configError(vaultEnv(overrides));
    expect(error.message).toMatch(message);
    expectNoSecret(error.message);
  });

  it("rejects an address with credentials without printing it", async () => {
    const error = await configError(vaultEnv({ ENGRAM_VAULT_ADDR: "http://user:hunter2@127.0.0.1:8200" }));
    expect(error.message).not.toContain("hunter2");
  });

  it("missing secret lists all three sources", async () => {
    const env = vaultEnv();
    delete env.ENGRAM_S3_SECRET_KEY_VAULT_FIELD;
    const error = await configError(env);
    expect(error.message).toBe(
      "ENGRAM_S3_SECRET_KEY is missing: ENGRAM_BLOB_STORE=s3 needs it, so set ENGRAM_S3_SECRET_KEY, ENGRAM_S3_SECRET_KEY_FILE, or ENGRAM_S3_SECRET_KEY_VAULT_FIELD with the ENGRAM_VAULT_* settings",
    );
  });
});
