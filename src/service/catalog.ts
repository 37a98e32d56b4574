import type { DeleteResult, MetadataStore, ObjectRecord } from "../metadata/metadata-store.js";
import type { BlobSweeper } from "./blob-sweeper.js";
import { requireBucket, requireWritableBucket } from "./buckets.js";
import { invalidArgument, notFound } from "./errors.js";
import type { Limits } from "./limits.js";
import { validateGeneration, validateKey } from "./names.js";

export interface ListObjectsRequestSpec {
  readonly bucket: string;
  readonly prefix: string;
  readonly delimiter: string;
  /** 0 means the maximum. */
  readonly pageSize: number;
  readonly pageToken: string;
  /** Lists every version and delete marker instead of live objects. */
  readonly versions?: boolean;
}

export interface ObjectPage {
  readonly objects: ObjectRecord[];
  readonly prefixes: string[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

/** Start of the next page, encoded into the opaque page token. */
interface PageCursor {
  /** Inclusive lower bound on the next key. */
  readonly startAt: string;
  /** In a versions listing: the next generations of key `startAt` are below this one. */
  readonly beforeGeneration: number | undefined;
  readonly prefix: string;
  readonly delimiter: string;
  readonly versions: boolean;
}

/** Reads and deletes object metadata: stat, list and delete. */
export class CatalogService {
  constructor(
    private readonly metadata: MetadataStore,
    private readonly sweeper: BlobSweeper,
    private readonly limits: Limits,
  ) {}

  /**
   * Returns the live version, or a given generation. A delete marker's
   * generation returns the marker itself, with `deleteMarker` set.
   */
  async getObject(bucket: string, key: string, generation: number): Promise<ObjectRecord> {
    validateKey(key);
    validateGeneration(generation);
    await requireBucket(this.metadata, bucket);
    const object = await this.metadata.getObject(bucket, key, generation);
    if (!object) {
      const which = generation === 0 ? "" : ` generation ${generation}`;
      throw notFound(`object ${bucket}/${key}${which} not found: check the key with ListObjects`);
    }
    return object;
  }

  /** Deletes the live version, or with a generation other than 0 removes that version permanently. */
  async deleteObject(bucket: string, key: string, ifGenerationMatch: number | undefined, generation = 0): Promise<DeleteResult> {
    validateKey(key);
    validateGeneration(generation);
    await requireWritableBucket(this.metadata, bucket);
    return this.metadata.deleteObject(bucket, key, ifGenerationMatch, generation);
  }

  /**
   * Lists live objects in byte order of their keys. With a delimiter, keys
   * that contain it after the prefix are rolled up into one common prefix
   * each, and objects and prefixes together count toward the page size.
   * With `versions`, every version and delete marker of a key is listed,
   * newest generation first.
   */
  async listObjects(request: ListObjectsRequestSpec): Promise<ObjectPage> {
    await requireBucket(this.metadata, request.bucket);
    const pageSize = this.pageSizeOf(request.pageSize);
    const versions = request.versions ?? false;
    const cursor = request.pageToken === "" ? undefined : decodePageToken(request.pageToken, request);
    const endBefore = request.prefix === "" ? undefined : successorOfPrefix(request.prefix);
    let startBeforeGeneration = cursor?.beforeGeneration;

    const objects: ObjectRecord[] = [];
    const prefixes: string[] = [];
    let lastPrefix: string | undefined;
    let startAt: string | undefined = cursor?.startAt ?? request.prefix;
    const batchSize = pageSize + 1;

    while (startAt !== undefined) {
      const rows = await this.metadata.listObjects({ bucket: request.bucket, startAt, endBefore, limit: batchSize, versions, startBeforeGeneration });

      for (const row of rows) {
        if (lastPrefix !== undefined && row.key.startsWith(lastPrefix)) continue;
        if (objects.length + prefixes.length === pageSize) {
          const nextPageToken = encodePageToken({
            startAt: row.key,
            beforeGeneration: versions ? row.generation + 1 : undefined,
            prefix: request.prefix,
            delimiter: request.delimiter,
            versions,
          });
          return { objects, prefixes, nextPageToken };
        }

        const commonPrefix = commonPrefixOf(row.key, request.prefix, request.delimiter);
        if (commonPrefix === undefined) {
          objects.push(row);
          if (versions) {
            startAt = row.key;
            startBeforeGeneration = row.generation;
          } else {
            startAt = `${row.key}\u0000`;
          }
        } else {
          prefixes.push(commonPrefix);
          lastPrefix = commonPrefix;
          // The next query skips every other key under this prefix.
          startAt = successorOfPrefix(commonPrefix);
          startBeforeGeneration = undefined;
        }
      }

      if (rows.length < batchSize) break;
    }
    return { objects, prefixes, nextPageToken: "" };
  }

  private pageSizeOf(pageSize: number): number {
    if (pageSize === 0) return this.limits.maxListPageSize;
    if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > this.limits.maxListPageSize) {
      throw invalidArgument(`page_size ${pageSize} is invalid: give 1 to ${this.limits.maxListPageSize}, or 0 for ${this.limits.maxListPageSize}`);
    }
    return pageSize;
  }

  /** Lets tests and shutdown run the sweeper now. */
  sweepNow(): Promise<number> {
    return this.sweeper.sweep();
  }
}

/** Returns the rolled-up prefix of a key, or undefined when it has none. */
function commonPrefixOf(key: string, prefix: string, delimiter: string): string | undefined {
  if (delimiter === "") return undefined;
  const at = key.indexOf(delimiter, prefix.length);
  return at === -1 ? undefined : key.slice(0, at + delimiter.length);
}

/**
 * Returns the smallest string greater than every string that starts with
 * `prefix`, in UTF-8 byte order: the prefix with its last code point
 * raised by one. UTF-8 keeps code point order, so this holds for bytes too.
 */
export function successorOfPrefix(prefix: string): string | undefined {
  const codePoints = [...prefix];
  while (codePoints.length > 0) {
    const last = codePoints.pop()!.codePointAt(0)!;
    let next = last + 1;
    // Surrogate code points cannot appear in well-formed strings.
    if (next >= 0xd800 && next <= 0xdfff) next = 0xe000;
    if (next <= 0x10ffff) {
      return codePoints.join("") + String.fromCodePoint(next);
    }
  }
  return undefined;
}

function encodePageToken(cursor: PageCursor): string {
  const fields = { s: cursor.startAt, p: cursor.prefix, d: cursor.delimiter, ...(cursor.versions ? { v: true, g: cursor.beforeGeneration } : {}) };
  return Buffer.from(JSON.stringify(fields), "utf8").toString("base64url");
}

function decodePageToken(token: string, request: ListObjectsRequestSpec): PageCursor {
  let cursor: PageCursor;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { s?: unknown; p?: unknown; d?: unknown; v?: unknown; g?: unknown };
    if (typeof parsed.s !== "string" || typeof parsed.p !== "string" || typeof parsed.d !== "string") {
      throw new Error("missing fields");
    }
    if (parsed.g !== undefined && typeof parsed.g !== "number") {
      throw new Error("bad generation");
    }
    cursor = { startAt: parsed.s, beforeGeneration: parsed.g, prefix: parsed.p, delimiter: parsed.d, versions: parsed.v === true };
  } catch {
    throw invalidArgument(`page_token ${JSON.stringify(token)} is invalid: pass next_page_token from the previous response unchanged`);
  }
  if (cursor.prefix !== request.prefix || cursor.delimiter !== request.delimiter || cursor.versions !== (request.versions ?? false)) {
    throw invalidArgument("page_token belongs to a listing with another prefix, delimiter or versions flag: repeat those of the first request");
  }
  return cursor;
}
