import { StorageError } from "./errors.js";

/**
 * Iterates `source` until `signal` aborts. A transport may leave a pending
 * read of a cancelled stream unresolved forever. Racing each read against
 * the signal makes the consumer stop, so it can release files and buffers.
 *
 * Each read gets an abort listener of its own that is removed when the
 * read settles. Racing every read against one shared, never-settling abort
 * promise instead would leave a reaction on that promise per read, each
 * holding its chunk, so an upload kept every chunk until it ended.
 */
export async function* abortable<T>(source: AsyncIterable<T>, signal: AbortSignal | undefined, what: string): AsyncGenerator<T> {
  if (signal === undefined) {
    yield* source;
    return;
  }

  const iterator = source[Symbol.asyncIterator]();
  const cancelled = (): StorageError => new StorageError("cancelled", `the ${what} was cancelled by the client: nothing was stored`);
  try {
    for (;;) {
      const next = await new Promise<IteratorResult<T>>((resolve, reject) => {
        if (signal.aborted) {
          reject(cancelled());
          return;
        }
        const onAbort = (): void => reject(cancelled());
        signal.addEventListener("abort", onAbort, { once: true });
        iterator.next().then(
          (result) => {
            signal.removeEventListener("abort", onAbort);
            resolve(result);
          },
          (err: unknown) => {
            signal.removeEventListener("abort", onAbort);
            reject(err);
          },
        );
      });
      if (next.done) return;
      yield next.value;
    }
  } finally {
    void iterator.return?.()?.catch(() => undefined);
  }
}
