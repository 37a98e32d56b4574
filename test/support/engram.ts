import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";

import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

import { StorageService } from "../../gen/engram/v1/storage_service_pb.js";
import { readConfig, type Config } from "../../src/config.js";
import { startEngram, type Engram, type StartOptions } from "../../src/engram.js";
import { createLogger } from "../../src/log.js";

/**
 * Admin token of every test server, unless a test sets ENGRAM_ADMIN_TOKEN
 * itself. The client helpers send it by default.
 */
export const TEST_ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789";

/** Authorization header value of the test admin. */
export const TEST_AUTHORIZATION = `Bearer ${TEST_ADMIN_TOKEN}`;

/** A parsed pino log line. */
export interface LogEntry {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export interface TestEngram extends Engram {
  readonly dataDir: string;
  /** Every log line the server wrote so far. */
  readonly logs: LogEntry[];
  /** Closes the server and removes its data directory. */
  destroy(): Promise<void>;
}

/**
 * Starts a real Engram on 127.0.0.1, port 0, with a fresh data directory
 * (or the given one), capturing its JSON log lines.
 */
export async function startTestEngram(
  env: Record<string, string> = {},
  options: Partial<StartOptions> & { dataDir?: string } = {},
): Promise<TestEngram> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "engram-test-")));
  const config: Config = readConfig({ ENGRAM_PORT: "0", ENGRAM_METRICS_PORT: "0", ENGRAM_HOST: "127.0.0.1", ENGRAM_DATA_DIR: dataDir, ENGRAM_ADMIN_TOKEN: TEST_ADMIN_TOKEN, ...env });
  const logs: LogEntry[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.trim() !== "") logs.push(JSON.parse(line) as LogEntry);
      }
      done();
    },
  });
  const log = createLogger("debug", sink);
  const engram = await startEngram(config, { log, ...options });

  return {
    ...engram,
    dataDir,
    logs,
    async destroy() {
      await engram.close(0);
      if (options.dataDir === undefined) {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}

export type Protocol = "grpc" | "grpc-web" | "connect";
export const PROTOCOLS: readonly Protocol[] = ["grpc", "grpc-web", "connect"];

/**
 * Creates a transport for one protocol: gRPC over HTTP/2, gRPC-Web and Connect over
 * HTTP/1.1, as browsers and curl use them. It sends `token` as a bearer
 * token, the test admin's by default; "" sends no credentials.
 */
export function transportFor(protocol: Protocol, baseUrl: string, token = TEST_ADMIN_TOKEN): Transport {
  const interceptors = token === "" ? [] : [bearer(token)];
  const common = { baseUrl, acceptCompression: [], readMaxBytes: 16 * 1024 * 1024, writeMaxBytes: 80 * 1024 * 1024, interceptors };
  switch (protocol) {
    case "grpc":
      // Node counts queued outgoing data against the session memory; the
      // default of 10 MB resets streams that carry one oversized message.
      return createGrpcTransport({ ...common, nodeOptions: { maxSessionMemory: 256 } });
    case "grpc-web":
      return createGrpcWebTransport({ ...common, httpVersion: "1.1" });
    case "connect":
      return createConnectTransport({ ...common, httpVersion: "1.1" });
  }
}

export function storageClient(protocol: Protocol, baseUrl: string, token = TEST_ADMIN_TOKEN): Client<typeof StorageService> {
  return createClient(StorageService, transportFor(protocol, baseUrl, token));
}

/** Adds an authorization header with a bearer token to every call. */
export function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** Log lines at error level or above (pino levels: 50 error, 60 fatal). */
export function errorLogs(logs: readonly LogEntry[]): LogEntry[] {
  return logs.filter((entry) => entry.level >= 50);
}
