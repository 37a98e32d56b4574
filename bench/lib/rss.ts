/*
 * Resident set size of a child process, from /proc/<pid>/status (Linux).
 * VmHWM is the kernel's own peak, which catches spikes between samples;
 * writing "5" to /proc/<pid>/clear_refs resets it to the current RSS
 * (Linux 4.0 and later), so each phase of a scenario gets its own peak.
 */
import { readFileSync, writeFileSync } from "node:fs";

export interface RssReading {
  readonly rssBytes: number;
  readonly peakBytes: number;
}

export function readRss(pid: number): RssReading {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return { rssBytes: kibField(status, "VmRSS") * 1024, peakBytes: kibField(status, "VmHWM") * 1024 };
}

function kibField(status: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status);
  if (!match) throw new Error(`/proc status has no ${name} line`);
  return Number(match[1]);
}

/** Resets the kernel's peak RSS of a process; returns false where the kernel does not allow it. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** Peak RSS of one phase: the kernel's VmHWM since the reset, and the largest sample. */
export interface RssPeak {
  readonly peakBytes: number;
  readonly maxSampledBytes: number;
  /** False when VmHWM could not be reset, so peakBytes may come from an earlier phase. */
  readonly peakWasReset: boolean;
  /** The last sample, taken when the phase ended. */
  readonly lastBytes: number;
}

/**
 * Watches the RSS of a process during one phase: resets its peak, then
 * samples VmRSS every `intervalMs` until `stop` is called.
 */
export class RssWatch {
  private maxSampled = 0;
  private last = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly peakWasReset: boolean;

  constructor(
    private readonly pid: number,
    intervalMs = 50,
  ) {
    this.peakWasReset = resetPeakRss(pid);
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    try {
      this.last = readRss(this.pid).rssBytes;
      this.maxSampled = Math.max(this.maxSampled, this.last);
    } catch {
      // The process exited; the caller sees that through its own checks.
    }
  }

  stop(): RssPeak {
    clearInterval(this.timer);
    this.sample();
    let peakBytes = this.maxSampled;
    try {
      peakBytes = Math.max(peakBytes, readRss(this.pid).peakBytes);
    } catch {
      // Exited: keep the sampled maximum.
    }
    return { peakBytes, maxSampledBytes: this.maxSampled, peakWasReset: this.peakWasReset, lastBytes: this.last };
  }
}
