import type { Logger } from "pino";

import type { BlobStore } from "../blob/blob-store.js";
import type { MetadataStore } from "../metadata/metadata-store.js";
import { HealthStatus, ServingStatus } from "./health.js";

/** Maximum time a probe may take before its store counts as unreachable. */
const PROBE_TIMEOUT_MS = 3000;

/**
 * Probes the metadata and blob stores at a fixed interval and sets the
 * health of the server ("") and of each listed service: SERVING while both
 * stores respond, NOT_SERVING otherwise. Transitions are logged once.
 */
export class HealthMonitor {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lastProblem: string | undefined = "not probed yet";

  constructor(
    private readonly health: HealthStatus,
    private readonly services: readonly string[],
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly log: Logger,
  ) {}

  /** Probes once now, then every `intervalMs`. */
  async start(intervalMs: number): Promise<void> {
    await this.probe();
    this.timer = setInterval(() => void this.probe(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** Probes both stores; overlapping calls share one probe. */
  probe(): Promise<void> {
    this.running ??= this.check().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async check(): Promise<void> {
    const [metadata, blobs] = await Promise.allSettled([withTimeout(this.metadata.ping(), "metadata store"), withTimeout(this.blobs.ping(), "blob store")]);
    const problems = [metadata, blobs].filter((result) => result.status === "rejected").map((result) => String((result as PromiseRejectedResult).reason?.message ?? result));
    const problem = problems.length === 0 ? undefined : problems.join("; ");
    const status = problem === undefined ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;

    this.health.set("", status);
    for (const service of this.services) this.health.set(service, status);

    if (problem !== this.lastProblem) {
      if (problem === undefined) this.log.info("dependencies reachable: serving");
      else this.log.warn({ problem }, "dependency unreachable: not serving");
      this.lastProblem = problem;
    }
  }
}

async function withTimeout(probe: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not respond within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
  });
  try {
    await Promise.race([probe, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
