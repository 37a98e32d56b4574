import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, rmSync } from "node:fs";
import { rename, rm, stat as statFile } from "node:fs/promises";
import { basename } from "node:path";
import { pipeline } from "node:stream/promises";
import { Writable } from "node:stream";

import { toJson, type MessageInitShape } from "@bufbuild/protobuf";

import { ObjectSchema, type Object$ as ObjectMessage } from "../../gen/engram/v1/object_pb.js";
import type { UploadRequestSchema } from "../../gen/engram/v1/storage_service_pb.js";
import { crc32cOf } from "../service/checksum.js";
import { UsageError, createStorageClient, parseObjectPath, type Server } from "./client.js";

/** Upload chunk size; the server accepts up to 4 MiB by default. */
const UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024;

type Print = (line: string) => void;

/** Uploads a file; every chunk carries its CRC32C so corruption in transit fails the upload. */
export async function put(server: Server, file: string, target: string, contentType: string | undefined, print: Print): Promise<void> {
  const { bucket, key } = parseObjectPath(target, { keyRequired: true });
  const client = createStorageClient(server);
  const size = await readableFileSize(file);
  const sha256 = createHash("sha256");

  async function* requests(): AsyncGenerator<MessageInitShape<typeof UploadRequestSchema>> {
    yield { spec: { bucket, key, size: BigInt(size), ...(contentType ? { contentType } : {}) } };
    let offset = 0;
    for await (const chunk of createReadStream(file, { highWaterMark: UPLOAD_CHUNK_BYTES }) as AsyncIterable<Buffer>) {
      sha256.update(chunk);
      yield { writeOffset: BigInt(offset), data: { content: chunk, crc32c: crc32cOf(chunk) } };
      offset += chunk.length;
    }
    yield { writeOffset: BigInt(offset), finishWrite: true };
  }

  const { object } = await client.upload(requests());
  const local = sha256.digest("hex");
  const stored = hex(object?.checksums?.sha256);
  if (stored !== local) {
    throw new Error(`sha256 of the stored object is ${stored} but the file has ${local}: upload it again`);
  }
  print(`uploaded ${bucket}/${key}: ${object!.size} bytes, generation ${object!.generation}, sha256 ${stored}`);
}

/** Parses a --generation option: undefined gives 0n, the live version. */
export function parseGeneration(value: string | undefined): bigint {
  if (value === undefined) return 0n;
  if (!/^[1-9][0-9]*$/.test(value)) {
    throw new UsageError(`--generation ${JSON.stringify(value)} is invalid: give a generation as ls --versions prints it`);
  }
  return BigInt(value);
}

/** Downloads an object (the live version, or a given generation) to a file or stdout ("-"), verifying its sha256. */
export async function get(server: Server, source: string, file: string | undefined, generation: bigint, print: Print, stdout: NodeJS.WritableStream): Promise<void> {
  const { bucket, key } = parseObjectPath(source, { keyRequired: true });
  const client = createStorageClient(server);
  const target = file ?? basename(key);
  const toStdout = target === "-";
  // Write beside the target and rename at the end, so a failed download
  // never leaves a partial file under the real name.
  const partial = `${target}.engram-partial`;
  const sha256 = createHash("sha256");
  let expected = "";
  let size = 0n;

  async function* content(): AsyncGenerator<Uint8Array> {
    for await (const response of client.download({ bucket, key, generation })) {
      if (response.objectChecksums) {
        expected = hex(response.objectChecksums.sha256);
        size = response.metadata?.size ?? 0n;
      }
      if (response.data) {
        sha256.update(response.data.content);
        yield response.data.content;
      }
    }
  }

  const sink = toStdout ? forwardTo(stdout) : createWriteStream(partial);
  // Ctrl-C removes the partial file before the process ends.
  const onInterrupt = (): void => {
    if (!toStdout) rmSync(partial, { force: true });
    process.exit(130);
  };
  process.once("SIGINT", onInterrupt);
  try {
    await pipeline(content, sink);
    const actual = sha256.digest("hex");
    if (actual !== expected) {
      throw new Error(`sha256 of the downloaded bytes is ${actual} but the object has ${expected}: download it again`);
    }
    if (!toStdout) await rename(partial, target);
  } catch (err) {
    if (!toStdout) await rm(partial, { force: true });
    throw err;
  } finally {
    process.off("SIGINT", onInterrupt);
  }
  if (!toStdout) print(`downloaded ${bucket}/${key} to ${target}: ${size} bytes, sha256 ${expected}`);
}

export async function list(server: Server, path: string, print: Print, recursive: boolean): Promise<void> {
  const { bucket, key: prefix } = parseObjectPath(path, { keyRequired: false });
  const client = createStorageClient(server);
  let pageToken = "";
  do {
    const page = await client.listObjects({ bucket, prefix, delimiter: recursive ? "" : "/", pageToken });
    for (const commonPrefix of page.prefixes) {
      print(`${"PRE".padStart(12)}  ${"".padEnd(24)}  ${commonPrefix}`);
    }
    for (const object of page.objects) {
      const created = object.createTime ? new Date(Number(object.createTime.seconds) * 1000).toISOString() : "";
      print(`${object.size.toString().padStart(12)}  ${created.padEnd(24)}  ${object.key}`);
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
}

export async function stat(server: Server, path: string, generation: bigint, print: Print): Promise<void> {
  const { bucket, key } = parseObjectPath(path, { keyRequired: true });
  const { object } = await createStorageClient(server).getObject({ bucket, key, generation });
  print(JSON.stringify(objectToJson(object!), null, 2));
}

/** Deletes the live version, or with a generation removes that version or delete marker for good. */
export async function remove(server: Server, path: string, generation: bigint, print: Print): Promise<void> {
  const { bucket, key } = parseObjectPath(path, { keyRequired: true });
  const { deleteMarkerGeneration } = await createStorageClient(server).deleteObject({ bucket, key, generation });
  if (generation !== 0n) {
    print(`deleted ${bucket}/${key} generation ${generation}`);
  } else if (deleteMarkerGeneration > 0n) {
    print(`deleted ${bucket}/${key}: delete marker generation ${deleteMarkerGeneration}`);
  } else {
    print(`deleted ${bucket}/${key}`);
  }
}

export async function buckets(server: Server, print: Print): Promise<void> {
  const { buckets } = await createStorageClient(server).listBuckets({});
  for (const bucket of buckets) print(bucket.name);
}

/** Returns the size of a regular file, or fails with a message naming it. */
async function readableFileSize(file: string): Promise<number> {
  let info;
  try {
    info = await statFile(file);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message;
    throw new Error(`cannot read ${file}: ${reason}`);
  }
  if (!info.isFile()) {
    throw new Error(`cannot upload ${file}: it is not a regular file`);
  }
  return info.size;
}

/** JSON of an object with the sha256 in hex, as sha256sum prints it. */
function objectToJson(object: ObjectMessage): unknown {
  const json = toJson(ObjectSchema, object) as Record<string, unknown>;
  const checksums = (json.checksums ?? {}) as Record<string, unknown>;
  json.checksums = { ...checksums, sha256: hex(object.checksums?.sha256) };
  return json;
}

function hex(bytes: Uint8Array | undefined): string {
  return bytes ? Buffer.from(bytes).toString("hex") : "";
}

/** Writes to a stream the pipeline must not end, such as stdout. */
function forwardTo(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk, _encoding, done) {
      if (out.write(chunk)) done();
      else out.once("drain", () => done());
    },
  });
}
