/*
 * Fresh PostgreSQL databases for the tests that run against a real server.
 * An unreachable server fails those tests in CI, where PostgreSQL must run,
 * and skips them elsewhere with a warning.
 */
import { randomBytes } from "node:crypto";

import pg from "pg";

/** Server the tests connect to; the database in the URL only serves to create and drop others. */
export const TEST_POSTGRES_URL = process.env.ENGRAM_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** How long the availability probe waits for the server. */
const PROBE_TIMEOUT_MS = 3000;

/** A database created for one test file. */
export interface TestDatabase {
  /** Connection URL of the new database. */
  readonly url: string;
  readonly name: string;
  /** Terminates the other connections to the database, then drops it. */
  drop(): Promise<void>;
}

/** Runs `work` on one connection to TEST_POSTGRES_URL, then closes it. */
async function withAdminClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Returns true when the server at TEST_POSTGRES_URL accepts a connection and runs a query. */
export async function postgresAvailable(): Promise<boolean> {
  try {
    await withAdminClient((client) => client.query("select 1"));
    return true;
  } catch {
    return false;
  }
}

/** Creates a database named engram_test_<random hex> on the server at TEST_POSTGRES_URL. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `engram_test_${randomBytes(6).toString("hex")}`;
  // The name is generated from hex digits only, so it needs no escaping.
  await withAdminClient((client) => client.query(`create database ${name}`));

  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${name}`;

  return {
    url: url.href,
    name,
    async drop() {
      await withAdminClient(async (client) => {
        await client.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()", [name]);
        await client.query(`drop database if exists ${name}`);
      });
    },
  };
}

/** What tests that need PostgreSQL do, decided once per test file. */
export interface RequiredPostgres {
  /** True when the server is unreachable outside CI: pass to `describe.skipIf` or `it.skipIf`. */
  readonly skip: boolean;
  /**
   * Call at the start of each suite.
   *
   * @throws Error saying that PostgreSQL is required when the server is
   *   unreachable, which fails the suite in CI.
   */
  assertAvailable(): void;
}

/**
 * Probes the server once. When it is unreachable, tests run and fail in CI
 * ($CI set to anything but "" or "false"). Elsewhere they are skipped, and
 * one warning names `suites` and how to enable them.
 */
export async function requirePostgres(suites: string): Promise<RequiredPostgres> {
  const available = await postgresAvailable();
  const runningInCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";
  const where = redactPassword(TEST_POSTGRES_URL);
  const enable = "start PostgreSQL on 127.0.0.1:5432 (trust auth, database test) or set ENGRAM_TEST_POSTGRES_URL";
  if (!available && !runningInCi) {
    console.warn(`PostgreSQL is not reachable at ${where}: skipping ${suites}. To run them, ${enable}.`);
  }

  return {
    skip: !available && !runningInCi,
    assertAvailable() {
      if (!available) {
        throw new Error(`PostgreSQL is required for ${suites} in CI, but it is not reachable at ${where}: ${enable}`);
      }
    },
  };
}

function redactPassword(value: string): string {
  try {
    const url = new URL(value);
    if (url.password !== "") url.password = "redacted";
    return url.href;
  } catch {
    return "ENGRAM_TEST_POSTGRES_URL (not a URL)";
  }
}
