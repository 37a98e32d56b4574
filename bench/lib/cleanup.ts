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

/**
 * Runs a benchmark entry point: exits with its code, 1 when it throws, or
 * 130 on SIGINT or SIGTERM, always after stopping what it started.
 */
export function runBenchmark(name: string, main: () => Promise<number>, log: (line: string) => void): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping the servers the benchmark started`);
      void cleanupAll().then(() => process.exit(130));
    });
  }

  main().then(
    async (code) => {
      await cleanupAll();
      process.exit(code);
    },
    async (err: unknown) => {
      console.error(`${name} failed: ${(err as Error).stack ?? String(err)}`);
      await cleanupAll();
      process.exit(1);
    },
  );
}
