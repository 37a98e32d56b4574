/*
 * The AccessStore queries (access keys and the audit log) on embedded
 * PGlite and on a real PostgreSQL server.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { generateToken } from "../src/auth/tokens.js";
import { createLogger } from "../src/log.js";
import type { MetadataStore } from "../src/metadata/metadata-store.js";
import { openPGliteMetadataStore } from "../src/metadata/pglite/open-pglite.js";
import { openPostgresMetadataStore } from "../src/metadata/postgres/open-postgres.js";
import { createTestDatabase, requirePostgres } from "./support/postgres.js";

const postgres = await requirePostgres("the AccessStore contract tests on PostgreSQL");

const DIALECTS = [
  {
    name: "pglite",
    skip: false,
    async open(): Promise<{ store: MetadataStore; destroy: () => Promise<void> }> {
      const dir = await mkdtemp(join(tmpdir(), "engram-access-"));
      const store = await openPGliteMetadataStore(dir);
      const destroy = async (): Promise<void> => {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      };
      return { store, destroy };
    },
  },
  {
    name: "postgres",
    skip: postgres.skip,
    async open(): Promise<{ store: MetadataStore; destroy: () => Promise<void> }> {
      postgres.assertAvailable();
      const database = await createTestDatabase();
      const config = { url: database.url, password: undefined, poolSize: 2, statementTimeoutMs: 10_000, idleInTransactionTimeoutMs: 10_000 };
      const store = await openPostgresMetadataStore(config, createLogger("silent"));
      const destroy = async (): Promise<void> => {
        await store.close();
        await database.drop();
      };
      return { store, destroy };
    },
  },
];

describe.each(DIALECTS)("AccessStore on $name", (dialect) => {
  const test = it.skipIf(dialect.skip);
  let opened: Awaited<ReturnType<(typeof DIALECTS)[number]["open"]>> | undefined;

  beforeAll(async () => {
    if (!dialect.skip) opened = await dialect.open();
  });

  afterAll(async () => {
    await opened?.destroy();
  });

  test("keys are created, listed and revoked", async () => {
    const access = opened!.store.access;
    expect(await access.countAccessKeys()).toBe(0);
    const { keyId, sha256 } = generateToken();
    const grants = [{ bucket: "mnemos-models", prefix: "a/", actions: ["read" as const] }];
    const created = await access.createAccessKey({ keyId, principal: "p", description: "d", grants, tokenSha256: sha256 });
    expect(created.grants).toEqual(grants);
    expect(created.revokedAt).toBeUndefined();
    expect(await access.countAccessKeys()).toBe(1);

    const second = generateToken();
    await access.createAccessKey({ keyId: second.keyId, principal: "q", description: "", grants, tokenSha256: second.sha256 });
    const listed = await access.listAccessKeys();
    expect(listed.map((key) => key.keyId)).toContain(keyId);
    expect(listed).toHaveLength(2);

    const revoked = await access.revokeAccessKey(keyId);
    expect(revoked?.revokedAt).toBeInstanceOf(Date);
    const again = await access.revokeAccessKey(keyId);
    expect(again?.revokedAt?.getTime()).toBe(revoked?.revokedAt?.getTime());
    expect(await access.revokeAccessKey("missing")).toBeUndefined();
    expect((await access.getAccessKey(keyId))?.tokenSha256).toBe(sha256);
    expect(await access.getAccessKey("missing")).toBeUndefined();
  });

  test("audit events page newest first", async () => {
    const access = opened!.store.access;
    for (let index = 0; index < 5; index++) {
      await access.appendAudit({ principal: index % 2 === 0 ? "key:a" : "key:b", action: "write", bucket: "b", key: `k${index}`, result: "OK", operation: "op" });
    }
    const newest = await access.listAudit({ limit: 2 });
    expect(newest.map((event) => event.key)).toEqual(["k4", "k3"]);
    const older = await access.listAudit({ limit: 10, beforeId: newest[1]!.id });
    expect(older.map((event) => event.key)).toEqual(["k2", "k1", "k0"]);
    const byPrincipal = await access.listAudit({ limit: 10, principal: "key:b" });
    expect(byPrincipal.map((event) => event.key)).toEqual(["k3", "k1"]);
    expect((await access.listAudit({ limit: 10, bucket: "other" })).length).toBe(0);
    expect(newest[0]!.time).toBeInstanceOf(Date);
  });
});
