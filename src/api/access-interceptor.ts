import { Code, createContextKey, type Interceptor } from "@connectrpc/connect";

import type { AccessCheck, AccessControl } from "../auth/access-control.js";
import type { Principal, Resource } from "../auth/grants.js";
import { StorageError } from "../service/errors.js";
import { ACCESS_RULES, type AccessRule, type RuleContext } from "./access-rules.js";
import { callFactsOf } from "./call-log.js";
import { toConnectError } from "./errors.js";

/** The authenticated caller of the current call; unset on public RPCs. */
export const principalKey = createContextKey<Principal | undefined>(undefined);

/** Lookups of upload sessions and finalize tokens, for rules of calls that name one. */
export interface ResourceLookups {
  uploadSession(uploadId: string): Promise<Resource>;
  finalizeTarget(token: string): Resource;
}

/**
 * Enforces ACCESS_RULES on every call before its handler runs. It
 * authenticates the caller, resolves the call's resource from its request
 * (for client streams, from the first message, before the handler reads
 * it), checks the grants, and records audited actions with the result.
 * Place it after the call-log interceptor, which maps its errors.
 */
export function accessInterceptor(access: AccessControl, lookups: ResourceLookups, rules: ReadonlyMap<string, AccessRule<unknown>> = ACCESS_RULES): Interceptor {
  return (next) => async (req) => {
    const operation = `${req.service.typeName}/${req.method.name}`;
    const rule = rules.get(operation);
    if (rule === undefined) {
      throw new StorageError("permission_denied", `${operation} has no access rule, so every call to it is denied: add it to ACCESS_RULES`);
    }
    if (rule.kind === "public") return next(req);

    const peer = callFactsOf(req.contextValues).peer;
    const principal = await access.authenticate(req.header.get("authorization"), operation, peer);
    req.contextValues.set(principalKey, principal);
    if (rule.kind === "authenticated") return next(req);

    const context: RuleContext = {
      async uploadTarget(uploadId, action) {
        access.requireSomewhere(principal, action, operation, peer);
        return lookups.uploadSession(uploadId);
      },
      finalizeTarget: (token) => lookups.finalizeTarget(token),
    };
    let checks: AccessCheck[] = [];
    const authorize = async (message: unknown): Promise<void> => {
      checks = await rule.checks(message, context);
      access.authorize(principal, checks, operation, peer);
    };

    try {
      if (req.stream) {
        req = { ...req, message: authorizedStream(req.message, authorize) };
      } else {
        await authorize(req.message);
      }
      const res = await next(req);
      await access.audit(principal, checks, operation, "OK");
      return res;
    } catch (err) {
      await access.audit(principal, checks, operation, Code[toConnectError(err, req.signal).code]);
      throw err;
    }
  };
}

/** Passes a request stream through, authorizing its first message before the handler receives it. */
async function* authorizedStream<T>(messages: AsyncIterable<T>, authorize: (first: T) => Promise<void>): AsyncGenerator<T> {
  let first = true;
  for await (const message of messages) {
    if (first) {
      await authorize(message);
      first = false;
    }
    yield message;
  }
}

/** Returns the caller of the current call, which the access interceptor set. */
export function principalOf(values: { get(key: typeof principalKey): Principal | undefined }): Principal {
  const principal = values.get(principalKey);
  if (principal === undefined) throw new StorageError("internal", "the call has no principal: its RPC must not be public in ACCESS_RULES");
  return principal;
}
