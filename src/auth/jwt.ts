/*
 * JSON Web Tokens signed by an identity service. A token is accepted when
 * its signature verifies under a key of the JWKS file (RS256, ES256 or
 * EdDSA, chosen by the token's "kid"), its issuer and audience match the
 * configuration, and it is within its "nbf" and "exp" times. The claim
 * named by ENGRAM_JWT_PRINCIPAL_CLAIM then names the policy file principal
 * whose grants the caller gets.
 */
import { createPublicKey, verify, type JsonWebKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";

/** Clock difference allowed between Engram and the identity service, in seconds. */
const CLOCK_SKEW_SECONDS = 60;

/** Supported "alg" values, with the key types each may use, so a token cannot pick another algorithm for a key. */
const ALGORITHMS: Record<string, { hash: string | null; keyTypes: readonly string[]; dsaEncoding?: "ieee-p1363" }> = {
  RS256: { hash: "sha256", keyTypes: ["rsa"] },
  ES256: { hash: "sha256", keyTypes: ["ec"], dsaEncoding: "ieee-p1363" },
  EdDSA: { hash: null, keyTypes: ["ed25519", "ed448"] },
};

export interface JwtConfig {
  readonly issuer: string;
  readonly audience: string;
  readonly jwksFile: string;
  /** Claim whose value is the principal's name in the policy file, such as "sub". */
  readonly principalClaim: string;
}

/** Returns whether a bearer token has the form of a JWT: three base64url parts. */
export function looksLikeJwt(token: string): boolean {
  return /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

export class JwtVerifier {
  private readonly keys: Map<string, KeyObject>;

  /**
   * Reads the JWKS file.
   *
   * @throws Error naming the file when it cannot be read or has no usable key.
   */
  constructor(private readonly config: JwtConfig) {
    let document: { keys?: (JsonWebKey & { kid?: string })[] };
    try {
      document = JSON.parse(readFileSync(config.jwksFile, "utf8")) as typeof document;
    } catch (err) {
      throw new Error(`JWKS file ${config.jwksFile} cannot be read as JSON: ${(err as Error).message}`);
    }
    this.keys = new Map();
    for (const jwk of document.keys ?? []) {
      if (typeof jwk.kid !== "string") continue;
      try {
        this.keys.set(jwk.kid, createPublicKey({ key: jwk, format: "jwk" }));
      } catch (err) {
        throw new Error(`JWKS file ${config.jwksFile}: key ${jwk.kid} is not a usable public key (${(err as Error).message}): use RSA, EC P-256 or Ed25519 keys`);
      }
    }
    if (this.keys.size === 0) throw new Error(`JWKS file ${config.jwksFile} has no key with a "kid": add the identity service's public keys`);
  }

  /** Returns the principal name a valid token names, or undefined when the token is invalid for any reason. */
  principalOf(token: string, now = Date.now()): string | undefined {
    const [headerPart, payloadPart, signaturePart] = token.split(".");
    if (headerPart === undefined || payloadPart === undefined || signaturePart === undefined) return undefined;

    const header = decodeJson(headerPart);
    const payload = decodeJson(payloadPart);
    if (header === undefined || payload === undefined) return undefined;
    const algorithm = typeof header.alg === "string" ? ALGORITHMS[header.alg] : undefined;
    const key = typeof header.kid === "string" ? this.keys.get(header.kid) : undefined;
    if (algorithm === undefined || key === undefined || !algorithm.keyTypes.includes(key.asymmetricKeyType ?? "")) return undefined;

    const signed = Buffer.from(`${headerPart}.${payloadPart}`, "ascii");
    const signature = Buffer.from(signaturePart, "base64url");
    const keyInput = algorithm.dsaEncoding === undefined ? key : { key, dsaEncoding: algorithm.dsaEncoding };
    let valid: boolean;
    try {
      valid = verify(algorithm.hash, signed, keyInput, signature);
    } catch {
      return undefined;
    }
    if (!valid || !this.claimsHold(payload, now / 1000)) return undefined;

    const name = payload[this.config.principalClaim];
    return typeof name === "string" && name !== "" ? name : undefined;
  }

  private claimsHold(payload: Record<string, unknown>, nowSeconds: number): boolean {
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (payload.iss !== this.config.issuer || !audiences.includes(this.config.audience)) return false;
    if (typeof payload.exp !== "number" || payload.exp + CLOCK_SKEW_SECONDS < nowSeconds) return false;
    return typeof payload.nbf !== "number" || payload.nbf - CLOCK_SKEW_SECONDS <= nowSeconds;
  }
}

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as unknown;
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
