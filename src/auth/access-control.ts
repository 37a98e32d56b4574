/*
 * The authorization step that every RPC (through the access interceptor)
 * and every HTTP path of the data plane goes through before a store is
 * touched: authenticate the bearer token, check the grants, and record the
 * outcome. Failures are counted and logged, never with the token.
 */
import type { Counter } from "prom-client";
import type { Logger } from "pino";

import type { AccessStore } from "../metadata/access-store.js";
import { StorageError } from "../service/errors.js";
import { ANONYMOUS_ID, type Authenticator } from "./authenticator.js";
import { ADMIN_GRANTS, allows, allowsSomewhere, type Action, type Principal, type Resource } from "./grants.js";
import { bearerTokenOf } from "./tokens.js";

/** One action on one resource that a call needs. */
export interface AccessCheck {
  readonly action: Action;
  readonly resource: Resource;
}

/** Actions whose calls are recorded in the audit log, allowed or not. */
const AUDITED_ACTIONS: ReadonlySet<Action> = new Set(["write", "delete", "presign", "admin"]);

/** The caller of every call while access control is off. */
const ANONYMOUS: Principal = { id: ANONYMOUS_ID, grants: ADMIN_GRANTS };

export type AuthFailureReason = "missing" | "malformed" | "invalid" | "denied";

export interface AccessControlDeps {
  readonly enabled: boolean;
  readonly authenticator: Authenticator;
  readonly store: AccessStore;
  readonly failures: Counter<"reason">;
  readonly log: Logger;
}

export class AccessControl {
  constructor(private readonly deps: AccessControlDeps) {}

  get enabled(): boolean {
    return this.deps.enabled;
  }

  /**
   * Returns the principal of an authorization header value.
   *
   * @throws StorageError unauthenticated when the header is missing,
   *   malformed, or carries an unknown or revoked token.
   */
  async authenticate(header: string | null | undefined, operation: string, peer: string | undefined): Promise<Principal> {
    if (!this.deps.enabled) return ANONYMOUS;

    const bearer = bearerTokenOf(header);
    if ("reason" in bearer) {
      this.fail(bearer.reason, operation, peer);
      const problem = bearer.reason === "missing" ? "credentials are missing" : "the authorization header is not of the form \"Bearer TOKEN\"";
      throw new StorageError("unauthenticated", `${problem}: send the header authorization: Bearer TOKEN with an Engram access token`);
    }
    const principal = await this.deps.authenticator.authenticate(bearer.token);
    if (principal === undefined) {
      this.fail("invalid", operation, peer);
      throw new StorageError("unauthenticated", "the access token is unknown or revoked: ask an Engram admin for a valid token");
    }
    return principal;
  }

  /**
   * Checks that the principal may do every check.
   *
   * @throws StorageError permission_denied naming the first missing grant.
   */
  authorize(principal: Principal, checks: readonly AccessCheck[], operation: string, peer: string | undefined): void {
    for (const { action, resource } of checks) {
      if (!allows(principal, action, resource)) {
        this.fail("denied", operation, peer, principal.id);
        throw denied(principal, action, resource);
      }
    }
  }

  /**
   * Fails unless the principal may do the action on some resource. Calls
   * that name an upload id check this before they look the upload up, so
   * a caller without any such grant learns nothing about upload ids.
   */
  requireSomewhere(principal: Principal, action: Action, operation: string, peer: string | undefined): void {
    if (!allowsSomewhere(principal, action)) {
      this.fail("denied", operation, peer, principal.id);
      throw new StorageError("permission_denied", `principal ${principal.id} has no ${action} grant: ask an Engram admin for one`);
    }
  }

  /** Returns the principal a presigned URL names as it is now, or undefined when it is gone or revoked. */
  async presigner(id: string): Promise<Principal | undefined> {
    if (!this.deps.enabled) return ANONYMOUS;
    return this.deps.authenticator.principalById(id);
  }

  /**
   * Records the checks of a finished call whose actions are audited. A
   * failed write to the audit log is logged and does not fail the call.
   */
  async audit(principal: Principal | undefined, checks: readonly AccessCheck[], operation: string, result: string): Promise<void> {
    for (const { action, resource } of checks) {
      if (!AUDITED_ACTIONS.has(action)) continue;
      const event = { principal: principal?.id ?? "", action, bucket: resource.bucket, key: resource.key, result, operation };
      try {
        await this.deps.store.appendAudit(event);
      } catch (err) {
        this.deps.log.error({ err, operation, action, bucket: resource.bucket }, "audit record failed");
      }
    }
  }

  private fail(reason: AuthFailureReason, operation: string, peer: string | undefined, principal?: string): void {
    this.deps.failures.inc({ reason });
    this.deps.log.warn({ reason, operation, peer, principal }, reason === "denied" ? "access denied" : "authentication failed");
  }
}

function denied(principal: Principal, action: Action, resource: Resource): StorageError {
  const target = resource.key === "" ? `bucket ${resource.bucket}` : `${resource.bucket}/${resource.key}`;
  return new StorageError("permission_denied", `principal ${principal.id} may not ${action} ${target}: ask an Engram admin for a grant`);
}
