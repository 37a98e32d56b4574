import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Client as MinioClient } from "minio";
import { afterAll, describe, expect, inject, it } from "vitest";

import { AdminService } from "../gen/engram/v1/admin_service_pb.js";
import { PresignOperation, PresignService } from "../gen/engram/v1/presign_service_pb.js";
import { S3BlobStore } from "../src/blob/s3/s3-blob-store.js";
import { UrlSigner } from "../src/presign/url-signer.js";
import { isStorageError } from "../src/service/errors.js";
import { backendsUnderTest } from "./support/backends.js";
import { TEST_ADMIN_TOKEN, TEST_AUTHORIZATION, bearer, storageClient, type TestEngram } from "./support/engram.js";
import { random, sha256Hex, upload } from "./support/objects.js";
import { freePort } from "./support/s3-peers.js";

const execFileAsync = promisify(execFile);
const BUCKET = "mnemos-models";
const backends = await backendsUnderTest();
const started: TestEngram[] = [];
const dirs: string[] = [];

afterAll(async () => {
  for (const engram of started) await engram.destroy();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

function presignClient(engram: TestEngram) {
  return createClient(PresignService, createGrpcTransport({ baseUrl: engram.url, interceptors: [bearer(TEST_ADMIN_TOKEN)] }));
}

async function failure(call: () => Promise<unknown>): Promise<ConnectError | undefined> {
  return call().then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
}

describe("UrlSigner", () => {
  const signer = new UrlSigner([
    { id: "new", secret: Buffer.alloc(32, 1) },
    { id: "old", secret: Buffer.alloc(32, 2) },
  ]);
  const request = { method: "GET", bucket: "b", key: "k/ü", expires: 2_000_000_000, constraints: { "response-content-type": "text/plain" } };

  it("accepts its own signature", () => {
    const query = signer.sign(request);
    expect(signer.verify("GET", "b", "k/ü", query, 0)).toEqual({ "response-content-type": "text/plain" });
  });

  it("rejects another method, key or constraint", () => {
    const query = signer.sign(request);
    expect(() => signer.verify("PUT", "b", "k/ü", query, 0)).toThrow(/signature does not match/);
    expect(() => signer.verify("GET", "b", "k/u", query, 0)).toThrow(/signature does not match/);
    query.set("response-content-type", "text/html");
    expect(() => signer.verify("GET", "b", "k/ü", query, 0)).toThrow(/signature does not match/);
  });

  it("rejects an expired URL", () => {
    const query = signer.sign(request);
    let error: unknown;
    try {
      signer.verify("GET", "b", "k/ü", query, 2_000_000_001_000);
    } catch (err) {
      error = err;
    }
    expect(isStorageError(error, "permission_denied")).toBe(true);
    expect((error as Error).message).toContain("expired");
  });

  it("accepts URLs of a rotated-out key", () => {
    const oldSigner = new UrlSigner([{ id: "old", secret: Buffer.alloc(32, 2) }]);
    const query = oldSigner.sign(request);
    expect(signer.verify("GET", "b", "k/ü", query, 0)).toBeDefined();
  });
});

/**
 * Returns the settings that make the S3 store serve presigned URLs itself.
 * These suites test signing for the store; the embedded suites test the
 * default data plane URLs.
 */
function storeUrlsOn(s3: boolean): Record<string, string> {
  return s3 ? { ENGRAM_PRESIGN_URLS: "store" } : {};
}

describe.each(backends)("presigned URLs on $name", (backend) => {
  const s3 = backend.name !== "embedded";

  it.skipIf(!backend.available)("GET serves the object with its file name", async () => {
    const env: Record<string, string> = {};
    if (s3) {
      // Clients reach the store by another name than Engram does.
      env.ENGRAM_S3_PUBLIC_ENDPOINT = inject("minio")!.endpoint.replace("127.0.0.1", "localhost");
    }
    const engram = await backend.start({ ...env, ...storeUrlsOn(s3) });
    started.push(engram);
    const content = random(300_000);
    await upload(storageClient("grpc", engram.url), BUCKET, "presign/a b?c.bin", content, { contentType: "application/x-weights" });

    const fileName = "modèle v2 (final)!.safetensors";
    const presigned = await presignClient(engram).generatePresignedUrl({
      bucket: BUCKET,
      key: "presign/a b?c.bin",
      operation: PresignOperation.GET,
      expiresInSeconds: 120n,
      downloadFileName: fileName,
    });
    expect(presigned.method).toBe("GET");
    if (s3) expect(presigned.url).toContain(`${env.ENGRAM_S3_PUBLIC_ENDPOINT!}/`);
    const expiresIn = Number(presigned.expireTime!.seconds) - Date.now() / 1000;
    expect(expiresIn).toBeGreaterThan(100);
    expect(expiresIn).toBeLessThanOrEqual(121);

    const response = await fetch(presigned.url);
    expect(response.status).toBe(200);
    const body = Buffer.from(await response.arrayBuffer());
    expect(sha256Hex(body)).toBe(sha256Hex(content));
    const disposition = response.headers.get("content-disposition") ?? "";
    expect(disposition).toContain(`filename*=UTF-8''${encodeURIComponent(fileName).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`);

    const ranged = await fetch(presigned.url, { headers: { Range: "bytes=100-199" } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(content.subarray(100, 200))).toBe(true);
  });

  it.skipIf(!backend.available)("part URLs upload a multipart object", async () => {
    const engram = await backend.start(storeUrlsOn(s3));
    started.push(engram);
    const client = storageClient("grpc", engram.url);
    const parts = [random(5 * 1024 * 1024), random(123_457)];
    const { uploadId } = await client.createMultipartUpload({ spec: { bucket: BUCKET, key: "presign/parts.bin" } });

    for (const [index, content] of parts.entries()) {
      const presigned = await presignClient(engram).generatePresignedUrl({
        operation: PresignOperation.UPLOAD_PART,
        uploadId,
        partNumber: index + 1,
        size: BigInt(content.length),
      });
      expect(presigned.requiredHeaders["Content-Length"]).toBe(String(content.length));
      const response = await fetch(presigned.url, { method: "PUT", body: content });
      expect(response.status).toBe(200);
    }
    const badPart = await failure(() => presignClient(engram).generatePresignedUrl({ operation: PresignOperation.UPLOAD_PART, uploadId, partNumber: 10_001 }));
    expect(badPart?.code).toBe(Code.InvalidArgument);
    const noUpload = await failure(() => presignClient(engram).generatePresignedUrl({ operation: PresignOperation.UPLOAD_PART, uploadId: "no-such-upload", partNumber: 1 }));
    expect(noUpload?.code).toBe(Code.NotFound);

    const { object } = await client.completeMultipartUpload({ uploadId, parts: [{ partNumber: 1 }, { partNumber: 2 }] });
    expect(Buffer.from(object!.checksums!.sha256).toString("hex")).toBe(sha256Hex(Buffer.concat(parts)));
  });

  it.skipIf(!backend.available)("expiry outside 60 s to 7 days is rejected", async () => {
    const engram = await backend.start(storeUrlsOn(s3));
    started.push(engram);
    await upload(storageClient("grpc", engram.url), BUCKET, "presign/x", random(10));
    for (const seconds of [59n, 604_801n]) {
      const err = await failure(() => presignClient(engram).generatePresignedUrl({ bucket: BUCKET, key: "presign/x", operation: PresignOperation.GET, expiresInSeconds: seconds }));
      expect(err?.code).toBe(Code.InvalidArgument);
      expect(err?.rawMessage).toContain("60 to 604800");
    }
    const missing = await failure(() => presignClient(engram).generatePresignedUrl({ bucket: BUCKET, key: "presign/none", operation: PresignOperation.GET }));
    expect(missing?.code).toBe(Code.NotFound);
  });

  it.skipIf(!backend.available)("PUT stores the object at the commit point", async () => {
    const engram = await backend.start(storeUrlsOn(s3));
    started.push(engram);
    const client = storageClient("grpc", engram.url);
    const content = random(200_000);
    const presigned = await presignClient(engram).generatePresignedUrl({
      bucket: BUCKET,
      key: "presign/put.bin",
      operation: PresignOperation.PUT,
      contentType: "application/x-test",
      size: BigInt(content.length),
      expectedChecksums: { sha256: createHash("sha256").update(content).digest() },
    });
    expect(presigned.method).toBe("PUT");

    const response = await fetch(presigned.url, { method: "PUT", body: content, headers: presigned.requiredHeaders });
    expect(response.status).toBe(200);

    if (presigned.finalizeToken !== "") {
      // Uploaded to the store but not committed: nothing visible yet.
      const hidden = await failure(() => client.getObject({ bucket: BUCKET, key: "presign/put.bin" }));
      expect(hidden?.code).toBe(Code.NotFound);
      const { object } = await presignClient(engram).finalizePresignedUpload({ finalizeToken: presigned.finalizeToken });
      expect(object?.size).toBe(BigInt(content.length));
      const again = await presignClient(engram).finalizePresignedUpload({ finalizeToken: presigned.finalizeToken });
      expect(again.object?.generation).toBe(object?.generation);
    }

    const { object } = await client.getObject({ bucket: BUCKET, key: "presign/put.bin" });
    expect(Buffer.from(object!.checksums!.sha256).toString("hex")).toBe(sha256Hex(content));
    expect(object?.contentType).toBe("application/x-test");
  });

  it.skipIf(!backend.available)("PUT of other content is not committed", async () => {
    const engram = await backend.start(storeUrlsOn(s3));
    started.push(engram);
    const expected = random(1000);
    const presigned = await presignClient(engram).generatePresignedUrl({
      bucket: BUCKET,
      key: "presign/wrong.bin",
      operation: PresignOperation.PUT,
      expectedChecksums: { sha256: createHash("sha256").update(expected).digest() },
    });
    const response = await fetch(presigned.url, { method: "PUT", body: random(1000), headers: presigned.requiredHeaders });
    if (presigned.finalizeToken === "") {
      expect(response.status).toBe(400);
    } else {
      expect(response.status).toBe(200);
      const err = await failure(() => presignClient(engram).finalizePresignedUpload({ finalizeToken: presigned.finalizeToken }));
      expect(err?.code).toBe(Code.InvalidArgument);
    }
    const hidden = await failure(() => storageClient("grpc", engram.url).getObject({ bucket: BUCKET, key: "presign/wrong.bin" }));
    expect(hidden?.code).toBe(Code.NotFound);
  });
});

describe.each(backends)("presigned URLs by hand on $name", (backend) => {
  const s3 = backend.name !== "embedded";

  it.skipIf(!backend.available)("curl, ranges and ETag work for awkward keys", async () => {
    const engram = await backend.start(storeUrlsOn(s3));
    started.push(engram);
    const dir = await mkdtemp(join(tmpdir(), "engram-presign-"));
    dirs.push(dir);
    const key = "url/a?b#c+d%e f ü.bin";
    const content = random(70_000);
    await writeFile(join(dir, "in.bin"), content);

    const put = await presignClient(engram).generatePresignedUrl({ bucket: BUCKET, key, operation: PresignOperation.PUT, contentType: "application/x-test" });
    const headers = Object.entries(put.requiredHeaders).flatMap(([name, value]) => ["-H", `${name}: ${value}`]);
    await execFileAsync("curl", ["-sS", "--fail", "-T", "in.bin", ...headers, put.url], { cwd: dir, timeout: 30_000 });
    if (put.finalizeToken !== "") await presignClient(engram).finalizePresignedUpload({ finalizeToken: put.finalizeToken });

    const { object } = await storageClient("grpc", engram.url).getObject({ bucket: BUCKET, key });
    expect(object?.key).toBe(key);
    expect(object?.contentType).toBe("application/x-test");

    const get = await presignClient(engram).generatePresignedUrl({ bucket: BUCKET, key, operation: PresignOperation.GET });
    await execFileAsync("curl", ["-sS", "--fail", "-o", "out.bin", get.url], { cwd: dir, timeout: 30_000 });
    expect(sha256Hex(await readFile(join(dir, "out.bin")))).toBe(sha256Hex(content));

    const first = await fetch(get.url, { headers: { Range: "bytes=0-0" } });
    expect(first.status).toBe(206);
    expect(Buffer.from(await first.arrayBuffer()).equals(content.subarray(0, 1))).toBe(true);
    const last = await fetch(get.url, { headers: { Range: "bytes=-10" } });
    expect(last.status).toBe(206);
    expect(Buffer.from(await last.arrayBuffer()).equals(content.subarray(content.length - 10))).toBe(true);
    const beyond = await fetch(get.url, { headers: { Range: `bytes=${content.length + 5}-` } });
    expect(beyond.status).toBe(416);
    const etag = (await fetch(get.url)).headers.get("etag")!;
    expect((await fetch(get.url, { headers: { "If-None-Match": etag } })).status).toBe(304);
    if (!s3) {
      const head = await fetch(get.url, { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.headers.get("content-length")).toBe(String(content.length));
    }

    const metrics = await (await fetch(`${engram.metricsUrl}/metrics`)).text();
    expect(metrics).toContain('engram_presigned_urls_total{operation="GET"} 1');
    expect(metrics).toContain('engram_presigned_urls_total{operation="PUT"} 1');
  });

  it.skipIf(!backend.available)("tampered and expired URLs are 403", async () => {
    const engram = await backend.start(storeUrlsOn(s3));
    started.push(engram);
    await upload(storageClient("grpc", engram.url), BUCKET, "tamper/a", random(100));
    const get = await presignClient(engram).generatePresignedUrl({ bucket: BUCKET, key: "tamper/a", operation: PresignOperation.GET });

    const signatureParam = s3 ? "X-Amz-Signature" : "X-Engram-Signature";
    const url = new URL(get.url);
    const signature = url.searchParams.get(signatureParam)!;
    url.searchParams.set(signatureParam, `${signature.slice(0, -1)}${signature.endsWith("0") ? "1" : "0"}`);
    const badSignature = await fetch(url);
    expect(badSignature.status).toBe(403);
    expect(await badSignature.text()).toMatch(/<Error><Code>\w+<\/Code>/);

    const otherKey = await fetch(get.url.replace("tamper/a", "tamper/b"));
    expect(otherKey.status).toBe(403);

    const put = await presignClient(engram).generatePresignedUrl({ bucket: BUCKET, key: "tamper/new", operation: PresignOperation.PUT });
    const putUrl = new URL(put.url);
    const putSignature = putUrl.searchParams.get(signatureParam)!;
    putUrl.searchParams.set(signatureParam, `${putSignature.slice(0, -1)}${putSignature.endsWith("0") ? "1" : "0"}`);
    expect((await fetch(putUrl, { method: "PUT", body: "x", headers: put.requiredHeaders })).status).toBe(403);
    const nothing = await failure(() => storageClient("grpc", engram.url).getObject({ bucket: BUCKET, key: "tamper/new" }));
    expect(nothing?.code).toBe(Code.NotFound);

    const expired = s3 ? await expiredS3Url(engram) : await expiredEngramUrl(engram);
    const response = await fetch(expired);
    expect(response.status).toBe(403);
    expect(await response.text()).toMatch(/<Error><Code>AccessDenied<\/Code>/);
  });
});

/** Signs a GET URL that expired a minute ago with the server's own key. */
async function expiredEngramUrl(engram: TestEngram): Promise<string> {
  const stored = JSON.parse(await readFile(join(engram.dataDir, "signing-key.json"), "utf8")) as { id: string; secret: string };
  const signer = new UrlSigner([{ id: stored.id, secret: Buffer.from(stored.secret, "hex") }]);
  const query = signer.sign({ method: "GET", bucket: BUCKET, key: "tamper/a", expires: Math.floor(Date.now() / 1000) - 60, constraints: {} });
  return `${engram.url}/v1/buckets/${BUCKET}/objects/tamper/a?${query.toString()}`;
}

/** Signs an S3 GET URL valid for one second and waits until it expired. */
async function expiredS3Url(engram: TestEngram): Promise<string> {
  const object = await engram.metadata.getObject(BUCKET, "tamper/a");
  const url = await (engram.blobs as S3BlobStore).presignGet(object!, 1, {});
  await new Promise((resolve) => setTimeout(resolve, 2100));
  return url;
}

describe("embedded data plane", () => {
  const embedded = backends[0]!;

  it("tampered and wrong-header URLs are 403", async () => {
    const engram = await embedded.start();
    started.push(engram);
    await upload(storageClient("grpc", engram.url), BUCKET, "plane/a", random(10));
    const get = await presignClient(engram).generatePresignedUrl({ bucket: BUCKET, key: "plane/a", operation: PresignOperation.GET });
    const tampered = get.url.replace("plane/a", "plane/b");
    expect((await fetch(tampered)).status).toBe(403);

    const put = await presignClient(engram).generatePresignedUrl({ bucket: BUCKET, key: "plane/c", operation: PresignOperation.PUT, contentType: "text/plain" });
    const wrongType = await fetch(put.url, { method: "PUT", body: "x", headers: { "Content-Type": "text/html" } });
    expect(wrongType.status).toBe(403);
    expect(await wrongType.text()).toContain("Content-Type");
  });

  it("curl -T uploads and curl -O downloads", async () => {
    const engram = await embedded.start();
    started.push(engram);
    const dir = await mkdtemp(join(tmpdir(), "engram-curl-"));
    dirs.push(dir);
    const content = random(3 * 1024 * 1024 + 7);
    await writeFile(join(dir, "model.safetensors"), content);
    const url = `${engram.url}/v1/buckets/${BUCKET}/objects/curl/model.safetensors`;

    const auth = ["-H", `Authorization: ${TEST_AUTHORIZATION}`];
    const put = await execFileAsync("curl", ["-sS", "--fail-with-body", ...auth, "-T", "model.safetensors", url], { cwd: dir, timeout: 30_000 });
    expect(JSON.parse(put.stdout).sha256).toBe(sha256Hex(content));

    const out = join(dir, "out");
    await execFileAsync("mkdir", ["-p", out]);
    await execFileAsync("curl", ["-sS", "--fail", ...auth, "-O", url], { cwd: out, timeout: 30_000 });
    expect(sha256Hex(await readFile(join(out, "model.safetensors")))).toBe(sha256Hex(content));

    const authorization = TEST_AUTHORIZATION;
    const head = await fetch(url, { method: "HEAD", headers: { authorization } });
    expect(head.headers.get("content-length")).toBe(String(content.length));
    const etag = head.headers.get("etag")!;
    expect((await fetch(url, { headers: { "If-None-Match": etag, authorization } })).status).toBe(304);
    const unsatisfiable = await fetch(url, { headers: { Range: `bytes=${content.length}-`, authorization } });
    expect(unsatisfiable.status).toBe(416);
    expect(unsatisfiable.headers.get("content-range")).toBe(`bytes */${content.length}`);
    expect((await fetch(`${engram.url}/v1/buckets/${BUCKET}/objects/curl/missing`, { headers: { authorization } })).status).toBe(404);

    const removal = await fetch(url, { method: "DELETE", headers: { authorization } });
    expect(removal.status).toBe(405);
    expect(removal.headers.get("allow")).toBe("GET, HEAD, PUT");
    const removalBody = await removal.text();
    expect(removalBody).toContain("<Code>MethodNotAllowed</Code>");
    expect(removalBody).toContain("method DELETE is not supported on objects");
    expect((await fetch(`${engram.url}/v1/uploads/some-upload/parts/1`, { method: "GET", headers: { authorization } })).status).toBe(405);
  });

  it("cut-off PUT stores nothing", async () => {
    const engram = await embedded.start();
    started.push(engram);
    const port = new URL(engram.url).port;
    const net = await import("node:net");
    const socket = net.connect(Number(port), "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write(`PUT /v1/buckets/${BUCKET}/objects/cut/off HTTP/1.1\r\nHost: x\r\nAuthorization: ${TEST_AUTHORIZATION}\r\nContent-Length: 1000000\r\n\r\n`);
    socket.write(random(300_000));
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const err = await failure(() => storageClient("grpc", engram.url).getObject({ bucket: BUCKET, key: "cut/off" }));
    expect(err?.code).toBe(Code.NotFound);
  });
});

describe.each(backends.filter((backend) => backend.name !== "embedded"))("data plane URLs on $name", (backend) => {
  it.skipIf(!backend.available)("revoked creator ends URLs at once", async () => {
    const engram = await backend.start();
    started.push(engram);
    const content = random(200_000);
    await upload(storageClient("grpc", engram.url), BUCKET, "revocable/a", content);
    const adminTransport = createGrpcTransport({ baseUrl: engram.url, interceptors: [bearer(TEST_ADMIN_TOKEN)] });
    const admin = createClient(AdminService, adminTransport);
    const { accessKey, token } = await admin.createAccessKey({ principal: "url-maker", grants: [{ bucket: BUCKET, actions: ["read", "write", "presign"] }] });
    const maker = createClient(PresignService, createGrpcTransport({ baseUrl: engram.url, interceptors: [bearer(token)] }));

    const get = await maker.generatePresignedUrl({ bucket: BUCKET, key: "revocable/a", operation: PresignOperation.GET });
    const put = await maker.generatePresignedUrl({ bucket: BUCKET, key: "revocable/b", operation: PresignOperation.PUT });
    expect(get.url.startsWith(`${engram.url}/v1/buckets/`)).toBe(true);
    expect(put.finalizeToken).toBe("");
    const fetched = await fetch(get.url);
    expect(fetched.status).toBe(200);
    expect(sha256Hex(Buffer.from(await fetched.arrayBuffer()))).toBe(sha256Hex(content));
    expect((await fetch(put.url, { method: "PUT", body: random(10), headers: put.requiredHeaders })).status).toBe(200);

    // The URL itself is valid, but its creator no longer has the grant.
    await admin.revokeAccessKey({ keyId: accessKey!.keyId });
    expect((await fetch(get.url)).status).toBe(403);
    expect((await fetch(put.url, { method: "PUT", body: random(10), headers: put.requiredHeaders })).status).toBe(403);
  });
});

describe("S3 signing", () => {
  it("needs no reachable store", async () => {
    const deadPort = await freePort();
    const client = new MinioClient({ endPoint: "127.0.0.1", port: deadPort, useSSL: false, accessKey: "a", secretKey: "b".repeat(20), region: "us-east-1", pathStyle: true });
    const store = new S3BlobStore(client, { bucketPrefix: "", region: "us-east-1", createBuckets: false, partSizeBytes: 5 * 1024 * 1024, partsInFlight: 1 });
    const url = await store.presignGet({ bucket: BUCKET, key: "k", versionId: "v" }, 60, { contentDisposition: "attachment" });
    expect(url).toContain(`127.0.0.1:${deadPort}`);
    expect(url).toContain("X-Amz-Signature");
  });
});
