/*
 * Everything the benchmark starts (servers, temporary directories) registers
 * a stop function here. Scenarios stop what they started in `finally`; the
 * registry catches the rest when a scenario throws or the run is
 * interrupted with Ctrl-C or SIGTERM.
 */

type Stop = () => Promise<void>;

const pending = new Set<Stop>();

/** Registers a stop function and returns one that runs it once and unregisters it. */
export function registerCleanup(stop: Stop): Stop {
  let done: Promise<void> | undefined;
  const once: Stop = () => {
    pending.delete(once);
    done ??= stop();
    return done;
  };
  pending.add(once);
  return once;
}

/** Runs every stop function still registered, newest first, and logs the ones that fail. */
export async function cleanupAll(): Promise<void> {
  for (const stop of [...pending].reverse()) {
    try {
      await stop();
    } catch (err) {
      console.error(`cleanup failed: ${(err as Error).message}`);
    }
  }
}
