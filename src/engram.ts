/*
 * Composition root: config -> adapters -> services -> servers. Both the
 * `engram serve` command and the tests start Engram through `startEngram`.
 */
import { join } from "node:path";

import type { DescFile } from "@bufbuild/protobuf";
import { cors as connectCors, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";

import { file_engram_v1_storage_service } from "../gen/engram/v1/storage_service_pb.js";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.js";
import { allowAll, type Authorizer } from "./api/authorize.js";
import { callLogInterceptor } from "./api/call-log.js";
import { HealthStatus, ServingStatus, registerHealth } from "./api/health.js";
import { registerReflection } from "./api/reflection.js";
import { registerStorageService } from "./api/storage-handler.js";
import type { BlobStore } from "./blob/blob-store.js";
import { FsBlobStore } from "./blob/fs/fs-blob-store.js";
import { openS3BlobStore } from "./blob/s3/open-s3.js";
import type { Config } from "./config.js";
import { lockDataDir } from "./data-dir-lock.js";
import type { MetadataStore } from "./metadata/metadata-store.js";
import { openPGliteMetadataStore } from "./metadata/pglite/open-pglite.js";
import { openPostgresMetadataStore } from "./metadata/postgres/open-postgres.js";
import { ApiServer, type RequestHandler } from "./server/api-server.js";
import { withGrpcMessageEncoding } from "./server/grpc-message.js";
import { BlobSweeper } from "./service/blob-sweeper.js";
import { CatalogService } from "./service/catalog.js";
import { DownloadService } from "./service/download.js";
import type { Limits } from "./service/limits.js";
import { MAX_KEY_BYTES } from "./service/names.js";
import { ReadCounter } from "./service/read-counter.js";
import { UploadService } from "./service/upload.js";

/** Size of the chunks Download sends: small enough for any gRPC client's default limit. */
const DOWNLOAD_CHUNK_BYTES = 1024 * 1024;
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
  /** Stops the servers, lets calls finish for the shutdown grace period, and closes the stores. */
  close(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  readonly log: Logger;
  /** Replaces the default stores, for tests of other adapters. */
  readonly blobs?: BlobStore;
  readonly metadata?: MetadataStore;
  readonly authorizer?: Authorizer;
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
    maxMessageBytes: config.maxUploadChunkBytes + MESSAGE_OVERHEAD_BYTES,
    maxObjectBytes: config.maxObjectBytes,
    maxListPageSize: 1000,
    maxKeyBytes: MAX_KEY_BYTES,
    maxMetadataBytes: 8 * 1024,
    maxTags: 50,
  };

  const sweeper = new BlobSweeper(metadata, blobs, log, config.blobDeleteGraceMs);
  sweeper.start(SWEEP_INTERVAL_MS);
  const reads = new ReadCounter(metadata, log, config.readFlushIntervalMs);
  reads.start();

  const uploads = new UploadService(metadata, blobs, limits);
  const downloads = new DownloadService(metadata, blobs, limits, reads);
  const catalog = new CatalogService(metadata, sweeper, limits);

  const health = new HealthStatus();
  health.set(STORAGE_SERVICE_NAME, ServingStatus.SERVING);

  const routes = (router: ConnectRouter): void => {
    registerStorageService(router, { uploads, downloads, catalog, authorizer: options.authorizer ?? allowAll, limits });
    registerHealth(router, health);
    registerReflection(router, [file_engram_v1_storage_service, file_grpc_health_v1_health] as DescFile[]);
  };

  const connectHandler = connectNodeAdapter({
    routes,
    readMaxBytes: limits.maxMessageBytes,
    writeMaxBytes: limits.maxMessageBytes,
    // Object content is mostly incompressible model weights: gzip would
    // cost CPU and cut download speed to a fraction.
    acceptCompression: [],
    interceptors: [callLogInterceptor(log)],
  });
  const handler = withCors(withGrpcMessageEncoding(connectHandler), config.corsOrigins);

  const server = new ApiServer(handler);
  let address;
  try {
    address = await server.listen(config.port, config.host);
  } catch (err) {
    await sweeper.stop();
    await reads.stop();
    throw err;
  }
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${address.port}`;
  log.info({ url, dataDir: config.dataDir, blobs: blobs.kind, metadata: metadata.kind }, "engram started");

  let closing: Promise<void> | undefined;
  const close = (graceMs = config.shutdownGraceMs): Promise<void> => {
    closing ??= (async () => {
      health.shutdown();
      await server.close(graceMs);
      await sweeper.stop();
      await reads.stop();
      await metadata.close();
      await blobs.close();
      await unlock();
      log.info("engram stopped");
    })();
    return closing;
  };

  return { config, url, port: address.port, blobs, metadata, health, catalog, uploads, close };
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
  return openPGliteMetadataStore(join(config.dataDir, "metadata"));
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
        res.setHeader("Access-Control-Allow-Headers", connectCors.allowedHeaders.join(", "));
        res.setHeader("Access-Control-Max-Age", "7200");
        res.writeHead(204);
        res.end();
        return;
      }
    }
    handler(req, res);
  };
}
