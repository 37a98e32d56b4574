import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";

import { PresignOperation, PresignService as PresignServiceDesc } from "../../gen/engram/v1/presign_service_pb.js";
import type { Metrics } from "../metrics/metrics.js";
import { invalidArgument } from "../service/errors.js";
import type { PresignService } from "../service/presign.js";
import { principalOf } from "./access-interceptor.js";
import { callFactsOf } from "./call-log.js";
import { numberFromInt64, objectToProto } from "./convert.js";

/** Registers engram.v1.PresignService. */
export function registerPresignService(router: ConnectRouter, presign: PresignService, metrics: Metrics): void {
  router.service(PresignServiceDesc, {
    async generatePresignedUrl(request, ctx) {
      callFactsOf(ctx.values).bucket = request.bucket;
      const operation = operationOf(request.operation);

      const sha256 = request.expectedChecksums?.sha256;
      if (sha256 !== undefined && sha256.length !== 0 && sha256.length !== 32) {
        throw invalidArgument(`expected sha256 has ${sha256.length} bytes: a SHA-256 digest has 32 bytes`);
      }
      const presigned = await presign.presign({
        bucket: request.bucket,
        key: request.key,
        operation,
        uploadId: request.uploadId,
        partNumber: request.partNumber,
        expiresInSeconds: numberFromInt64(request.expiresInSeconds, "expires_in_seconds"),
        downloadFileName: request.downloadFileName,
        responseContentType: request.responseContentType,
        contentType: request.contentType,
        size: request.size === undefined ? undefined : numberFromInt64(request.size, "size"),
        expectedSha256: sha256 === undefined || sha256.length === 0 ? undefined : Buffer.from(sha256).toString("hex"),
        ifGenerationMatch: request.ifGenerationMatch === undefined ? undefined : numberFromInt64(request.ifGenerationMatch, "if_generation_match"),
        principalId: principalOf(ctx.values).id,
      });
      metrics.presignedUrlsGenerated.inc({ operation });
      return {
        url: presigned.url,
        method: presigned.method,
        requiredHeaders: presigned.requiredHeaders,
        expireTime: timestampFromDate(presigned.expiresAt),
        finalizeToken: presigned.finalizeToken,
      };
    },

    async finalizePresignedUpload(request, ctx) {
      const object = await presign.finalize(request.finalizeToken);
      callFactsOf(ctx.values).bucket = object.bucket;
      return { object: objectToProto(object) };
    },
  });
}

function operationOf(operation: PresignOperation): "GET" | "PUT" | "UPLOAD_PART" {
  switch (operation) {
    case PresignOperation.GET:
      return "GET";
    case PresignOperation.PUT:
      return "PUT";
    case PresignOperation.UPLOAD_PART:
      return "UPLOAD_PART";
    default:
      throw invalidArgument(`operation ${operation} is invalid: use PRESIGN_OPERATION_GET, PRESIGN_OPERATION_PUT or PRESIGN_OPERATION_UPLOAD_PART`);
  }
}
