import { createHash, randomBytes } from "node:crypto";

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";

import type { ObjectSpecSchema } from "../../gen/engram/v1/object_pb.js";
import type { StorageService, UploadRequestSchema } from "../../gen/engram/v1/storage_service_pb.js";

export const MiB = 1024 * 1024;

type UploadRequestInit = MessageInitShape<typeof UploadRequestSchema>;
type SpecInit = MessageInitShape<typeof ObjectSpecSchema>;
/** Optional spec fields of a test upload, beside bucket and key. */
type SpecFields = Omit<Exclude<SpecInit, { $typeName: string }>, "bucket" | "key" | "$typeName">;

export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function random(size: number): Buffer {
  return randomBytes(size);
}

/** Upload messages: the spec, then chunks of `chunkBytes`, the last with finish_write. */
export async function* uploadMessages(spec: SpecInit, content: Uint8Array, chunkBytes = MiB): AsyncGenerator<UploadRequestInit> {
  yield { spec };
  for (let offset = 0; offset < content.length; offset += chunkBytes) {
    yield { writeOffset: BigInt(offset), data: { content: content.subarray(offset, offset + chunkBytes) } };
  }
  yield { writeOffset: BigInt(content.length), finishWrite: true };
}

export async function upload(client: Client<typeof StorageService>, bucket: string, key: string, content: Uint8Array, spec: SpecFields = {}) {
  const { object } = await client.upload(uploadMessages({ bucket, key, ...spec }, content));
  return object!;
}

/** Downloads an object and returns the first message and the content. */
export async function download(
  client: Client<typeof StorageService>,
  request: { bucket: string; key: string; readOffset?: bigint; readLimit?: bigint; generation?: bigint },
) {
  const chunks: Uint8Array[] = [];
  let first;
  let messages = 0;
  for await (const response of client.download(request)) {
    messages += 1;
    first ??= response;
    if (response.data) chunks.push(response.data.content);
  }
  return { first: first!, content: Buffer.concat(chunks), messages, chunks };
}
