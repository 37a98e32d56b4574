import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { StorageService } from "../../gen/engram/v1/storage_service_pb.js";

export const DEFAULT_URL = "http://127.0.0.1:9000";

/** Creates a typed client for Engram over gRPC (HTTP/2). */
export function createStorageClient(baseUrl: string): Client<typeof StorageService> {
  const transport = createGrpcTransport({
    baseUrl,
    // A larger stream window lets downloads run at full speed.
    nodeOptions: { settings: { initialWindowSize: 16 * 1024 * 1024 } },
    acceptCompression: [],
    readMaxBytes: 32 * 1024 * 1024,
  });
  return createClient(StorageService, transport);
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
