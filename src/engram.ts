/*
 * Composition root: config -> adapters -> services -> servers. Both the
 * `engram serve` command and the tests start Engram through `startEngram`.
 */
import { join } from "node:path";

import type { AddressInfo } from "node:net";

import type { DescFile } from "@bufbuild/protobuf";
import { cors as connectCors, createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";

import { file_engram_v1_presign_service } from "../gen/engram/v1/presign_service_pb.js";
import { file_engram_v1_storage_service } from "../gen/engram/v1/storage_service_pb.js";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.js";
import { file_engram_v1_admin_service } from "../gen/engram/v1/admin_service_pb.js";
import { accessInterceptor } from "./api/access-interceptor.js";
import { registerAdminService } from "./api/admin-handler.js";
import { AccessControl } from "./auth/access-control.js";
import { Authenticator } from "./auth/authenticator.js";
import { createFirstAdminKey } from "./auth/bootstrap.js";
import { JwtVerifier } from "./auth/jwt.js";
import { watchPolicyFile } from "./auth/policy-file.js";
import { CallTracker, callFactsKey, callLogInterceptor } from "./api/call-log.js";
import { HealthMonitor } from "./api/health-monitor.js";
import { HealthStatus, registerHealth } from "./api/health.js";
import { registerReflection } from "./api/reflection.js";
import { registerPresignService } from "./api/presign-handler.js";
import { registerStorageService } from "./api/storage-handler.js";
import type { BlobStore } from "./blob/blob-store.js";
import { FsBlobStore } from "./blob/fs/fs-blob-store.js";
import { openS3BlobStore } from "./blob/s3/open-s3.js";
import type { Config } from "./config.js";
import { lockDataDir } from "./data-dir-lock.js";
import type { MetadataStore } from "./metadata/metadata-store.js";
import { openPGliteMetadataStore } from "./metadata/pglite/open-pglite.js";
import { openPostgresMetadataStore } from "./metadata/postgres/open-postgres.js";
import { withReadCache } from "./metadata/read-cache.js";
import { createDataPlane } from "./http/data-plane.js";
import { OpsServer } from "./http/ops-server.js";
import { loadSigningKeys } from "./presign/signing-keys.js";
import { UrlSigner } from "./presign/url-signer.js";
import { PresignService } from "./service/presign.js";
import { InstrumentedBlobStore, instrumentMetadataStore } from "./metrics/instrumented-stores.js";
import { createMetrics, type Metrics } from "./metrics/metrics.js";
import { ApiServer, type RequestHandler } from "./server/api-server.js";
import { withGrpcMessageEncoding } from "./server/grpc-message.js";
import { BlobSweeper } from "./service/blob-sweeper.js";
import { BucketService } from "./service/bucket-service.js";
import { CatalogService } from "./service/catalog.js";
import { DownloadService } from "./service/download.js";
import type { Limits } from "./service/limits.js";
import { MAX_KEY_BYTES } from "./service/names.js";
import { LifecycleWorker, systemClock, type Clock } from "./service/lifecycle-worker.js";
import { ReadCounter } from "./service/read-counter.js";
import { RestoreService } from "./service/restore.js";
import { MultipartService } from "./service/multipart.js";
import { PartChunkService } from "./service/part-chunks.js";
import { ResumableService } from "./service/resumable.js";
import { UploadSweeper } from "./service/upload-sweeper.js";
import { UploadService } from "./service/upload.js";

/** Size of the chunks Download sends: small enough for any gRPC client's default limit. */
const DOWNLOAD_CHUNK_BYTES = 1024 * 1024;
/**
 * Chunk bytes that all open downloads share: full-size chunks for up to 16
 * downloads at once. Each download keeps several copies of its current
 * chunk (the read-ahead, the encoded message, the framed envelope), about
 * 8 MiB per download in a heap snapshot of 250 downloads with 1 MiB chunks.
 */
const DOWNLOAD_BUDGET_BYTES = 16 * 1024 * 1024;
/** Room for the fields around a data chunk in one message. */
const MESSAGE_OVERHEAD_BYTES = 64 * 1024;
const SWEEP_INTERVAL_MS = 60_000;

export const STORAGE_SERVICE_NAME = "engram.v1.StorageService";

/** A running Engram. */
export interface Engram {
  readonly config: Config;
  /** Base URL of the API, such as http://127.0.0.1:9000. */
  readonly url: string;
  readonly port: number;
  readonly blobs: BlobStore;
  readonly metadata: MetadataStore;
  readonly health: HealthStatus;
  readonly catalog: CatalogService;
  readonly uploads: UploadService;
  readonly downloads: DownloadService;
  readonly multipart: MultipartService;
  readonly uploadSweeper: UploadSweeper;
  readonly lifecycle: LifecycleWorker;
  /** Base URL of the operations port (/metrics, /healthz, /readyz). */
  readonly metricsUrl: string;
  readonly metrics: Metrics;
  readonly monitor: HealthMonitor;
  /** Stops the servers, lets calls finish for the shutdown grace period, and closes the stores. */
  close(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  readonly log: Logger;
  /** Replaces the default stores, for tests of other adapters. */
  readonly blobs?: BlobStore;
  readonly metadata?: MetadataStore;
  /** Receives the admin token generated at first start; `engram serve` prints it to stderr. It never goes to the log. */
  readonly announce?: (text: string) => void;
  /** Clock of the lifecycle worker; tests move it forward instead of waiting. */
  readonly clock?: Clock;
  /** Versions or uploads per lifecycle batch; tests make it small. */
  readonly lifecycleBatchSize?: number;
}

export async function startEngram(config: Config, options: StartOptions): Promise<Engram> {
  const { log } = options;
  const usesDataDir = (options.blobs === undefined && config.blobStore === "fs") || (options.metadata === undefined && config.metadataStore === "pglite");
  const unlock = usesDataDir ? await lockDataDir(config.dataDir) : async () => {};

  let blobs: BlobStore | undefined;
  let metadata: MetadataStore | undefined;
  try {
    blobs = options.blobs ?? openBlobStore(config);
    metadata = options.metadata ?? (await openMetadataStore(config, log));
    return await startServices(config, options, blobs, metadata, unlock);
  } catch (err) {
    // A failed start closes what it opened, so the process can exit.
    await metadata?.close().catch(() => undefined);
    await blobs?.close().catch(() => undefined);
    await unlock();
    throw err;
  }
}

async function startServices(
  config: Config,
  options: StartOptions,
  blobs: BlobStore,
  metadata: MetadataStore,
  unlock: () => Promise<void>,
): Promise<Engram> {
  const { log } = options;
  await metadata.ensureBuckets(config.buckets);
  await blobs.ensureBuckets(config.buckets);

  const limits: Limits = {
    maxUploadChunkBytes: config.maxUploadChunkBytes,
    downloadChunkBytes: DOWNLOAD_CHUNK_BYTES,
    downloadBudgetBytes: DOWNLOAD_BUDGET_BYTES,
    maxMessageBytes: config.maxUploadChunkBytes + MESSAGE_OVERHEAD_BYTES,
    maxObjectBytes: config.maxObjectBytes,
    maxListPageSize: 1000,
    maxKeyBytes: MAX_KEY_BYTES,
    maxMetadataBytes: 8 * 1024,
    maxTags: 50,
  };

  // The services see timed stores; `blobs` and `metadata` stay the plain
  // adapters for callers that need their own API.
  const metrics = createMetrics(metadata.poolStats ? () => metadata.poolStats?.() : undefined);
  const timedBlobs = new InstrumentedBlobStore(blobs, metrics.storageOperationDuration);
  const timedMetadata = instrumentMetadataStore(metadata, metrics.storageOperationDuration);

  const sweeper = new BlobSweeper(timedMetadata, timedBlobs, log, config.blobDeleteGraceMs);
  const reads = new ReadCounter(timedMetadata, log, config.readFlushIntervalMs);
  const uploads = new UploadService(timedMetadata, timedBlobs, limits);
  const downloads = new DownloadService(timedMetadata, timedBlobs, limits, reads);
  const catalog = new CatalogService(timedMetadata, sweeper, limits);
  const signingKeys = await loadSigningKeys(config, log);
  const signer = new UrlSigner(signingKeys);
  let publicUrl = config.publicUrl;
  const multipart = new MultipartService(timedMetadata, timedBlobs, limits, config.uploadExpiryMs);
  const partChunks = new PartChunkService(timedMetadata, timedBlobs, limits, multipart, config.uploadExpiryMs);
  const presign = new PresignService(timedMetadata, timedBlobs, signer, signingKeys[0]!, () => publicUrl, multipart, config.presignUrls === "store");
  const resumable = new ResumableService(timedMetadata, timedBlobs, limits, multipart, config.uploadExpiryMs);
  const uploadSweeper = new UploadSweeper(timedMetadata, log);
  const buckets = new BucketService(timedMetadata, timedBlobs, log);
  const restores = new RestoreService(timedMetadata, timedBlobs);
  const lifecycle = new LifecycleWorker(timedMetadata, log, {
    clock: options.clock ?? systemClock,
    metrics,
    ...(options.lifecycleBatchSize === undefined ? {} : { batchSize: options.lifecycleBatchSize }),
  });

  const accessSetup = await startAccessControl(config, metadata, log, options.announce ?? (() => undefined));
  const access = new AccessControl({ enabled: config.auth.enabled, authenticator: accessSetup.authenticator, store: metadata.access, failures: metrics.authFailuresTotal, log });
  const lookups = {
    uploadSession: async (uploadId: string) => {
      const session = await multipart.requireSession(uploadId, true);
      return { bucket: session.bucket, key: session.key };
    },
    finalizeTarget: (token: string) => presign.targetOf(token),
  };

  const health = new HealthStatus();
  const monitor = new HealthMonitor(health, [STORAGE_SERVICE_NAME], metadata, blobs, log);
  const calls = new CallTracker();

  const routes = (router: ConnectRouter): void => {
    registerStorageService(router, { uploads, downloads, catalog, multipart, partChunks, resumable, buckets, restores, limits });
    registerHealth(router, health);
    registerPresignService(router, presign, metrics);
    registerAdminService(router, metadata.access);
    registerReflection(router, [file_engram_v1_storage_service, file_engram_v1_presign_service, file_engram_v1_admin_service, file_grpc_health_v1_health] as DescFile[]);
  };

  const connectHandler = connectNodeAdapter({
    routes,
    // The limit applies to the request body before decoding. Connect JSON
    // carries bytes in base64, 4/3 as long, so a full chunk from a browser
    // needs the extra room. Every service still checks the chunk size.
    readMaxBytes: Math.ceil((limits.maxMessageBytes * 4) / 3),
    writeMaxBytes: limits.maxMessageBytes,
    // Object content is mostly incompressible model weights: gzip would
    // cost CPU and cut download speed to a fraction.
    acceptCompression: [],
    // The call log comes first, so it logs and maps the access errors too.
    interceptors: [callLogInterceptor(log, metrics, calls), accessInterceptor(access, lookups)],
    contextValues: (req) => createContextValues().set(callFactsKey, { peer: `${req.socket.remoteAddress}:${req.socket.remotePort}` }),
  });
  const dataPlane = createDataPlane({ uploads, downloads, catalog, multipart, signer, log, metrics, access });
  const grpcHandler = withGrpcMessageEncoding(connectHandler);
  const handler = withCors((req, res) => {
    if (!dataPlane(req, res)) grpcHandler(req, res);
  }, config.corsOrigins);

  const server = new ApiServer(handler);
  const ops = new OpsServer(metrics.registry, health);
  let address;
  let opsAddress;
  try {
    await monitor.start(config.healthIntervalMs);
    address = await server.listen(config.port, config.host);
    opsAddress = await ops.listen(config.metricsPort, config.host);
  } catch (err) {
    await monitor.stop();
    await server.close(0);
    await ops.close();
    accessSetup.stop();
    throw err;
  }
  sweeper.start(SWEEP_INTERVAL_MS);
  uploadSweeper.start(SWEEP_INTERVAL_MS);
  lifecycle.start(config.lifecycleIntervalMs);
  reads.start();

  const url = urlOf(address);
  if (publicUrl === "") publicUrl = url;
  const metricsUrl = urlOf(opsAddress);
  log.info({ url, metricsUrl, dataDir: config.dataDir, blobs: blobs.kind, metadata: metadata.kind }, "engram started");

  let closing: Promise<void> | undefined;
  const close = (graceMs = config.shutdownGraceMs): Promise<void> => {
    closing ??= (async () => {
      // Readiness first, so load balancers stop sending calls, then refuse
      // new calls and give running ones the grace period.
      await monitor.stop();
      health.shutdown();
      calls.shuttingDown = true;
      await server.close(graceMs);
      // Handlers of streams cut off at the deadline still clean up.
      await calls.idle(5000);
      await ops.close();
      await lifecycle.stop();
      accessSetup.stop();
      await uploadSweeper.stop();
      await sweeper.stop();
      await reads.stop();
      await metadata.close();
      await blobs.close();
      await unlock();
      log.info("engram stopped");
    })();
    return closing;
  };

  return { config, url, port: address.port, metricsUrl, blobs, metadata, health, catalog, uploads, downloads, multipart, uploadSweeper, lifecycle, metrics, monitor, close };
}

/**
 * Sets up who may call: loads and watches the policy file, and on first
 * start creates the admin key. With access control off it only warns.
 */
async function startAccessControl(
  config: Config,
  metadata: MetadataStore,
  log: Logger,
  announce: (text: string) => void,
): Promise<{ authenticator: Authenticator; stop: () => void }> {
  const jwt = config.auth.jwt === undefined ? undefined : new JwtVerifier(config.auth.jwt);
  const authenticator = new Authenticator(metadata.access, config.auth.adminToken, jwt);
  if (!config.auth.enabled) {
    log.warn("access control is off (ENGRAM_AUTH=off): every caller may read, write and delete every object; use it only for local experiments");
    return { authenticator, stop: () => undefined };
  }
  const stop = config.auth.policyFile === "" ? () => undefined : watchPolicyFile(config.auth.policyFile, authenticator, log);
  if (config.auth.adminToken === "") {
    try {
      await createFirstAdminKey(metadata.access, config.dataDir, log, announce);
    } catch (err) {
      stop();
      throw err;
    }
  }
  return { authenticator, stop };
}

function urlOf(address: AddressInfo): string {
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${address.port}`;
}

/** Opens the blob and metadata stores the configuration names, with migrations applied. */
export async function openStores(config: Config, log: Logger): Promise<{ blobs: BlobStore; metadata: MetadataStore }> {
  const blobs = openBlobStore(config);
  const metadata = await openMetadataStore(config, log);
  return { blobs, metadata };
}

function openBlobStore(config: Config): BlobStore {
  return config.blobStore === "s3" ? openS3BlobStore(config.s3) : new FsBlobStore(join(config.dataDir, "blobs"));
}

async function openMetadataStore(config: Config, log: Logger): Promise<MetadataStore> {
  if (config.metadataStore === "postgres") {
    return openPostgresMetadataStore(config.postgres, log);
  }
  // The data directory lock makes this process PGlite's only writer.
  return withReadCache(await openPGliteMetadataStore(join(config.dataDir, "metadata")));
}

/**
 * Adds CORS headers for browser clients (Connect-Web, gRPC-Web) from the
 * allowed origins, and replies to preflight requests.
 */
function withCors(handler: RequestHandler, origins: readonly string[]): RequestHandler {
  if (origins.length === 0) return handler;
  const allowAny = origins.includes("*");

  return (req, res) => {
    const origin = req.headers.origin;
    if (typeof origin === "string" && (allowAny || origins.includes(origin))) {
      res.setHeader("Access-Control-Allow-Origin", allowAny ? "*" : origin);
      res.setHeader("Vary", "Origin");
      res.setHeader("Access-Control-Expose-Headers", connectCors.exposedHeaders.join(", "));
      if (req.method === "OPTIONS") {
        res.setHeader("Access-Control-Allow-Methods", connectCors.allowedMethods.join(", "));
        // Browsers send the bearer token in Authorization, which Connect's list leaves out.
        res.setHeader("Access-Control-Allow-Headers", [...connectCors.allowedHeaders, "Authorization"].join(", "));
        res.setHeader("Access-Control-Max-Age", "7200");
        res.writeHead(204);
        res.end();
        return;
      }
    }
    handler(req, res);
  };
}
