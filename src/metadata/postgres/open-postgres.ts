import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import type { Logger } from "pino";

import { ConfigError, type PostgresConfig } from "../../config.js";
import { SqlMetadataStore } from "../sql/sql-metadata-store.js";
import type { Database } from "../sql/schema.js";

/**
 * How long opening a connection may take, and how long a query may wait
 * for a free pool connection (pg-pool uses one setting for both). An
 * unreachable server then fails within seconds instead of hanging.
 */
const CONNECT_TIMEOUT_MS = 5000;

const UNAVAILABLE_HINT = "check that PostgreSQL runs at ENGRAM_POSTGRES_URL and accepts its user and password";

/**
 * Connects a pool to PostgreSQL, checks that the server responds, and
 * applies migrations. Throws ConfigError for a URL that is not a
 * postgres:// URL, and StorageError "unavailable" (after closing the pool)
 * when the server cannot be reached.
 */
export async function openPostgresMetadataStore(config: PostgresConfig, log: Logger): Promise<SqlMetadataStore> {
  const url = parsePostgresUrl(config.url);
  if (config.password !== undefined && url.password === "") {
    // node-postgres lets the URL override every explicit setting, even with
    // an empty password, so the separate password goes into the URL.
    url.password = encodeURIComponent(config.password);
  }

  // Timeouts go in the startup packet, so every connection has them from
  // its first query on. pg 8.23's own statement_timeout option sends
  // nothing for 0, but 0 must turn the timeout off even where the role
  // sets one.
  const timeouts = `-c statement_timeout=${config.statementTimeoutMs} -c idle_in_transaction_session_timeout=${config.idleInTransactionTimeoutMs}`;
  // Settings from the URL's own options come last so that they win.
  const urlOptions = url.searchParams.get("options");
  url.searchParams.delete("options");

  const pool = new pg.Pool({
    connectionString: url.href,
    options: urlOptions ? `${timeouts} ${urlOptions}` : timeouts,
    max: config.poolSize,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    application_name: "engram",
  });
  // When the server closes an idle connection, as on a restart or a
  // failover, the pool emits "error". Without a listener Node.js would exit.
  pool.on("error", (err) => {
    log.warn({ err, host: url.hostname, database: databaseName(url) }, "PostgreSQL connection failed while idle; the pool drops it and opens a new one on demand");
  });

  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const store = new SqlMetadataStore("postgres", db, {
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    unavailableHint: UNAVAILABLE_HINT,
  });
  try {
    await store.ping();
    await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }

  log.info({ host: url.hostname, port: url.port || "5432", database: databaseName(url), poolSize: config.poolSize }, "connected to PostgreSQL");
  return store;
}

/**
 * Parses the connection URL. Errors leave the URL out because it may
 * contain the password.
 */
function parsePostgresUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError("ENGRAM_POSTGRES_URL is not a URL: use a form such as postgres://engram@db:5432/engram");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ConfigError(`ENGRAM_POSTGRES_URL starts with ${url.protocol}// but must start with postgres:// or postgresql://`);
  }
  return url;
}

function databaseName(url: URL): string {
  return decodeURIComponent(url.pathname.slice(1));
}
