import type { BlobWriter } from "../blob/blob-store.js";

/**
 * Writes to a blob writer one chunk behind the caller. `write` starts a
 * chunk's write once the previous write has ended, and resolves when that
 * previous write has. So the caller receives and hashes the next chunk
 * while this one is written, and at most one write runs at a time.
 */
export class WriteBehind {
  private last: Promise<void> = Promise.resolve();

  constructor(private readonly writer: Pick<BlobWriter, "write">) {}

  /** Queues a chunk. Rejects with the failure of the previous write, if any. */
  write(data: Uint8Array): Promise<void> {
    const previous = this.last;
    this.last = previous.then(() => this.writer.write(data));
    // A failure is reported where it is awaited: by the next write or by flush.
    this.last.catch(() => undefined);
    return previous;
  }

  /** Waits for the last write, and rejects if it failed. */
  flush(): Promise<void> {
    return this.last;
  }

  /** Waits for the last write to end, whatever its outcome, before the writer is aborted. */
  async settle(): Promise<void> {
    await this.last.catch(() => undefined);
  }
}
