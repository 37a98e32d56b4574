import { StorageError } from "./errors.js";

/**
 * Iterates `source` until `signal` aborts. A transport may leave a pending
 * read of a cancelled stream unresolved forever. Racing each read against
 * the signal makes the consumer stop, so it can release files and buffers.
 */
export async function* abortable<T>(source: AsyncIterable<T>, signal: AbortSignal | undefined, what: string): AsyncGenerator<T> {
  if (signal === undefined) {
    yield* source;
    return;
  }

  const iterator = source[Symbol.asyncIterator]();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(new StorageError("cancelled", `the ${what} was cancelled by the client: nothing was stored`));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  // Keeps an abort after the last read from surfacing as an unhandled rejection.
  aborted.catch(() => undefined);

  try {
    for (;;) {
      const next = await Promise.race([iterator.next(), aborted]);
      if (next.done) return;
      yield next.value;
    }
  } finally {
    signal.removeEventListener("abort", onAbort!);
    void iterator.return?.()?.catch(() => undefined);
  }
}
