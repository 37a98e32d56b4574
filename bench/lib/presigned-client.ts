/*
 * Client of Engram's presigned URLs, as a MNEMOS job that fetches model
 * weights would use them. It makes one gRPC call to Engram for the URL,
 * then moves the bytes over plain HTTP/1.1 to wherever the URL points.
 * That is Engram's own data plane by default, and the S3 store itself with
 * ENGRAM_PRESIGN_URLS=store, so that the bytes do not pass through Engram.
 * An upload to the store ends with FinalizePresignedUpload, which commits it.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import http from "node:http";

import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { PresignOperation, PresignService } from "../../gen/engram/v1/presign_service_pb.js";
import type { ChunkSource, Transfer } from "./engram-clients.js";
import { verifiedRead } from "./reference-clients.js";

export class PresignedClient {
  private readonly presign: Client<typeof PresignService>;
  private readonly agent = new http.Agent({ keepAlive: true });

  /** `name` names where the URLs point, for the results. */
  constructor(
    engramUrl: string,
    readonly name: string,
  ) {
    this.presign = createClient(PresignService, createGrpcTransport({ baseUrl: engramUrl }));
  }

  /** Uploads with one PUT to a presigned URL, then finalizes. Engram's sha256 of the object must match. */
  async upload(bucket: string, key: string, source: ChunkSource, size: number, expectedSha256: string): Promise<Transfer> {
    const presigned = await this.presign.generatePresignedUrl({
      bucket,
      key,
      operation: PresignOperation.PUT,
      size: BigInt(size),
      expectedChecksums: { sha256: Buffer.from(expectedSha256, "hex") },
    });
    const hash = createHash("sha256");
    const request = http.request(presigned.url, {
      method: presigned.method,
      agent: this.agent,
      headers: { ...presigned.requiredHeaders, "Content-Length": String(size) },
    });
    const responded = once(request, "response") as Promise<[http.IncomingMessage]>;
    for await (const chunk of source()) {
      hash.update(chunk);
      if (!request.write(chunk)) await once(request, "drain");
    }
    request.end();
    const [response] = await responded;
    const body = await readText(response);
    if (response.statusCode !== 200) {
      throw new Error(`presigned ${presigned.method} responded with ${response.statusCode}: ${body.slice(0, 300)}`);
    }

    let committedSha256 = hash.digest("hex");
    if (presigned.finalizeToken !== "") {
      const { object } = await this.presign.finalizePresignedUpload({ finalizeToken: presigned.finalizeToken });
      committedSha256 = Buffer.from(object?.checksums?.sha256 ?? new Uint8Array()).toString("hex");
    }
    if (committedSha256 !== expectedSha256) {
      throw new Error(`presigned upload of ${bucket}/${key} committed sha256 ${committedSha256}, expected ${expectedSha256}`);
    }
    return { bytes: size, sha256: committedSha256 };
  }

  /** Downloads with one GET of a presigned URL and checks the sha256 of what arrived. */
  async download(bucket: string, key: string, size: number, expectedSha256: string): Promise<Transfer> {
    const presigned = await this.presign.generatePresignedUrl({ bucket, key, operation: PresignOperation.GET });
    const request = http.request(presigned.url, { method: presigned.method, agent: this.agent, headers: presigned.requiredHeaders });
    request.end();
    const [response] = (await once(request, "response")) as [http.IncomingMessage];
    if (response.statusCode !== 200) {
      const body = await readText(response);
      throw new Error(`presigned GET responded with ${response.statusCode}: ${body.slice(0, 300)}`);
    }
    return verifiedRead(response, size, expectedSha256, `presigned download of ${bucket}/${key}`);
  }

  close(): void {
    this.agent.destroy();
  }
}

async function readText(response: http.IncomingMessage): Promise<string> {
  const pieces: Buffer[] = [];
  for await (const piece of response as AsyncIterable<Buffer>) pieces.push(piece);
  return Buffer.concat(pieces).toString("utf8");
}
