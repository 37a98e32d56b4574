import type { Client as MinioClient } from "minio";

import type { BlobHeaders, BlobRef, BlobWriter } from "../blob-store.js";
import { StorageError } from "../../service/errors.js";
import { translateS3Error } from "./s3-errors.js";

const MiB = 1024 * 1024;
/** S3 rejects non-final parts below 5 MiB. */
export const MIN_PART_BYTES = 5 * MiB;
/** S3 allows part numbers 1 to 10,000. */
export const MAX_PARTS = 10_000;

export interface S3WriterSettings {
  /** Part size for uploads whose size was not declared. */
  readonly partSizeBytes: number;
  /** Parts uploaded at once per upload; also bounds the memory per upload. */
  readonly partsInFlight: number;
}

/**
 * Returns the part size for an upload: the smallest whole number of MiB,
 * at least 5 MiB, that fits the declared size in 10,000 parts, or the
 * configured size when the size is unknown.
 */
export function partSizeFor(declaredSize: number | undefined, fallback: number): number {
  if (declaredSize === undefined) return fallback;
  const perPart = Math.ceil(declaredSize / MAX_PARTS);
  return Math.max(MIN_PART_BYTES, Math.ceil(perPart / MiB) * MiB);
}

/**
 * Writes one blob. Content is gathered into parts, and the first full part
 * starts a multipart upload. At most `partsInFlight` parts are sent at
 * once, so memory per upload is about (partsInFlight + 1) part sizes. A blob
 * smaller than one part is sent with a single PUT at the end.
 */
export class S3BlobWriter implements BlobWriter {
  private readonly partSize: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private uploadId: string | undefined;
  private nextPartNumber = 1;
  private readonly parts: { part: number; etag: string }[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private failure: StorageError | undefined;
  private completed = false;

  constructor(
    private readonly client: MinioClient,
    private readonly bucket: string,
    private readonly objectName: string,
    private readonly ref: BlobRef,
    private readonly settings: S3WriterSettings,
    declaredSize: number | undefined,
    private readonly startHeaders: Record<string, string>,
  ) {
    this.partSize = partSizeFor(declaredSize, settings.partSizeBytes);
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.pendingBytes += chunk.byteLength;
    while (this.pendingBytes >= this.partSize) {
      await this.sendPart(this.takePending(this.partSize));
    }
  }

  async finish(headers: BlobHeaders): Promise<void> {
    try {
      if (this.uploadId === undefined) {
        const content = this.takePending(this.pendingBytes);
        await this.client.putObject(this.bucket, this.objectName, content, content.length, this.startHeaders);
      } else {
        if (this.pendingBytes > 0) {
          await this.sendPart(this.takePending(this.pendingBytes));
        }
        await this.settle();
        const parts = [...this.parts].sort((a, b) => a.part - b.part);
        await this.client.completeMultipartUpload(this.bucket, this.objectName, this.uploadId, parts);
        this.uploadId = undefined;
      }
      this.completed = true;

      const sidecar = JSON.stringify({ bucket: this.ref.bucket, key: this.ref.key, versionId: this.ref.versionId, ...headers });
      await this.client.putObject(this.bucket, `${this.objectName}.json`, Buffer.from(sidecar), undefined, { "Content-Type": "application/json" });
    } catch (err) {
      throw translateS3Error(err, `finish blob of ${this.ref.bucket}/${this.ref.key}`);
    }
  }

  async abort(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
    this.pending = [];
    this.pendingBytes = 0;

    if (this.uploadId !== undefined) {
      const uploadId = this.uploadId;
      this.uploadId = undefined;
      await this.client.abortMultipartUpload(this.bucket, this.objectName, uploadId).catch(() => undefined);
    }
    if (this.completed) {
      await this.client.removeObject(this.bucket, `${this.objectName}.json`).catch(() => undefined);
      await this.client.removeObject(this.bucket, this.objectName).catch(() => undefined);
    }
  }

  /** Sends one part, waiting first while `partsInFlight` parts are on their way. */
  private async sendPart(data: Buffer): Promise<void> {
    this.throwIfFailed();
    if (this.nextPartNumber > MAX_PARTS) {
      throw new StorageError(
        "out_of_range",
        `upload of ${this.ref.bucket}/${this.ref.key} exceeds ${MAX_PARTS} parts of ${this.partSize} bytes: declare the object size so Engram can choose a larger part size`,
      );
    }
    if (this.uploadId === undefined) {
      try {
        this.uploadId = await this.client.initiateNewMultipartUpload(this.bucket, this.objectName, this.startHeaders);
      } catch (err) {
        throw translateS3Error(err, `start multipart upload of ${this.ref.bucket}/${this.ref.key}`);
      }
    }
    while (this.inFlight.size >= this.settings.partsInFlight) {
      await Promise.race(this.inFlight);
    }
    this.throwIfFailed();

    const part = this.nextPartNumber++;
    const upload = this.client
      .uploadPart({ bucketName: this.bucket, objectName: this.objectName, uploadID: this.uploadId, partNumber: part, headers: {} }, data)
      .then(
        (result) => {
          this.parts.push({ part, etag: result.etag });
        },
        (err: unknown) => {
          this.failure ??= translateS3Error(err, `upload part ${part} of ${this.ref.bucket}/${this.ref.key}`);
        },
      )
      .finally(() => {
        this.inFlight.delete(upload);
      });
    this.inFlight.add(upload);
  }

  /** Waits for every part in flight, then fails if any of them failed. */
  private async settle(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private takePending(bytes: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    const taken = all.subarray(0, bytes);
    const rest = all.subarray(bytes);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    return taken;
  }
}
