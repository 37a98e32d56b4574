import type { Logger } from "pino";

import type { BlobStore } from "../blob/blob-store.js";
import type { MetadataStore } from "../metadata/metadata-store.js";
import { PeriodicTask } from "./periodic-task.js";

const BATCH_SIZE = 100;

/**
 * Deletes blobs that objects no longer refer to. Replacing or deleting an
 * object queues its blob in the same transaction. The sweeper removes it
 * once the grace period has passed, so downloads that started before the
 * change can finish reading.
 */
export class BlobSweeper {
  private readonly periodic = new PeriodicTask(() => this.sweepAll());

  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly log: Logger,
    private readonly graceMs: number,
  ) {}

  start(intervalMs: number): void {
    this.periodic.start(intervalMs);
  }

  /** Deletes every due blob; returns how many. Overlapping calls share one run. */
  sweep(): Promise<number> {
    return this.periodic.run();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  private async sweepAll(): Promise<number> {
    let deleted = 0;
    try {
      for (;;) {
        const due = await this.metadata.listBlobDeletions(new Date(Date.now() - this.graceMs), BATCH_SIZE);
        if (due.length === 0) break;

        const done: number[] = [];
        for (const deletion of due) {
          try {
            await this.blobs.delete(deletion);
            done.push(deletion.id);
          } catch (err) {
            this.log.warn({ err, bucket: deletion.bucket, versionId: deletion.versionId }, "failed to delete unreferenced blob; will retry");
          }
        }
        await this.metadata.removeBlobDeletions(done);
        deleted += done.length;
        if (done.length < due.length) break;
      }
    } catch (err) {
      this.log.warn({ err }, "blob sweep failed; will retry");
    }
    return deleted;
  }
}
