import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";

import {
  create,
  createFileRegistry,
  fromBinary,
  type DescFile,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_descriptor,
  file_google_protobuf_timestamp,
} from "@bufbuild/protobuf/wkt";
import { Code, createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { file_engram_v1_object } from "../gen/engram/v1/object_pb.js";
import { file_engram_v1_storage_service, StorageService } from "../gen/engram/v1/storage_service_pb.js";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.js";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { HealthStatus, registerHealth } from "../src/api/health.js";
import { registerReflection } from "../src/api/reflection.js";
import { findGrpcurl, requireTool } from "./support/tools.js";

const execFileAsync = promisify(execFile);
const grpcurl = requireTool("grpcurl", await findGrpcurl());
const BUF = new URL("../node_modules/.bin/buf", import.meta.url).pathname;

/** Builds a DescFile from a descriptor, resolving its imports against `imports`. */
function buildFile(init: MessageInitShape<typeof FileDescriptorProtoSchema>, imports: DescFile[]): DescFile {
  const proto = create(FileDescriptorProtoSchema, init);
  const registry = createFileRegistry(proto, (name) =>
    imports.find((file) => file.proto.name === name),
  );
  const file = registry.getFile(proto.name);
  if (!file) {
    throw new Error(`${proto.name} missing from its own registry`);
  }
  return file;
}

/** A proto3 file declaring a custom option, so the extension requests have something to find. */
const optionsFile = buildFile(
  {
    name: "test/options.proto",
    package: "test",
    dependency: ["google/protobuf/descriptor.proto"],
    syntax: "proto3",
    extension: [
      {
        name: "label",
        number: 50001,
        label: FieldDescriptorProto_Label.OPTIONAL,
        type: FieldDescriptorProto_Type.STRING,
        extendee: ".google.protobuf.MessageOptions",
        jsonName: "label",
      },
    ],
  },
  [file_google_protobuf_descriptor],
);

/** A file that reaches timestamp.proto both directly and through object.proto. */
const diamondFile = buildFile(
  {
    name: "test/diamond.proto",
    package: "test",
    dependency: ["engram/v1/object.proto", "google/protobuf/timestamp.proto"],
    syntax: "proto3",
    messageType: [
      {
        name: "Snapshot",
        field: [
          {
            name: "object",
            number: 1,
            label: FieldDescriptorProto_Label.OPTIONAL,
            type: FieldDescriptorProto_Type.MESSAGE,
            typeName: ".engram.v1.Object",
            jsonName: "object",
          },
          {
            name: "taken_at",
            number: 2,
            label: FieldDescriptorProto_Label.OPTIONAL,
            type: FieldDescriptorProto_Type.MESSAGE,
            typeName: ".google.protobuf.Timestamp",
            jsonName: "takenAt",
          },
        ],
      },
    ],
  },
  [file_engram_v1_object, file_google_protobuf_timestamp],
);

interface TestServer {
  port: number;
  close(): Promise<void>;
}

async function startServer(routes: (router: ConnectRouter) => void): Promise<TestServer> {
  const server = http2.createServer(connectNodeAdapter({ routes }));
  // Clients keep HTTP/2 sessions open, and server.close() waits for them.
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    port,
    // Idempotent, so a test may close the server early and afterEach may close it again.
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        for (const session of sessions) {
          session.destroy();
        }
        server.close((error) => (error ? reject(error) : resolve()));
      });
      return closing;
    },
  };
}

/** Creates an async iterable of requests that the test feeds one at a time. */
function createRequestQueue<T>(): { requests: AsyncIterable<T>; push(item: T): void; end(): void } {
  const items: T[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  async function* iterate(): AsyncGenerator<T> {
    for (;;) {
      const item = items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (ended) {
        return;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  }
  return {
    requests: iterate(),
    push(item) {
      items.push(item);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
  };
}

/** Decodes the file names of a descriptor response, failing the test on any other response. */
function fileNames(response: v1.ServerReflectionResponse | undefined): string[] {
  expect(response?.messageResponse.case).toBe("fileDescriptorResponse");
  if (response?.messageResponse.case !== "fileDescriptorResponse") {
    return [];
  }
  return response.messageResponse.value.fileDescriptorProto.map(
    (bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name,
  );
}

describe("server reflection", () => {
  let server: TestServer;
  let client: ReturnType<typeof createClient<typeof v1.ServerReflection>>;
  let alphaClient: ReturnType<typeof createClient<typeof v1alpha.ServerReflection>>;

  beforeAll(async () => {
    const files = [
      file_engram_v1_storage_service,
      file_grpc_health_v1_health,
      v1.file_grpc_reflection_v1_reflection,
      v1alpha.file_grpc_reflection_v1alpha_reflection,
      optionsFile,
      diamondFile,
    ];
    server = await startServer((router) => {
      registerReflection(router, files);
      registerHealth(router, new HealthStatus());
    });
    // Connect-Node 2.x has no httpVersion option here, because its gRPC transport always uses HTTP/2.
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.port}` });
    client = createClient(v1.ServerReflection, transport);
    alphaClient = createClient(v1alpha.ServerReflection, transport);
  });

  afterAll(async () => {
    await server?.close();
  });

  /** Sends the requests on one stream and collects every response. */
  async function exchange(
    ...requests: v1.ServerReflectionRequest["messageRequest"][]
  ): Promise<v1.ServerReflectionResponse[]> {
    async function* send() {
      for (const messageRequest of requests) {
        yield create(v1.ServerReflectionRequestSchema, { host: "localhost", messageRequest });
      }
    }
    const responses: v1.ServerReflectionResponse[] = [];
    for await (const response of client.serverReflectionInfo(send())) {
      responses.push(response);
    }
    return responses;
  }

  it("list_services names each service once", async () => {
    const [response] = await exchange({ case: "listServices", value: "" });

    expect(response?.messageResponse.case).toBe("listServicesResponse");
    const names =
      response?.messageResponse.case === "listServicesResponse"
        ? response.messageResponse.value.service.map((service) => service.name)
        : [];
    expect(names.sort()).toEqual([
      "engram.v1.StorageService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });

  it("file_by_filename includes dependencies once", async () => {
    const [response] = await exchange({
      case: "fileByFilename",
      value: "engram/v1/storage_service.proto",
    });

    expect(fileNames(response)).toEqual([
      "engram/v1/storage_service.proto",
      "engram/v1/object.proto",
      "google/protobuf/timestamp.proto",
      "google/protobuf/field_mask.proto",
    ]);
  });

  it("shared dependency is sent once", async () => {
    const [response] = await exchange({ case: "fileContainingSymbol", value: "test.Snapshot.taken_at" });

    expect(fileNames(response)).toEqual([
      "test/diamond.proto",
      "engram/v1/object.proto",
      "google/protobuf/timestamp.proto",
    ]);
  });

  it("file descriptor bytes decode to the file", async () => {
    const [response] = await exchange({ case: "fileByFilename", value: "grpc/health/v1/health.proto" });

    expect(response?.messageResponse.case).toBe("fileDescriptorResponse");
    if (response?.messageResponse.case !== "fileDescriptorResponse") {
      return;
    }
    const [bytes] = response.messageResponse.value.fileDescriptorProto;
    expect(bytes).toBeDefined();
    const proto = fromBinary(FileDescriptorProtoSchema, bytes ?? new Uint8Array());
    expect(proto.package).toBe("grpc.health.v1");
    expect(proto.service.map((service) => service.name)).toEqual(["Health"]);
  });

  it("file_containing_symbol finds a service", async () => {
    const [response] = await exchange({
      case: "fileContainingSymbol",
      value: "engram.v1.StorageService",
    });

    expect(fileNames(response)[0]).toBe("engram/v1/storage_service.proto");
  });

  it("file_containing_symbol finds every method", async () => {
    const responses = await exchange(
      ...StorageService.methods.map((method) => ({
        case: "fileContainingSymbol" as const,
        value: `engram.v1.StorageService.${method.name}`,
      })),
    );

    expect(responses).toHaveLength(StorageService.methods.length);
    for (const response of responses) {
      expect(fileNames(response)[0]).toBe("engram/v1/storage_service.proto");
    }
  });

  it("file_containing_symbol finds members", async () => {
    const symbols: [string, string][] = [
      ["engram.v1.Object", "engram/v1/object.proto"],
      ["engram.v1.Object.bucket", "engram/v1/object.proto"],
      ["engram.v1.StorageClass", "engram/v1/object.proto"],
      ["engram.v1.STORAGE_CLASS_STANDARD", "engram/v1/object.proto"],
      ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
      ["grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"],
      ["grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto"],
      ["grpc.reflection.v1.ServerReflectionRequest.message_request", "grpc/reflection/v1/reflection.proto"],
    ];

    const responses = await exchange(
      ...symbols.map(([symbol]) => ({ case: "fileContainingSymbol" as const, value: symbol })),
    );

    expect(responses.map((response) => fileNames(response)[0])).toEqual(
      symbols.map(([, file]) => file),
    );
  });

  it("unknown symbol gets NOT_FOUND, stream continues", async () => {
    const responses = await exchange(
      { case: "fileContainingSymbol", value: "engram.v1.NoSuchThing" },
      { case: "listServices", value: "" },
    );

    expect(responses).toHaveLength(2);
    const [error, list] = responses;
    expect(error?.messageResponse.case).toBe("errorResponse");
    if (error?.messageResponse.case === "errorResponse") {
      expect(error.messageResponse.value.errorCode).toBe(Code.NotFound);
      expect(error.messageResponse.value.errorCode).toBe(5);
      expect(error.messageResponse.value.errorMessage).toContain("engram.v1.NoSuchThing");
    }
    expect(list?.messageResponse.case).toBe("listServicesResponse");
  });

  it("unknown file gets NOT_FOUND", async () => {
    const [response] = await exchange({ case: "fileByFilename", value: "engram/v1/missing.proto" });

    expect(response?.messageResponse.case).toBe("errorResponse");
    if (response?.messageResponse.case === "errorResponse") {
      expect(response.messageResponse.value.errorCode).toBe(Code.NotFound);
      expect(response.messageResponse.value.errorMessage).toContain("engram/v1/missing.proto");
    }
  });

  it("response echoes host and request", async () => {
    const [response] = await exchange({ case: "listServices", value: "*" });

    expect(response?.validHost).toBe("localhost");
    expect(response?.originalRequest?.host).toBe("localhost");
    expect(response?.originalRequest?.messageRequest).toEqual({ case: "listServices", value: "*" });
  });

  it("empty request gets INVALID_ARGUMENT", async () => {
    const [response] = await exchange({ case: undefined });

    expect(response?.messageResponse.case).toBe("errorResponse");
    if (response?.messageResponse.case === "errorResponse") {
      expect(response.messageResponse.value.errorCode).toBe(Code.InvalidArgument);
    }
  });

  it("file_containing_extension finds the extension", async () => {
    const responses = await exchange(
      {
        case: "fileContainingExtension",
        value: create(v1.ExtensionRequestSchema, {
          containingType: "google.protobuf.MessageOptions",
          extensionNumber: 50001,
        }),
      },
      {
        case: "fileContainingExtension",
        value: create(v1.ExtensionRequestSchema, {
          containingType: "google.protobuf.MessageOptions",
          extensionNumber: 50002,
        }),
      },
    );

    expect(fileNames(responses[0])).toEqual([
      "test/options.proto",
      "google/protobuf/descriptor.proto",
    ]);
    expect(responses[1]?.messageResponse.case).toBe("errorResponse");
    if (responses[1]?.messageResponse.case === "errorResponse") {
      expect(responses[1].messageResponse.value.errorCode).toBe(Code.NotFound);
      expect(responses[1].messageResponse.value.errorMessage).toContain("50002");
    }
  });

  it("all_extension_numbers_of_type lists numbers", async () => {
    const [options, object, missing] = await exchange(
      { case: "allExtensionNumbersOfType", value: "google.protobuf.MessageOptions" },
      { case: "allExtensionNumbersOfType", value: "engram.v1.Object" },
      { case: "allExtensionNumbersOfType", value: "engram.v1.Missing" },
    );

    expect(options?.messageResponse).toEqual({
      case: "allExtensionNumbersResponse",
      value: expect.objectContaining({
        baseTypeName: "google.protobuf.MessageOptions",
        extensionNumber: [50001],
      }),
    });
    expect(object?.messageResponse).toEqual({
      case: "allExtensionNumbersResponse",
      value: expect.objectContaining({ baseTypeName: "engram.v1.Object", extensionNumber: [] }),
    });
    expect(missing?.messageResponse.case).toBe("errorResponse");
  });

  it("stream answers each request before the next", async () => {
    const queue = createRequestQueue<v1.ServerReflectionRequest>();
    const responses = client.serverReflectionInfo(queue.requests)[Symbol.asyncIterator]();

    queue.push(create(v1.ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } }));
    const first = await responses.next();
    expect(first.value?.messageResponse.case).toBe("listServicesResponse");

    queue.push(
      create(v1.ServerReflectionRequestSchema, {
        messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.Health.Watch" },
      }),
    );
    const second = await responses.next();
    expect(second.done).toBe(false);
    expect(fileNames(second.value)).toEqual(["grpc/health/v1/health.proto"]);

    queue.end();
    const last = await responses.next();
    expect(last.done).toBe(true);
  });

  it("v1alpha serves the same data", async () => {
    async function* send() {
      yield create(v1alpha.ServerReflectionRequestSchema, {
        messageRequest: { case: "fileContainingSymbol", value: "engram.v1.StorageService.Download" },
      });
      yield create(v1alpha.ServerReflectionRequestSchema, {
        messageRequest: { case: "fileContainingSymbol", value: "engram.v1.Nope" },
      });
    }
    const responses: v1alpha.ServerReflectionResponse[] = [];
    for await (const response of alphaClient.serverReflectionInfo(send())) {
      responses.push(response);
    }

    expect(responses).toHaveLength(2);
    expect(responses[0]?.messageResponse.case).toBe("fileDescriptorResponse");
    if (responses[0]?.messageResponse.case === "fileDescriptorResponse") {
      const [bytes] = responses[0].messageResponse.value.fileDescriptorProto;
      expect(fromBinary(FileDescriptorProtoSchema, bytes ?? new Uint8Array()).name).toBe(
        "engram/v1/storage_service.proto",
      );
    }
    expect(responses[1]?.messageResponse.case).toBe("errorResponse");
  });

  it.skipIf(grpcurl.skip)("grpcurl lists and describes", async () => {
    const grpcurlPath = grpcurl.path();
    const target = `127.0.0.1:${server.port}`;

    const list = await execFileAsync(grpcurlPath, ["-plaintext", target, "list"], { timeout: 30_000 });
    expect(list.stdout).toContain("engram.v1.StorageService");
    expect(list.stdout).toContain("grpc.health.v1.Health");
    expect(list.stdout).toContain("grpc.reflection.v1.ServerReflection");

    const describeOutput = await execFileAsync(
      grpcurlPath,
      ["-plaintext", target, "describe", "engram.v1.StorageService"],
      { timeout: 30_000 },
    );
    expect(describeOutput.stdout).toContain("engram.v1.StorageService is a service");
    for (const method of StorageService.methods) {
      expect(describeOutput.stdout).toContain(`rpc ${method.name} (`);
    }
    expect(describeOutput.stdout).toContain("rpc Upload ( stream .engram.v1.UploadRequest )");
  });

  it.skipIf(!existsSync(BUF))("buf curl lists methods", async () => {
    const { stdout } = await execFileAsync(
      BUF,
      [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--list-methods",
        `http://127.0.0.1:${server.port}`,
      ],
      { timeout: 60_000 },
    );

    for (const method of StorageService.methods) {
      expect(stdout).toContain(`engram.v1.StorageService/${method.name}`);
    }
    expect(stdout).toContain("grpc.health.v1.Health/Check");
  });
});
