import { createHash, type Hash } from "node:crypto";

import { crc32c } from "@node-rs/crc32";

import { invalidArgument } from "./errors.js";

/** CRC32C of one buffer, as an unsigned 32-bit integer. */
export function crc32cOf(data: Uint8Array): number {
  return crc32c(Buffer.from(data.buffer, data.byteOffset, data.byteLength)) >>> 0;
}

/** SHA-256 and CRC32C of a stream, fed one chunk at a time. */
export class ObjectHasher {
  private readonly sha256 = createHash("sha256");
  private crc = 0;
  size = 0;

  /**
   * Adds a chunk. A caller that has already computed the chunk's CRC32C
   * passes it, and the object's CRC32C is then combined from it instead of
   * reading the bytes a second time.
   */
  update(data: Uint8Array, chunkCrc32c?: number): void {
    const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.sha256.update(buffer);
    this.crc = chunkCrc32c === undefined ? crc32c(buffer, this.crc) : crc32cCombine(this.crc, chunkCrc32c, data.byteLength);
    this.size += data.byteLength;
  }

  /** Returns the hex SHA-256 and the CRC32C; call once, after the last chunk. */
  digest(): { sha256: string; crc32c: number } {
    return { sha256: (this.sha256 as Hash).digest("hex"), crc32c: this.crc >>> 0 };
  }
}

/** The CRC32C (Castagnoli) polynomial 0x1EDC6F41 in reversed bit order. */
const CRC32C_POLYNOMIAL = 0x82f63b78;

/**
 * Multiplies two polynomials modulo the CRC32C polynomial, all in reversed
 * bit order: bit 31 is the coefficient of x^0.
 */
function multiplyModPolynomial(a: number, b: number): number {
  let product = 0;
  for (let bit = 0x80000000; bit !== 0; bit >>>= 1) {
    if ((a & bit) !== 0) product ^= b;
    b = (b & 1) !== 0 ? (b >>> 1) ^ CRC32C_POLYNOMIAL : b >>> 1;
  }
  return product >>> 0;
}

/** x^(2^k) modulo the polynomial for k = 0..63, enough for any safe-integer length in bits. */
const X_POWERS_OF_TWO: number[] = (() => {
  const powers = [0x40000000];
  for (let k = 1; k < 64; k++) powers.push(multiplyModPolynomial(powers[k - 1]!, powers[k - 1]!));
  return powers;
})();

/**
 * Returns the CRC32C of A followed by B from the CRC32C of A, the CRC32C
 * of B and the length of B: crc(A) is shifted past B's bits by multiplying
 * it with x^(8 * length) modulo the polynomial.
 */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  let shift = 0x80000000;
  let k = 3;
  for (let n = lengthB; n > 0; n = Math.floor(n / 2), k++) {
    if (n % 2 === 1) shift = multiplyModPolynomial(X_POWERS_OF_TWO[k]!, shift);
  }
  return (multiplyModPolynomial(shift, crcA >>> 0) ^ crcB) >>> 0;
}

/** ETag of an object: its quoted hex SHA-256, stable across backends. */
export function etagOf(sha256: string): string {
  return `"${sha256}"`;
}

/**
 * Checks one received data chunk against the chunk size limit and, when the
 * client sent one, its CRC32C. Returns the verified CRC32C, so that an
 * ObjectHasher can combine it instead of reading the bytes a second time.
 * `retry` ends the corruption message with what the client should do.
 */
export function checkChunk(data: Uint8Array, crc: number | undefined, writeOffset: number, maxChunkBytes: number, retry: string): number | undefined {
  if (data.byteLength > maxChunkBytes) {
    throw invalidArgument(`data chunk of ${data.byteLength} bytes exceeds the maximum of ${maxChunkBytes} bytes: send smaller chunks`);
  }
  if (crc === undefined) return undefined;
  const actual = crc32cOf(data);
  if (actual !== crc) {
    throw invalidArgument(`crc32c of the chunk at write_offset ${writeOffset} does not match its content: the data was corrupted in transit; ${retry}`);
  }
  return actual;
}
