/*
 * CPU time of a process, which depends far less on what else runs on the
 * machine than wall-clock time does. /proc/<pid>/stat counts user and
 * system time of all threads in clock ticks; USER_HZ is 100 on Linux.
 */
import { readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100;

/** User plus system CPU seconds of a process and all its threads so far. */
export function cpuSecondsOf(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch (err) {
    throw new Error(`cannot read the CPU time of process ${pid}: it has exited (${(err as NodeJS.ErrnoException).code})`, { cause: err });
  }
  // The command name in brackets may contain spaces, so count fields after its closing bracket.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the name, field 3 (state) is at index 0, so utime (14) and stime (15) are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** User plus system CPU seconds of this process so far. */
export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}
