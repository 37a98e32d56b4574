import type { HandlerContext } from "@connectrpc/connect";

/** Operation a call performs, for authorization. */
export type Action =
  | "object.read"
  | "object.write"
  | "object.delete"
  | "object.list"
  | "object.restore"
  | "bucket.read"
  | "bucket.create"
  | "bucket.update"
  | "bucket.delete"
  | "service.read";

/**
 * Decides whether a call may do an action on a bucket (and key). Every
 * handler calls it once, once the bucket is known and before any data
 * moves, so access control needs to change only this interface's adapter.
 */
export interface Authorizer {
  authorize(ctx: HandlerContext, action: Action, bucket?: string, key?: string): Promise<void>;
}

/**
 * Allows every call. Engram has no access control yet; deploy it where
 * only trusted MNEMOS services reach its port.
 */
export const allowAll: Authorizer = {
  async authorize() {},
};
