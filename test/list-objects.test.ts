import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { backendsUnderTest } from "./support/backends.js";
import { PROTOCOLS, storageClient, type TestEngram } from "./support/engram.js";
import { upload } from "./support/objects.js";

const BUCKET = "mnemos-backups";
const OBJECT_COUNT = 2500;

const backends = await backendsUnderTest();

describe.each(backends)("on $name", (backend) => {
let engram: TestEngram;
/** Every key stored, in byte order. */
let keys: string[];

/*
 * 2,000 objects directly under "list/" and 500 more one level deeper, each
 * under a "directory" that shares its name with an object:
 * list/n0001, list/n0001/child, list/n0002, ...
 */
beforeAll(async () => {
  if (!backend.available) return;
  engram = await backend.start();
  const client = storageClient("grpc", engram.url);
  const flat = Array.from({ length: 2000 }, (_, i) => `list/n${String(i).padStart(4, "0")}`);
  const nested = Array.from({ length: 500 }, (_, i) => `list/n${String(i * 4).padStart(4, "0")}/child`);
  keys = [...flat, ...nested].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  expect(keys).toHaveLength(OBJECT_COUNT);

  const queue = [...keys];
  const workers = Array.from({ length: 16 }, async () => {
    for (let key = queue.shift(); key !== undefined; key = queue.shift()) {
      await upload(client, BUCKET, key, Buffer.from(key));
    }
  });
  await Promise.all(workers);
}, 120_000);

afterAll(async () => {
  await engram?.destroy();
});

describe.skipIf(!backend.available).each(PROTOCOLS)("ListObjects over %s", (protocol) => {
  const client = () => storageClient(protocol, engram.url);

  async function listAll(request: { prefix: string; delimiter: string; pageSize: number }) {
    const objects: string[] = [];
    const prefixes: string[] = [];
    const pageLengths: number[] = [];
    let pageToken = "";
    do {
      const page = await client().listObjects({ bucket: BUCKET, ...request, pageToken });
      objects.push(...page.objects.map((object) => object.key));
      prefixes.push(...page.prefixes);
      pageLengths.push(page.objects.length + page.prefixes.length);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return { objects, prefixes, pageLengths };
  }

  it("without delimiter returns every key once", async () => {
    const { objects, prefixes, pageLengths } = await listAll({ prefix: "", delimiter: "", pageSize: 1000 });
    expect(objects).toEqual(keys);
    expect(prefixes).toEqual([]);
    expect(pageLengths).toEqual([1000, 1000, 500]);
  });

  it("with delimiter rolls up each directory once", async () => {
    const { objects, prefixes, pageLengths } = await listAll({ prefix: "list/", delimiter: "/", pageSize: 1000 });
    const flat = keys.filter((key) => !key.endsWith("/child"));
    const directories = keys.filter((key) => key.endsWith("/child")).map((key) => key.slice(0, -"child".length));
    expect(objects).toEqual(flat);
    expect(prefixes).toEqual(directories);
    expect(new Set(prefixes).size).toBe(prefixes.length);
    expect(pageLengths).toEqual([1000, 1000, 500]);
  });

  it("prefix above the keys rolls up to one prefix", async () => {
    const page = await client().listObjects({ bucket: BUCKET, prefix: "", delimiter: "/" });
    expect(page.objects).toEqual([]);
    expect(page.prefixes).toEqual(["list/"]);
    expect(page.nextPageToken).toBe("");
  });

  it("small pages cover a prefix exactly", async () => {
    const { objects, pageLengths } = await listAll({ prefix: "list/n001", delimiter: "", pageSize: 7 });
    expect(objects).toEqual(keys.filter((key) => key.startsWith("list/n001")));
    expect(pageLengths.slice(0, -1).every((length) => length === 7)).toBe(true);
  });

  it("page size above 1000 is INVALID_ARGUMENT", async () => {
    const err = await client()
      .listObjects({ bucket: BUCKET, pageSize: 1001 })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toContain("1001");
  });

  it("page token of another prefix is INVALID_ARGUMENT", async () => {
    const first = await client().listObjects({ bucket: BUCKET, prefix: "list/", pageSize: 10 });
    const err = await client()
      .listObjects({ bucket: BUCKET, prefix: "other/", pageToken: first.nextPageToken })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.InvalidArgument);

    const garbage = await client()
      .listObjects({ bucket: BUCKET, pageToken: "not a token" })
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(garbage?.code).toBe(Code.InvalidArgument);
  });
});
});
