import { afterAll, describe, expect, it, inject } from "vitest";

import { backendsUnderTest, s3Env } from "./support/backends.js";
import { TEST_ADMIN_TOKEN, startTestEngram, storageClient, type LogEntry, type TestEngram } from "./support/engram.js";
import { download, random, upload } from "./support/objects.js";
import { createTestDatabase } from "./support/postgres.js";

const backends = await backendsUnderTest();
const production = backends.find((backend) => backend.name !== "embedded")!;
const started: TestEngram[] = [];

afterAll(async () => {
  for (const engram of started) await engram.destroy();
});

/** Returns every secret value that occurs anywhere in the log lines. */
function leaked(logs: readonly LogEntry[], secrets: readonly string[]): string[] {
  const text = logs.map((entry) => JSON.stringify(entry)).join("\n");
  return secrets.filter((secret) => text.includes(secret));
}

describe.skipIf(!production.available)("logs of a full run", () => {
  it("contain no configured secret", async () => {
    const peer = inject("minio")!;
    const password = "pg-password-marker-5d41402a";
    const engram = await production.start({ ENGRAM_POSTGRES_PASSWORD: password });
    started.push(engram);
    const client = storageClient("grpc", engram.url);

    await upload(client, "mnemos-models", "secret/a", random(6 * 1024 * 1024));
    await download(client, { bucket: "mnemos-models", key: "secret/a" });
    await client.listObjects({ bucket: "mnemos-models" });
    await client.getObject({ bucket: "mnemos-models", key: "secret/missing" }).catch(() => undefined);
    await upload(client, "mnemos-models", "bad//key", random(1)).catch(() => undefined);
    await client.deleteObject({ bucket: "mnemos-models", key: "secret/a" });
    // Rejected credentials are logged too, and must not carry the token sent.
    const wrongToken = `${TEST_ADMIN_TOKEN}-wrong`;
    await storageClient("grpc", engram.url, wrongToken).listBuckets({}).catch(() => undefined);
    await fetch(`${engram.url}/v1/buckets/mnemos-models/objects/secret/a`, { headers: { authorization: `Token ${wrongToken}` } });
    expect(engram.logs.some((entry) => entry.msg === "authentication failed")).toBe(true);
    await engram.close(0);

    const secrets = [peer.accessKey, peer.secretKey, password, TEST_ADMIN_TOKEN, "-wrong"];
    expect(engram.logs.length).toBeGreaterThan(5);
    expect(leaked(engram.logs, secrets)).toEqual([]);
  });

  it("of a rejected S3 login contain no secret", async () => {
    const peer = inject("minio")!;
    const wrongSecret = "wrong-secret-marker-7f9c2ba4";
    const database = await createTestDatabase();
    let error: unknown;
    try {
      const engram = await startTestEngram({
        ...s3Env({ ...peer, secretKey: wrongSecret }),
        ENGRAM_METADATA_STORE: "postgres",
        ENGRAM_POSTGRES_URL: database.url,
      });
      started.push(engram);
    } catch (err) {
      error = err;
    } finally {
      await database.drop();
    }
    expect(error).toBeInstanceOf(Error);
    const message = `${(error as Error).message} ${JSON.stringify(error)}`;
    expect(message).toContain("ENGRAM_S3_SECRET_KEY");
    expect(message).not.toContain(wrongSecret);
    expect(message).not.toContain(peer.accessKey);
  });
});
