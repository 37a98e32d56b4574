/*
 * S3 blob store, for MinIO or any S3-compatible server, through the
 * `minio` client.
 *
 * Layout: each Engram bucket maps to the S3 bucket <bucketPrefix><bucket>.
 * Inside it:
 *
 *   <key>/<versionId>        the content; Content-Type and x-amz-meta-engram-*
 *                            headers carry what is known when the upload starts
 *   <key>/<versionId>.json   headers written after the content is complete:
 *                            key, generation, size, checksums, metadata
 *
 * The version id is a UUID, so the last path segment always names the
 * version and everything before it is the key (except for keys too long
 * for S3's name limit, see objectNameOf). A blob without its .json
 * object is the leftover of an unfinished upload.
 *
 * Uploads use S3 multipart directly, not putObject: putObject's promise never
 * settles once its input stream is destroyed, and it resumes an earlier
 * unfinished multipart upload of the same name, which would mix two uploads.
 *
 * Parts of Engram multipart and resumable uploads are blobs of their own,
 *
 *   <key>/<upload versionId>.part-<number>.<attempt uuid>   (and its .json)
 *
 * so a retried part never overwrites the attempt that may still be
 * recorded. Completing an upload joins them into <key>/<versionId> with
 * concat: one S3 multipart upload whose parts are UploadPartCopy requests
 * from the part objects, so the joined bytes stay inside the S3 store.
 * Real S3 UploadPart on the final key would need no copy, but two attempts
 * at one part number would overwrite each other there, and the metadata
 * could record the losing attempt. The whole-object SHA-256 still needs one
 * read of every part, because SHA-256 digests of parts cannot be combined.
 *
 * A restored version is a copy under a new version id (CopyObject, or
 * UploadPartCopy above 5 GiB) with its own .json object, which records the
 * new generation.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";

import { CopyDestinationOptions, CopySourceOptions, type Client as MinioClient } from "minio";

import type { BlobHeaders, BlobReadRange, BlobRef, BlobStore, BlobWriter, PresignResponseHeaders, StoredBlob, WriterOptions } from "../blob-store.js";
import { S3BlobWriter, type S3WriterSettings } from "./s3-blob-writer.js";
import { translateS3Error } from "./s3-errors.js";

export interface S3BlobStoreOptions extends S3WriterSettings {
  /**
   * Client for the endpoint that users reach, which may differ from the
   * one Engram uses (minio:9000 inside a cluster, https://files.example.test
   * outside). It only signs URLs and never connects.
   */
  readonly publicClient?: MinioClient;
  /** Prepended to every Engram bucket name to form the S3 bucket name. */
  readonly bucketPrefix: string;
  readonly region: string;
  readonly createBuckets: boolean;
}

export class S3BlobStore implements BlobStore {
  readonly kind = "s3";

  constructor(
    private readonly client: MinioClient,
    private readonly options: S3BlobStoreOptions,
  ) {}

  async ensureBuckets(buckets: readonly string[]): Promise<void> {
    for (const bucket of buckets) {
      const name = this.s3BucketOf(bucket);
      try {
        if (await this.client.bucketExists(name)) continue;
        if (!this.options.createBuckets) {
          throw new Error(`S3 bucket ${name} does not exist and ENGRAM_S3_CREATE_BUCKETS is false: create it or allow Engram to`);
        }
        await this.client.makeBucket(name, this.options.region);
      } catch (err) {
        throw translateS3Error(err, `prepare S3 bucket ${name}`);
      }
    }
  }

  async createWriter(ref: BlobRef, options: WriterOptions = {}): Promise<BlobWriter> {
    const startHeaders: Record<string, string> = {
      "Content-Type": options.contentType ?? "application/octet-stream",
      "x-amz-meta-engram-version-id": ref.versionId,
    };
    if (options.generation !== undefined) {
      startHeaders["x-amz-meta-engram-generation"] = String(options.generation);
    }
    return new S3BlobWriter(this.client, this.s3BucketOf(ref.bucket), objectNameOf(ref), ref, this.options, options.size, startHeaders);
  }

  async read(ref: BlobRef, range: BlobReadRange): Promise<Readable> {
    if (range.end <= range.start) {
      return Readable.from([]);
    }
    try {
      return await this.client.getPartialObject(this.s3BucketOf(ref.bucket), objectNameOf(ref), range.start, range.end - range.start);
    } catch (err) {
      throw translateS3Error(err, `read blob of ${ref.bucket}/${ref.key}`, { missingIsDataLoss: true });
    }
  }

  async *scan(bucket: string): AsyncIterable<StoredBlob> {
    const s3Bucket = this.s3BucketOf(bucket);
    const names: string[] = [];
    try {
      for await (const item of this.client.listObjectsV2(s3Bucket, "", true) as AsyncIterable<{ name?: string }>) {
        if (item.name !== undefined && HEADERS_NAME.test(item.name)) names.push(item.name);
      }
    } catch (err) {
      throw translateS3Error(err, `scan S3 bucket ${s3Bucket}`);
    }

    for (const name of names) {
      const body = await this.readSmallObject(s3Bucket, name);
      const { bucket: _bucket, key, versionId, ...headers } = JSON.parse(body) as BlobHeaders & BlobRef;
      yield { ref: { bucket, key, versionId }, headers };
    }
  }

  async delete(ref: BlobRef): Promise<void> {
    const bucket = this.s3BucketOf(ref.bucket);
    const name = objectNameOf(ref);
    try {
      await this.client.removeObject(bucket, `${name}.json`);
      await this.client.removeObject(bucket, name);
    } catch (err) {
      throw translateS3Error(err, `delete blob of ${ref.bucket}/${ref.key}`);
    }
  }

  async copy(source: BlobRef, target: BlobRef, headers: BlobHeaders): Promise<void> {
    // concat of one source is a CopyObject, or UploadPartCopy requests for
    // a source above 5 GiB; the headers object makes the copy finished.
    await this.concat(target, [source], { generation: headers.generation, contentType: headers.contentType });
    await this.writeHeaders(target, headers);
  }

  async removeBucket(bucket: string): Promise<void> {
    const name = this.s3BucketOf(bucket);
    try {
      const names: string[] = [];
      for await (const item of this.client.listObjectsV2(name, "", true) as AsyncIterable<{ name?: string }>) {
        if (item.name !== undefined) names.push(item.name);
      }
      // DeleteObjects takes at most 1000 names per request.
      for (let start = 0; start < names.length; start += 1000) {
        await this.client.removeObjects(name, names.slice(start, start + 1000));
      }
      // A bucket that Engram may not create is the operator's: it stays.
      if (this.options.createBuckets) {
        await this.client.removeBucket(name);
      }
    } catch (err) {
      throw translateS3Error(err, `remove S3 bucket ${name}`);
    }
  }

  async presignGet(ref: BlobRef, expiresInSeconds: number, response: PresignResponseHeaders): Promise<string> {
    const params: Record<string, string> = {};
    if (response.contentDisposition !== undefined) params["response-content-disposition"] = response.contentDisposition;
    if (response.contentType !== undefined) params["response-content-type"] = response.contentType;
    try {
      return await this.signer.presignedUrl("GET", this.s3BucketOf(ref.bucket), objectNameOf(ref), expiresInSeconds, params);
    } catch (err) {
      throw translateS3Error(err, `sign a GET URL for ${ref.bucket}/${ref.key}`);
    }
  }

  async presignPut(ref: BlobRef, expiresInSeconds: number): Promise<string> {
    try {
      return await this.signer.presignedUrl("PUT", this.s3BucketOf(ref.bucket), objectNameOf(ref), expiresInSeconds);
    } catch (err) {
      throw translateS3Error(err, `sign a PUT URL for ${ref.bucket}/${ref.key}`);
    }
  }

  async sizeOf(ref: BlobRef): Promise<number | undefined> {
    try {
      return (await this.client.statObject(this.s3BucketOf(ref.bucket), objectNameOf(ref))).size;
    } catch (err) {
      const code = String((err as { code?: unknown }).code ?? "");
      if (code === "NotFound" || code === "NoSuchKey") return undefined;
      throw translateS3Error(err, `look up blob of ${ref.bucket}/${ref.key}`);
    }
  }

  async writeHeaders(ref: BlobRef, headers: BlobHeaders): Promise<void> {
    const sidecar = JSON.stringify({ bucket: ref.bucket, key: ref.key, versionId: ref.versionId, ...headers });
    try {
      await this.client.putObject(this.s3BucketOf(ref.bucket), `${objectNameOf(ref)}.json`, Buffer.from(sidecar), undefined, { "Content-Type": "application/json" });
    } catch (err) {
      throw translateS3Error(err, `write blob headers of ${ref.bucket}/${ref.key}`);
    }
  }

  async concat(target: BlobRef, sources: readonly BlobRef[], options: WriterOptions): Promise<void> {
    const bucket = this.s3BucketOf(target.bucket);
    const headers: Record<string, string> = {
      "Content-Type": options.contentType ?? "application/octet-stream",
      "x-amz-meta-engram-version-id": target.versionId,
    };
    if (options.generation !== undefined) {
      headers["x-amz-meta-engram-generation"] = String(options.generation);
    }
    const destination = new CopyDestinationOptions({ Bucket: bucket, Object: objectNameOf(target), Headers: headers });
    const parts = sources.map((source) => new CopySourceOptions({ Bucket: this.s3BucketOf(source.bucket), Object: objectNameOf(source) }));
    try {
      // composeObject runs an S3 multipart upload of the target with one
      // UploadPartCopy per source (more for sources above 5 GiB).
      await this.client.composeObject(destination, parts, { maxConcurrency: this.options.partsInFlight });
    } catch (err) {
      throw translateS3Error(err, `join parts into blob of ${target.bucket}/${target.key}`, { missingIsDataLoss: true });
    }
  }

  async ping(): Promise<void> {
    try {
      await this.client.listBuckets();
    } catch (err) {
      throw translateS3Error(err, "reach the S3 endpoint");
    }
  }

  async close(): Promise<void> {}

  private get signer(): MinioClient {
    return this.options.publicClient ?? this.client;
  }

  /** Names the S3 bucket of an Engram bucket. */
  s3BucketOf(bucket: string): string {
    return `${this.options.bucketPrefix}${bucket}`;
  }

  private async readSmallObject(bucket: string, name: string): Promise<string> {
    try {
      const stream = await this.client.getObject(bucket, name);
      const chunks: Buffer[] = [];
      for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
      return Buffer.concat(chunks).toString("utf8");
    } catch (err) {
      throw translateS3Error(err, `read blob headers ${bucket}/${name}`);
    }
  }
}

/** Matches the name of a headers object: <key>/<uuid>.json. */
const HEADERS_NAME = /\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json$/;

/** S3 limits object names to 1024 bytes of UTF-8. */
const MAX_OBJECT_NAME_BYTES = 1024;
/** Room for "/<uuid>.json" after the key. */
const NAME_SUFFIX_BYTES = 1 + 36 + 5;

/**
 * Returns the S3 object name of a blob's content: <key>/<versionId>. A key
 * too long to leave room for the suffix within S3's 1024 bytes is replaced
 * by its SHA-256 under ".engram-long-keys/", and the headers object
 * records the key itself.
 */
export function objectNameOf(ref: BlobRef): string {
  if (Buffer.byteLength(ref.key, "utf8") + NAME_SUFFIX_BYTES <= MAX_OBJECT_NAME_BYTES) {
    return `${ref.key}/${ref.versionId}`;
  }
  const digest = createHash("sha256").update(ref.key, "utf8").digest("hex");
  return `.engram-long-keys/${digest}/${ref.versionId}`;
}
