/*
 * Interoperability with clients that share no code with Engram: a
 * @grpc/grpc-js client built from the .proto files at run time, grpcurl
 * and buf curl. grpcurl and buf curl get the schema by server reflection,
 * except the one buf curl call over HTTP/1.1, where reflection cannot run.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { crc32c } from "@node-rs/crc32";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { TEST_AUTHORIZATION, startTestEngram, type TestEngram } from "./support/engram.js";
import { MiB, random, sha256Hex } from "./support/objects.js";
import { findBuf, findGrpcurl, requireTool } from "./support/tools.js";

const execFileAsync = promisify(execFile);

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const PROTO_DIR = fileURLToPath(new URL("../proto", import.meta.url));
const COMMAND_TIMEOUT_MS = 30_000;

const BUCKET = "mnemos-models";
const KEY = "interop/random-5mib.bin";
const CONTENT = random(5 * MiB);
const CONTENT_SHA256 = createHash("sha256").update(CONTENT).digest();
const DEFAULT_BUCKETS = ["mnemos-artifacts", "mnemos-backups", "mnemos-logs", "mnemos-models"];
const STORAGE_METHODS = [
  "Upload",
  "Download",
  "GetObject",
  "ListObjects",
  "DeleteObject",
  "ListBuckets",
  "GetBucket",
  "GetCapabilities",
];

const grpcurl = requireTool("grpcurl", await findGrpcurl());
const buf = requireTool("buf", await findBuf());

// Messages as @grpc/proto-loader decodes them with the options below:
// int64 as decimal strings, enums as names, bytes as Buffers, and absent
// message fields as null.

interface ObjectChecksums {
  sha256: Buffer;
  crc32c?: number | null;
}

interface Timestamp {
  seconds: string;
  nanos: number;
}

interface StoredObject {
  bucket: string;
  key: string;
  generation: string;
  size: string;
  contentType: string;
  storageClass: string;
  checksums: ObjectChecksums | null;
  etag: string;
  createTime: Timestamp | null;
}

interface UploadRequest {
  spec?: { bucket: string; key: string };
  writeOffset?: string;
  data?: { content: Buffer };
  finishWrite?: boolean;
}

interface UploadResponse {
  object: StoredObject | null;
}

interface DownloadRequest {
  bucket: string;
  key: string;
  readOffset?: string;
  readLimit?: string;
}

interface DownloadResponse {
  metadata: StoredObject | null;
  contentRange: { start: string; end: string; completeLength: string } | null;
  objectChecksums: ObjectChecksums | null;
  data: { content: Buffer } | null;
}

interface GetObjectRequest {
  bucket: string;
  key: string;
}

interface GetObjectResponse {
  object: StoredObject | null;
}

/** The StorageService methods this file calls, as grpc-js generates them. */
interface StorageServiceClient extends grpc.Client {
  upload(callback: grpc.requestCallback<UploadResponse>): grpc.ClientWritableStream<UploadRequest>;
  download(request: DownloadRequest): grpc.ClientReadableStream<DownloadResponse>;
  getObject(request: GetObjectRequest, callback: grpc.requestCallback<GetObjectResponse>): grpc.ClientUnaryCall;
}

/**
 * Builds a grpc-js client from storage_service.proto. protobufjs 7.6 ships
 * google/protobuf/timestamp.proto and resolves it before it searches the
 * include directories, so `proto/` is the only directory needed.
 */
async function createStorageClient(address: string): Promise<StorageServiceClient> {
  const definition = await protoLoader.load("engram/v1/storage_service.proto", {
    includeDirs: [PROTO_DIR],
    longs: String,
    enums: String,
    defaults: true,
  });
  const service = definition["engram.v1.StorageService"] as grpc.ServiceDefinition;
  const Client = grpc.makeClientConstructor(service, "engram.v1.StorageService");
  // grpc-js refuses call credentials on an insecure channel, so an
  // interceptor adds the token to every call's metadata.
  const withToken: grpc.Interceptor = (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", TEST_AUTHORIZATION);
        next(metadata, listener);
      },
    });
  return new Client(address, grpc.credentials.createInsecure(), { interceptors: [withToken] }) as unknown as StorageServiceClient;
}

/** Uploads `content` in 1 MiB chunks: the spec, the chunks, then finish_write. */
function uploadObject(client: StorageServiceClient, bucket: string, key: string, content: Buffer): Promise<UploadResponse> {
  return new Promise((resolve, reject) => {
    const call = client.upload((error, response) => {
      if (error) reject(error);
      else if (response === undefined) reject(new Error("Upload returned neither an error nor a response"));
      else resolve(response);
    });

    call.write({ spec: { bucket, key } });
    for (let offset = 0; offset < content.length; offset += MiB) {
      call.write({ writeOffset: String(offset), data: { content: content.subarray(offset, offset + MiB) } });
    }
    call.write({ writeOffset: String(content.length), finishWrite: true });
    call.end();
  });
}

/** Collects every message of a Download call; rejects with the grpc-js ServiceError. */
async function downloadAll(client: StorageServiceClient, request: DownloadRequest): Promise<DownloadResponse[]> {
  const responses: DownloadResponse[] = [];
  for await (const response of client.download(request)) {
    responses.push(response as DownloadResponse);
  }
  return responses;
}

function getObject(client: StorageServiceClient, request: GetObjectRequest): Promise<GetObjectResponse> {
  return new Promise((resolve, reject) => {
    client.getObject(request, (error, response) => {
      if (error) reject(error);
      else if (response === undefined) reject(new Error("GetObject returned neither an error nor a response"));
      else resolve(response);
    });
  });
}

function dataChunks(responses: readonly DownloadResponse[]): Buffer[] {
  return responses.flatMap((response) => (response.data ? [response.data.content] : []));
}

/** Runs a command-line client; it fails the test on a non-zero exit or after 30 s. */
function run(file: string, args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  return execFileAsync(file, args, { cwd: REPO_ROOT, timeout: COMMAND_TIMEOUT_MS });
}

let engram: TestEngram;
let target: string;
let client: StorageServiceClient;
let uploaded: UploadResponse;

beforeAll(async () => {
  engram = await startTestEngram();
  target = `127.0.0.1:${engram.port}`;
  client = await createStorageClient(target);
  uploaded = await uploadObject(client, BUCKET, KEY, CONTENT);
});

afterAll(async () => {
  client?.close();
  await engram?.destroy();
});

describe("grpc-js client", () => {
  let responses: DownloadResponse[];

  beforeAll(async () => {
    responses = await downloadAll(client, { bucket: BUCKET, key: KEY });
  });

  it("upload returns object", () => {
    const object = uploaded.object;

    expect(object?.bucket).toBe(BUCKET);
    expect(object?.key).toBe(KEY);
    expect(object?.size).toBe(String(CONTENT.length));
    expect(object?.generation).toMatch(/^[1-9][0-9]*$/);
    expect(object?.checksums?.sha256).toEqual(CONTENT_SHA256);
    expect(object?.etag).toBe(`"${sha256Hex(CONTENT)}"`);
  });

  it("download returns uploaded bytes", () => {
    const content = Buffer.concat(dataChunks(responses));

    expect(content.length).toBe(CONTENT.length);
    expect(sha256Hex(content)).toBe(sha256Hex(CONTENT));
  });

  it("download first message has metadata", () => {
    const metadata = responses[0]?.metadata;

    expect(metadata?.bucket).toBe(BUCKET);
    expect(metadata?.key).toBe(KEY);
    expect(metadata?.size).toBe(String(CONTENT.length));
    expect(metadata?.generation).toBe(uploaded.object?.generation);
    expect(metadata?.contentType).toBe("application/octet-stream");
  });

  it("download first message has range", () => {
    expect(responses[0]?.contentRange).toEqual({
      start: "0",
      end: String(CONTENT.length),
      completeLength: String(CONTENT.length),
    });
  });

  it("download first message has checksums", () => {
    const checksums = responses[0]?.objectChecksums;

    expect(checksums?.sha256).toEqual(CONTENT_SHA256);
    expect(checksums?.crc32c).toBe(crc32c(CONTENT) >>> 0);
  });

  it("download sends metadata only first", () => {
    for (const response of responses.slice(1)) {
      expect(response.metadata).toBeNull();
      expect(response.contentRange).toBeNull();
      expect(response.objectChecksums).toBeNull();
    }
  });

  it("download chunks are at most 1 MiB", () => {
    const chunks = dataChunks(responses);

    expect(chunks.length).toBeGreaterThanOrEqual(5);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(MiB);
    }
  });

  it("download range returns slice", async () => {
    const start = MiB + 7;
    const ranged = await downloadAll(client, { bucket: BUCKET, key: KEY, readOffset: String(start), readLimit: "1000" });

    expect(ranged[0]?.contentRange).toEqual({
      start: String(start),
      end: String(start + 1000),
      completeLength: String(CONTENT.length),
    });
    expect(Buffer.concat(dataChunks(ranged))).toEqual(CONTENT.subarray(start, start + 1000));
  });

  it("download of missing key is NOT_FOUND", async () => {
    const error = await downloadAll(client, { bucket: BUCKET, key: "interop/missing.bin" }).then(
      () => undefined,
      (err: unknown) => err as grpc.ServiceError,
    );

    expect(error).toBeInstanceOf(Error);
    expect(error?.code).toBe(grpc.status.NOT_FOUND);
    expect(error?.code).toBe(5);
    // grpc-js decodes grpc-message with decodeURI, which would leave "%2F"
    // and "%3A" in place had the server escaped them.
    expect(error?.details).toBe(`object ${BUCKET}/interop/missing.bin not found: check the key with ListObjects`);
  });

  it("getObject returns uploaded object", async () => {
    const { object } = await getObject(client, { bucket: BUCKET, key: KEY });

    expect(object?.bucket).toBe(BUCKET);
    expect(object?.key).toBe(KEY);
    expect(object?.size).toBe(String(CONTENT.length));
    expect(object?.generation).toBe(uploaded.object?.generation);
    expect(object?.checksums?.sha256).toEqual(CONTENT_SHA256);
    expect(object?.storageClass).toBe("STORAGE_CLASS_STANDARD");
    expect(Number(object?.createTime?.seconds)).toBeGreaterThan(0);
  });
});

describe.skipIf(grpcurl.skip)("grpcurl", () => {
  it("list names services", async () => {
    const { stdout } = await run(grpcurl.path(), ["-plaintext", target, "list"]);
    const services = stdout.trim().split("\n");

    expect(services).toContain("engram.v1.StorageService");
    expect(services).toContain("grpc.health.v1.Health");
    expect(services).toContain("grpc.reflection.v1.ServerReflection");
    expect(services).toContain("grpc.reflection.v1alpha.ServerReflection");
  });

  it("health check prints SERVING", async () => {
    const { stdout } = await run(grpcurl.path(), ["-plaintext", target, "grpc.health.v1.Health/Check"]);

    expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
  });

  it("GetObject prints object", async () => {
    const request = JSON.stringify({ bucket: BUCKET, key: KEY });
    const { stdout } = await run(grpcurl.path(), ["-plaintext", "-H", `authorization: ${TEST_AUTHORIZATION}`, "-d", request, target, "engram.v1.StorageService/GetObject"]);
    const { object } = JSON.parse(stdout) as { object: Record<string, unknown> & { checksums: { sha256: string } } };

    expect(object.bucket).toBe(BUCKET);
    expect(object.key).toBe(KEY);
    expect(object.size).toBe(String(CONTENT.length));
    expect(object.generation).toBe(uploaded.object?.generation);
    expect(object.etag).toBe(`"${sha256Hex(CONTENT)}"`);
    expect(object.checksums.sha256).toBe(CONTENT_SHA256.toString("base64"));
  });

  it("ListBuckets prints default buckets", async () => {
    const { stdout } = await run(grpcurl.path(), ["-plaintext", "-H", `authorization: ${TEST_AUTHORIZATION}`, target, "engram.v1.StorageService/ListBuckets"]);
    const { buckets } = JSON.parse(stdout) as { buckets: { name: string }[] };

    expect(buckets.map((bucket) => bucket.name).sort()).toEqual(DEFAULT_BUCKETS);
  });
});

describe.skipIf(buf.skip)("buf curl", () => {
  const grpcFlags = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"];

  it("list-methods names StorageService methods", async () => {
    const { stdout } = await run(buf.path(), [...grpcFlags, "--list-methods", `http://${target}`]);
    const methods = stdout.trim().split("\n");

    for (const method of STORAGE_METHODS) {
      expect(methods).toContain(`engram.v1.StorageService/${method}`);
    }
    expect(methods).toContain("grpc.health.v1.Health/Check");
  });

  it("health check returns SERVING", async () => {
    const { stdout } = await run(buf.path(), [...grpcFlags, `http://${target}/grpc.health.v1.Health/Check`]);

    expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
  });

  it("GetCapabilities returns limits", async () => {
    const { stdout } = await run(buf.path(), [...grpcFlags, "-H", `authorization: ${TEST_AUTHORIZATION}`, `http://${target}/engram.v1.StorageService/GetCapabilities`]);
    const capabilities = JSON.parse(stdout) as Record<string, unknown>;

    expect(capabilities.maxListPageSize).toBe(1000);
    expect(capabilities.maxDownloadChunkBytes).toBe(String(MiB));
  });

  it("Connect over HTTP/1.1 lists buckets", async () => {
    // buf curl switches to HTTP/2 whenever it uses reflection, so this call
    // reads the schema from the repository to stay on HTTP/1.1.
    const { stdout, stderr } = await run(buf.path(), [
      "curl",
      "--protocol",
      "connect",
      "--schema",
      REPO_ROOT,
      "--verbose",
      "-H",
      `authorization: ${TEST_AUTHORIZATION}`,
      `http://${target}/engram.v1.StorageService/ListBuckets`,
    ]);
    const { buckets } = JSON.parse(stdout) as { buckets: { name: string }[] };

    expect(stderr).toContain("HTTP/1.1 200 OK");
    expect(buckets.map((bucket) => bucket.name).sort()).toEqual(DEFAULT_BUCKETS);
  });
});
