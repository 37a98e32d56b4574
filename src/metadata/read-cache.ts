import type { BucketRecord, MetadataStore, ObjectRecord } from "./metadata-store.js";

/** Methods that only read, so they neither use nor invalidate the cache. */
const PLAIN_READS = new Set<string>([
  "kind",
  "listBuckets",
  "getBucketStats",
  "listObjects",
  "listBlobDeletions",
  "getUploadSession",
  "listUploadSessions",
  "listParts",
  "ping",
  "poolStats",
  "close",
]);

/** Entries kept at most; the oldest entry goes first. */
const MAX_ENTRIES = 10_000;

/**
 * Wraps a metadata store that this process alone writes, such as the
 * embedded PGlite database (its data directory is locked to one process),
 * with a cache of `getObject` and `getBucket` results. With PGlite every
 * query runs on the event loop, so serving repeated lookups from memory
 * keeps small calls from queuing behind each other.
 *
 * Any method not known to be a plain read counts as a write and empties the
 * whole cache, before it starts and after it ends, so a method added to the
 * port later is safe by default. A lookup stores its result only when no
 * write started or ran while it was in flight, so it cannot store a value
 * that a concurrent write made stale.
 *
 * NOTE: never use it with a store that other processes write, such as a
 * shared PostgreSQL: their writes would not invalidate it.
 */
export function withReadCache(inner: MetadataStore): MetadataStore {
  const cache = new Map<string, ObjectRecord | BucketRecord>();
  let epoch = 0;
  let writesInFlight = 0;

  const invalidate = (): void => {
    epoch += 1;
    cache.clear();
  };

  async function cached<T extends ObjectRecord | BucketRecord>(key: string, lookup: () => Promise<T | undefined>): Promise<T | undefined> {
    const hit = cache.get(key);
    if (hit !== undefined) return hit as T;

    const startEpoch = epoch;
    const value = await lookup();
    if (value !== undefined && epoch === startEpoch && writesInFlight === 0) {
      if (cache.size >= MAX_ENTRIES) cache.delete(cache.keys().next().value!);
      cache.set(key, value);
    }
    return value;
  }

  return new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (property === "getObject") {
        return (bucket: string, key: string, generation = 0) =>
          cached(`object\0${bucket}\0${key}\0${generation}`, () => target.getObject(bucket, key, generation));
      }
      if (property === "getBucket") {
        return (name: string) => cached(`bucket\0${name}`, () => target.getBucket(name));
      }
      if (typeof value !== "function") return value;
      if (typeof property !== "string" || PLAIN_READS.has(property)) return value.bind(target);

      return async (...args: unknown[]) => {
        writesInFlight += 1;
        invalidate();
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          writesInFlight -= 1;
          invalidate();
        }
      };
    },
  });
}
