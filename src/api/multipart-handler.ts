import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";

import { ObjectChecksumsSchema } from "../../gen/engram/v1/object_pb.js";
import { PartSchema, type Part, type StorageService, type UploadPartRequest } from "../../gen/engram/v1/storage_service_pb.js";
import type { PartRecord } from "../metadata/metadata-store.js";
import { StorageError, invalidArgument } from "../service/errors.js";
import { MAX_PART_NUMBER, type MultipartService } from "../service/multipart.js";
import type { PartChunkService } from "../service/part-chunks.js";
import type { UploadChunk } from "../service/upload.js";
import { callFactsOf } from "./call-log.js";
import { numberFromInt64, objectToProto, sha256FromProto, uploadSpecFromProto } from "./convert.js";

type MultipartMethods = Pick<
  ServiceImpl<typeof StorageService>,
  "createMultipartUpload" | "uploadPart" | "uploadPartChunk" | "listParts" | "listMultipartUploads" | "completeMultipartUpload" | "abortMultipartUpload"
>;

/** Handlers of the multipart RPCs: convert, call the multipart service. */
export function createMultipartHandler(multipart: MultipartService, partChunks: PartChunkService): MultipartMethods {
  return {
    async createMultipartUpload(request, ctx) {
      if (request.spec === undefined) {
        throw invalidArgument("spec is missing: give the bucket, key and other properties of the object to create");
      }
      const spec = uploadSpecFromProto(request.spec);
      callFactsOf(ctx.values).bucket = spec.bucket;

      const partSize = request.partSize === undefined ? undefined : numberFromInt64(request.partSize, "part_size");
      const session = await multipart.create(spec, partSize);
      return {
        uploadId: session.uploadId,
        partSize: BigInt(session.partSize),
        maxPartCount: session.spec.size === undefined ? MAX_PART_NUMBER : Math.max(1, Math.ceil(session.spec.size / session.partSize)),
        expireTime: timestampFromDate(session.expiresAt),
      };
    },

    async uploadPart(requests, ctx) {
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done) {
        throw invalidArgument("part stream is empty: send upload_id and part_number in the first message");
      }
      if (first.value.uploadId === "") {
        throw invalidArgument("first part message has no upload_id: send upload_id and part_number first");
      }

      const head = first.value;
      const { part, expiresAt } = await multipart.uploadPart(
        {
          uploadId: head.uploadId,
          partNumber: head.partNumber,
          size: head.size === undefined ? undefined : numberFromInt64(head.size, "size"),
          expectedSha256: sha256FromProto(head.expectedChecksums),
          expectedCrc32c: head.expectedChecksums?.crc32c,
        },
        partChunksOf(head, iterator, ctx.signal),
        ctx.signal,
      );
      callFactsOf(ctx.values).bytes = part.size;
      return { part: partToProto(part), expireTime: timestampFromDate(expiresAt) };
    },

    async uploadPartChunk(request, ctx) {
      const data = request.data?.content ?? new Uint8Array(0);
      const status = await partChunks.write(
        {
          uploadId: request.uploadId,
          partNumber: request.partNumber,
          size: request.partSize === undefined ? undefined : numberFromInt64(request.partSize, "part_size"),
          expectedSha256: sha256FromProto(request.expectedChecksums),
          expectedCrc32c: request.expectedChecksums?.crc32c,
          writeOffset: numberFromInt64(request.writeOffset, "write_offset"),
          data,
          crc32c: request.data?.crc32c,
          finishWrite: request.finishWrite,
        },
        ctx.signal,
      );
      callFactsOf(ctx.values).bytes = data.byteLength;
      return {
        persistedSize: BigInt(status.persistedSize),
        ...(status.part ? { part: partToProto(status.part) } : {}),
        expireTime: timestampFromDate(status.expiresAt),
      };
    },

    async listParts(request, ctx) {
      const { parts, expiresAt } = await multipart.listParts(request.uploadId);
      return { parts: parts.map(partToProto), expireTime: timestampFromDate(expiresAt) };
    },

    async listMultipartUploads(request, ctx) {
      callFactsOf(ctx.values).bucket = request.bucket;
      const page = await multipart.listUploads(request);
      return {
        uploads: page.uploads.map((session) => ({
          uploadId: session.uploadId,
          bucket: session.bucket,
          key: session.key,
          createTime: timestampFromDate(session.createdAt),
          expireTime: timestampFromDate(session.expiresAt),
        })),
        nextPageToken: page.nextPageToken,
      };
    },

    async completeMultipartUpload(request, ctx) {
      const parts = request.parts.map((part) => ({ partNumber: part.partNumber, sha256: sha256FromProto(part.checksums) }));
      const expected = { sha256: sha256FromProto(request.expectedChecksums), crc32c: request.expectedChecksums?.crc32c };
      const object = await multipart.complete(request.uploadId, parts, expected, ctx.signal);
      const facts = callFactsOf(ctx.values);
      facts.bucket = object.bucket;
      facts.bytes = object.size;
      facts.committedSize = object.size;
      return { object: objectToProto(object) };
    },

    async abortMultipartUpload(request, ctx) {
      await multipart.abort(request.uploadId);
      return {};
    },
  };
}

function partToProto(part: PartRecord): Part {
  return create(PartSchema, {
    partNumber: part.partNumber,
    size: BigInt(part.size),
    checksums: create(ObjectChecksumsSchema, { sha256: Buffer.from(part.sha256, "hex"), crc32c: part.crc32c }),
    createTime: timestampFromDate(part.createdAt),
  });
}

/** Turns the rest of a part stream into chunks; the first message may carry data too. */
async function* partChunksOf(first: UploadPartRequest, rest: AsyncIterator<UploadPartRequest>, signal: AbortSignal): AsyncGenerator<UploadChunk> {
  if (first.data !== undefined || first.finishWrite) {
    yield partChunkOf(first);
  }
  for (;;) {
    const next = await rest.next();
    if (next.done) {
      // As in Upload: connect-node ends the stream of a reset HTTP/2 call
      // quietly and aborts the signal a moment later.
      await new Promise((resolve) => setImmediate(resolve));
      if (signal.aborted) {
        throw new StorageError("cancelled", "the part upload was cancelled by the client: the part was not stored");
      }
      return;
    }
    if (next.value.uploadId !== "" || next.value.partNumber !== 0) {
      throw invalidArgument("upload_id or part_number was sent again after the first message: send them in the first message only");
    }
    yield partChunkOf(next.value);
  }
}

function partChunkOf(message: UploadPartRequest): UploadChunk {
  return {
    writeOffset: numberFromInt64(message.writeOffset, "write_offset"),
    data: message.data?.content ?? new Uint8Array(0),
    crc32c: message.data?.crc32c,
    finishWrite: message.finishWrite,
  };
}
