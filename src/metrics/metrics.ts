/*
 * Prometheus metrics of one Engram process. Labels stay low in cardinality:
 * bucket, operation, code and backend, never a key or an upload id.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

import type { PoolStats } from "../metadata/metadata-store.js";

export interface Metrics {
  readonly registry: Registry;
  readonly uploadsTotal: Counter<"bucket">;
  readonly uploadsBytesTotal: Counter<"bucket">;
  readonly downloadsTotal: Counter<"bucket">;
  readonly downloadsBytesTotal: Counter<"bucket">;
  readonly presignedUrlsGenerated: Counter<"operation">;
  readonly storageOperationDuration: Histogram<"operation" | "backend">;
  readonly activeUploads: Gauge;
  readonly failedOperationsTotal: Counter<"operation" | "code">;
  readonly lifecycleActionsTotal: Counter<"action" | "bucket">;
  readonly lifecycleBatchesTotal: Counter<"action" | "result">;
  readonly authFailuresTotal: Counter<"reason">;
}

/** Creates the registry with Engram's metrics and Node's default process metrics. */
export function createMetrics(poolStats?: () => PoolStats | undefined): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const metrics: Metrics = {
    registry,
    uploadsTotal: new Counter({ name: "engram_uploads_total", help: "Objects committed by Upload, CompleteMultipartUpload, the finish of a resumable upload or a data plane PUT.", labelNames: ["bucket"], registers: [registry] }),
    uploadsBytesTotal: new Counter({ name: "engram_uploads_bytes_total", help: "Content bytes of the objects counted in engram_uploads_total.", labelNames: ["bucket"], registers: [registry] }),
    downloadsTotal: new Counter({ name: "engram_downloads_total", help: "Downloads that sent their whole range.", labelNames: ["bucket"], registers: [registry] }),
    downloadsBytesTotal: new Counter({ name: "engram_downloads_bytes_total", help: "Content bytes sent by Download, including cut-off downloads.", labelNames: ["bucket"], registers: [registry] }),
    presignedUrlsGenerated: new Counter({ name: "engram_presigned_urls_total", help: "Presigned URLs issued.", labelNames: ["operation"], registers: [registry] }),
    storageOperationDuration: new Histogram({
      name: "engram_storage_operations_duration_seconds",
      help: "Duration of blob and metadata store operations.",
      labelNames: ["operation", "backend"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    activeUploads: new Gauge({ name: "engram_active_uploads", help: "Upload, UploadPart, UploadPartChunk and WriteChunk calls in progress.", registers: [registry] }),
    failedOperationsTotal: new Counter({ name: "engram_failed_operations_total", help: "Calls that ended with an error, by RPC and gRPC code.", labelNames: ["operation", "code"], registers: [registry] }),
    lifecycleActionsTotal: new Counter({
      name: "engram_lifecycle_actions_total",
      help: "Versions expired or transitioned and uploads aborted by lifecycle rules.",
      labelNames: ["action", "bucket"],
      registers: [registry],
    }),
    lifecycleBatchesTotal: new Counter({
      name: "engram_lifecycle_batches_total",
      help: "Lifecycle batches run, by action and result (ok or error).",
      labelNames: ["action", "result"],
      registers: [registry],
    }),
    authFailuresTotal: new Counter({
      name: "engram_auth_failures_total",
      help: "Calls and HTTP requests rejected by access control: reason missing, malformed or invalid credentials, or denied by the grants.",
      labelNames: ["reason"],
      registers: [registry],
    }),
  };

  if (poolStats) {
    const gauge = (name: string, help: string, pick: (stats: PoolStats) => number): void => {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          const stats = poolStats();
          if (stats) this.set(pick(stats));
        },
      });
    };
    gauge("engram_postgres_pool_connections", "Connections open in the PostgreSQL pool.", (stats) => stats.total);
    gauge("engram_postgres_pool_idle_connections", "Idle connections in the PostgreSQL pool.", (stats) => stats.idle);
    gauge("engram_postgres_pool_waiting_requests", "Queries waiting for a PostgreSQL connection.", (stats) => stats.waiting);
  }
  return metrics;
}
