import type { Logger } from "pino";

import type { MetadataStore, ObjectRead, ObjectRecord } from "../metadata/metadata-store.js";

/**
 * Counts downloads in memory and writes them to the metadata store in
 * batches, off the download's critical path. A crash loses at most one
 * interval of counts, which is acceptable for "last read" statistics.
 */
export class ReadCounter {
  private pending = new Map<string, ObjectRead>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly metadata: MetadataStore,
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  record(object: ObjectRecord): void {
    const id = `${object.generation}\u0000${object.bucket}\u0000${object.key}`;
    const previous = this.pending.get(id);
    this.pending.set(id, {
      bucket: object.bucket,
      key: object.key,
      generation: object.generation,
      count: (previous?.count ?? 0) + 1,
      lastReadAt: new Date(),
    });
  }

  /** Writes the counts gathered so far; concurrent calls run one after another. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const batch = [...this.pending.values()];
      this.pending = new Map();
      try {
        await this.metadata.recordReads(batch);
      } catch (err) {
        this.log.warn({ err, objects: batch.length }, "failed to record object reads; these counts are lost");
      }
    });
    return this.flushing;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
