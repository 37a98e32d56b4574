import type { Logger } from "pino";

import type { MetadataStore } from "../metadata/metadata-store.js";

const BATCH_SIZE = 100;

/**
 * Removes expired multipart and resumable uploads. A PostgreSQL advisory
 * lock lets one replica at a time sweep. The sweep moves the part blobs to
 * the blob deletion queue and drops the rows, and the blob sweeper deletes
 * the blobs after its grace period.
 */
export class UploadSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly log: Logger,
  ) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.sweep(), intervalMs);
    this.timer.unref();
  }

  /** Removes every expired upload; returns how many. Overlapping calls share one run. */
  sweep(): Promise<number> {
    this.running ??= this.sweepAll().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private async sweepAll(): Promise<number> {
    let removed = 0;
    try {
      for (;;) {
        const count = await this.metadata.sweepExpiredUploads(BATCH_SIZE);
        // undefined: another replica holds the sweep lock and does the work.
        if (count === undefined) break;
        removed += count;
        if (count < BATCH_SIZE) break;
      }
      if (removed > 0) this.log.info({ removed }, "removed expired uploads");
    } catch (err) {
      this.log.warn({ err }, "expired upload sweep failed; will retry");
    }
    return removed;
  }
}
