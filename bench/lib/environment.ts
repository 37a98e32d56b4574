/* The machine, the software versions and the checkout a run measured. */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

import pg from "pg";

import { REPO_ROOT } from "./paths.js";
import { BENCH_POSTGRES_URL } from "./postgres.js";
import { GiB } from "./stats.js";

const execFileAsync = promisify(execFile);

export interface Environment {
  readonly cpu: string;
  readonly cores: number;
  readonly memory: string;
  readonly kernel: string;
  readonly node: string;
  readonly loadAverageAtStart: string;
  readonly commit: string;
  readonly packages: Record<string, string>;
  readonly tools: Record<string, string>;
}

/** npm packages whose versions the results depend on. */
const PACKAGES = [
  "@connectrpc/connect",
  "@connectrpc/connect-node",
  "@bufbuild/protobuf",
  "@grpc/grpc-js",
  "@grpc/proto-loader",
  "@tus/server",
  "@tus/file-store",
  "minio",
  "@electric-sql/pglite",
  "pg",
];

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(REPO_ROOT, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "not installed";
  }
}

async function gitCommit(): Promise<string> {
  try {
    const { stdout: commit } = await execFileAsync("git", ["rev-parse", "--short", "HEAD"], { cwd: REPO_ROOT });
    const { stdout: status } = await execFileAsync("git", ["status", "--porcelain", "--", "src", "gen", "proto"], { cwd: REPO_ROOT });
    return `${commit.trim()}${status.trim() === "" ? "" : " with uncommitted changes in src/, gen/ or proto/"}`;
  } catch {
    return "unknown (not a git checkout)";
  }
}

async function postgresVersion(): Promise<string> {
  const client = new pg.Client({ connectionString: BENCH_POSTGRES_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    const result = await client.query<{ server_version: string }>("show server_version");
    return result.rows[0]?.server_version ?? "unknown";
  } catch {
    return "not reachable";
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function describeEnvironment(tools: Record<string, string>): Promise<Environment> {
  const processors = cpus();
  return {
    cpu: processors[0]?.model ?? "unknown",
    cores: processors.length,
    memory: `${(totalmem() / GiB).toFixed(1)} GiB`,
    kernel: `Linux ${release()}`,
    node: process.version,
    loadAverageAtStart: loadavg()
      .map((value) => value.toFixed(2))
      .join(", "),
    commit: await gitCommit(),
    packages: Object.fromEntries(PACKAGES.map((name) => [name, packageVersion(name)])),
    tools: { ...tools, PostgreSQL: await postgresVersion() },
  };
}
