/*
 * Filesystem blob store, the embedded default.
 *
 * Layout under the root directory:
 *
 *   <bucket>/<h2>/<keyhash>.<versionId>.data   the content
 *   <bucket>/<h2>/<keyhash>.<versionId>.json   headers: key, version id,
 *                                              generation, content type,
 *                                              metadata, tags, checksums
 *
 * keyhash is the hex SHA-256 of the UTF-8 key and h2 its first two
 * characters, so keys of any length and any characters map to short, safe
 * file names. The key itself is recoverable from the .json file. The .json
 * file is written only after the data is flushed to disk, so a blob without
 * one is the leftover of an unfinished upload.
 *
 * A part of a multipart upload is a blob of its own, with the version id
 * <upload version id>.part-<number>.<attempt uuid>, so parts of one object
 * sit next to its content files. Complete streams the parts in order into
 * a new .data file, never holding more than one read buffer in memory.
 */
import { createHash } from "node:crypto";
import { constants, createReadStream } from "node:fs";
import { copyFile, mkdir, open, readFile, readdir, rm, stat, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";

import type { BlobHeaders, BlobReadRange, BlobRef, BlobStore, BlobWriter, StoredBlob } from "../blob-store.js";
import { StorageError } from "../../service/errors.js";

const READ_BUFFER_BYTES = 1024 * 1024;
/** Version id of an object's blob: a UUID. */
const VERSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class FsBlobStore implements BlobStore {
  readonly kind = "fs";

  /** Read streams open right now; tests use it to see that aborted downloads release their file. */
  openReads = 0;
  /** Bytes handed to readers since start. */
  bytesRead = 0;

  constructor(private readonly root: string) {}

  async ensureBuckets(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  async createWriter(ref: BlobRef): Promise<BlobWriter> {
    const { dir, dataPath, headersPath } = this.pathsOf(ref);
    let handle: FileHandle;
    try {
      await mkdir(dir, { recursive: true });
      // "wx" fails if the file exists: a version id is never written twice.
      handle = await open(dataPath, "wx");
    } catch (err) {
      throw translateFsError(err, `create blob for ${ref.bucket}/${ref.key}`);
    }
    return new FsBlobWriter(ref, handle, dataPath, headersPath);
  }

  async read(ref: BlobRef, range: BlobReadRange): Promise<Readable> {
    const { dataPath } = this.pathsOf(ref);
    try {
      const info = await stat(dataPath);
      if (info.size < range.end) {
        throw new StorageError(
          "data_loss",
          `stored blob of ${ref.bucket}/${ref.key} has ${info.size} bytes, fewer than the ${range.end} recorded: restore it from a backup`,
        );
      }
    } catch (err) {
      if (err instanceof StorageError) throw err;
      throw translateFsError(err, `read blob of ${ref.bucket}/${ref.key}`);
    }
    if (range.end <= range.start) {
      return Readable.from([]);
    }

    const stream = createReadStream(dataPath, {
      start: range.start,
      end: range.end - 1,
      highWaterMark: range.readBytes ?? READ_BUFFER_BYTES,
    });
    this.openReads += 1;
    stream.on("data", (chunk) => {
      this.bytesRead += chunk.length;
    });
    stream.once("close", () => {
      this.openReads -= 1;
    });
    return stream;
  }

  async *scan(bucket: string): AsyncIterable<StoredBlob> {
    const bucketDir = join(this.root, bucket);
    let shards: string[];
    try {
      shards = await readdir(bucketDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw translateFsError(err, `scan blobs of bucket ${bucket}`);
    }

    for (const shard of shards.sort()) {
      const names = await readdir(join(bucketDir, shard));
      for (const name of names.sort()) {
        if (!name.endsWith(".json")) continue;
        const sidecar = JSON.parse(await readFile(join(bucketDir, shard, name), "utf8")) as BlobHeaders & BlobRef;
        const { bucket: _bucket, key, versionId, ...headers } = sidecar;
        // Parts of multipart uploads have version ids "<uuid>.part-<n>.<uuid>"
        // and are no objects of their own.
        if (!VERSION_ID.test(versionId)) continue;
        yield { ref: { bucket, key, versionId }, headers };
      }
    }
  }

  async delete(ref: BlobRef): Promise<void> {
    const { dataPath, headersPath } = this.pathsOf(ref);
    await rm(headersPath, { force: true });
    await rm(dataPath, { force: true });
  }

  async copy(source: BlobRef, target: BlobRef, headers: BlobHeaders): Promise<void> {
    const from = this.pathsOf(source);
    const to = this.pathsOf(target);
    try {
      await mkdir(to.dir, { recursive: true });
      // COPYFILE_FICLONE shares the extents on file systems that can
      // (btrfs, XFS) and copies elsewhere; EXCL keeps a version id unique.
      await copyFile(from.dataPath, to.dataPath, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      const handle = await open(to.dataPath, "r+");
      await handle.sync().finally(() => handle.close());
      const sidecar = { bucket: target.bucket, key: target.key, versionId: target.versionId, ...headers };
      await writeFile(to.headersPath, JSON.stringify(sidecar), { flag: "wx", flush: true });
    } catch (err) {
      await rm(to.headersPath, { force: true });
      await rm(to.dataPath, { force: true });
      throw translateFsError(err, `copy blob of ${source.bucket}/${source.key}`);
    }
  }

  async removeBucket(bucket: string): Promise<void> {
    try {
      await rm(join(this.root, bucket), { recursive: true, force: true });
    } catch (err) {
      throw translateFsError(err, `remove the blobs of bucket ${bucket}`);
    }
  }

  async ping(): Promise<void> {
    try {
      await mkdir(this.root, { recursive: true });
      await stat(this.root);
    } catch (err) {
      throw translateFsError(err, `reach blob directory ${this.root}`);
    }
  }

  async close(): Promise<void> {}

  private pathsOf(ref: BlobRef): { dir: string; dataPath: string; headersPath: string } {
    const keyHash = createHash("sha256").update(ref.key, "utf8").digest("hex");
    const dir = join(this.root, ref.bucket, keyHash.slice(0, 2));
    const base = join(dir, `${keyHash}.${ref.versionId}`);
    return { dir, dataPath: `${base}.data`, headersPath: `${base}.json` };
  }
}

/**
 * Writes a blob file one chunk behind the caller. `write` starts its chunk
 * once the previous write has ended, and resolves when that previous write
 * has. So the caller receives and hashes the next chunk while this one is
 * written.
 */
class FsBlobWriter implements BlobWriter {
  private closed = false;
  /** The write started last. Its failure reaches the caller through the next `write` or `finish`. */
  private lastWrite: Promise<void> = Promise.resolve();

  constructor(
    private readonly ref: BlobRef,
    private readonly handle: FileHandle,
    private readonly dataPath: string,
    private readonly headersPath: string,
  ) {}

  write(chunk: Uint8Array): Promise<void> {
    const previous = this.lastWrite;
    this.lastWrite = previous.then(() => this.writeAll(chunk));
    this.lastWrite.catch(() => undefined);
    return previous;
  }

  async finish(headers: BlobHeaders): Promise<void> {
    await this.lastWrite;
    try {
      await this.handle.sync();
      await this.closeHandle();
      const sidecar = { bucket: this.ref.bucket, key: this.ref.key, versionId: this.ref.versionId, ...headers };
      await writeFile(this.headersPath, JSON.stringify(sidecar), { flag: "wx", flush: true });
    } catch (err) {
      throw translateFsError(err, `finish blob of ${this.ref.bucket}/${this.ref.key}`);
    }
  }

  async abort(): Promise<void> {
    // The file handle closes only after the write in flight has ended.
    await this.lastWrite.catch(() => undefined);
    await this.closeHandle().catch(() => undefined);
    await rm(this.headersPath, { force: true });
    await rm(this.dataPath, { force: true });
  }

  private async writeAll(chunk: Uint8Array): Promise<void> {
    try {
      let offset = 0;
      while (offset < chunk.length) {
        const { bytesWritten } = await this.handle.write(chunk, offset, chunk.length - offset);
        offset += bytesWritten;
      }
    } catch (err) {
      throw translateFsError(err, `write blob of ${this.ref.bucket}/${this.ref.key}`);
    }
  }

  private async closeHandle(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

function translateFsError(err: unknown, action: string): StorageError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ENOSPC":
    case "EDQUOT":
      return new StorageError("resource_exhausted", `failed to ${action}: the disk is full; free space or raise the quota`, { cause: err });
    case "ENOENT":
      return new StorageError("data_loss", `failed to ${action}: the blob file is missing; restore it from a backup`, { cause: err });
    case "EEXIST":
      return new StorageError("aborted", `failed to ${action}: the blob already exists; retry the upload`, { cause: err });
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return new StorageError("unavailable", `failed to ${action}: permission denied; check the data directory's owner and mode`, { cause: err });
    default:
      return new StorageError("internal", `failed to ${action}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}
