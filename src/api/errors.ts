import { Code, ConnectError } from "@connectrpc/connect";

import { StorageError, type StorageErrorKind } from "../service/errors.js";

/** gRPC code of each storage error kind. */
export const codeOfKind: Record<StorageErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  out_of_range: Code.OutOfRange,
  data_loss: Code.DataLoss,
  aborted: Code.Aborted,
  cancelled: Code.Canceled,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  internal: Code.Internal,
};

/**
 * Converts any error thrown below the API layer into a ConnectError with
 * the fixed code for its kind. An error of unknown origin becomes INTERNAL
 * with a generic message, so no internal detail leaks to clients. The
 * original stays as `cause` for the log.
 */
export function toConnectError(err: unknown, signal?: AbortSignal): ConnectError {
  if (err instanceof StorageError && err.kind !== "internal") {
    return new ConnectError(err.message, codeOfKind[err.kind], undefined, undefined, err);
  }
  if (err instanceof ConnectError && err.code !== Code.Internal && err.code !== Code.Unknown) {
    return err;
  }
  // Once the client has gone, a failure without a specific code is a
  // consequence of the cancellation, not a server fault.
  if (signal?.aborted) {
    return new ConnectError("the call was cancelled by the client", Code.Canceled, undefined, undefined, err);
  }
  if (err instanceof ConnectError) return err;
  return new ConnectError("internal error: see the server log", Code.Internal, undefined, undefined, err);
}
