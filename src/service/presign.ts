import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";

import type { BlobRef, BlobStore } from "../blob/blob-store.js";
import type { MetadataStore, ObjectRecord } from "../metadata/metadata-store.js";
import { CONSTRAINT, contentDispositionOf } from "../presign/constraints.js";
import type { SigningKey, UrlSigner } from "../presign/url-signer.js";
import { requireBucket } from "./buckets.js";
import { ObjectHasher } from "./checksum.js";
import { newObjectOf } from "./new-object.js";
import { StorageError, invalidArgument, notFound } from "./errors.js";
import { MAX_PART_NUMBER, type MultipartService } from "./multipart.js";
import { validateKey } from "./names.js";

export const MIN_EXPIRY_SECONDS = 60;
export const MAX_EXPIRY_SECONDS = 604_800;
export const DEFAULT_EXPIRY_SECONDS = 3600;
/** How long after its URL expired a presigned upload can still be finalized. */
const FINALIZE_GRACE_SECONDS = 86_400;

export interface PresignRequest {
  readonly bucket: string;
  readonly key: string;
  readonly operation: "GET" | "PUT" | "UPLOAD_PART";
  /** UPLOAD_PART only. */
  readonly uploadId?: string;
  readonly partNumber?: number;
  /** 0 means the default of one hour. */
  readonly expiresInSeconds: number;
  readonly downloadFileName: string;
  readonly responseContentType: string;
  readonly contentType: string;
  readonly size: number | undefined;
  /** Hex SHA-256. */
  readonly expectedSha256: string | undefined;
  readonly ifGenerationMatch: number | undefined;
  /** Id of the caller; data plane URLs carry it, and it must still hold the grants when the URL is used. */
  readonly principalId: string;
}

export interface PresignedUrl {
  readonly url: string;
  readonly method: string;
  readonly requiredHeaders: Record<string, string>;
  readonly expiresAt: Date;
  /** Set when the upload must be finalized to become visible. */
  readonly finalizeToken: string;
}

/** Contents of a finalize token: everything needed to commit, signed, so no session is stored. */
interface PendingUpload {
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string;
  readonly generation: number;
  readonly contentType: string;
  readonly size: number | undefined;
  readonly sha256: string | undefined;
  readonly ifGenerationMatch: number | undefined;
  /** Unix seconds after which the token is refused. */
  readonly expires: number;
}

/**
 * Issues presigned URLs. By default they point at Engram's HTTP data
 * plane, which checks the creator's grants at every use and commits an
 * upload as it arrives. When `storeServesUrls` is set and the blob store
 * serves clients itself (S3), URLs point at the store instead. A presigned
 * PUT there writes the content to a fresh physical key, and the object
 * becomes visible only when FinalizePresignedUpload has checked it and
 * committed the metadata.
 */
export class PresignService {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly signer: UrlSigner,
    private readonly tokenKey: SigningKey,
    /** Base URL of the data plane, such as http://127.0.0.1:9000. */
    private readonly publicUrl: () => string,
    private readonly multipart: MultipartService,
    /** Sign GET and PUT URLs for the S3 store rather than for the data plane. */
    private readonly storeServesUrls = false,
  ) {}

  async presign(request: PresignRequest): Promise<PresignedUrl> {
    if (request.operation === "UPLOAD_PART") return this.presignPart(request);
    validateKey(request.key);
    await requireBucket(this.metadata, request.bucket);
    const seconds = expiryOf(request.expiresInSeconds);
    const expiresAt = new Date(Math.floor(Date.now() / 1000 + seconds) * 1000);

    return request.operation === "GET" ? this.presignGet(request, seconds, expiresAt) : this.presignPut(request, seconds, expiresAt);
  }

  /**
   * Returns a URL for one part of an open multipart upload. Parts go
   * through Engram's data plane on every backend, which records each part
   * as it arrives.
   */
  private async presignPart(request: PresignRequest): Promise<PresignedUrl> {
    const uploadId = request.uploadId ?? "";
    const partNumber = request.partNumber ?? 0;
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PART_NUMBER) {
      throw invalidArgument(`part_number ${partNumber} is out of range: give 1 to ${MAX_PART_NUMBER}`);
    }
    const session = await this.multipart.requireSession(uploadId);
    const seconds = expiryOf(request.expiresInSeconds);
    const expiresAt = new Date(Math.floor(Date.now() / 1000 + seconds) * 1000);

    const constraints: Record<string, string> = { [CONSTRAINT.principal]: request.principalId };
    const requiredHeaders: Record<string, string> = {};
    if (request.size !== undefined) {
      constraints[CONSTRAINT.size] = String(request.size);
      requiredHeaders["Content-Length"] = String(request.size);
    }
    const query = this.signer.sign({ method: "PUT", bucket: session.bucket, key: partUrlKey(uploadId, partNumber), expires: Math.floor(expiresAt.getTime() / 1000), constraints });
    const url = `${this.publicUrl()}/v1/uploads/${encodeURIComponent(uploadId)}/parts/${partNumber}?${query.toString()}`;
    return { url, method: "PUT", requiredHeaders, expiresAt, finalizeToken: "" };
  }

  /** Checks a presigned S3 upload and commits it; a second call returns the same object. */
  async finalize(token: string): Promise<ObjectRecord> {
    const pending = this.readToken(token);
    const ref: BlobRef = { bucket: pending.bucket, key: pending.key, versionId: pending.versionId };

    const committed = await this.metadata.getObject(pending.bucket, pending.key, pending.generation);
    if (committed && committed.versionId === pending.versionId) return committed;
    if (!this.blobs.sizeOf || !this.blobs.writeHeaders) {
      throw new StorageError("failed_precondition", "this backend commits presigned uploads as they arrive: there is nothing to finalize");
    }

    const size = await this.blobs.sizeOf(ref);
    if (size === undefined) {
      throw new StorageError("failed_precondition", `no upload arrived for ${pending.bucket}/${pending.key} yet: PUT the content to the presigned URL first`);
    }
    if (pending.size !== undefined && size !== pending.size) {
      throw new StorageError("out_of_range", `the upload has ${size} bytes but ${pending.size} were declared: upload it again with the right content`);
    }

    const hasher = new ObjectHasher();
    const stream = await this.blobs.read(ref, { start: 0, end: size });
    for await (const chunk of stream as AsyncIterable<Buffer>) hasher.update(chunk);
    const { sha256, crc32c } = hasher.digest();
    if (pending.sha256 !== undefined && pending.sha256 !== sha256) {
      throw invalidArgument(`sha256 of the upload is ${sha256} but ${pending.sha256} was expected: upload it again with the right content`);
    }

    const headers = {
      generation: pending.generation,
      contentType: pending.contentType,
      storageClass: "STANDARD",
      metadata: {},
      tags: {},
      sha256,
      crc32c,
      size,
    };
    await this.blobs.writeHeaders(ref, headers);
    return this.metadata.commitObject(newObjectOf(ref, headers), pending.ifGenerationMatch);
  }

  private async presignGet(request: PresignRequest, seconds: number, expiresAt: Date): Promise<PresignedUrl> {
    const object = await this.metadata.getObject(request.bucket, request.key);
    if (!object) {
      throw notFound(`object ${request.bucket}/${request.key} not found: check the key with ListObjects`);
    }
    const contentDisposition = request.downloadFileName === "" ? undefined : contentDispositionOf(request.downloadFileName);
    const contentType = request.responseContentType === "" ? undefined : request.responseContentType;

    if (this.storeServesUrls && this.blobs.presignGet) {
      // NOTE: the S3 store serves this URL itself, so it works until it
      // expires even if its creator's key is revoked. Only data plane URLs
      // are checked against the creator at each use.
      const url = await this.blobs.presignGet(object, seconds, { contentDisposition, contentType });
      return { url, method: "GET", requiredHeaders: {}, expiresAt, finalizeToken: "" };
    }
    const constraints: Record<string, string> = { [CONSTRAINT.principal]: request.principalId };
    if (contentDisposition !== undefined) constraints[CONSTRAINT.responseContentDisposition] = contentDisposition;
    if (contentType !== undefined) constraints[CONSTRAINT.responseContentType] = contentType;
    return { url: this.dataPlaneUrl("GET", request, expiresAt, constraints), method: "GET", requiredHeaders: {}, expiresAt, finalizeToken: "" };
  }

  private async presignPut(request: PresignRequest, seconds: number, expiresAt: Date): Promise<PresignedUrl> {
    const contentType = request.contentType === "" ? "application/octet-stream" : request.contentType;
    if (request.size !== undefined && (!Number.isSafeInteger(request.size) || request.size < 0)) {
      throw invalidArgument(`size ${request.size} is invalid: give 0 or more bytes`);
    }

    if (this.storeServesUrls && this.blobs.presignPut) {
      const ref: BlobRef = { bucket: request.bucket, key: request.key, versionId: randomUUID() };
      const generation = await this.metadata.reserveGeneration();
      const url = await this.blobs.presignPut(ref, seconds);
      const finalizeToken = this.writeToken({
        bucket: ref.bucket,
        key: ref.key,
        versionId: ref.versionId,
        generation,
        contentType,
        size: request.size,
        sha256: request.expectedSha256,
        ifGenerationMatch: request.ifGenerationMatch,
        expires: Math.floor(expiresAt.getTime() / 1000) + FINALIZE_GRACE_SECONDS,
      });
      return { url, method: "PUT", requiredHeaders: {}, expiresAt, finalizeToken };
    }

    const constraints: Record<string, string> = { [CONSTRAINT.contentType]: contentType, [CONSTRAINT.principal]: request.principalId };
    const requiredHeaders: Record<string, string> = { "Content-Type": contentType };
    if (request.size !== undefined) {
      constraints[CONSTRAINT.size] = String(request.size);
      requiredHeaders["Content-Length"] = String(request.size);
    }
    if (request.expectedSha256 !== undefined) constraints[CONSTRAINT.sha256] = request.expectedSha256;
    if (request.ifGenerationMatch !== undefined) constraints[CONSTRAINT.ifGenerationMatch] = String(request.ifGenerationMatch);
    return { url: this.dataPlaneUrl("PUT", request, expiresAt, constraints), method: "PUT", requiredHeaders, expiresAt, finalizeToken: "" };
  }

  private dataPlaneUrl(method: string, request: PresignRequest, expiresAt: Date, constraints: Record<string, string>): string {
    const query = this.signer.sign({ method, bucket: request.bucket, key: request.key, expires: Math.floor(expiresAt.getTime() / 1000), constraints });
    const path = `/v1/buckets/${encodeURIComponent(request.bucket)}/objects/${request.key.split("/").map(encodeURIComponent).join("/")}`;
    return `${this.publicUrl()}${path}?${query.toString()}`;
  }

  /** Returns the bucket and key a finalize token names, after checking its signature and expiry. */
  targetOf(token: string): { bucket: string; key: string } {
    const { bucket, key } = this.readToken(token);
    return { bucket, key };
  }

  private writeToken(pending: PendingUpload): string {
    const body = Buffer.from(JSON.stringify(pending), "utf8").toString("base64url");
    const mac = createHmac("sha256", this.tokenKey.secret).update(body).digest("base64url");
    return `${this.tokenKey.id}.${body}.${mac}`;
  }

  private readToken(token: string): PendingUpload {
    const [keyId, body, mac] = token.split(".");
    if (keyId !== this.tokenKey.id || body === undefined || mac === undefined) {
      throw invalidArgument("finalize_token is invalid: pass the token from GeneratePresignedUrl unchanged");
    }
    const expected = createHmac("sha256", this.tokenKey.secret).update(body).digest();
    const given = Buffer.from(mac, "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw invalidArgument("finalize_token is invalid: pass the token from GeneratePresignedUrl unchanged");
    }
    const pending = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as PendingUpload;
    if (pending.expires * 1000 < Date.now()) {
      throw notFound(`the presigned upload of ${pending.bucket}/${pending.key} expired: request a new URL and upload again`);
    }
    return pending;
  }
}

/** Names a part in the signature of its URL, in place of an object key. */
export function partUrlKey(uploadId: string, partNumber: number): string {
  return `uploads/${uploadId}/parts/${partNumber}`;
}

function expiryOf(seconds: number): number {
  if (seconds === 0) return DEFAULT_EXPIRY_SECONDS;
  if (!Number.isSafeInteger(seconds) || seconds < MIN_EXPIRY_SECONDS || seconds > MAX_EXPIRY_SECONDS) {
    throw invalidArgument(`expires_in_seconds ${seconds} is out of range: give ${MIN_EXPIRY_SECONDS} to ${MAX_EXPIRY_SECONDS} (7 days), or 0 for ${DEFAULT_EXPIRY_SECONDS}`);
  }
  return seconds;
}
