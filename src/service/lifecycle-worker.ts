import type { Logger } from "pino";

import type { LifecycleBatch, LifecycleRule, MetadataStore } from "../metadata/metadata-store.js";
import type { Metrics } from "../metrics/metrics.js";
import { PeriodicTask } from "./periodic-task.js";

/** Source of the current time; tests pass one they move forward. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

const DAY_MS = 24 * 60 * 60 * 1000;
const DEFAULT_BATCH_SIZE = 100;

/** One action of a rule, without the fields every batch shares. */
type LifecycleStep = LifecycleBatch extends infer Batch
  ? Batch extends LifecycleBatch
    ? Omit<Batch, "bucket" | "prefix" | "tags" | "limit" | "beforeItem">
    : never
  : never;

export interface LifecycleWorkerOptions {
  readonly clock: Clock;
  readonly metrics: Pick<Metrics, "lifecycleActionsTotal" | "lifecycleBatchesTotal">;
  readonly batchSize?: number;
}

/**
 * Applies the buckets' lifecycle rules. Work goes in batches of at most
 * `batchSize` versions or uploads, each one transaction that takes a
 * PostgreSQL advisory lock first, so one replica at a time applies rules
 * and an interrupted batch changes nothing. Buckets whose status is
 * suspended are skipped. Durations count from the injected clock.
 */
export class LifecycleWorker {
  private readonly periodic = new PeriodicTask(() => this.applyAll());
  private readonly clock: Clock;
  private readonly batchSize: number;
  private stopping = false;
  /** Versions and uploads changed by the run under way, counted per committed batch. */
  private appliedInRun = 0;
  /** Called inside each batch before each item; a throw rolls the batch back. Tests use it to interrupt a batch. */
  beforeItem: (() => void) | undefined;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly log: Logger,
    private readonly options: LifecycleWorkerOptions,
  ) {
    this.clock = options.clock;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  }

  start(intervalMs: number): void {
    this.periodic.start(intervalMs);
  }

  /** Applies every rule until nothing is left to do; returns how many versions and uploads changed. Overlapping calls share one run. */
  run(): Promise<number> {
    return this.periodic.run();
  }

  /** Stops after the batch under way. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.periodic.stop();
  }

  private async applyAll(): Promise<number> {
    this.appliedInRun = 0;
    try {
      const buckets = await this.metadata.listBuckets();
      for (const bucket of buckets) {
        if (bucket.status === "suspended") continue;
        for (const rule of bucket.lifecycleRules) {
          if (!rule.enabled) continue;
          for (const step of stepsOf(rule, this.clock.now())) {
            const done = await this.drain(bucket.name, rule, step);
            // false: another replica holds the lifecycle lock and does the work.
            if (!done || this.stopping) return this.appliedInRun;
          }
        }
      }
    } catch (err) {
      this.log.warn({ err, applied: this.appliedInRun }, "lifecycle run failed; will retry");
    }
    return this.appliedInRun;
  }

  /**
   * Runs batches of one step until one changes fewer than a full batch;
   * returns false when another replica holds the lifecycle lock.
   */
  private async drain(bucket: string, rule: LifecycleRule, step: LifecycleStep): Promise<boolean> {
    for (;;) {
      const started = performance.now();
      let count: number | undefined;
      try {
        count = await this.metadata.applyLifecycleBatch({
          ...step,
          bucket,
          prefix: rule.prefix,
          tags: rule.tags,
          limit: this.batchSize,
          beforeItem: this.beforeItem,
        } as LifecycleBatch);
      } catch (err) {
        this.options.metrics.lifecycleBatchesTotal.inc({ action: step.action, result: "error" });
        throw err;
      }
      if (count === undefined) return false;

      this.options.metrics.lifecycleBatchesTotal.inc({ action: step.action, result: "ok" });
      if (count > 0) {
        this.options.metrics.lifecycleActionsTotal.inc({ action: step.action, bucket }, count);
        const durationMs = Math.round(performance.now() - started);
        this.log.info({ bucket, rule: rule.id, action: step.action, count, durationMs }, "lifecycle batch applied");
      }
      this.appliedInRun += count;
      if (count < this.batchSize || this.stopping) return true;
    }
  }
}

/** Returns the actions of a rule in the order they run: expirations first, so nothing is moved just before it goes. */
function stepsOf(rule: LifecycleRule, now: Date): LifecycleStep[] {
  const before = (days: number): Date => new Date(now.getTime() - days * DAY_MS);
  const steps: LifecycleStep[] = [];
  if (rule.expirationDays !== undefined) {
    steps.push({ action: "expire_current", createdBefore: before(rule.expirationDays) });
  }
  if (rule.noncurrentExpirationDays !== undefined || rule.noncurrentNewerVersions !== undefined) {
    steps.push({
      action: "expire_noncurrent",
      noncurrentBefore: rule.noncurrentExpirationDays === undefined ? undefined : before(rule.noncurrentExpirationDays),
      keepNewest: rule.noncurrentNewerVersions,
    });
  }
  if (rule.abortIncompleteUploadDays !== undefined) {
    steps.push({ action: "abort_uploads", createdBefore: before(rule.abortIncompleteUploadDays) });
  }
  if (rule.transition !== undefined) {
    steps.push({ action: "transition", createdBefore: before(rule.transition.days), storageClass: rule.transition.storageClass });
  }
  return steps;
}
