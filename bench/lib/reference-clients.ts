/*
 * Clients of the reference peers: raw TCP, tus over HTTP/1.1, and MinIO
 * through the `minio` package. They move the same bytes as the Engram
 * clients; where the reference itself checks nothing, the sha256 of a
 * download proves what the upload stored.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import { Readable } from "node:stream";

import { Client as MinioClient } from "minio";

import type { ChunkSource, Transfer } from "./engram-clients.js";
import { TCP_REPLY_BYTES, TcpOperation, tcpHeader } from "./tcp-protocol.js";

/** Writes chunks to a writable stream with backpressure. */
async function writeAll(target: NodeJS.WritableStream, source: ChunkSource, onChunk?: (chunk: Buffer) => void): Promise<number> {
  let sent = 0;
  for await (const chunk of source()) {
    onChunk?.(chunk);
    sent += chunk.length;
    if (!target.write(chunk)) await once(target as NodeJS.EventEmitter, "drain");
  }
  return sent;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/** Reads a whole socket into one buffer (only for the short reply of an upload). */
async function readReply(socket: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of socket as AsyncIterable<Buffer>) parts.push(part);
  return Buffer.concat(parts);
}

/** Handling of uploaded bytes by the TCP peer: count them only, also hash them, or write them to disk. */
export type TcpReceiver = "discard" | "hash" | "disk";

const TCP_UPLOAD_OPERATIONS: Record<TcpReceiver, number> = {
  discard: TcpOperation.upload,
  hash: TcpOperation.uploadHashed,
  disk: TcpOperation.uploadToDisk,
};

/**
 * Sends bytes to the TCP peer and waits for its count. With "hash", the
 * peer's digest is checked against `expectedSha256`.
 */
export async function tcpUpload(port: number, source: ChunkSource, size: number, receiver: TcpReceiver, expectedSha256: string): Promise<Transfer> {
  const hashed = receiver === "hash";
  const socket = await connect(port);
  try {
    const replied = readReply(socket);
    socket.write(tcpHeader(TCP_UPLOAD_OPERATIONS[receiver], size));
    const sent = await writeAll(socket, source);
    const reply = await replied;
    if (reply.length !== TCP_REPLY_BYTES) throw new Error(`TCP peer replied with ${reply.length} bytes instead of ${TCP_REPLY_BYTES}`);
    const counted = Number(reply.readBigUInt64BE(0));
    if (counted !== sent || sent !== size) throw new Error(`TCP upload: sent ${sent} bytes of ${size}, the peer counted ${counted}`);
    const digest = reply.subarray(8).toString("hex");
    if (hashed && digest !== expectedSha256) throw new Error(`TCP upload: the peer hashed ${digest}, expected ${expectedSha256}`);
    return { bytes: sent, sha256: hashed ? digest : "" };
  } finally {
    socket.destroy();
  }
}

/** Reads a file from the TCP peer; with `hashed` the client hashes it and checks `expectedSha256`. */
export async function tcpDownload(port: number, path: string, size: number, hashed: boolean, expectedSha256: string): Promise<Transfer> {
  const socket = await connect(port);
  try {
    const name = Buffer.from(path, "utf8");
    socket.write(Buffer.concat([tcpHeader(TcpOperation.download, name.length), name]));
    const hash = hashed ? createHash("sha256") : undefined;
    let received = 0;
    for await (const chunk of socket as AsyncIterable<Buffer>) {
      received += chunk.length;
      hash?.update(chunk);
    }
    if (received !== size) throw new Error(`TCP download: received ${received} bytes of ${size}`);
    const digest = hash?.digest("hex") ?? "";
    if (hashed && digest !== expectedSha256) throw new Error(`TCP download: received sha256 ${digest}, expected ${expectedSha256}`);
    return { bytes: received, sha256: digest };
  } finally {
    socket.destroy();
  }
}

/**
 * Client of a tus 1.0.0 server: creation, one PATCH with the whole content,
 * GET (a @tus/server extension) and termination.
 */
export class TusClient {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });

  constructor(private readonly baseUrl: string) {}

  /** Creates an upload, sends the content in one PATCH and returns the upload URL. */
  async upload(source: ChunkSource, size: number, expectedSha256: string): Promise<{ url: string; transfer: Transfer }> {
    const created = await this.request("POST", new URL("/files", this.baseUrl), { "Upload-Length": String(size) });
    const location = created.headers.location;
    if (created.statusCode !== 201 || !location) throw new Error(`tus creation responded with ${created.statusCode} and no Location`);
    created.resume();
    const url = new URL(location, this.baseUrl).toString();

    const hash = createHash("sha256");
    const { response, sent } = await new Promise<{ response: http.IncomingMessage; sent: number }>((resolve, reject) => {
      const request = http.request(url, {
        method: "PATCH",
        agent: this.agent,
        headers: {
          "Tus-Resumable": "1.0.0",
          "Upload-Offset": "0",
          "Content-Type": "application/offset+octet-stream",
          "Content-Length": String(size),
        },
      });
      let bytes = 0;
      request.once("response", (res) => resolve({ response: res, sent: bytes }));
      request.once("error", reject);
      writeAll(request, source, (chunk) => hash.update(chunk)).then(
        (count) => {
          bytes = count;
          request.end();
        },
        (err: unknown) => {
          request.destroy(err as Error);
          reject(err as Error);
        },
      );
    });
    response.resume();
    await once(response, "end");
    const offset = Number(response.headers["upload-offset"]);
    if (response.statusCode !== 204 || offset !== size) {
      throw new Error(`tus PATCH responded with ${response.statusCode} with Upload-Offset ${offset} after ${sent} of ${size} bytes`);
    }
    const digest = hash.digest("hex");
    if (digest !== expectedSha256) throw new Error(`tus upload: the client hashed ${digest}, expected ${expectedSha256}`);
    return { url, transfer: { bytes: size, sha256: digest } };
  }

  async download(url: string, size: number, expectedSha256: string): Promise<Transfer> {
    const response = await this.request("GET", new URL(url), {});
    if (response.statusCode !== 200) {
      response.resume();
      throw new Error(`tus GET ${url} responded with ${response.statusCode}`);
    }
    return verifiedRead(response, size, expectedSha256, "tus download");
  }

  async delete(url: string): Promise<void> {
    const response = await this.request("DELETE", new URL(url), {});
    response.resume();
    if (response.statusCode !== 204) throw new Error(`tus DELETE ${url} responded with ${response.statusCode}`);
  }

  close(): void {
    this.agent.destroy();
  }

  private request(method: string, url: URL, headers: Record<string, string>): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const request = http.request(url, { method, agent: this.agent, headers: { "Tus-Resumable": "1.0.0", ...headers } }, resolve);
      request.once("error", reject);
      request.end();
    });
  }
}

/** Client of the `minio` package for one MinIO server on loopback. */
export function minioClient(endpoint: string, accessKey: string, secretKey: string): MinioClient {
  const url = new URL(endpoint);
  return new MinioClient({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: false,
    accessKey,
    secretKey,
    region: "us-east-1",
    pathStyle: true,
  });
}

/** Uploads with putObject (the package's own multipart upload); the sha256 is checked by the download. */
export async function minioUpload(client: MinioClient, bucket: string, key: string, source: ChunkSource, size: number, expectedSha256: string): Promise<Transfer> {
  const hash = createHash("sha256");
  const stream = Readable.from(
    (async function* () {
      for await (const chunk of source()) {
        hash.update(chunk);
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
  await client.putObject(bucket, key, stream, size);
  const digest = hash.digest("hex");
  if (digest !== expectedSha256) throw new Error(`MinIO upload: the client hashed ${digest}, expected ${expectedSha256}`);
  return { bytes: size, sha256: digest };
}

export async function minioDownload(client: MinioClient, bucket: string, key: string, size: number, expectedSha256: string): Promise<Transfer> {
  const stream = await client.getObject(bucket, key);
  return verifiedRead(stream, size, expectedSha256, "MinIO download");
}

/** Reads a whole stream, hashing it, and checks its size and sha256. `label` starts the error message. */
export async function verifiedRead(stream: AsyncIterable<Buffer> | NodeJS.ReadableStream, size: number, expectedSha256: string, label: string): Promise<Transfer> {
  const hash = createHash("sha256");
  let received = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    received += chunk.length;
  }
  const digest = hash.digest("hex");
  if (received !== size || digest !== expectedSha256) {
    throw new Error(`${label}: received ${received} bytes with sha256 ${digest}, expected ${size} bytes with ${expectedSha256}`);
  }
  return { bytes: received, sha256: digest };
}
