import { randomBytes } from "node:crypto";

import { describe, expect, it } from "vitest";

import { ObjectHasher, crc32cCombine, crc32cOf } from "../src/service/checksum.js";

describe("crc32cCombine", () => {
  const lengths = [0, 1, 3, 64, 1000, 65_537, 1 << 20];

  for (const lengthA of [0, 7, 4096]) {
    for (const lengthB of lengths) {
      it(`joins ${lengthA} and ${lengthB} bytes`, () => {
        const a = randomBytes(lengthA);
        const b = randomBytes(lengthB);
        const combined = crc32cCombine(crc32cOf(a), crc32cOf(b), b.length);
        expect(combined).toBe(crc32cOf(Buffer.concat([a, b])));
      });
    }
  }

  it("matches the CRC32C check value", () => {
    // "123456789" has CRC32C 0xe3069283, the check value of the Castagnoli CRC.
    const head = Buffer.from("1234");
    const tail = Buffer.from("56789");
    expect(crc32cCombine(crc32cOf(head), crc32cOf(tail), tail.length)).toBe(0xe3069283);
  });
});

describe("ObjectHasher", () => {
  it("chunk CRCs give the same digest", () => {
    const chunks = [randomBytes(5000), randomBytes(0), randomBytes(123_457)];
    const reading = new ObjectHasher();
    const combining = new ObjectHasher();
    for (const chunk of chunks) {
      reading.update(chunk);
      combining.update(chunk, crc32cOf(chunk));
    }

    expect(combining.digest()).toEqual(reading.digest());
    expect(combining.size).toBe(128_457);
  });
});
