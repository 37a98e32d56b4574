/*
 * Plain HTTP access to objects on the API port, for curl, job runners and
 * browsers that hold a URL instead of a gRPC client:
 *
 *   GET|HEAD /v1/buckets/{bucket}/objects/{key}   download; Range, ETag and
 *                                                 If-None-Match as in HTTP
 *   PUT      /v1/buckets/{bucket}/objects/{key}   upload, streamed to the
 *                                                 blob store
 *   PUT      /v1/uploads/{uploadId}/parts/{n}     one part of a multipart
 *                                                 upload
 *
 * The key is the rest of the path, percent-decoded. Every request is
 * authorized before any object is read or written. A URL that carries an
 * X-Engram-Signature is a presigned URL: its signature, expiry and signed
 * constraints are checked, and the principal that created it must still
 * exist and hold the grant. Any other request needs a bearer token, as on
 * the gRPC API.
 * Uploads use the same service as the Upload RPC, so the same commit point
 * holds: a PUT that is cut off stores nothing.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

import { Code } from "@connectrpc/connect";
import type { Logger } from "pino";

import { DEFAULT_CONTENT_TYPE } from "../api/convert.js";
import type { AccessCheck, AccessControl } from "../auth/access-control.js";
import type { Principal } from "../auth/grants.js";
import { codeOfKind } from "../api/errors.js";
import type { Metrics } from "../metrics/metrics.js";
import type { ObjectRecord } from "../metadata/metadata-store.js";
import type { CatalogService } from "../service/catalog.js";
import { gatherChunks, type DownloadService } from "../service/download.js";
import type { MultipartService } from "../service/multipart.js";
import { partUrlKey } from "../service/presign.js";
import { StorageError, invalidArgument, type StorageErrorKind } from "../service/errors.js";
import type { UploadChunk, UploadService } from "../service/upload.js";
import { CONSTRAINT } from "../presign/constraints.js";
import { SIGNATURE_PARAM, type UrlSigner } from "../presign/url-signer.js";

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

export const OBJECT_PATH_PREFIX = "/v1/buckets/";
export const UPLOAD_PATH_PREFIX = "/v1/uploads/";
/**
 * Size of the pieces of a request body handed to the upload services. The
 * socket delivers up to 64 KiB at a time, and every piece costs a file or
 * S3 write and a round of hashing, so small pieces are gathered first.
 */
const BODY_CHUNK_BYTES = 1024 * 1024;

const STATUS_OF_KIND: Record<StorageErrorKind, number> = {
  invalid_argument: 400,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 412,
  out_of_range: 416,
  data_loss: 500,
  aborted: 409,
  cancelled: 499,
  unauthenticated: 401,
  permission_denied: 403,
  resource_exhausted: 413,
  unavailable: 503,
  internal: 500,
};

export interface DataPlaneDeps {
  readonly uploads: UploadService;
  readonly downloads: DownloadService;
  readonly catalog: CatalogService;
  readonly multipart: MultipartService;
  readonly signer: UrlSigner;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly access: AccessControl;
}

/** Returns a handler that serves object paths and returns false for any other path. */
export function createDataPlane(deps: DataPlaneDeps): (req: Request, res: Response) => boolean {
  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://engram.invalid");
    if (!url.pathname.startsWith(OBJECT_PATH_PREFIX) && !url.pathname.startsWith(UPLOAD_PATH_PREFIX)) return false;

    const started = performance.now();
    const facts: RequestFacts = { operation: `http.${req.method ?? "GET"}`, peer: `${req.socket?.remoteAddress}:${req.socket?.remotePort}`, checks: [] };
    // The same fields as the call log of RPCs, so one query finds both.
    const entry = () => ({
      rpc: facts.operation,
      protocol: `http/${req.httpVersion}`,
      http: req.method,
      peer: facts.peer,
      bucket: facts.bucket,
      durationMs: Math.round(performance.now() - started),
    });
    serve(deps, req, res, url, facts).then(
      (bytes) => {
        countSuccess(deps.metrics, facts, bytes, res.statusCode);
        deps.log.info({ ...entry(), code: "OK", status: res.statusCode, bytes }, "http request finished");
        void deps.access.audit(facts.principal, facts.checks, facts.operation, "OK");
      },
      (err: unknown) => {
        const error = err instanceof StorageError ? err : new StorageError("internal", "internal error: see the server log", { cause: err });
        deps.metrics.failedOperationsTotal.inc({ operation: facts.operation, code: Code[codeOfKind[error.kind]] });
        const level = error.kind === "internal" || error.kind === "data_loss" ? "error" : "info";
        deps.log[level]({ ...entry(), code: Code[codeOfKind[error.kind]], status: httpStatusOf(error), reason: error.message, err: level === "error" ? (error.cause ?? error) : undefined }, "http request failed");
        sendError(res, error, url.pathname);
        void deps.access.audit(facts.principal, facts.checks, facts.operation, Code[codeOfKind[error.kind]]);
      },
    );
    return true;
  };
}

/** Facts about one request, for its log line and the metrics. */
interface RequestFacts {
  operation: string;
  bucket?: string;
  peer: string;
  /** The caller, or the creator of a presigned URL, once known. */
  principal?: Principal;
  /** Checks the request was authorized for, kept for the audit log. */
  checks: AccessCheck[];
}

function countSuccess(metrics: Metrics, facts: RequestFacts, bytes: number, status: number): void {
  const bucket = facts.bucket ?? "";
  if (facts.operation === "http.GET" && (status === 200 || status === 206)) {
    metrics.downloadsTotal.inc({ bucket });
    metrics.downloadsBytesTotal.inc({ bucket }, bytes);
  } else if (facts.operation === "http.PUT") {
    metrics.uploadsTotal.inc({ bucket });
    metrics.uploadsBytesTotal.inc({ bucket }, bytes);
  }
}

async function serve(deps: DataPlaneDeps, req: Request, res: Response, url: URL, facts: RequestFacts): Promise<number> {
  if (url.pathname.startsWith(UPLOAD_PATH_PREFIX)) {
    facts.operation = "http.UploadPart";
    return uploadPart(deps, req, res, url, facts);
  }
  const { bucket, key } = objectPathOf(url.pathname);
  facts.bucket = bucket;
  const signed = url.searchParams.has(SIGNATURE_PARAM);
  const method = req.method ?? "GET";

  switch (method) {
    case "GET":
    case "HEAD": {
      const check: AccessCheck = { action: "read", resource: { bucket, key } };
      if (signed) {
        const constraints = deps.signer.verify("GET", bucket, key, url.searchParams);
        await authorizePresigned(deps, constraints, check, facts);
        return download(deps, req, res, bucket, key, method === "HEAD", constraints);
      }
      await authorizeBearer(deps, req, check, facts);
      return download(deps, req, res, bucket, key, method === "HEAD", {});
    }
    case "PUT": {
      const check: AccessCheck = { action: "write", resource: { bucket, key } };
      if (signed) {
        const constraints = deps.signer.verify("PUT", bucket, key, url.searchParams);
        await authorizePresigned(deps, constraints, check, facts);
        return upload(deps, req, res, bucket, key, constraints);
      }
      await authorizeBearer(deps, req, check, facts);
      return upload(deps, req, res, bucket, key, {});
    }
    default:
      throw new MethodNotAllowed(`method ${method} is not supported on objects: use GET, HEAD or PUT`, "GET, HEAD, PUT");
  }
}

/**
 * Authorizes a request of a presigned URL whose signature was verified:
 * the principal that created the URL must still exist, not be revoked, and
 * still hold the grant, so a URL never grants more than its creator has.
 */
async function authorizePresigned(deps: DataPlaneDeps, constraints: Record<string, string>, check: AccessCheck, facts: RequestFacts): Promise<void> {
  const creator = await deps.access.presigner(constraints[CONSTRAINT.principal] ?? "");
  if (creator === undefined) {
    throw new StorageError("permission_denied", "the access key that created this URL was revoked or no longer exists: request a new URL");
  }
  facts.principal = creator;
  facts.checks = [check];
  deps.access.authorize(creator, [check], facts.operation, facts.peer);
}

/** Authorizes a request without a signature by its bearer token. */
async function authorizeBearer(deps: DataPlaneDeps, req: Request, check: AccessCheck, facts: RequestFacts): Promise<void> {
  const principal = await deps.access.authenticate(headerOf(req, "authorization"), facts.operation, facts.peer);
  facts.principal = principal;
  facts.checks = [check];
  deps.access.authorize(principal, [check], facts.operation, facts.peer);
}

/** Splits /v1/buckets/{bucket}/objects/{key} into its decoded parts. */
export function objectPathOf(pathname: string): { bucket: string; key: string } {
  const rest = pathname.slice(OBJECT_PATH_PREFIX.length);
  const marker = rest.indexOf("/objects/");
  if (marker <= 0) {
    throw invalidArgument(`path ${pathname} is not of the form /v1/buckets/{bucket}/objects/{key}`);
  }
  try {
    return { bucket: decodeURIComponent(rest.slice(0, marker)), key: decodeURIComponent(rest.slice(marker + "/objects/".length)) };
  } catch {
    throw invalidArgument(`path ${pathname} has invalid percent-encoding: encode the key with encodeURIComponent per segment`);
  }
}

async function download(
  deps: DataPlaneDeps,
  req: Request,
  res: Response,
  bucket: string,
  key: string,
  headOnly: boolean,
  constraints: Record<string, string>,
): Promise<number> {
  const range = parseRange(headerOf(req, "range"));
  const controller = new AbortController();
  res.once("close", () => controller.abort());

  let opened;
  try {
    opened = await deps.downloads.open({ bucket, key, generation: 0, readOffset: range?.offset ?? 0, readLimit: range?.limit ?? 0 }, controller.signal);
  } catch (err) {
    if (err instanceof StorageError && err.kind === "out_of_range") {
      const object = await deps.catalog.getObject(bucket, key, 0);
      res.setHeader("Content-Range", `bytes */${object.size}`);
    }
    throw err;
  }
  const { object, start, end } = opened;

  setObjectHeaders(res, object, constraints);
  if (headerOf(req, "if-none-match") === object.etag) {
    res.writeHead(304);
    res.end();
    return 0;
  }
  res.setHeader("Content-Length", String(end - start));
  if (range) {
    res.setHeader("Content-Range", `bytes ${start}-${end - 1}/${object.size}`);
  }
  res.writeHead(range ? 206 : 200);
  if (headOnly) {
    res.end();
    return 0;
  }

  let sent = 0;
  const counted = (async function* () {
    for await (const chunk of opened.chunks) {
      sent += chunk.content.byteLength;
      yield chunk.content;
    }
  })();
  await pipeline(Readable.from(counted), res as NodeJS.WritableStream);
  return sent;
}

async function upload(deps: DataPlaneDeps, req: Request, res: Response, bucket: string, key: string, constraints: Record<string, string>): Promise<number> {
  const contentType = headerOf(req, "content-type") ?? DEFAULT_CONTENT_TYPE;
  const contentLength = headerOf(req, "content-length");
  const size = contentLength === undefined ? undefined : Number(contentLength);

  requireConstraint(constraints, CONSTRAINT.contentType, contentType, "Content-Type");
  if (constraints[CONSTRAINT.size] !== undefined) {
    requireConstraint(constraints, CONSTRAINT.size, contentLength ?? "", "Content-Length");
  }
  const ifGenerationMatch = constraints[CONSTRAINT.ifGenerationMatch] ?? headerOf(req, "x-engram-if-generation-match");
  const sha256 = constraints[CONSTRAINT.sha256] ?? headerOf(req, "x-engram-sha256");

  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith("x-engram-meta-") && typeof value === "string") metadata[name.slice("x-engram-meta-".length)] = value;
  }

  const controller = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) controller.abort();
  });

  const object = await deps.uploads.upload(
    {
      bucket,
      key,
      contentType,
      metadata,
      tags: {},
      storageClass: "STANDARD",
      size,
      expectedSha256: sha256?.toLowerCase(),
      expectedCrc32c: undefined,
      ifGenerationMatch: ifGenerationMatch === undefined ? undefined : Number(ifGenerationMatch),
    },
    chunksOf(req),
    controller.signal,
  );

  setObjectHeaders(res, object, {});
  res.setHeader("Content-Type", "application/json");
  res.writeHead(200);
  res.end(`${JSON.stringify({ bucket: object.bucket, key: object.key, generation: String(object.generation), size: String(object.size), sha256: object.sha256, etag: object.etag })}\n`);
  return object.size;
}

async function uploadPart(deps: DataPlaneDeps, req: Request, res: Response, url: URL, facts: RequestFacts): Promise<number> {
  const match = url.pathname.slice(UPLOAD_PATH_PREFIX.length).match(/^([^/]+)\/parts\/(\d+)$/);
  if (!match) {
    throw invalidArgument(`path ${url.pathname} is not of the form /v1/uploads/{uploadId}/parts/{partNumber}`);
  }
  if (req.method !== "PUT") {
    throw new MethodNotAllowed(`method ${req.method} is not supported on parts: use PUT`, "PUT");
  }
  const uploadId = decodeURIComponent(match[1]!);
  const partNumber = Number(match[2]);
  const contentLength = headerOf(req, "content-length");
  if (url.searchParams.has(SIGNATURE_PARAM)) {
    // The signature covers the session's bucket, so the session is read
    // first; upload ids are random, and the signature check follows at once.
    const session = await deps.multipart.requireSession(uploadId);
    facts.bucket = session.bucket;
    const constraints = deps.signer.verify("PUT", session.bucket, partUrlKey(uploadId, partNumber), url.searchParams);
    await authorizePresigned(deps, constraints, { action: "write", resource: { bucket: session.bucket, key: session.key } }, facts);
    if (constraints[CONSTRAINT.size] !== undefined) requireConstraint(constraints, CONSTRAINT.size, contentLength ?? "", "Content-Length");
  } else {
    const principal = await deps.access.authenticate(headerOf(req, "authorization"), facts.operation, facts.peer);
    deps.access.requireSomewhere(principal, "write", facts.operation, facts.peer);
    const session = await deps.multipart.requireSession(uploadId);
    facts.bucket = session.bucket;
    facts.principal = principal;
    facts.checks = [{ action: "write", resource: { bucket: session.bucket, key: session.key } }];
    deps.access.authorize(principal, facts.checks, facts.operation, facts.peer);
  }

  const controller = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  const { part } = await deps.multipart.uploadPart(
    {
      uploadId,
      partNumber,
      size: contentLength === undefined ? undefined : Number(contentLength),
      expectedSha256: headerOf(req, "x-engram-sha256")?.toLowerCase(),
      expectedCrc32c: undefined,
    },
    chunksOf(req),
    controller.signal,
  );
  res.setHeader("Content-Type", "application/json");
  res.setHeader("ETag", `"${part.sha256}"`);
  res.writeHead(200);
  res.end(`${JSON.stringify({ uploadId, partNumber: part.partNumber, size: String(part.size), sha256: part.sha256 })}\n`);
  return part.size;
}

/** Turns a request body into upload chunks of BODY_CHUNK_BYTES. The end of the body becomes finish_write. */
async function* chunksOf(req: Request): AsyncGenerator<UploadChunk> {
  let offset = 0;
  for await (const chunk of gatherChunks(req as AsyncIterable<Buffer>, () => BODY_CHUNK_BYTES)) {
    yield { writeOffset: offset, data: chunk, crc32c: undefined, finishWrite: false };
    offset += chunk.length;
  }
  yield { writeOffset: offset, data: new Uint8Array(0), crc32c: undefined, finishWrite: true };
}

function requireConstraint(constraints: Record<string, string>, name: string, actual: string, header: string): void {
  const expected = constraints[name];
  if (expected !== undefined && expected !== actual) {
    throw new StorageError("permission_denied", `this URL was signed for ${header}: ${expected}, but the request sent ${JSON.stringify(actual)}: send the headers the URL was issued with`);
  }
}

function setObjectHeaders(res: Response, object: ObjectRecord, constraints: Record<string, string>): void {
  res.setHeader("Content-Type", constraints[CONSTRAINT.responseContentType] ?? object.contentType);
  res.setHeader("ETag", object.etag);
  res.setHeader("Last-Modified", object.createdAt.toUTCString());
  res.setHeader("Accept-Ranges", "bytes");
  res.setHeader("X-Engram-Generation", String(object.generation));
  res.setHeader("X-Engram-Sha256", object.sha256);
  const disposition = constraints[CONSTRAINT.responseContentDisposition];
  if (disposition !== undefined) res.setHeader("Content-Disposition", disposition);
}

/**
 * Parses a single byte range ("bytes=a-b", "bytes=a-", "bytes=-n") into a
 * read offset and limit. Other forms, such as several ranges, are ignored
 * and the whole object is sent, as HTTP allows.
 */
export function parseRange(header: string | undefined): { offset: number; limit: number } | undefined {
  const match = header?.match(/^bytes=(\d*)-(\d*)$/);
  if (!match) return undefined;
  const [, first, last] = match;
  if (first === "" && last === "") return undefined;
  if (first === "") return { offset: -Number(last), limit: 0 };
  const offset = Number(first);
  if (last === "") return { offset, limit: 0 };
  const end = Number(last);
  if (end < offset) return undefined;
  return { offset, limit: end - offset + 1 };
}

function headerOf(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** S3 error codes, so that S3 tools and users read Engram's errors as they read MinIO's. */
const S3_CODE_OF_KIND: Record<StorageErrorKind, string> = {
  invalid_argument: "InvalidArgument",
  not_found: "NoSuchKey",
  already_exists: "BucketAlreadyExists",
  failed_precondition: "PreconditionFailed",
  out_of_range: "InvalidRange",
  data_loss: "InternalError",
  aborted: "OperationAborted",
  cancelled: "RequestCancelled",
  unauthenticated: "AccessDenied",
  permission_denied: "AccessDenied",
  resource_exhausted: "EntityTooLarge",
  unavailable: "ServiceUnavailable",
  internal: "InternalError",
};

/** A request method the path does not take: HTTP 405 with an Allow header, INVALID_ARGUMENT elsewhere. */
class MethodNotAllowed extends StorageError {
  constructor(
    message: string,
    readonly allow: string,
  ) {
    super("invalid_argument", message);
  }
}

function httpStatusOf(error: StorageError): number {
  return error instanceof MethodNotAllowed ? 405 : STATUS_OF_KIND[error.kind];
}

/** Sends an S3-style XML error body: Code, Message and Resource. */
function sendError(res: Response, error: StorageError, resource: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const message = error.kind === "internal" ? "internal error: see the server log" : error.message;
  const notAllowed = error instanceof MethodNotAllowed;
  if (notAllowed) res.setHeader("Allow", error.allow);
  if (error.kind === "unauthenticated") res.setHeader("WWW-Authenticate", 'Bearer realm="engram"');
  res.setHeader("Content-Type", "application/xml");
  res.writeHead(httpStatusOf(error));
  const code = notAllowed ? "MethodNotAllowed" : S3_CODE_OF_KIND[error.kind];
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${escapeXml(message)}</Message><Resource>${escapeXml(resource)}</Resource></Error>\n`);
}

/** Escapes text for XML with its five predefined entities. */
function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (char) => XML_ENTITIES[char]!);
}

const XML_ENTITIES: Record<string, string> = { "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" };
