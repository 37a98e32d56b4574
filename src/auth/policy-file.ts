/*
 * The policy file: principals, the SHA-256 digests of their tokens, and
 * their grants, as JSON:
 *
 *   { "principals": [
 *       { "name": "serving",
 *         "tokenSha256": ["<64 hex digits>"],
 *         "grants": [{ "bucket": "mnemos-models", "actions": ["read", "list"] }] } ] }
 *
 * It is read at start, and again on SIGHUP and whenever the file changes.
 * A file that fails to read or validate on reload leaves the previous
 * policy in force.
 */
import { readFileSync, unwatchFile, watchFile } from "node:fs";

import type { Logger } from "pino";

import { isStorageError } from "../service/errors.js";
import { policyPrincipalId, type Authenticator, type ConfiguredPrincipal } from "./authenticator.js";
import { parseGrants } from "./grants.js";

/** How often the file's modification time is polled, in milliseconds. */
const POLL_INTERVAL_MS = 1000;
const NAME_PATTERN = /^[A-Za-z0-9._@:-]{1,128}$/;

/**
 * Reads and validates a policy file.
 *
 * @throws Error naming the file and the invalid entry.
 */
export function readPolicyFile(path: string): ConfiguredPrincipal[] {
  let document: unknown;
  try {
    document = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`policy file ${path} cannot be read as JSON: ${(err as Error).message}`);
  }
  const principals = (document as { principals?: unknown } | null)?.principals;
  if (!Array.isArray(principals)) {
    throw new Error(`policy file ${path} has no "principals" list: write {"principals": [...]}`);
  }

  const names = new Set<string>();
  return principals.map((raw: unknown, index) => {
    const where = `principals[${index}]`;
    const entry = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
    const { name, tokenSha256, grants } = entry;
    if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
      throw new Error(`policy file ${path}: ${where}.name must be 1 to 128 letters, digits, ".", "_", "-", "@" or ":"`);
    }
    if (names.has(name)) throw new Error(`policy file ${path}: principal ${name} appears twice: merge its grants into one entry`);
    names.add(name);
    if (!Array.isArray(tokenSha256) || tokenSha256.some((digest) => typeof digest !== "string" || !/^[0-9a-f]{64}$/.test(digest))) {
      throw new Error(`policy file ${path}: ${where}.tokenSha256 must be a list of lowercase hex SHA-256 digests, such as the output of: printf %s "$TOKEN" | sha256sum`);
    }
    try {
      return { id: policyPrincipalId(name), tokenSha256: tokenSha256 as string[], grants: parseGrants(grants, `${where}.grants`) };
    } catch (err) {
      if (isStorageError(err)) throw new Error(`policy file ${path}: ${err.message}`);
      throw err;
    }
  });
}

/**
 * Loads the policy file into the authenticator and reloads it on SIGHUP and
 * on change. Returns a function that stops watching.
 *
 * @throws Error when the file is invalid at start, so Engram does not start
 *   with a policy other than the one configured.
 */
export function watchPolicyFile(path: string, authenticator: Authenticator, log: Logger): () => void {
  const principals = readPolicyFile(path);
  authenticator.setPolicy(principals);
  log.info({ policyFile: path, principals: principals.length }, "policy file loaded");

  const reload = (trigger: string): void => {
    try {
      const next = readPolicyFile(path);
      authenticator.setPolicy(next);
      log.info({ policyFile: path, principals: next.length, trigger }, "policy file reloaded");
    } catch (err) {
      log.error({ policyFile: path, trigger, err }, "policy file reload failed: the previous policy stays in force");
    }
  };
  const onSignal = (): void => reload("SIGHUP");
  const onChange = (current: { mtimeMs: number }, previous: { mtimeMs: number }): void => {
    if (current.mtimeMs !== previous.mtimeMs) reload("change");
  };

  process.on("SIGHUP", onSignal);
  watchFile(path, { interval: POLL_INTERVAL_MS, persistent: false }, onChange);
  return () => {
    process.off("SIGHUP", onSignal);
    unwatchFile(path, onChange);
  };
}
