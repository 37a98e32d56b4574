import type { Logger } from "pino";

import type { MetadataStore } from "../metadata/metadata-store.js";
import { PeriodicTask } from "./periodic-task.js";

const BATCH_SIZE = 100;

/**
 * Removes expired multipart and resumable uploads. A PostgreSQL advisory
 * lock lets one replica at a time sweep. The sweep moves the part blobs to
 * the blob deletion queue and drops the rows, and the blob sweeper deletes
 * the blobs after its grace period.
 */
export class UploadSweeper {
  private readonly periodic = new PeriodicTask(() => this.sweepAll());

  constructor(
    private readonly metadata: MetadataStore,
    private readonly log: Logger,
  ) {}

  start(intervalMs: number): void {
    this.periodic.start(intervalMs);
  }

  /** Removes every expired upload; returns how many. Overlapping calls share one run. */
  sweep(): Promise<number> {
    return this.periodic.run();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
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
