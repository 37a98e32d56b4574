/*
 * connect-es 2.1 writes the grpc-message header with encodeURIComponent,
 * which also escapes "/", ":" and other printable ASCII. The gRPC HTTP/2
 * protocol requires escaping only outside 0x20-0x7E and of "%" itself, and
 * @grpc/grpc-js decodes with decodeURI, so its users would see messages such
 * as "object mnemos-models%2Fmissing not found%3A ...". This wrapper
 * re-encodes the header the way the gRPC protocol specifies.
 */
import type { RequestHandler } from "./api-server.js";

const GRPC_MESSAGE = "grpc-message";

/** Percent-encodes a status message as the gRPC HTTP/2 protocol specifies. */
export function encodeGrpcMessage(message: string): string {
  let encoded = "";
  for (const byte of Buffer.from(message, "utf8")) {
    encoded += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}

function reencode(headers: unknown): void {
  if (headers === null || typeof headers !== "object") return;
  const record = headers as Record<string, unknown>;
  const value = record[GRPC_MESSAGE];
  if (typeof value !== "string") return;
  try {
    record[GRPC_MESSAGE] = encodeGrpcMessage(decodeURIComponent(value));
  } catch {
    // Not valid percent-encoding: leave the header as written.
  }
}

/** Wraps a handler so gRPC responses carry a grpc-message every gRPC client decodes. */
export function withGrpcMessageEncoding(handler: RequestHandler): RequestHandler {
  return (req, res) => {
    const contentType = req.headers["content-type"] ?? "";
    if (!contentType.startsWith("application/grpc") || contentType.startsWith("application/grpc-web")) {
      handler(req, res);
      return;
    }

    const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => unknown;
    (res as { writeHead: (...args: unknown[]) => unknown }).writeHead = (...args: unknown[]) => {
      reencode(args.find((arg) => typeof arg === "object"));
      return writeHead(...args);
    };
    const addTrailers = res.addTrailers.bind(res) as (headers: unknown) => void;
    (res as { addTrailers: (headers: unknown) => void }).addTrailers = (headers: unknown) => {
      reencode(headers);
      addTrailers(headers);
    };
    handler(req, res);
  };
}
