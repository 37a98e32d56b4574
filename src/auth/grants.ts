/*
 * Principals and their grants. A grant allows some actions on one bucket
 * (or "*", every bucket), optionally only on keys under a prefix. Whatever
 * no grant allows is denied.
 */
import { invalidArgument } from "../service/errors.js";

export const ACTIONS = ["read", "write", "delete", "list", "presign", "admin"] as const;
export type Action = (typeof ACTIONS)[number];

/** Bucket name of a grant that covers every bucket. */
export const ANY_BUCKET = "*";

export interface Grant {
  readonly bucket: string;
  /** Empty means every key of the bucket. */
  readonly prefix: string;
  readonly actions: readonly Action[];
}

/** An authenticated caller. */
export interface Principal {
  /**
   * Stable id, such as "key:3f2a9c1e0b7d4a65" for a stored access key or
   * "policy:serving" for a policy file entry. Presigned URLs name it.
   */
  readonly id: string;
  readonly grants: readonly Grant[];
}

/** Target of a call: a bucket, and a key or a key prefix within it. */
export interface Resource {
  readonly bucket: string;
  /** The object key; for listings, the listed prefix. Empty means the whole bucket. */
  readonly key: string;
}

/** Returns whether some grant of the principal allows the action on the resource. */
export function allows(principal: Principal, action: Action, resource: Resource): boolean {
  return principal.grants.some(
    (grant) => grant.actions.includes(action) && (grant.bucket === ANY_BUCKET || grant.bucket === resource.bucket) && resource.key.startsWith(grant.prefix),
  );
}

/** Returns whether the principal may do the action anywhere, on some bucket or prefix. */
export function allowsSomewhere(principal: Principal, action: Action): boolean {
  return principal.grants.some((grant) => grant.actions.includes(action));
}

/** Returns whether any grant of the principal names the bucket, for filtering bucket listings. */
export function seesBucket(principal: Principal, bucket: string): boolean {
  return principal.grants.some((grant) => grant.bucket === ANY_BUCKET || grant.bucket === bucket);
}

/**
 * Checks grants from a request or a policy file and returns them typed.
 * `where` names the source in messages, such as "grants[2]".
 *
 * @throws StorageError invalid_argument naming the bad field.
 */
export function parseGrants(raw: unknown, where: string): Grant[] {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw invalidArgument(`${where} is empty: give at least one grant with a bucket and actions`);
  }
  return raw.map((entry: unknown, index) => parseGrant(entry, `${where}[${index}]`));
}

function parseGrant(raw: unknown, where: string): Grant {
  const entry = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const { bucket, prefix = "", actions } = entry;
  if (typeof bucket !== "string" || bucket === "") {
    throw invalidArgument(`${where}.bucket is missing: give a bucket name, or "*" for every bucket`);
  }
  if (typeof prefix !== "string") {
    throw invalidArgument(`${where}.prefix must be a string, such as "jobs/"`);
  }
  if (!Array.isArray(actions) || actions.length === 0) {
    throw invalidArgument(`${where}.actions is empty: give one or more of ${ACTIONS.join(", ")}`);
  }
  for (const action of actions) {
    if (!ACTIONS.includes(action as Action)) {
      throw invalidArgument(`${where}.actions has ${JSON.stringify(action)}, which is not an action: use ${ACTIONS.join(", ")}`);
    }
  }
  if (prefix !== "" && actions.includes("admin")) {
    throw invalidArgument(`${where} grants admin under prefix ${JSON.stringify(prefix)}, but admin acts on whole buckets: give it in a grant without a prefix`);
  }
  return { bucket, prefix, actions: [...new Set(actions as Action[])] };
}

/** Grants of the built-in admin: every action on every bucket. */
export const ADMIN_GRANTS: readonly Grant[] = [{ bucket: ANY_BUCKET, prefix: "", actions: ACTIONS }];
