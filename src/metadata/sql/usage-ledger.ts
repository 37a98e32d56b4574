import { sql, type Transaction } from "kysely";

import type { Database } from "./schema.js";

/** The columns of an object row that decide what it adds to its bucket's usage. */
interface CountedRow {
  readonly bucket: string;
  readonly live: boolean;
  readonly delete_marker: boolean;
  readonly size: bigint | string | number;
}

interface UsageDelta {
  objects: number;
  bytes: number;
  versions: number;
  versionBytes: number;
}

/**
 * Collects the usage changes of one transaction and writes them to the
 * bucket rows at its end. Callers flush after their last key lock, which
 * keeps the bucket row locked briefly. It also means that no transaction
 * waits for a key lock while it has a bucket row locked, which could
 * deadlock with a writer that has the key and waits for the row.
 */
export class UsageLedger {
  private readonly deltas = new Map<string, UsageDelta>();

  add(row: CountedRow): void {
    this.apply(row, 1);
  }

  remove(row: CountedRow): void {
    this.apply(row, -1);
  }

  async flush(trx: Transaction<Database>): Promise<void> {
    // Bucket order, so two flushes that touch the same buckets lock them alike.
    for (const [bucket, delta] of [...this.deltas].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (delta.objects === 0 && delta.bytes === 0 && delta.versions === 0 && delta.versionBytes === 0) continue;
      await trx
        .updateTable("buckets")
        .set({
          object_count: sql<number>`object_count + ${delta.objects}`,
          total_bytes: sql<number>`total_bytes + ${delta.bytes}`,
          version_count: sql<number>`version_count + ${delta.versions}`,
          version_bytes: sql<number>`version_bytes + ${delta.versionBytes}`,
        })
        .where("name", "=", bucket)
        .execute();
    }
    this.deltas.clear();
  }

  private apply(row: CountedRow, sign: 1 | -1): void {
    if (row.delete_marker) return;
    const delta = this.deltas.get(row.bucket) ?? { objects: 0, bytes: 0, versions: 0, versionBytes: 0 };
    const size = Number(row.size);
    delta.versions += sign;
    delta.versionBytes += sign * size;
    if (row.live) {
      delta.objects += sign;
      delta.bytes += sign * size;
    }
    this.deltas.set(row.bucket, delta);
  }
}
