import { performance } from "node:perf_hooks";

import { cpuSecondsOf, ownCpuSeconds } from "./cpu.js";
import { RssWatch, type RssPeak } from "./rss.js";

/** Duration of one measured step, with the peak RSS and CPU time of the server and the CPU time of this process (the client). */
export interface Timed<T> {
  readonly value: T;
  readonly seconds: number;
  readonly rss: RssPeak | undefined;
  readonly serverCpuSeconds: number;
  readonly clientCpuSeconds: number;
}

/** Runs `step`, timing it and watching the RSS and CPU time of `serverPid` (when given) while it runs. */
export async function timed<T>(serverPid: number | undefined, step: () => Promise<T>): Promise<Timed<T>> {
  const watch = serverPid === undefined ? undefined : new RssWatch(serverPid);
  const serverCpuBefore = serverPid === undefined ? Number.NaN : cpuSecondsOf(serverPid);
  const clientCpuBefore = ownCpuSeconds();
  const start = performance.now();
  try {
    const value = await step();
    const seconds = (performance.now() - start) / 1000;
    const clientCpuSeconds = ownCpuSeconds() - clientCpuBefore;
    const serverCpuSeconds = serverPid === undefined ? Number.NaN : cpuSecondsOf(serverPid) - serverCpuBefore;
    return { value, seconds, rss: watch?.stop(), serverCpuSeconds, clientCpuSeconds };
  } finally {
    watch?.stop();
  }
}

/** Returns `items` rotated left by `by`, so each round starts with a different entry. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = ((by % items.length) + items.length) % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}
