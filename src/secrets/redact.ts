/*
 * Redacts secrets from the configuration so that `engram config check` can
 * print every setting.
 */
import type { Config } from "../config.js";

export const REDACTED = "<redacted>";

/** Shortest access key whose first characters are shown; shorter keys are fully redacted. */
const MIN_ACCESS_KEY_SHOWN = 16;
const ACCESS_KEY_SHOWN_CHARS = 4;

/**
 * Returns a copy of the configuration that is safe to print. The access
 * key keeps at most its first 4 characters. The secret key, the passwords,
 * the Vault token, the admin token and the password in the PostgreSQL URL become
 * "<redacted>". Unset secrets stay empty, so the output shows them as unset.
 */
export function redactConfig(config: Config): Config {
  return {
    ...config,
    signingKeys: config.signingKeys.map((key) => ({ id: key.id, secret: redact(key.secret) })),
    s3: { ...config.s3, accessKey: redactAccessKey(config.s3.accessKey), secretKey: redact(config.s3.secretKey) },
    postgres: {
      ...config.postgres,
      url: redactPostgresUrl(config.postgres.url),
      password: config.postgres.password === undefined ? undefined : redact(config.postgres.password),
    },
    vault: { ...config.vault, token: redact(config.vault.token) },
    auth: { ...config.auth, adminToken: redact(config.auth.adminToken) },
  };
}

function redact(value: string): string {
  return value === "" ? "" : REDACTED;
}

/** Shows the first characters of long keys only, because they help to tell keys apart. */
function redactAccessKey(value: string): string {
  if (value.length < MIN_ACCESS_KEY_SHOWN) return redact(value);
  return `${value.slice(0, ACCESS_KEY_SHOWN_CHARS)}${REDACTED}`;
}

/**
 * Replaces the password of a postgres:// URL, and the password and
 * sslpassword query parameters that libpq also accepts. A value that does
 * not parse as a URL is fully redacted, because its password cannot be found.
 */
export function redactPostgresUrl(value: string): string {
  if (value === "") return value;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return REDACTED;
  }
  // URL would percent-encode "<redacted>", so the string is assembled by hand.
  const userinfo = url.username === "" && url.password === "" ? "" : `${url.username}${url.password === "" ? "" : `:${REDACTED}`}@`;
  const query = [...url.searchParams]
    .map(([key, item]) => `${encodeURIComponent(key)}=${isPasswordParameter(key) ? REDACTED : encodeURIComponent(item)}`)
    .join("&");
  return `${url.protocol}//${userinfo}${url.host}${url.pathname}${query === "" ? "" : `?${query}`}${url.hash}`;
}

function isPasswordParameter(key: string): boolean {
  const name = key.toLowerCase();
  return name === "password" || name === "sslpassword";
}
