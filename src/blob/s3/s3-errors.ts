import { StorageError } from "../../service/errors.js";

/** Error codes of the S3 protocol and of Node's sockets that Engram maps. */
const UNAVAILABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENOTFOUND", "EAI_AGAIN", "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"]);
const MISSING_CODES = new Set(["NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchUpload"]);
const DENIED_CODES = new Set(["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"]);

/**
 * Turns an error of the minio client into a StorageError, keeping the
 * original as `cause`. With `missingIsDataLoss`, a missing object means the
 * metadata refers to a blob that is gone, which is DATA_LOSS.
 */
export function translateS3Error(err: unknown, action: string, options: { missingIsDataLoss?: boolean } = {}): StorageError {
  if (err instanceof StorageError) return err;
  const code = String((err as { code?: unknown } | undefined)?.code ?? "");
  const detail = (err as Error | undefined)?.message ?? String(err);

  if (UNAVAILABLE_CODES.has(code)) {
    return new StorageError("unavailable", `failed to ${action}: the S3 store is unavailable (${code}); check ENGRAM_S3_ENDPOINT and that the store is running`, { cause: err });
  }
  if (MISSING_CODES.has(code) && options.missingIsDataLoss) {
    return new StorageError("data_loss", `failed to ${action}: the blob is missing from the S3 store (${code}); restore it from a backup`, { cause: err });
  }
  if (code === "NoSuchUpload") {
    return new StorageError("aborted", `failed to ${action}: the multipart upload is gone; retry the upload`, { cause: err });
  }
  if (DENIED_CODES.has(code)) {
    return new StorageError("unavailable", `failed to ${action}: the S3 store rejected Engram's credentials (${code}); check ENGRAM_S3_ACCESS_KEY and ENGRAM_S3_SECRET_KEY`, { cause: err });
  }
  if (code === "EntityTooLarge" || code === "QuotaExceeded" || code === "XMinioStorageFull") {
    return new StorageError("resource_exhausted", `failed to ${action}: the S3 store is full or the object too large (${code})`, { cause: err });
  }
  return new StorageError("internal", `failed to ${action}: ${code ? `${code}: ` : ""}${detail}`, { cause: err });
}
