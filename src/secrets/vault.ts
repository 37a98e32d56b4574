/*
 * Reads one secret from the KV version 2 secrets engine of HashiCorp Vault
 * with a token, as `vault kv get -mount=MOUNT PATH` does. Error messages
 * name the ENGRAM_VAULT_* variable to fix and never contain the token.
 */

/** A failed Vault read; the message names the ENGRAM_VAULT_* variable and the fix. */
export class VaultError extends Error {
  override readonly name = "VaultError";
}

export interface KvReadRequest {
  /** Base URL of the Vault server, such as https://vault:8200. */
  readonly addr: string;
  readonly token: string;
  /** Mount path of the KV version 2 engine, such as secret. */
  readonly mount: string;
  /** Path of the secret below the mount, such as mnemos/engram. */
  readonly path: string;
  /** Limit for the whole request, from connecting to the last byte of the response. */
  readonly timeoutMs: number;
}

/** The parts of a KV version 2 read response that Engram uses. */
interface KvReadResponse {
  data?: {
    data?: Record<string, unknown> | null;
    metadata?: { version?: number; deletion_time?: string; destroyed?: boolean } | null;
  } | null;
  errors?: unknown;
}

/** Maximum length of Vault's error text copied into a message. */
const MAX_ERROR_TEXT = 300;

/**
 * Reads the latest version of a KV version 2 secret and returns its fields.
 * Redirects are not followed, so the token goes only to `addr`.
 *
 * @throws VaultError when Vault cannot be reached in time, rejects the
 * token, has no such secret, is sealed, or returns anything but a KV
 * version 2 secret.
 */
export async function readKvSecret(request: KvReadRequest): Promise<Record<string, unknown>> {
  const secret = `${request.mount}/${request.path}`;
  let status: number;
  let location: string | null;
  let body: KvReadResponse | undefined;
  try {
    const response = await fetch(kvDataUrl(request), {
      headers: { "X-Vault-Token": request.token, Accept: "application/json" },
      redirect: "manual",
      signal: AbortSignal.timeout(request.timeoutMs),
    });
    status = response.status;
    location = response.headers.get("location");
    // The timeout signal also covers reading the body.
    body = parseJson(await response.text());
  } catch (err) {
    throw unreachable(request, err);
  }

  if (status === 200) {
    const fields = body?.data?.data;
    if (isObject(fields)) return fields;
    if (body?.data?.metadata?.deletion_time) throw deleted(request, body.data.metadata);
    throw new VaultError(
      `Vault at ${request.addr} returned no KV version 2 data for ${secret}: check that ENGRAM_VAULT_MOUNT=${request.mount} is a KV version 2 mount (vault secrets list -detailed shows its version)`,
    );
  }

  const errors = errorText(body);
  if (status === 403) {
    throw new VaultError(
      `Vault at ${request.addr} denied reading ${secret} (HTTP 403${errors}): check that ENGRAM_VAULT_TOKEN or ENGRAM_VAULT_TOKEN_FILE contains a valid, unexpired token whose policy grants "read" on ${request.mount}/data/${request.path}`,
    );
  }
  if (status === 404) {
    if (body?.data?.metadata?.deletion_time) throw deleted(request, body.data.metadata);
    throw new VaultError(
      `Vault at ${request.addr} has no secret ${secret} (HTTP 404${errors}): check ENGRAM_VAULT_MOUNT=${request.mount} and ENGRAM_VAULT_PATH=${request.path}, or write the secret with vault kv put -mount=${request.mount} ${request.path} FIELD=VALUE`,
    );
  }
  if (status === 503 && errors.toLowerCase().includes("sealed")) {
    throw new VaultError(`Vault at ENGRAM_VAULT_ADDR=${request.addr} is sealed (HTTP 503${errors}): unseal it with vault operator unseal, then start Engram again`);
  }
  if (status >= 300 && status < 400) {
    throw new VaultError(
      `Vault at ENGRAM_VAULT_ADDR=${request.addr} redirected to ${location ?? "no location"} (HTTP ${status}): set ENGRAM_VAULT_ADDR to the active Vault node, because Engram sends its token only to that address`,
    );
  }
  throw new VaultError(
    `Vault at ENGRAM_VAULT_ADDR=${request.addr} failed to read ${secret} (HTTP ${status}${errors}): check that ENGRAM_VAULT_ADDR points at Vault and read the Vault server's log`,
  );
}

/** Builds {addr}/v1/{mount}/data/{path}, escaping each path segment. */
function kvDataUrl(request: KvReadRequest): string {
  const escape = (path: string): string => path.split("/").map(encodeURIComponent).join("/");
  return `${request.addr.replace(/\/+$/, "")}/v1/${escape(request.mount)}/data/${escape(request.path)}`;
}

function unreachable(request: KvReadRequest, err: unknown): VaultError {
  const name = (err as Error | undefined)?.name;
  if (name === "TimeoutError" || name === "AbortError") {
    return new VaultError(
      `Vault at ENGRAM_VAULT_ADDR=${request.addr} timed out after ${request.timeoutMs / 1000} s without a response: check the address and that Vault runs there, or raise ENGRAM_VAULT_TIMEOUT_SECONDS`,
    );
  }
  // fetch rejects with "fetch failed" and keeps the socket or TLS error in `cause`.
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  const reason = cause instanceof Error ? cause.message : (err as Error | undefined)?.message ?? String(err);
  return new VaultError(`Vault at ENGRAM_VAULT_ADDR=${request.addr} cannot be reached (${reason}): check the address and that Vault runs there`, { cause: err });
}

function deleted(request: KvReadRequest, metadata: { version?: number; deletion_time?: string; destroyed?: boolean }): VaultError {
  const version = metadata.version ?? "?";
  const restore = metadata.destroyed
    ? `write a new version with vault kv put -mount=${request.mount} ${request.path} FIELD=VALUE`
    : `restore it with vault kv undelete -mount=${request.mount} -versions=${version} ${request.path}, or write a new version`;
  return new VaultError(
    `the latest version (${version}) of Vault secret ${request.mount}/${request.path} at ${request.addr} was ${metadata.destroyed ? "destroyed" : "deleted"} at ${metadata.deletion_time}: ${restore}`,
  );
}

/** Returns Vault's "errors" list as ": first; second", or "" when there is none. */
function errorText(body: KvReadResponse | undefined): string {
  const errors = Array.isArray(body?.errors) ? body.errors.filter((item): item is string => typeof item === "string") : [];
  // Vault often formats a message as a list, such as "1 error occurred:\n\t* permission denied\n\n".
  const text = errors
    .map((item) =>
      item
        .replace(/^\s*\d+ errors? occurred:/, "")
        .replace(/^\s*\* /gm, "")
        .replace(/\s+/g, " ")
        .trim(),
    )
    .filter((item) => item !== "")
    .join("; ");
  return text === "" ? "" : `: ${text.slice(0, MAX_ERROR_TEXT)}`;
}

function parseJson(text: string): KvReadResponse | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? (value as KvReadResponse) : undefined;
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
