/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), which Connect-ES
 * does not ship. grpcurl and `buf curl` use it to list services and to fetch
 * descriptors without a local copy of the .proto files.
 */
import {
  create,
  createFileRegistry,
  toBinary,
  type DescFile,
  type DescMessage,
  type FileRegistry,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";

import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** The `message_request` oneof, in a shape that both protocol versions match. */
type MessageRequest =
  | {
      case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType" | "listServices";
      value: string;
    }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: undefined; value?: undefined };

/** The `message_response` oneof, as an init shape that both protocol versions accept. */
type MessageResponse =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/**
 * Registers the gRPC server reflection service, versions v1 and v1alpha, on
 * the router.
 *
 * `list_services` returns the services declared in `files` plus the two
 * reflection services. Descriptor lookups also cover the transitive imports of
 * `files`. An unknown file, symbol or extension gets an `error_response` with
 * code NOT_FOUND (5), and the stream stays open for the next request.
 */
export function registerReflection(router: ConnectRouter, files: readonly DescFile[]): void {
  const index = new ReflectionIndex([
    ...files,
    v1.file_grpc_reflection_v1_reflection,
    v1alpha.file_grpc_reflection_v1alpha_reflection,
  ]);

  // The two versions differ only in their package name, so each handler
  // copies the request fields into its own response type.
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield create(v1.ServerReflectionResponseSchema, {
          validHost: request.host,
          originalRequest: request,
          messageResponse: index.respond(request.messageRequest),
        });
      }
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield create(v1alpha.ServerReflectionResponseSchema, {
          validHost: request.host,
          originalRequest: request,
          messageResponse: index.respond(request.messageRequest),
        });
      }
    },
  });
}

/** Descriptor lookups behind the reflection protocol, built once at registration. */
class ReflectionIndex {
  private readonly registry: FileRegistry;
  private readonly serviceNames: string[];
  /** Fully qualified symbol name to the file that declares it. */
  private readonly symbolFiles = new Map<string, DescFile>();
  /** Serialized FileDescriptorProto by file name, such as "engram/v1/object.proto". */
  private readonly fileBytes = new Map<string, Uint8Array>();

  constructor(files: readonly DescFile[]) {
    const ordered = dependenciesFirst(files);
    this.registry = createFileRegistry(
      create(FileDescriptorSetSchema, { file: ordered.map((file) => file.proto) }),
    );

    // List services from the files passed in only, because their imports may
    // declare services that this server does not implement.
    const names = new Set<string>();
    for (const file of files) {
      for (const service of file.services) {
        names.add(service.typeName);
      }
    }
    this.serviceNames = [...names];

    for (const file of this.registry.files) {
      this.fileBytes.set(file.proto.name, toBinary(FileDescriptorProtoSchema, file.proto));
    }
    this.indexSymbols();
  }

  /** Computes the response for one request of the stream. */
  respond(request: MessageRequest): MessageResponse {
    switch (request.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: { service: this.serviceNames.map((name) => ({ name })) },
        };
      case "fileByFilename": {
        const file = this.registry.getFile(request.value);
        return file
          ? this.fileResponse(file)
          : notFound(`file "${request.value}" not found`);
      }
      case "fileContainingSymbol": {
        const file = this.symbolFiles.get(request.value);
        return file
          ? this.fileResponse(file)
          : notFound(`symbol "${request.value}" not found`);
      }
      case "fileContainingExtension":
        return this.extensionFile(request.value.containingType, request.value.extensionNumber);
      case "allExtensionNumbersOfType":
        return this.extensionNumbers(request.value);
      case undefined:
        return {
          case: "errorResponse",
          value: {
            errorCode: Code.InvalidArgument,
            errorMessage: "invalid request: message_request is not set",
          },
        };
    }
  }

  /**
   * Records every name that `file_containing_symbol` accepts: types, services,
   * methods, fields, oneofs and enum values, as grpc-go resolves them.
   */
  private indexSymbols(): void {
    // The registry iterates nested types too.
    for (const desc of this.registry) {
      this.symbolFiles.set(desc.typeName, desc.file);
      switch (desc.kind) {
        case "message":
          for (const field of desc.fields) {
            this.symbolFiles.set(`${desc.typeName}.${field.name}`, desc.file);
          }
          for (const oneof of desc.oneofs) {
            this.symbolFiles.set(`${desc.typeName}.${oneof.name}`, desc.file);
          }
          break;
        case "enum": {
          // Protobuf scopes enum values as siblings of their enum, so
          // engram.v1.StorageClass declares engram.v1.STORAGE_CLASS_STANDARD.
          const scope = desc.typeName.slice(0, desc.typeName.lastIndexOf(".") + 1);
          for (const value of desc.values) {
            this.symbolFiles.set(scope + value.name, desc.file);
          }
          break;
        }
        case "service":
          for (const method of desc.methods) {
            this.symbolFiles.set(`${desc.typeName}.${method.name}`, desc.file);
          }
          break;
        case "extension":
          break;
      }
    }
  }

  /** Builds a descriptor response: the file first, then each transitive import once. */
  private fileResponse(file: DescFile): MessageResponse {
    const seen = new Set<string>();
    const descriptors: Uint8Array[] = [];
    const visit = (current: DescFile): void => {
      if (seen.has(current.proto.name)) {
        return;
      }
      seen.add(current.proto.name);
      const bytes = this.fileBytes.get(current.proto.name);
      if (bytes) {
        descriptors.push(bytes);
      }
      for (const dependency of current.dependencies) {
        visit(dependency);
      }
    };
    visit(file);
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: descriptors } };
  }

  private extensionFile(containingType: string, extensionNumber: number): MessageResponse {
    const extendee = this.registry.getMessage(containingType);
    if (!extendee) {
      return notFound(`message "${containingType}" not found`);
    }
    const extension = this.registry.getExtensionFor(extendee, extensionNumber);
    if (!extension) {
      return notFound(`extension ${extensionNumber} of message "${containingType}" not found`);
    }
    return this.fileResponse(extension.file);
  }

  private extensionNumbers(typeName: string): MessageResponse {
    const extendee = this.registry.getMessage(typeName);
    if (!extendee) {
      return notFound(`message "${typeName}" not found`);
    }
    return {
      case: "allExtensionNumbersResponse",
      value: { baseTypeName: typeName, extensionNumber: this.extensionsOf(extendee) },
    };
  }

  private extensionsOf(extendee: DescMessage): number[] {
    const numbers: number[] = [];
    for (const desc of this.registry) {
      if (desc.kind === "extension" && desc.extendee.typeName === extendee.typeName) {
        numbers.push(desc.number);
      }
    }
    return numbers.sort((a, b) => a - b);
  }
}

function notFound(errorMessage: string): MessageResponse {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage } };
}

/**
 * Lists the files and all their transitive imports, each once, with every
 * import ahead of the files that import it, because the registry resolves an
 * import only against files it already holds. The first file of a given name
 * wins.
 */
function dependenciesFirst(files: readonly DescFile[]): DescFile[] {
  const ordered: DescFile[] = [];
  const seen = new Set<string>();
  const visit = (file: DescFile): void => {
    if (seen.has(file.proto.name)) {
      return;
    }
    seen.add(file.proto.name);
    for (const dependency of file.dependencies) {
      visit(dependency);
    }
    ordered.push(file);
  };
  for (const file of files) {
    visit(file);
  }
  return ordered;
}
