/*
 * Signs and checks the URLs that Engram's own HTTP data plane serves. A
 * signature is HMAC-SHA256 over the method, bucket, key, expiry and every
 * constraint carried in the query string. The URL names its key by id, so
 * the secret can be rotated. New URLs use the first key, and URLs signed
 * with any configured key stay valid until they expire.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

import { StorageError } from "../service/errors.js";

export interface SigningKey {
  readonly id: string;
  readonly secret: Buffer;
}

/** Query parameters that carry the signature itself. */
export const EXPIRES_PARAM = "X-Engram-Expires";
export const KEY_ID_PARAM = "X-Engram-Key-Id";
export const SIGNATURE_PARAM = "X-Engram-Signature";

export interface SignedRequest {
  readonly method: string;
  readonly bucket: string;
  readonly key: string;
  /** Unix time in seconds. */
  readonly expires: number;
  /** Other query parameters; each one is covered by the signature. */
  readonly constraints: Readonly<Record<string, string>>;
}

export class UrlSigner {
  private readonly keys: Map<string, Buffer>;

  constructor(private readonly signingKeys: readonly SigningKey[]) {
    if (signingKeys.length === 0) throw new Error("UrlSigner needs at least one key");
    this.keys = new Map(signingKeys.map((key) => [key.id, key.secret]));
  }

  /** Returns the query parameters of a signed URL: the constraints plus expiry, key id and signature. */
  sign(request: SignedRequest): URLSearchParams {
    const key = this.signingKeys[0]!;
    const params = new URLSearchParams(request.constraints);
    params.set(EXPIRES_PARAM, String(request.expires));
    params.set(KEY_ID_PARAM, key.id);
    params.set(SIGNATURE_PARAM, signatureOf(key.secret, request));
    return params;
  }

  /**
   * Checks the signature and expiry of a request's query string, and
   * returns the signed constraints. Fails with permission_denied.
   */
  verify(method: string, bucket: string, key: string, query: URLSearchParams, now = Date.now()): Record<string, string> {
    const keyId = query.get(KEY_ID_PARAM) ?? "";
    const signature = query.get(SIGNATURE_PARAM) ?? "";
    const expires = Number(query.get(EXPIRES_PARAM));
    const secret = this.keys.get(keyId);
    if (secret === undefined) {
      throw new StorageError("permission_denied", `signing key ${JSON.stringify(keyId)} is unknown: request a new URL`);
    }
    if (!Number.isSafeInteger(expires)) {
      throw new StorageError("permission_denied", `${EXPIRES_PARAM} is missing or invalid: request a new URL`);
    }

    const constraints: Record<string, string> = {};
    for (const [name, value] of query) {
      if (name !== EXPIRES_PARAM && name !== KEY_ID_PARAM && name !== SIGNATURE_PARAM) constraints[name] = value;
    }
    const expected = Buffer.from(signatureOf(secret, { method, bucket, key, expires, constraints }), "hex");
    const given = Buffer.from(signature, "hex");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new StorageError("permission_denied", "the URL signature does not match: use the URL exactly as issued, with the method it was issued for");
    }
    if (expires * 1000 < now) {
      throw new StorageError("permission_denied", `the URL expired at ${new Date(expires * 1000).toISOString()}: request a new one`);
    }
    return constraints;
  }
}

function signatureOf(secret: Buffer, request: SignedRequest): string {
  const constraints = Object.keys(request.constraints)
    .sort()
    .map((name) => `${name}=${request.constraints[name]}`);
  const canonical = ["ENGRAM-HMAC-SHA256", request.method.toUpperCase(), request.bucket, request.key, String(request.expires), ...constraints].join("\n");
  return createHmac("sha256", secret).update(canonical, "utf8").digest("hex");
}
