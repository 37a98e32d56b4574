/*
 * Clients of Engram as a MNEMOS service would configure them. They use the
 * settings that mattered for streaming on loopback: compression off, HTTP/2
 * stream and connection windows of 16 MiB on the receiving side, and 4 MiB
 * upload chunks (the server's default maximum). Every upload and download
 * computes the sha256 of the bytes it moved and compares it with the
 * server's digest and the expected one.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import type http2 from "node:http2";
import { join } from "node:path";

import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { crc32c } from "@node-rs/crc32";

import { StorageService, type UploadRequestSchema } from "../../gen/engram/v1/storage_service_pb.js";
import { REPO_ROOT } from "./paths.js";
import { MiB } from "./stats.js";

/** Receive window for HTTP/2 streams and connections; 16 MiB moved data as fast as 64 MiB on a 2-core machine over loopback. */
const HTTP2_WINDOW_BYTES = 16 * MiB;
/** Upload chunk: ENGRAM_MAX_UPLOAD_CHUNK_BYTES defaults to 4 MiB. */
export const UPLOAD_CHUNK_BYTES = 4 * MiB;
const MAX_MESSAGE_BYTES = 32 * MiB;

/** Source of upload content: returns a fresh iterable of chunks each time it is called. */
export type ChunkSource = () => AsyncIterable<Buffer> | Iterable<Buffer>;

/** Size and digest of one verified transfer. */
export interface Transfer {
  readonly bytes: number;
  readonly sha256: string;
}

/** A way to call Engram: one client library and protocol. */
export interface EngramClient {
  readonly name: string;
  upload(bucket: string, key: string, source: ChunkSource, size: number, expectedSha256: string): Promise<Transfer>;
  /** Downloads an object. `onChunk` gets the byte count after each data chunk is hashed, and may pause the download by returning a promise. */
  download(bucket: string, key: string, expectedSha256: string, onChunk?: (bytes: number) => Promise<void> | void): Promise<Transfer>;
  close(): void;
}

/**
 * Session manager that also raises the HTTP/2 connection window, which
 * connect-node leaves at the 64 KiB default (only the stream window is an
 * option of http2.connect).
 */
class WideWindowSessionManager extends Http2SessionManager {
  private readonly widened = new WeakSet<http2.Http2Session>();

  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session;
    if (session && !this.widened.has(session)) {
      this.widened.add(session);
      session.setLocalWindowSize(HTTP2_WINDOW_BYTES);
    }
    return stream;
  }
}

export type StorageClient = Client<typeof StorageService>;

/** Connect-ES client over the gRPC protocol on one HTTP/2 connection. */
export function connectGrpcClient(baseUrl: string): EngramClient {
  const { client, close } = createGrpcStorageClient(baseUrl);
  return connectEsClient("gRPC, Connect-ES", client, close);
}

/** Generated Connect-ES StorageService client over gRPC on one HTTP/2 connection of its own, with the wide windows. */
export function createGrpcStorageClient(baseUrl: string): { client: StorageClient; close: () => void } {
  const sessionManager = new WideWindowSessionManager(baseUrl, {}, {
    settings: { initialWindowSize: HTTP2_WINDOW_BYTES },
    // Megabytes: room for a full connection window plus queued writes.
    maxSessionMemory: 256,
  });
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager,
    acceptCompression: [],
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
  });
  return { client: createClient(StorageService, transport), close: () => sessionManager.abort() };
}

/** Connect-ES client over the Connect protocol on HTTP/1.1, as curl and browsers use it. */
export function connectProtocolClient(baseUrl: string): EngramClient {
  const agent = new http.Agent({ keepAlive: true });
  const transport = createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    nodeOptions: { agent },
    acceptCompression: [],
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
  });
  return connectEsClient("Connect, Connect-ES, HTTP/1.1", createClient(StorageService, transport), () => agent.destroy());
}

function connectEsClient(name: string, client: StorageClient, close: () => void): EngramClient {
  return {
    name,
    async upload(bucket, key, source, size, expectedSha256) {
      const hash = createHash("sha256");
      let sent = 0;
      async function* requests(): AsyncGenerator<MessageInitShape<typeof UploadRequestSchema>> {
        yield { spec: { bucket, key, size: BigInt(size) } };
        for await (const chunk of source()) {
          hash.update(chunk);
          yield { writeOffset: BigInt(sent), data: { content: chunk, crc32c: crc32c(chunk) >>> 0 } };
          sent += chunk.length;
        }
        yield { writeOffset: BigInt(sent), finishWrite: true };
      }
      const { object } = await client.upload(requests());
      return verifyUpload(name, hash.digest("hex"), sent, hex(object?.checksums?.sha256), Number(object?.size ?? -1), expectedSha256);
    },

    async download(bucket, key, expectedSha256, onChunk) {
      const hash = createHash("sha256");
      let received = 0;
      let announced = "";
      for await (const response of client.download({ bucket, key })) {
        if (response.objectChecksums) announced = hex(response.objectChecksums.sha256);
        if (response.data) {
          hash.update(response.data.content);
          received += response.data.content.byteLength;
          await onChunk?.(received);
        }
      }
      return verifyDownload(name, hash.digest("hex"), received, announced, expectedSha256);
    },

    close,
  };
}

interface GrpcJsObject {
  size?: string;
  checksums?: { sha256?: Buffer };
}

interface GrpcJsStorageClient extends grpc.Client {
  Upload(callback: (err: grpc.ServiceError | null, response?: { object?: GrpcJsObject }) => void): grpc.ClientWritableStream<unknown>;
  Download(request: unknown): grpc.ClientReadableStream<{ objectChecksums?: { sha256?: Buffer }; data?: { content?: Buffer } }>;
}

let grpcJsConstructor: grpc.ServiceClientConstructor | undefined;

function loadGrpcJsConstructor(): grpc.ServiceClientConstructor {
  if (grpcJsConstructor) return grpcJsConstructor;
  const definition = protoLoader.loadSync("engram/v1/storage_service.proto", {
    includeDirs: [join(REPO_ROOT, "proto")],
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { engram: { v1: { StorageService: grpc.ServiceClientConstructor } } };
  grpcJsConstructor = loaded.engram.v1.StorageService;
  return grpcJsConstructor;
}

/** @grpc/grpc-js client, with the proto files loaded at run time by @grpc/proto-loader. */
export function grpcJsClient(baseUrl: string): EngramClient {
  const name = "gRPC, @grpc/grpc-js";
  const Constructor = loadGrpcJsConstructor();
  const client = new Constructor(new URL(baseUrl).host, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    "grpc-node.flow_control_window": HTTP2_WINDOW_BYTES,
  }) as unknown as GrpcJsStorageClient;

  return {
    name,
    async upload(bucket, key, source, size, expectedSha256) {
      const hash = createHash("sha256");
      let sent = 0;
      let call: grpc.ClientWritableStream<unknown> | undefined;
      const response = new Promise<{ object?: GrpcJsObject }>((resolve, reject) => {
        call = client.Upload((err, result) => (err ? reject(err) : resolve(result ?? {})));
      });
      try {
        const stream = call!;
        stream.write({ spec: { bucket, key, size: String(size) } });
        for await (const chunk of source()) {
          hash.update(chunk);
          const more = stream.write({ writeOffset: String(sent), data: { content: chunk, crc32c: crc32c(chunk) >>> 0 } });
          sent += chunk.length;
          // A call the server already ended never drains: the response settles instead.
          if (!more) await Promise.race([once(stream, "drain"), response]);
        }
        stream.write({ writeOffset: String(sent), finishWrite: true });
        stream.end();
      } catch (err) {
        call?.cancel();
        await response.catch(() => undefined);
        throw err;
      }
      const { object } = await response;
      return verifyUpload(name, hash.digest("hex"), sent, hex(object?.checksums?.sha256), Number(object?.size ?? -1), expectedSha256);
    },

    async download(bucket, key, expectedSha256, onChunk) {
      const hash = createHash("sha256");
      let received = 0;
      let announced = "";
      for await (const response of client.Download({ bucket, key })) {
        if (response.objectChecksums) announced = hex(response.objectChecksums.sha256);
        const content = response.data?.content;
        if (content) {
          hash.update(content);
          received += content.length;
          await onChunk?.(received);
        }
      }
      return verifyDownload(name, hash.digest("hex"), received, announced, expectedSha256);
    },

    close: () => client.close(),
  };
}

function verifyUpload(name: string, local: string, sent: number, stored: string, storedSize: number, expected: string): Transfer {
  if (local !== expected) throw new Error(`${name} upload: the client hashed ${local} but the source should have sha256 ${expected}`);
  if (stored !== expected) throw new Error(`${name} upload: Engram stored sha256 ${stored} but ${expected} was sent`);
  if (storedSize !== sent) throw new Error(`${name} upload: Engram stored ${storedSize} bytes but ${sent} were sent`);
  return { bytes: sent, sha256: local };
}

function verifyDownload(name: string, actual: string, received: number, announced: string, expected: string): Transfer {
  if (announced !== expected) throw new Error(`${name} download: Engram announced sha256 ${announced} but the object was uploaded with ${expected}`);
  if (actual !== expected) throw new Error(`${name} download: received ${received} bytes with sha256 ${actual}, expected ${expected}`);
  return { bytes: received, sha256: actual };
}

export function hex(bytes: Uint8Array | undefined): string {
  return bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex") : "";
}
