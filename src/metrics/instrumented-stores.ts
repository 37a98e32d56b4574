/*
 * Store wrappers that time every operation into
 * engram_storage_operations_duration_seconds. They implement the same
 * ports as the stores they wrap and pass streams through untouched, so
 * they neither buffer content nor hide backpressure.
 */
import type { Readable } from "node:stream";

import type { Histogram } from "prom-client";

import type { BlobHeaders, BlobReadRange, BlobRef, BlobStore, BlobWriter, StoredBlob, WriterOptions } from "../blob/blob-store.js";
import type { MetadataStore } from "../metadata/metadata-store.js";

type DurationHistogram = Histogram<"operation" | "backend">;

async function timed<T>(histogram: DurationHistogram, operation: string, backend: string, work: () => Promise<T>): Promise<T> {
  const end = histogram.startTimer({ operation, backend });
  try {
    return await work();
  } finally {
    end();
  }
}

export class InstrumentedBlobStore implements BlobStore {
  readonly kind: string;
  readonly presignGet?: BlobStore["presignGet"];
  readonly presignPut?: BlobStore["presignPut"];
  readonly sizeOf?: BlobStore["sizeOf"];
  readonly writeHeaders?: BlobStore["writeHeaders"];
  readonly concat?: BlobStore["concat"];

  constructor(
    private readonly inner: BlobStore,
    private readonly histogram: DurationHistogram,
  ) {
    this.kind = inner.kind;
    // Optional capabilities exist on the wrapper only where the store has them.
    const { presignGet, presignPut, sizeOf, writeHeaders, concat } = inner;
    if (presignGet) this.presignGet = (...args) => this.time("blob.presign_get", () => presignGet.apply(inner, args));
    if (presignPut) this.presignPut = (...args) => this.time("blob.presign_put", () => presignPut.apply(inner, args));
    if (sizeOf) this.sizeOf = (...args) => this.time("blob.size_of", () => sizeOf.apply(inner, args));
    if (writeHeaders) this.writeHeaders = (...args) => this.time("blob.write_headers", () => writeHeaders.apply(inner, args));
    if (concat) this.concat = (...args) => this.time("blob.concat", () => concat.apply(inner, args));
  }

  ensureBuckets(buckets: readonly string[]): Promise<void> {
    return this.time("blob.ensure_buckets", () => this.inner.ensureBuckets(buckets));
  }

  async createWriter(ref: BlobRef, options?: WriterOptions): Promise<BlobWriter> {
    const writer = await this.time("blob.create_writer", () => this.inner.createWriter(ref, options));
    return {
      write: (chunk: Uint8Array) => writer.write(chunk),
      finish: (headers: BlobHeaders) => this.time("blob.finish", () => writer.finish(headers)),
      abort: () => this.time("blob.abort", () => writer.abort()),
    };
  }

  read(ref: BlobRef, range: BlobReadRange, signal?: AbortSignal): Promise<Readable> {
    return this.time("blob.open_read", () => this.inner.read(ref, range, signal));
  }

  scan(bucket: string): AsyncIterable<StoredBlob> {
    return this.inner.scan(bucket);
  }

  delete(ref: BlobRef): Promise<void> {
    return this.time("blob.delete", () => this.inner.delete(ref));
  }

  copy(source: BlobRef, target: BlobRef, headers: BlobHeaders): Promise<void> {
    return this.time("blob.copy", () => this.inner.copy(source, target, headers));
  }

  removeBucket(bucket: string): Promise<void> {
    return this.time("blob.remove_bucket", () => this.inner.removeBucket(bucket));
  }

  ping(): Promise<void> {
    return this.time("blob.ping", () => this.inner.ping());
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Returns the wrapped store, for tests and tools that need its own API. */
  unwrap(): BlobStore {
    return this.inner;
  }

  private time<T>(operation: string, work: () => Promise<T>): Promise<T> {
    return timed(this.histogram, operation, this.inner.kind, work);
  }
}

/**
 * Wraps every method of a metadata store with a timer named
 * "metadata.<method>". Methods that return no promise pass through.
 */
export function instrumentMetadataStore(inner: MetadataStore, histogram: DurationHistogram): MetadataStore {
  return new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== "function" || typeof property !== "string" || property === "poolStats") {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return (...args: unknown[]) => {
        const end = histogram.startTimer({ operation: `metadata.${property}`, backend: target.kind });
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result instanceof Promise) {
          return result.finally(end);
        }
        end();
        return result;
      };
    },
  });
}
