import { randomUUID } from "node:crypto";

import type { NewObject } from "../../src/metadata/metadata-store.js";

/** Builds an object version to commit straight into a metadata store, with placeholder content fields. */
export function newObject(bucket: string, key: string, generation: number, overrides: Partial<NewObject> = {}): NewObject {
  return {
    bucket,
    key,
    generation,
    versionId: randomUUID(),
    size: 10,
    contentType: "application/octet-stream",
    storageClass: "STANDARD",
    metadata: {},
    tags: {},
    sha256: "0".repeat(64),
    crc32c: 0,
    etag: `"${generation}"`,
    ...overrides,
  };
}
