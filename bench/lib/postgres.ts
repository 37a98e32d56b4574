/*
 * A fresh PostgreSQL database for Engram's production shape, on a server on
 * loopback. The server is the one the tests use; the benchmark creates its
 * own database there and drops it at the end.
 */
import { randomBytes } from "node:crypto";

import pg from "pg";

import { registerCleanup } from "./cleanup.js";

/** Server to create the database on; the database in the URL only serves to connect. */
export const BENCH_POSTGRES_URL = process.env.ENGRAM_BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

export interface BenchDatabase {
  readonly url: string;
  drop(): Promise<void>;
}

async function withAdminClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: BENCH_POSTGRES_URL, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates a database named engram_bench_<random hex>, or returns the reason
 * why none can be created (no server, or a server that is not on loopback).
 */
export async function createBenchDatabase(): Promise<BenchDatabase | { unavailable: string }> {
  const admin = new URL(BENCH_POSTGRES_URL);
  if (!LOOPBACK_HOSTS.has(admin.hostname)) {
    return { unavailable: `ENGRAM_BENCH_POSTGRES_URL names host ${admin.hostname}, but the benchmark only talks to loopback` };
  }
  const name = `engram_bench_${randomBytes(6).toString("hex")}`;
  try {
    // The name is made of hex digits only, so it needs no quoting.
    await withAdminClient((client) => client.query(`create database ${name}`));
  } catch (err) {
    return { unavailable: `no PostgreSQL at ${admin.host}: ${(err as Error).message}` };
  }

  const url = new URL(BENCH_POSTGRES_URL);
  url.pathname = `/${name}`;
  const drop = registerCleanup(() =>
    withAdminClient(async (client) => {
      await client.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()", [name]);
      await client.query(`drop database if exists ${name}`);
    }),
  );
  return { url: url.href, drop };
}
