import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { MetadataStore } from "../src/metadata/metadata-store.js";
import { openPGliteMetadataStore } from "../src/metadata/pglite/open-pglite.js";
import { withReadCache } from "../src/metadata/read-cache.js";
import { newObject } from "./support/records.js";

const BUCKET = "cache-test";

describe("metadata read cache", () => {
  let dir: string;
  let store: MetadataStore;
  let cachedStore: MetadataStore;
  /** getObject calls that reached PGlite. */
  let lookups = 0;
  /** When set, getObject on PGlite waits for it after its query. */
  let gate: Promise<void> | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "engram-read-cache-"));
    store = await openPGliteMetadataStore(dir);
    await store.ensureBuckets([BUCKET]);
    const counting = new Proxy(store, {
      get(target, property, receiver) {
        if (property === "getObject") {
          return async (...args: Parameters<MetadataStore["getObject"]>) => {
            lookups += 1;
            const result = await target.getObject(...args);
            await gate;
            return result;
          };
        }
        const value = Reflect.get(target, property, receiver) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    cachedStore = withReadCache(counting);
  });

  afterAll(async () => {
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function commit(key: string): Promise<number> {
    const generation = await cachedStore.reserveGeneration();
    await cachedStore.commitObject(newObject(BUCKET, key, generation), undefined);
    return generation;
  }

  it("repeated lookup served from memory", async () => {
    const generation = await commit("repeat");
    lookups = 0;

    expect((await cachedStore.getObject(BUCKET, "repeat"))?.generation).toBe(generation);
    expect((await cachedStore.getObject(BUCKET, "repeat"))?.generation).toBe(generation);
    expect(lookups).toBe(1);
  });

  it("commit replaces the cached version", async () => {
    await commit("overwrite");
    await cachedStore.getObject(BUCKET, "overwrite");

    const newer = await commit("overwrite");
    expect((await cachedStore.getObject(BUCKET, "overwrite"))?.generation).toBe(newer);
  });

  it("delete removes the cached version", async () => {
    const generation = await commit("deleted");
    await cachedStore.getObject(BUCKET, "deleted");

    await cachedStore.deleteObject(BUCKET, "deleted", generation);
    expect(await cachedStore.getObject(BUCKET, "deleted")).toBeUndefined();
  });

  it("lookup racing a commit not cached", async () => {
    const older = await commit("race");
    let open!: () => void;
    gate = new Promise((resolve) => (open = resolve));

    // The lookup reads the older version, then waits while a commit lands.
    const racing = cachedStore.getObject(BUCKET, "race");
    await new Promise((resolve) => setTimeout(resolve, 50));
    const newer = await commit("race");
    open();
    gate = undefined;

    expect((await racing)?.generation).toBe(older);
    expect((await cachedStore.getObject(BUCKET, "race"))?.generation).toBe(newer);
  });

  it("bucket lookups cached", async () => {
    const first = await cachedStore.getBucket(BUCKET);
    const second = await cachedStore.getBucket(BUCKET);
    expect(second).toBe(first);
    expect(await cachedStore.getBucket("no-such-bucket")).toBeUndefined();
  });
});
