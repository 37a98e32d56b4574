/*
 * Finds the principal behind a bearer token. Tokens come from three
 * sources: access keys in the metadata store (found by the key id inside
 * the token, so revocation takes effect on every replica at the next call),
 * the principals of the policy file, and the ENGRAM_ADMIN_TOKEN setting.
 * A JWT from the identity service, when configured, authenticates as the
 * policy file principal that its principal claim names.
 * Only SHA-256 digests of tokens are held, and they are compared in
 * constant time.
 */
import type { AccessKeyRecord, AccessStore } from "../metadata/access-store.js";
import { ADMIN_GRANTS, type Grant, type Principal } from "./grants.js";
import { looksLikeJwt, type JwtVerifier } from "./jwt.js";
import { digestsEqual, keyIdOf, sha256Of } from "./tokens.js";

/** A principal whose tokens are configured rather than stored. */
export interface ConfiguredPrincipal extends Principal {
  /** Hex SHA-256 digests of the tokens that authenticate as this principal. */
  readonly tokenSha256: readonly string[];
}

/** Principal id of the built-in admin of ENGRAM_ADMIN_TOKEN. */
export const CONFIG_ADMIN_ID = "config:admin";
/** Principal id of every call while access control is off. */
export const ANONYMOUS_ID = "anonymous";

export const KEY_PRINCIPAL_PREFIX = "key:";
export const POLICY_PRINCIPAL_PREFIX = "policy:";

export class Authenticator {
  private policy: readonly ConfiguredPrincipal[] = [];
  private readonly admin: ConfiguredPrincipal | undefined;

  constructor(
    private readonly store: AccessStore,
    adminToken: string,
    private readonly jwt?: JwtVerifier,
  ) {
    this.admin = adminToken === "" ? undefined : { id: CONFIG_ADMIN_ID, grants: ADMIN_GRANTS, tokenSha256: [sha256Of(adminToken)] };
  }

  /** Replaces the principals of the policy file, such as after a reload. */
  setPolicy(principals: readonly ConfiguredPrincipal[]): void {
    this.policy = principals;
  }

  /** Returns the principal of a token, or undefined when the token is unknown or its key is revoked. */
  async authenticate(token: string): Promise<Principal | undefined> {
    if (this.jwt !== undefined && looksLikeJwt(token)) return this.authenticateJwt(this.jwt, token);
    const keyId = keyIdOf(token);
    const digest = sha256Of(token);
    if (keyId !== undefined) {
      const key = await this.store.getAccessKey(keyId);
      if (key === undefined || key.revokedAt !== undefined || !digestsEqual(key.tokenSha256, digest)) return undefined;
      return { id: `${KEY_PRINCIPAL_PREFIX}${key.keyId}`, grants: grantsOf(key) };
    }

    // Every configured digest is compared, so the time taken does not tell
    // which principal came close.
    let found: Principal | undefined;
    for (const principal of this.configured()) {
      for (const candidate of principal.tokenSha256) {
        if (digestsEqual(candidate, digest)) found ??= { id: principal.id, grants: principal.grants };
      }
    }
    return found;
  }

  /**
   * Returns the principal with this id as it is now, or undefined when it
   * no longer exists or its key is revoked. Presigned URLs are checked
   * against it when they are used.
   */
  async principalById(id: string): Promise<Principal | undefined> {
    if (id.startsWith(KEY_PRINCIPAL_PREFIX)) {
      const key = await this.store.getAccessKey(id.slice(KEY_PRINCIPAL_PREFIX.length));
      if (key === undefined || key.revokedAt !== undefined) return undefined;
      return { id, grants: grantsOf(key) };
    }
    const principal = this.configured().find((candidate) => candidate.id === id);
    return principal && { id: principal.id, grants: principal.grants };
  }

  /**
   * Returns the policy principal a valid JWT names. A name that the policy
   * file lacks still authenticates, with no grants, so its calls are
   * PERMISSION_DENIED rather than UNAUTHENTICATED.
   */
  private authenticateJwt(jwt: JwtVerifier, token: string): Principal | undefined {
    const name = jwt.principalOf(token);
    if (name === undefined) return undefined;
    const id = policyPrincipalId(name);
    const principal = this.policy.find((candidate) => candidate.id === id);
    return { id, grants: principal?.grants ?? [] };
  }

  private configured(): readonly ConfiguredPrincipal[] {
    return this.admin === undefined ? this.policy : [this.admin, ...this.policy];
  }
}

/** Returns a stored key's grants; AdminService checked them with parseGrants when it created the key. */
function grantsOf(key: AccessKeyRecord): readonly Grant[] {
  return key.grants as readonly Grant[];
}

/** Builds the principal id of a policy file entry. */
export function policyPrincipalId(name: string): string {
  return `${POLICY_PRINCIPAL_PREFIX}${name}`;
}

