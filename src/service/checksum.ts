import { createHash, type Hash } from "node:crypto";

import { crc32c } from "@node-rs/crc32";

/** CRC32C of one buffer, as an unsigned 32-bit integer. */
export function crc32cOf(data: Uint8Array): number {
  return crc32c(Buffer.from(data.buffer, data.byteOffset, data.byteLength)) >>> 0;
}

/** Extends a running CRC32C (0 to start) with one buffer. */
export function crc32cUpdate(data: Uint8Array, crc: number): number {
  return crc32c(Buffer.from(data.buffer, data.byteOffset, data.byteLength), crc) >>> 0;
}

/** SHA-256 and CRC32C of a stream, fed one chunk at a time. */
export class ObjectHasher {
  private readonly sha256 = createHash("sha256");
  private crc = 0;
  size = 0;

  update(data: Uint8Array): void {
    const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.sha256.update(buffer);
    this.crc = crc32c(buffer, this.crc);
    this.size += data.byteLength;
  }

  /** Returns the hex SHA-256 and the CRC32C; call once, after the last chunk. */
  digest(): { sha256: string; crc32c: number } {
    return { sha256: (this.sha256 as Hash).digest("hex"), crc32c: this.crc >>> 0 };
  }
}

/** ETag of an object: its quoted hex SHA-256, stable across backends. */
export function etagOf(sha256: string): string {
  return `"${sha256}"`;
}
