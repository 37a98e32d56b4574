import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";

import type { StorageService } from "../../gen/engram/v1/storage_service_pb.js";
import { invalidArgument } from "../service/errors.js";
import type { ResumableService, WriteStatus } from "../service/resumable.js";
import type { UploadChunk } from "../service/upload.js";
import { callFactsOf, type CallFacts } from "./call-log.js";
import { numberFromInt64, objectToProto, uploadSpecFromProto } from "./convert.js";

type ResumableMethods = Pick<ServiceImpl<typeof StorageService>, "startResumableWrite" | "queryWriteStatus" | "writeChunk">;

/** Handlers of the resumable upload RPCs; Upload resumes through `resumeUpload`. */
export function createResumableHandler(resumable: ResumableService): ResumableMethods {
  return {
    async startResumableWrite(request, ctx) {
      if (request.spec === undefined) {
        throw invalidArgument("spec is missing: give the bucket, key and other properties of the object to create");
      }
      const spec = uploadSpecFromProto(request.spec);
      callFactsOf(ctx.values).bucket = spec.bucket;
      const session = await resumable.start(spec);
      return { uploadId: session.uploadId, expireTime: timestampFromDate(session.expiresAt) };
    },

    async queryWriteStatus(request, ctx) {
      return statusToProto(await resumable.status(request.uploadId));
    },

    async writeChunk(request, ctx) {
      const chunk: UploadChunk = {
        writeOffset: numberFromInt64(request.writeOffset, "write_offset"),
        data: request.data?.content ?? new Uint8Array(0),
        crc32c: request.data?.crc32c,
        finishWrite: request.finishWrite,
      };
      const status = await resumable.write(request.uploadId, oneChunk(chunk), ctx.signal);
      const facts = callFactsOf(ctx.values);
      facts.bytes = chunk.data.byteLength;
      countCommit(facts, status);
      return statusToProto(status);
    },
  };
}

/** Continues a resumable upload from an Upload stream whose first message named it. */
export async function resumeUpload(resumable: ResumableService, uploadId: string, chunks: AsyncIterable<UploadChunk>, ctx: HandlerContext) {
  const status = await resumable.write(uploadId, chunks, ctx.signal);
  const facts = callFactsOf(ctx.values);
  facts.bytes = status.persistedSize;
  countCommit(facts, status);
  return statusToProto(status);
}

/** Marks the call as the one that committed the object, for the upload metrics. */
function countCommit(facts: CallFacts, status: WriteStatus): void {
  if (status.object === undefined || !status.committedNow) return;
  facts.bucket = status.object.bucket;
  facts.committedSize = status.object.size;
}

function statusToProto(status: WriteStatus) {
  return {
    persistedSize: BigInt(status.persistedSize),
    ...(status.object ? { object: objectToProto(status.object) } : {}),
  };
}

async function* oneChunk(chunk: UploadChunk): AsyncGenerator<UploadChunk> {
  yield chunk;
}
