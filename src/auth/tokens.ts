/*
 * Bearer tokens. A stored access key's token is "engram_<key id>_<secret>"
 * with 32 random bytes of secret, so the key is found by its id and then
 * compared by the SHA-256 of the whole token. A token of high entropy needs
 * no slow password hash: SHA-256 makes the stored value useless to a thief
 * of the database without making checks slow.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

const TOKEN_PATTERN = /^engram_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$/;

export interface NewToken {
  readonly keyId: string;
  readonly token: string;
  /** Hex SHA-256 of the token, the only form that is stored. */
  readonly sha256: string;
}

/** Generates a key id and its token. */
export function generateToken(): NewToken {
  const keyId = randomBytes(8).toString("hex");
  const token = `engram_${keyId}_${randomBytes(32).toString("base64url")}`;
  return { keyId, token, sha256: sha256Of(token) };
}

/** Returns the key id a stored key's token names, or undefined for any other token. */
export function keyIdOf(token: string): string | undefined {
  return TOKEN_PATTERN.exec(token)?.[1];
}

export function sha256Of(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Compares two hex digests in constant time. */
export function digestsEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, "hex");
  const right = Buffer.from(b, "hex");
  return left.length === right.length && left.length > 0 && timingSafeEqual(left, right);
}

/**
 * Extracts the token from an authorization header value. Returns a reason
 * instead when the header is missing or not "Bearer TOKEN"; the reason never
 * contains the header's value.
 */
export function bearerTokenOf(header: string | null | undefined): { token: string } | { reason: "missing" | "malformed" } {
  if (header === null || header === undefined || header === "") return { reason: "missing" };
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  if (!match) return { reason: "malformed" };
  return { token: match[1]! };
}
