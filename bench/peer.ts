/*
 * Reference servers of the benchmark, each run in its own process so that
 * it competes for the two cores as Engram does:
 *
 *   node dist/bench/peer.js tcp DIR            raw TCP (see lib/tcp-protocol.ts)
 *   node dist/bench/peer.js tus DIR            @tus/server with @tus/file-store in DIR/files
 *   node dist/bench/peer.js bare-connect DIR FIXTURES
 *                                              Connect handler of GetObject and ListObjects
 *                                              that returns the fixed responses in FIXTURES
 *
 * Each listens on 127.0.0.1 with a port the system picks, prints {"port":N}
 * on stdout, and exits on SIGTERM or SIGINT.
 */
import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream, readFileSync, rmSync, type WriteStream } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo, type Socket } from "node:net";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";

import { fromBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { FileStore } from "@tus/file-store";
import { Server as TusServer } from "@tus/server";

import { GetObjectResponseSchema, ListObjectsResponseSchema, StorageService } from "../gen/engram/v1/storage_service_pb.js";
import { TCP_HEADER_BYTES, TCP_REPLY_BYTES, TcpOperation } from "./lib/tcp-protocol.js";

/** Fixed responses of the bare Connect handler, as base64 of the binary messages. */
export interface BareFixtures {
  readonly getObject: string;
  readonly listObjects: string;
}

const [kind, dirArgument, ...rest] = process.argv.slice(2);
if (kind === undefined || dirArgument === undefined) {
  process.stderr.write("usage: peer.js tcp|tus|bare-connect DIR [FIXTURES]\n");
  process.exit(2);
}
const dir: string = dirArgument;

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => process.exit(0));
}

let listening: net.Server | http.Server | http2.Http2Server;
switch (kind) {
  case "tcp":
    listening = net.createServer(serveTcp);
    break;
  case "tus":
    listening = createTusServer(join(dir, "files"));
    break;
  case "bare-connect":
    listening = createBareConnectServer(rest[0] ?? "");
    break;
  default:
    process.stderr.write(`unknown peer kind ${JSON.stringify(kind)}: use tcp, tus or bare-connect\n`);
    process.exit(2);
}
listening.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: (listening.address() as AddressInfo).port })}\n`);
});

/** Serves one raw TCP request on a connection. */
function serveTcp(socket: Socket): void {
  socket.on("error", () => socket.destroy());
  let header = Buffer.alloc(0);
  let operation = 0;
  let length = 0;
  let received = 0;
  let hash: Hash | undefined;
  let file: WriteStream | undefined;
  let path = "";

  const reply = (): void => {
    const message = Buffer.alloc(TCP_REPLY_BYTES);
    message.writeBigUInt64BE(BigInt(received), 0);
    hash?.digest().copy(message, 8);
    socket.end(message);
  };

  const onData = (chunk: Buffer): void => {
    let data = chunk;
    if (header.length < TCP_HEADER_BYTES) {
      const needed = TCP_HEADER_BYTES - header.length;
      header = Buffer.concat([header, data.subarray(0, needed)]);
      data = data.subarray(needed);
      if (header.length < TCP_HEADER_BYTES) return;
      operation = header.readUInt8(0);
      length = Number(header.readBigUInt64BE(1));
      if (operation === TcpOperation.uploadHashed) hash = createHash("sha256");
      if (operation === TcpOperation.uploadToDisk) {
        const target = join(dir, `upload-${process.hrtime.bigint()}.data`);
        // flush: fsync before the stream closes, as Engram does before it commits.
        file = createWriteStream(target, { flush: true });
        file.on("drain", () => socket.resume());
        file.once("close", () => {
          rmSync(target, { force: true });
          reply();
        });
      }
    }

    if (operation === TcpOperation.download) {
      path += data.toString("utf8");
      if (Buffer.byteLength(path) < length) return;
      socket.off("data", onData);
      void pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), socket).catch(() => socket.destroy());
      return;
    }

    received += data.length;
    hash?.update(data);
    if (file && !file.write(data)) socket.pause();
    if (received >= length) {
      socket.off("data", onData);
      if (file) file.end();
      else reply();
    }
  };
  socket.on("data", onData);
}

function createTusServer(directory: string): http.Server {
  const tus = new TusServer({ path: "/files", datastore: new FileStore({ directory }) });
  return http.createServer((req, res) => {
    tus.handle(req, res).catch((err: unknown) => {
      process.stderr.write(`tus peer: ${(err as Error).message}\n`);
      res.destroy();
    });
  });
}

function createBareConnectServer(fixturesPath: string): http2.Http2Server {
  const fixtures = JSON.parse(readFileSync(fixturesPath, "utf8")) as BareFixtures;
  const getObject = fromBinary(GetObjectResponseSchema, Buffer.from(fixtures.getObject, "base64"));
  const listObjects = fromBinary(ListObjectsResponseSchema, Buffer.from(fixtures.listObjects, "base64"));
  const handler = connectNodeAdapter({
    routes: (router) => {
      router.service(StorageService, {
        getObject: () => getObject,
        listObjects: () => listObjects,
      });
    },
    acceptCompression: [],
  });
  return http2.createServer(handler);
}
