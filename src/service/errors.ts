/**
 * Error kinds of the storage services. They mirror the gRPC status codes
 * that the API layer maps them to, but carry no transport types, so the
 * services and adapters stay independent of Connect.
 */
export type StorageErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "failed_precondition"
  | "out_of_range"
  | "data_loss"
  | "aborted"
  | "cancelled"
  | "unauthenticated"
  | "permission_denied"
  | "resource_exhausted"
  | "unavailable"
  | "internal";

/** An error with a fixed kind and a message that names the value and the fix. */
export class StorageError extends Error {
  override readonly name = "StorageError";

  constructor(
    readonly kind: StorageErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function invalidArgument(message: string): StorageError {
  return new StorageError("invalid_argument", message);
}

export function notFound(message: string): StorageError {
  return new StorageError("not_found", message);
}

export function isStorageError(err: unknown, kind?: StorageErrorKind): err is StorageError {
  return err instanceof StorageError && (kind === undefined || err.kind === kind);
}
