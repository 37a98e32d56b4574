/*
 * Incompressible test data, generated as a stream so no object is ever held
 * in memory whole. The bytes are the AES-128-CTR keystream of a key derived
 * from a seed: fast (AES-NI), reproducible, and as random as model weights
 * look to a compressor.
 */
import { createCipheriv, createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { once } from "node:events";

const AES_BLOCK_BYTES = 16;

/** Yields `size` pseudo-random bytes for `seed` in chunks of `chunkBytes` (the last may be shorter). */
export function randomChunks(seed: string, size: number, chunkBytes: number): Generator<Buffer> {
  return randomChunksAt(seed, 0, size, chunkBytes);
}

/**
 * Yields the `size` bytes of the stream of `seed` that start at `start`, a
 * multiple of 16, so that parts of one object can be generated apart.
 */
export function* randomChunksAt(seed: string, start: number, size: number, chunkBytes: number): Generator<Buffer> {
  if (start % AES_BLOCK_BYTES !== 0) throw new Error(`start ${start} is not a multiple of ${AES_BLOCK_BYTES}`);
  const key = createHash("sha256").update(seed).digest().subarray(0, 16);
  // CTR mode encrypts the counter blocks IV, IV+1 and so on, so a counter
  // that starts at start/16 yields the keystream from byte `start` on.
  const counter = Buffer.alloc(AES_BLOCK_BYTES);
  counter.writeBigUInt64BE(BigInt(start / AES_BLOCK_BYTES), 8);
  const cipher = createCipheriv("aes-128-ctr", key, counter);
  const zeros = Buffer.alloc(chunkBytes);
  for (let offset = 0; offset < size; offset += chunkBytes) {
    const length = Math.min(chunkBytes, size - offset);
    yield cipher.update(length === chunkBytes ? zeros : zeros.subarray(0, length));
  }
}

/** Returns the hex SHA-256 of the bytes randomChunks yields for `seed` and `size`. */
export function sha256OfRandom(seed: string, size: number): string {
  const hash = createHash("sha256");
  for (const chunk of randomChunks(seed, size, 4 * 1024 * 1024)) hash.update(chunk);
  return hash.digest("hex");
}

/** Writes `size` pseudo-random bytes for `seed` to a file and returns their hex SHA-256. */
export async function writeRandomFile(path: string, seed: string, size: number): Promise<string> {
  const hash = createHash("sha256");
  const out = createWriteStream(path);
  try {
    for (const chunk of randomChunks(seed, size, 4 * 1024 * 1024)) {
      hash.update(chunk);
      if (!out.write(chunk)) await once(out, "drain");
    }
    out.end();
    await once(out, "finish");
  } catch (err) {
    out.destroy();
    throw err;
  }
  return hash.digest("hex");
}
