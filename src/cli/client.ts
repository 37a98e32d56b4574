import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { StorageService } from "../../gen/engram/v1/storage_service_pb.js";

export const DEFAULT_URL = "http://127.0.0.1:9000";

/** The server a command talks to, and the bearer token it sends, if any. */
export interface Server {
  readonly url: string;
  readonly token: string | undefined;
}

/** Creates a typed client for Engram over gRPC (HTTP/2). */
export function createStorageClient(server: Server): Client<typeof StorageService> {
  return createEngramClient(StorageService, server);
}

/** Creates a typed client of any Engram service over gRPC (HTTP/2), sending the server's token. */
export function createEngramClient<T extends DescService>(service: T, server: Server): Client<T> {
  const transport: Transport = createGrpcTransport({
    baseUrl: server.url,
    // A larger stream window lets downloads run at full speed.
    nodeOptions: { settings: { initialWindowSize: 16 * 1024 * 1024 } },
    acceptCompression: [],
    readMaxBytes: 32 * 1024 * 1024,
    interceptors: server.token === undefined ? [] : [bearer(server.token)],
  });
  return createClient(service, transport);
}

function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/**
 * Finds the token to send: $ENGRAM_TOKEN, else the file $ENGRAM_TOKEN_FILE,
 * else the config file $XDG_CONFIG_HOME/engram/token (~/.config/engram/token),
 * else the admin token that a local server wrote into its data directory
 * ($ENGRAM_DATA_DIR, default ./data). Returns undefined when none is set.
 */
export function findToken(env: NodeJS.ProcessEnv): string | undefined {
  const value = env.ENGRAM_TOKEN?.trim();
  if (value) return value;

  const named = env.ENGRAM_TOKEN_FILE?.trim();
  if (named) {
    const token = readToken(named);
    if (token === undefined) throw new UsageError(`ENGRAM_TOKEN_FILE=${named} cannot be read or is empty: fix the path or unset it`);
    return token;
  }
  const configHome = env.XDG_CONFIG_HOME?.trim() || join(env.HOME ?? homedir(), ".config");
  return readToken(join(configHome, "engram", "token")) ?? readToken(join(env.ENGRAM_DATA_DIR?.trim() || "data", "admin-token"));
}

function readToken(path: string): string | undefined {
  try {
    const token = readFileSync(path, "utf8").trim();
    return token === "" ? undefined : token;
  } catch {
    return undefined;
  }
}

/** Splits "BUCKET/KEY" into its parts; the key may be empty when allowed. */
export function parseObjectPath(path: string, { keyRequired }: { keyRequired: boolean }): { bucket: string; key: string } {
  const slash = path.indexOf("/");
  const bucket = slash === -1 ? path : path.slice(0, slash);
  const key = slash === -1 ? "" : path.slice(slash + 1);
  if (bucket === "" || (keyRequired && key === "")) {
    const form = keyRequired ? "BUCKET/KEY" : "BUCKET[/PREFIX]";
    throw new UsageError(`${JSON.stringify(path)} is not of the form ${form}, such as mnemos-models/llama/weights.safetensors`);
  }
  return { bucket, key };
}

/** A mistake in the command line; printed with the usage. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}
