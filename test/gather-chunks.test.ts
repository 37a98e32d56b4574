import { describe, expect, it } from "vitest";

import { gatherChunks } from "../src/service/download.js";

async function* piecesOf(sizes: readonly number[]): AsyncGenerator<Uint8Array> {
  let next = 0;
  for (const size of sizes) {
    const piece = new Uint8Array(size);
    for (let i = 0; i < size; i++) piece[i] = next++ & 0xff;
    yield piece;
  }
}

/** Returns chunk sizes in turn. The last one repeats. */
function sizesInTurn(chunkBytes: number | readonly number[]): () => number {
  const turns = typeof chunkBytes === "number" ? [chunkBytes] : chunkBytes;
  let next = 0;
  return () => turns[Math.min(next++, turns.length - 1)]!;
}

async function gather(sizes: readonly number[], chunkBytes: number | readonly number[]): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of gatherChunks(piecesOf(sizes), sizesInTurn(chunkBytes))) chunks.push(chunk);
  return chunks;
}

describe("gatherChunks", () => {
  const cases: { name: string; sizes: number[]; chunkBytes: number | number[]; expected: number[] }[] = [
    { name: "small pieces joined", sizes: [3, 3, 3, 3], chunkBytes: 5, expected: [5, 5, 2] },
    { name: "large piece split", sizes: [12], chunkBytes: 5, expected: [5, 5, 2] },
    { name: "exact pieces kept", sizes: [5, 5], chunkBytes: 5, expected: [5, 5] },
    { name: "remainder joined to next piece", sizes: [7, 8], chunkBytes: 5, expected: [5, 5, 5] },
    { name: "empty pieces ignored", sizes: [0, 4, 0, 1], chunkBytes: 5, expected: [5] },
    { name: "no pieces", sizes: [], chunkBytes: 5, expected: [] },
    { name: "size shrinks inside a piece", sizes: [12], chunkBytes: [8, 2], expected: [8, 2, 2] },
    { name: "size shrinks while joining", sizes: [3, 3, 3, 3], chunkBytes: [5, 2], expected: [5, 2, 2, 2, 1] },
    { name: "size grows again", sizes: [4, 4, 4], chunkBytes: [2, 2, 8], expected: [2, 2, 8] },
  ];

  for (const { name, sizes, chunkBytes, expected } of cases) {
    it(name, async () => {
      const chunks = await gather(sizes, chunkBytes);
      expect(chunks.map((chunk) => chunk.length)).toEqual(expected);

      const joined = Buffer.concat(chunks);
      const total = sizes.reduce((sum, size) => sum + size, 0);
      expect(joined.length).toBe(total);
      for (let i = 0; i < total; i++) {
        if (joined[i] !== (i & 0xff)) throw new Error(`byte ${i} is ${joined[i]}, expected ${i & 0xff}`);
      }
    });
  }

  it("large piece split without copying", async () => {
    const piece = new Uint8Array(10);
    const chunks: Uint8Array[] = [];
    for await (const chunk of gatherChunks((async function* () { yield piece; })(), () => 5)) chunks.push(chunk);
    expect(chunks[0]!.buffer).toBe(piece.buffer);
    expect(chunks[1]!.buffer).toBe(piece.buffer);
  });
});
