import { create } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";

import { ContentRangeSchema } from "../../gen/engram/v1/object_pb.js";
import { StorageService, type DownloadResponse, type UploadRequest } from "../../gen/engram/v1/storage_service_pb.js";
import type { CatalogService } from "../service/catalog.js";
import type { DownloadService } from "../service/download.js";
import { StorageError, invalidArgument } from "../service/errors.js";
import type { Limits } from "../service/limits.js";
import type { MultipartService } from "../service/multipart.js";
import type { PartChunkService } from "../service/part-chunks.js";
import type { ResumableService } from "../service/resumable.js";
import type { UploadChunk, UploadService } from "../service/upload.js";
import type { BucketService } from "../service/bucket-service.js";
import type { RestoreService } from "../service/restore.js";
import { createBucketHandler } from "./bucket-handler.js";
import { callFactsOf } from "./call-log.js";
import { createMultipartHandler } from "./multipart-handler.js";
import { createResumableHandler, resumeUpload } from "./resumable-handler.js";
import { checksumsToProto, numberFromInt64, objectToProto, uploadSpecFromProto } from "./convert.js";

export interface StorageHandlerDeps {
  readonly uploads: UploadService;
  readonly downloads: DownloadService;
  readonly catalog: CatalogService;
  readonly limits: Limits;
  readonly multipart: MultipartService;
  readonly partChunks: PartChunkService;
  readonly resumable: ResumableService;
  readonly buckets: BucketService;
  readonly restores: RestoreService;
}

/**
 * Registers engram.v1.StorageService. Handlers only convert messages and
 * call a service. The access interceptor has authorized each call before
 * its handler runs, and the call-log interceptor maps errors.
 */
export function registerStorageService(router: ConnectRouter, deps: StorageHandlerDeps): void {
  const handler = createStorageHandler(deps);
  router.service(StorageService, handler);
  // Bucket messages in JSON (Connect protocol, curl) list every field, so
  // lifecycleRules is [] rather than absent when a bucket has none. The
  // connect-node 2.1 adapter keeps the last handler registered for a path.
  const emitDefaults = { jsonOptions: { alwaysEmitImplicit: true } };
  router.rpc(StorageService.method.listBuckets, handler.listBuckets, emitDefaults);
  router.rpc(StorageService.method.getBucket, handler.getBucket, emitDefaults);
  router.rpc(StorageService.method.createBucket, handler.createBucket, emitDefaults);
  router.rpc(StorageService.method.updateBucket, handler.updateBucket, emitDefaults);
}

function createStorageHandler(deps: StorageHandlerDeps): ServiceImpl<typeof StorageService> {
  const { uploads, downloads, catalog, limits, multipart, partChunks, resumable } = deps;
  return {
    ...createMultipartHandler(multipart, partChunks),
    ...createResumableHandler(resumable),
    ...createBucketHandler(deps.buckets, deps.restores),

    async upload(requests, ctx) {
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done) {
        throw invalidArgument("upload stream is empty: send the object spec in the first message");
      }
      if (first.value.spec === undefined && first.value.uploadId !== "") {
        return resumeUpload(resumable, first.value.uploadId, chunksOf(first.value, iterator, ctx.signal), ctx);
      }
      if (first.value.spec === undefined) {
        throw invalidArgument("first upload message has neither spec nor upload_id: send the object properties, or the upload_id of a resumable upload, first");
      }

      const spec = uploadSpecFromProto(first.value.spec);
      const facts = callFactsOf(ctx.values);
      facts.bucket = spec.bucket;

      const object = await uploads.upload(spec, chunksOf(first.value, iterator, ctx.signal), ctx.signal);
      facts.bytes = object.size;
      facts.committedSize = object.size;
      return { object: objectToProto(object) };
    },

    async *download(request, ctx) {
      const facts = callFactsOf(ctx.values);
      facts.bucket = request.bucket;
      facts.bytes = 0;

      const opened = await downloads.open(
        {
          bucket: request.bucket,
          key: request.key,
          generation: numberFromInt64(request.generation, "generation"),
          readOffset: numberFromInt64(request.readOffset, "read_offset"),
          readLimit: numberFromInt64(request.readLimit, "read_limit"),
        },
        ctx.signal,
      );

      yield {
        metadata: objectToProto(opened.object),
        contentRange: create(ContentRangeSchema, {
          start: BigInt(opened.start),
          end: BigInt(opened.end),
          completeLength: BigInt(opened.object.size),
        }),
        objectChecksums: checksumsToProto(opened.object),
      } satisfies Partial<DownloadResponse>;

      for await (const chunk of opened.chunks) {
        facts.bytes += chunk.content.byteLength;
        yield { data: { content: chunk.content, crc32c: chunk.crc32c } };
      }
    },

    async getObject(request, ctx) {
      callFactsOf(ctx.values).bucket = request.bucket;
      const object = await catalog.getObject(request.bucket, request.key, numberFromInt64(request.generation, "generation"));
      return { object: objectToProto(object) };
    },

    async listObjects(request, ctx) {
      callFactsOf(ctx.values).bucket = request.bucket;
      const page = await catalog.listObjects(request);
      return { objects: page.objects.map(objectToProto), prefixes: page.prefixes, nextPageToken: page.nextPageToken };
    },

    async deleteObject(request, ctx) {
      callFactsOf(ctx.values).bucket = request.bucket;
      const ifGenerationMatch = request.ifGenerationMatch === undefined ? undefined : numberFromInt64(request.ifGenerationMatch, "if_generation_match");
      const result = await catalog.deleteObject(request.bucket, request.key, ifGenerationMatch, numberFromInt64(request.generation, "generation"));
      return { deleteMarkerGeneration: BigInt(result.deleteMarker?.generation ?? 0) };
    },

    async getCapabilities() {
      return {
        maxMessageBytes: BigInt(limits.maxMessageBytes),
        maxUploadChunkBytes: BigInt(limits.maxUploadChunkBytes),
        maxDownloadChunkBytes: BigInt(limits.downloadChunkBytes),
        maxObjectBytes: BigInt(limits.maxObjectBytes),
        maxListPageSize: limits.maxListPageSize,
        maxKeyBytes: limits.maxKeyBytes,
      };
    },
  };
}

/** Turns the rest of an upload stream into chunks; the first message may carry data too. */
async function* chunksOf(first: UploadRequest, rest: AsyncIterator<UploadRequest>, signal: AbortSignal): AsyncGenerator<UploadChunk> {
  if (first.data !== undefined || first.finishWrite) {
    yield chunkOf(first);
  }
  for (;;) {
    const next = await rest.next();
    if (next.done) {
      // connect-node 2.1 ends the request stream quietly when an HTTP/2
      // client resets it, and aborts the signal a moment later. Wait for
      // that, so a cancelled upload is reported as cancelled rather than
      // as a stream that lacked finish_write.
      await new Promise((resolve) => setImmediate(resolve));
      if (signal.aborted) {
        throw new StorageError("cancelled", "the upload was cancelled by the client: nothing was stored");
      }
      return;
    }
    if (next.value.spec !== undefined || next.value.uploadId !== "") {
      throw invalidArgument("spec or upload_id was sent again after the first message: send it in the first message only");
    }
    yield chunkOf(next.value);
  }
}

function chunkOf(message: UploadRequest): UploadChunk {
  return {
    writeOffset: numberFromInt64(message.writeOffset, "write_offset"),
    data: message.data?.content ?? new Uint8Array(0),
    crc32c: message.data?.crc32c,
    finishWrite: message.finishWrite,
  };
}
