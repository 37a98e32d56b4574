import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { StorageError } from "./service/errors.js";

/** Data directories locked by this process. */
const lockedHere = new Set<string>();

/**
 * Takes the data directory for this process. PGlite and the filesystem
 * blob store must have a single owner, so a second Engram on the same
 * directory fails at start instead of corrupting it. The lock is a file
 * holding the owner's pid; a lock whose process has ended is taken over.
 *
 * @returns a function that releases the lock.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await mkdir(dataDir, { recursive: true });
  const lockFile = join(dataDir, "engram.pid");
  if (lockedHere.has(dataDir)) {
    throw inUse(dataDir, process.pid);
  }

  try {
    await writeFile(lockFile, `${process.pid}\n`, { flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    const owner = Number((await readFile(lockFile, "utf8").catch(() => "")).trim());
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
      throw inUse(dataDir, owner);
    }
    await writeFile(lockFile, `${process.pid}\n`);
  }

  lockedHere.add(dataDir);
  return async () => {
    lockedHere.delete(dataDir);
    await rm(lockFile, { force: true });
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function inUse(dataDir: string, pid: number): StorageError {
  return new StorageError(
    "failed_precondition",
    `data directory ${dataDir} is in use by Engram process ${pid}: stop that process, or give this one its own ENGRAM_DATA_DIR`,
  );
}
