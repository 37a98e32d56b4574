/*
 * Access control end to end. A table states which principal may call which
 * RPC (over gRPC, gRPC-Web and Connect) and HTTP path. Other suites cover
 * revocation of keys and of the presigned URLs they issued, the policy
 * file, the audit log, and that every generated RPC has an access rule.
 */
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { AdminService } from "../gen/engram/v1/admin_service_pb.js";
import { BucketStatus } from "../gen/engram/v1/object_pb.js";
import { PresignOperation, PresignService } from "../gen/engram/v1/presign_service_pb.js";
import { StorageService } from "../gen/engram/v1/storage_service_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { accessInterceptor } from "../src/api/access-interceptor.js";
import { ACCESS_RULES } from "../src/api/access-rules.js";
import { sha256Of } from "../src/auth/tokens.js";
import { PROTOCOLS, TEST_ADMIN_TOKEN, startTestEngram, transportFor, type Protocol, type TestEngram } from "./support/engram.js";
import { random, upload } from "./support/objects.js";
import { waitFor } from "./support/wait.js";

const GEN_DIR = fileURLToPath(new URL("../gen", import.meta.url));

interface Clients {
  storage: Client<typeof StorageService>;
  presign: Client<typeof PresignService>;
  admin: Client<typeof AdminService>;
  health: Client<typeof Health>;
}

function clientsFor(protocol: Protocol, url: string, token: string): Clients {
  const transport = transportFor(protocol, url, token);
  return {
    storage: createClient(StorageService, transport),
    presign: createClient(PresignService, transport),
    admin: createClient(AdminService, transport),
    health: createClient(Health, transport),
  };
}

/** Runs a call and returns "OK" or the name of its error code. */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return "OK";
  } catch (err) {
    return Code[ConnectError.from(err).code]!;
  }
}

/** Creates an access key through AdminService and returns its id and token. */
async function createKey(admin: Client<typeof AdminService>, principal: string, grants: { bucket: string; prefix?: string; actions: string[] }[]) {
  const response = await admin.createAccessKey({ principal, grants });
  return { keyId: response.accessKey!.keyId, token: response.token };
}

/** Imports every generated file and returns the services it declares. */
async function generatedServices(): Promise<DescService[]> {
  const files = (await readdir(GEN_DIR, { recursive: true })).filter((file) => file.endsWith("_pb.ts"));
  const services: DescService[] = [];
  for (const file of files) {
    const module = (await import(join(GEN_DIR, file))) as Record<string, unknown>;
    for (const value of Object.values(module)) {
      if (typeof value === "object" && value !== null && (value as { kind?: string }).kind === "service") services.push(value as DescService);
    }
  }
  return services;
}

describe("access rules", () => {
  it("cover every RPC of every service", async () => {
    const services = await generatedServices();
    const names = services.map((service) => service.typeName);
    expect(names).toContain("engram.v1.StorageService");
    expect(names).toContain("engram.v1.AdminService");

    for (const service of services) {
      for (const method of service.methods) {
        const name = `${service.typeName}/${method.name}`;
        expect(ACCESS_RULES.has(name), `${name} has no entry in ACCESS_RULES`).toBe(true);
      }
    }
  });

  it("deny an RPC without an entry", async () => {
    const interceptor = accessInterceptor({} as never, {} as never, new Map());
    const next = async () => {
      throw new Error("the handler ran");
    };
    const request = { service: StorageService, method: StorageService.method.getObject, stream: false } as never;
    await expect(interceptor(next as never)(request)).rejects.toMatchObject({ kind: "permission_denied" });
  });
});

/** Outcome of a cell: a code name, such as "OK" or "NotFound". */
type Expected = string;

interface Principals {
  admin: string;
  reader: string;
  jobWriter: string;
  deleter: string;
  stranger: string;
  anonymous: string;
  unknown: string;
}
type PrincipalName = keyof Principals;
const PRINCIPALS: readonly PrincipalName[] = ["admin", "reader", "jobWriter", "deleter", "stranger", "anonymous", "unknown"];

/**
 * One row of the table: a call, and the outcome for each principal that
 * passes access control. Every principal not named gets PermissionDenied,
 * and callers without valid credentials get Unauthenticated, unless the
 * RPC is public.
 */
interface Row {
  readonly name: string;
  readonly call: (clients: Clients) => Promise<unknown>;
  readonly allowed: Partial<Record<PrincipalName, Expected>>;
  readonly public?: boolean;
}

describe("access table", () => {
  let engram: TestEngram;
  const tokens = {} as Principals;
  let artifactsUpload = "";
  let modelsUpload = "";
  let resumableUpload = "";

  beforeAll(async () => {
    engram = await startTestEngram();
    const admin = clientsFor("grpc", engram.url, TEST_ADMIN_TOKEN);
    tokens.admin = TEST_ADMIN_TOKEN;
    tokens.reader = (await createKey(admin.admin, "serving", [{ bucket: "mnemos-models", actions: ["read", "list"] }])).token;
    tokens.jobWriter = (await createKey(admin.admin, "job-1", [{ bucket: "mnemos-artifacts", prefix: "jobs/1/", actions: ["read", "write", "list", "presign"] }])).token;
    tokens.deleter = (await createKey(admin.admin, "operator", [{ bucket: "mnemos-backups", actions: ["delete"] }])).token;
    tokens.stranger = (await createKey(admin.admin, "logs-reader", [{ bucket: "mnemos-logs", actions: ["read"] }])).token;
    tokens.anonymous = "";
    tokens.unknown = `engram_0123456789abcdef_${"A".repeat(43)}`;

    await upload(admin.storage, "mnemos-models", "m/a", random(100));
    await upload(admin.storage, "mnemos-artifacts", "jobs/1/a", random(100));
    await upload(admin.storage, "mnemos-artifacts", "other/a", random(100));
    await upload(admin.storage, "mnemos-backups", "b/a", random(100));
    artifactsUpload = (await admin.storage.createMultipartUpload({ spec: { bucket: "mnemos-artifacts", key: "jobs/1/mp" } })).uploadId;
    modelsUpload = (await admin.storage.createMultipartUpload({ spec: { bucket: "mnemos-models", key: "mp" } })).uploadId;
    resumableUpload = (await admin.storage.startResumableWrite({ spec: { bucket: "mnemos-artifacts", key: "jobs/1/r" } })).uploadId;
  });

  afterAll(async () => {
    await engram.destroy();
  });

  const rows: Row[] = [
    { name: "Upload to models", call: (c) => upload(c.storage, "mnemos-models", "t/x", random(10)), allowed: { admin: "OK" } },
    { name: "Upload under job prefix", call: (c) => upload(c.storage, "mnemos-artifacts", "jobs/1/u", random(10)), allowed: { admin: "OK", jobWriter: "OK" } },
    { name: "Upload outside job prefix", call: (c) => upload(c.storage, "mnemos-artifacts", "jobs/2/u", random(10)), allowed: { admin: "OK" } },
    { name: "Download of models", call: (c) => drain(c.storage.download({ bucket: "mnemos-models", key: "m/a" })), allowed: { admin: "OK", reader: "OK" } },
    {
      name: "Download of missing object",
      call: (c) => drain(c.storage.download({ bucket: "mnemos-models", key: "m/missing" })),
      allowed: { admin: "NotFound", reader: "NotFound" },
    },
    { name: "GetObject under job prefix", call: (c) => c.storage.getObject({ bucket: "mnemos-artifacts", key: "jobs/1/a" }), allowed: { admin: "OK", jobWriter: "OK" } },
    { name: "GetObject outside job prefix", call: (c) => c.storage.getObject({ bucket: "mnemos-artifacts", key: "other/a" }), allowed: { admin: "OK" } },
    { name: "ListObjects of models", call: (c) => c.storage.listObjects({ bucket: "mnemos-models" }), allowed: { admin: "OK", reader: "OK" } },
    { name: "ListObjects of job prefix", call: (c) => c.storage.listObjects({ bucket: "mnemos-artifacts", prefix: "jobs/1/" }), allowed: { admin: "OK", jobWriter: "OK" } },
    { name: "ListObjects of whole artifacts", call: (c) => c.storage.listObjects({ bucket: "mnemos-artifacts" }), allowed: { admin: "OK" } },
    {
      name: "DeleteObject of missing backup",
      call: (c) => c.storage.deleteObject({ bucket: "mnemos-backups", key: "b/missing" }),
      allowed: { admin: "NotFound", deleter: "NotFound" },
    },
    {
      name: "DeleteObject of existing model",
      call: (c) => c.storage.deleteObject({ bucket: "mnemos-models", key: "m/a", ifGenerationMatch: 999_999_999n }),
      allowed: { admin: "FailedPrecondition" },
    },
    {
      name: "ListBuckets",
      call: (c) => c.storage.listBuckets({}),
      allowed: { admin: "OK", reader: "OK", jobWriter: "OK", deleter: "OK", stranger: "OK" },
    },
    { name: "GetBucket", call: (c) => c.storage.getBucket({ name: "mnemos-models" }), allowed: { admin: "OK", reader: "OK" } },
    { name: "CreateBucket of a taken name", call: (c) => c.storage.createBucket({ bucket: { name: "mnemos-logs" } }), allowed: { admin: "AlreadyExists" } },
    {
      name: "UpdateBucket with a stale metageneration",
      call: (c) => c.storage.updateBucket({ bucket: { name: "mnemos-models", status: BucketStatus.ACTIVE }, updateMask: { paths: ["status"] }, ifMetagenerationMatch: 999_999n }),
      allowed: { admin: "FailedPrecondition" },
    },
    { name: "DeleteBucket of a bucket in use", call: (c) => c.storage.deleteBucket({ name: "mnemos-models" }), allowed: { admin: "FailedPrecondition" } },
    {
      name: "RestoreObject of a missing generation",
      call: (c) => c.storage.restoreObject({ bucket: "mnemos-artifacts", key: "jobs/1/a", generation: 999_999n }),
      allowed: { admin: "NotFound", jobWriter: "NotFound" },
    },
    {
      name: "GetCapabilities",
      call: (c) => c.storage.getCapabilities({}),
      allowed: { admin: "OK", reader: "OK", jobWriter: "OK", deleter: "OK", stranger: "OK" },
    },
    {
      name: "CreateMultipartUpload under job prefix",
      call: (c) => c.storage.createMultipartUpload({ spec: { bucket: "mnemos-artifacts", key: "jobs/1/mp2" } }),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    {
      name: "UploadPart to job upload",
      call: (c) => c.storage.uploadPart(partMessages(artifactsUpload, 1)),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    { name: "UploadPart to models upload", call: (c) => c.storage.uploadPart(partMessages(modelsUpload, 1)), allowed: { admin: "OK" } },
    {
      name: "UploadPartChunk to job upload",
      call: (c) => c.storage.uploadPartChunk({ uploadId: artifactsUpload, partNumber: 4, writeOffset: 0n }),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    {
      name: "UploadPartChunk to models upload",
      call: (c) => c.storage.uploadPartChunk({ uploadId: modelsUpload, partNumber: 4, writeOffset: 0n }),
      allowed: { admin: "OK" },
    },
    {
      name: "UploadPart to unknown upload",
      call: (c) => c.storage.uploadPart(partMessages("no-such-upload", 1)),
      allowed: { admin: "NotFound", jobWriter: "NotFound" },
    },
    { name: "ListParts of job upload", call: (c) => c.storage.listParts({ uploadId: artifactsUpload }), allowed: { admin: "OK", jobWriter: "OK" } },
    {
      name: "ListMultipartUploads of job prefix",
      call: (c) => c.storage.listMultipartUploads({ bucket: "mnemos-artifacts", prefix: "jobs/1/" }),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    {
      name: "CompleteMultipartUpload of unknown upload",
      call: (c) => c.storage.completeMultipartUpload({ uploadId: "no-such-upload" }),
      allowed: { admin: "NotFound", jobWriter: "NotFound" },
    },
    {
      name: "CompleteMultipartUpload of models upload",
      call: (c) => c.storage.completeMultipartUpload({ uploadId: modelsUpload, parts: [] }),
      allowed: { admin: "InvalidArgument" },
    },
    {
      name: "AbortMultipartUpload of unknown upload",
      call: (c) => c.storage.abortMultipartUpload({ uploadId: "no-such-upload" }),
      allowed: { admin: "NotFound", jobWriter: "NotFound" },
    },
    {
      name: "StartResumableWrite under job prefix",
      call: (c) => c.storage.startResumableWrite({ spec: { bucket: "mnemos-artifacts", key: "jobs/1/r2" } }),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    { name: "QueryWriteStatus of job upload", call: (c) => c.storage.queryWriteStatus({ uploadId: resumableUpload }), allowed: { admin: "OK", jobWriter: "OK" } },
    {
      name: "WriteChunk to job upload",
      call: (c) => c.storage.writeChunk({ uploadId: resumableUpload, writeOffset: 0n }),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    {
      name: "Upload resuming job upload",
      call: (c) => c.storage.upload(resumeMessages(resumableUpload)),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    {
      name: "GeneratePresignedUrl GET under job prefix",
      call: (c) => c.presign.generatePresignedUrl({ bucket: "mnemos-artifacts", key: "jobs/1/a", operation: PresignOperation.GET }),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    {
      name: "GeneratePresignedUrl GET of models",
      call: (c) => c.presign.generatePresignedUrl({ bucket: "mnemos-models", key: "m/a", operation: PresignOperation.GET }),
      allowed: { admin: "OK" },
    },
    {
      name: "GeneratePresignedUrl PUT under job prefix",
      call: (c) => c.presign.generatePresignedUrl({ bucket: "mnemos-artifacts", key: "jobs/1/p", operation: PresignOperation.PUT }),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    {
      name: "GeneratePresignedUrl UPLOAD_PART of job upload",
      call: (c) => c.presign.generatePresignedUrl({ uploadId: artifactsUpload, partNumber: 2, operation: PresignOperation.UPLOAD_PART }),
      allowed: { admin: "OK", jobWriter: "OK" },
    },
    {
      name: "FinalizePresignedUpload of invalid token",
      call: (c) => c.presign.finalizePresignedUpload({ finalizeToken: "invalid" }),
      allowed: { admin: "InvalidArgument", reader: "InvalidArgument", jobWriter: "InvalidArgument", deleter: "InvalidArgument", stranger: "InvalidArgument" },
    },
    { name: "CreateAccessKey", call: (c) => c.admin.createAccessKey({ principal: "extra", grants: [{ bucket: "mnemos-logs", actions: ["read"] }] }), allowed: { admin: "OK" } },
    { name: "ListAccessKeys", call: (c) => c.admin.listAccessKeys({}), allowed: { admin: "OK" } },
    { name: "RevokeAccessKey of unknown key", call: (c) => c.admin.revokeAccessKey({ keyId: "0000000000000000" }), allowed: { admin: "NotFound" } },
    { name: "ListAuditEvents", call: (c) => c.admin.listAuditEvents({}), allowed: { admin: "OK" } },
    { name: "Health Check", call: (c) => c.health.check({}), allowed: {}, public: true },
  ];

  it("has a row for every RPC", () => {
    const tested = new Set(rows.map((row) => row.name.split(" ")[0]));
    for (const service of [StorageService, PresignService, AdminService]) {
      for (const method of service.methods) {
        expect(tested.has(method.name), `no row calls ${service.typeName}/${method.name}`).toBe(true);
      }
    }
  });

  describe.each(PROTOCOLS)("over %s", (protocol) => {
    it.each(rows.map((row) => [row.name, row] as const))("%s", async (_name, row) => {
      for (const principal of PRINCIPALS) {
        const expected = expectedOutcome(row, principal);
        const actual = await outcome(() => row.call(clientsFor(protocol, engram.url, tokens[principal])));
        expect(actual, `${principal} calling ${row.name} over ${protocol}`).toBe(expected);
      }
    });
  });

  const httpRows: { name: string; method: string; path: () => string; allowed: Partial<Record<PrincipalName, number>> }[] = [
    { name: "GET of a model", method: "GET", path: () => "/v1/buckets/mnemos-models/objects/m/a", allowed: { admin: 200, reader: 200 } },
    { name: "HEAD of a model", method: "HEAD", path: () => "/v1/buckets/mnemos-models/objects/m/a", allowed: { admin: 200, reader: 200 } },
    { name: "GET of a missing model", method: "GET", path: () => "/v1/buckets/mnemos-models/objects/m/missing", allowed: { admin: 404, reader: 404 } },
    { name: "PUT under job prefix", method: "PUT", path: () => "/v1/buckets/mnemos-artifacts/objects/jobs/1/h", allowed: { admin: 200, jobWriter: 200 } },
    { name: "PUT of a model", method: "PUT", path: () => "/v1/buckets/mnemos-models/objects/h", allowed: { admin: 200 } },
    { name: "PUT of a job part", method: "PUT", path: () => `/v1/uploads/${artifactsUpload}/parts/3`, allowed: { admin: 200, jobWriter: 200 } },
    { name: "PUT of an unknown upload's part", method: "PUT", path: () => "/v1/uploads/no-such-upload/parts/1", allowed: { admin: 404, jobWriter: 404 } },
  ];

  it.each(httpRows.map((row) => [row.name, row] as const))("HTTP %s", async (_name, row) => {
    for (const principal of PRINCIPALS) {
      const headers: Record<string, string> = tokens[principal] === "" ? {} : { authorization: `Bearer ${tokens[principal]}` };
      const response = await fetch(`${engram.url}${row.path()}`, { method: row.method, headers, body: row.method === "PUT" ? random(10) : undefined });
      await response.arrayBuffer();
      const expected = row.allowed[principal] ?? (principal === "anonymous" || principal === "unknown" ? 401 : 403);
      expect(response.status, `${principal} sending ${row.method} ${row.name}`).toBe(expected);
    }
  });

  it("malformed authorization is 401 and UNAUTHENTICATED", async () => {
    const response = await fetch(`${engram.url}/v1/buckets/mnemos-models/objects/m/a`, { headers: { authorization: `Basic ${TEST_ADMIN_TOKEN}` } });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe('Bearer realm="engram"');
    expect(await response.text()).not.toContain(TEST_ADMIN_TOKEN);

    const grpc = await fetch(`${engram.url}/engram.v1.StorageService/ListBuckets`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer" },
      body: "{}",
    });
    expect(grpc.status).toBe(401);
    expect(((await grpc.json()) as { code: string }).code).toBe("unauthenticated");
  });

  it("CreateAccessKey rejects bad input", async () => {
    const admin = clientsFor("connect", engram.url, TEST_ADMIN_TOKEN).admin;
    const cases = [
      { principal: "bad name", grants: [{ bucket: "mnemos-logs", actions: ["read"] }], message: "principal" },
      { principal: "p", grants: [], message: "grants is empty" },
      { principal: "p", grants: [{ bucket: "mnemos-logs", actions: ["fly"] }], message: "\"fly\"" },
      { principal: "p", grants: [{ bucket: "", actions: ["read"] }], message: "bucket is missing" },
      { principal: "p", grants: [{ bucket: "mnemos-logs", actions: [] }], message: "actions is empty" },
      { principal: "p", grants: [{ bucket: "team-c", prefix: "sub/", actions: ["admin"] }], message: "admin acts on whole buckets" },
    ];
    for (const { message, ...request } of cases) {
      const error = await admin.createAccessKey(request).then(
        () => undefined,
        (err: unknown) => ConnectError.from(err),
      );
      expect(error?.code, JSON.stringify(request)).toBe(Code.InvalidArgument);
      expect(error?.rawMessage).toContain(message);
    }
    expect(await outcome(() => admin.listAuditEvents({ pageToken: "x" }))).toBe("InvalidArgument");
    expect(await outcome(() => admin.listAuditEvents({ pageSize: 5000 }))).toBe("InvalidArgument");
    expect(await outcome(() => admin.revokeAccessKey({ keyId: "" }))).toBe("InvalidArgument");
  });

  it("ListBuckets shows only granted buckets", async () => {
    const { buckets } = await clientsFor("grpc", engram.url, tokens.jobWriter).storage.listBuckets({});
    expect(buckets.map((bucket) => bucket.name)).toEqual(["mnemos-artifacts"]);
  });

  it("failures are counted by reason", async () => {
    const metrics = await (await fetch(`${engram.metricsUrl}/metrics`)).text();
    for (const reason of ["missing", "malformed", "invalid", "denied"]) {
      expect(metrics).toMatch(new RegExp(`engram_auth_failures_total\\{reason="${reason}"\\} [1-9]`));
    }
  });

  it("audit log records writes and denials", async () => {
    const admin = clientsFor("grpc", engram.url, TEST_ADMIN_TOKEN).admin;
    const { events } = await admin.listAuditEvents({ bucket: "mnemos-artifacts", pageSize: 1000 });
    const uploads = events.filter((event) => event.key === "jobs/1/u" && event.operation === "engram.v1.StorageService/Upload");
    expect(uploads.some((event) => event.principal.startsWith("key:") && event.result === "OK" && event.action === "write")).toBe(true);

    const denied = events.filter((event) => event.key === "jobs/2/u" && event.result === "PermissionDenied");
    expect(denied.length).toBeGreaterThan(0);
    expect(events.some((event) => event.operation === "http.PUT" && event.key === "jobs/1/h" && event.result === "OK")).toBe(true);
    expect(events.every((event) => event.time !== undefined)).toBe(true);

    const deletes = await admin.listAuditEvents({ bucket: "mnemos-backups" });
    expect(deletes.events.some((event) => event.action === "delete" && event.result === "NotFound")).toBe(true);
    const adminCalls = await admin.listAuditEvents({ principal: "config:admin", bucket: "*" });
    expect(adminCalls.events.some((event) => event.action === "admin" && event.operation === "engram.v1.AdminService/CreateAccessKey")).toBe(true);

    const first = await admin.listAuditEvents({ pageSize: 2 });
    expect(first.events).toHaveLength(2);
    const second = await admin.listAuditEvents({ pageSize: 2, pageToken: first.nextPageToken });
    expect(second.events[0]!.time!.seconds).toBeLessThanOrEqual(first.events[1]!.time!.seconds);
  });

  it("logs contain no token", async () => {
    const text = engram.logs.map((entry) => JSON.stringify(entry)).join("\n");
    for (const principal of PRINCIPALS) {
      if (tokens[principal] !== "") expect(text.includes(tokens[principal]), `${principal}'s token is in the log`).toBe(false);
    }
    expect(engram.logs.some((entry) => entry.msg === "authentication failed")).toBe(true);
  });
});

function expectedOutcome(row: Row, principal: PrincipalName): Expected {
  if (row.public) return "OK";
  if (principal === "anonymous" || principal === "unknown") return "Unauthenticated";
  return row.allowed[principal] ?? "PermissionDenied";
}

async function drain(responses: AsyncIterable<unknown>): Promise<void> {
  for await (const _response of responses) {
    // Only the outcome matters.
  }
}

async function* partMessages(uploadId: string, partNumber: number) {
  yield { uploadId, partNumber, data: { content: random(10) } };
  yield { writeOffset: 10n, finishWrite: true };
}

async function* resumeMessages(uploadId: string) {
  yield { uploadId };
}

describe("revocation", () => {
  let engram: TestEngram;

  beforeAll(async () => {
    engram = await startTestEngram();
  });

  afterAll(async () => {
    await engram.destroy();
  });

  it("ends calls and presigned URLs at once", async () => {
    const admin = clientsFor("connect", engram.url, TEST_ADMIN_TOKEN).admin;
    const key = await createKey(admin, "job-2", [{ bucket: "mnemos-artifacts", prefix: "jobs/2/", actions: ["read", "write", "presign"] }]);
    const job = clientsFor("grpc", engram.url, key.token);
    await upload(job.storage, "mnemos-artifacts", "jobs/2/a", random(100));
    const get = await job.presign.generatePresignedUrl({ bucket: "mnemos-artifacts", key: "jobs/2/a", operation: PresignOperation.GET });
    const put = await job.presign.generatePresignedUrl({ bucket: "mnemos-artifacts", key: "jobs/2/b", operation: PresignOperation.PUT });
    expect(get.url).toContain("x-engram-principal=key%3A");
    expect((await fetch(get.url)).status).toBe(200);

    await admin.revokeAccessKey({ keyId: key.keyId });

    expect(await outcome(() => job.storage.getObject({ bucket: "mnemos-artifacts", key: "jobs/2/a" }))).toBe("Unauthenticated");
    expect((await fetch(get.url)).status).toBe(403);
    const rejectedPut = await fetch(put.url, { method: "PUT", body: "x", headers: put.requiredHeaders });
    expect(rejectedPut.status).toBe(403);
    expect(await rejectedPut.text()).toContain("revoked");
    expect(await outcome(() => clientsFor("grpc", engram.url, TEST_ADMIN_TOKEN).storage.getObject({ bucket: "mnemos-artifacts", key: "jobs/2/b" }))).toBe("NotFound");

    const { accessKeys } = await admin.listAccessKeys({});
    const listed = accessKeys.find((candidate) => candidate.keyId === key.keyId);
    expect(listed?.revokeTime).toBeDefined();
    const listing = JSON.stringify(accessKeys, (_name, value: unknown) => (typeof value === "bigint" ? String(value) : value));
    expect(listing).not.toContain(key.token);
  });

  it("URL never grants more than its creator", async () => {
    const admin = clientsFor("grpc", engram.url, TEST_ADMIN_TOKEN);
    await upload(admin.storage, "mnemos-models", "secret/weights", random(100));
    const key = await createKey(admin.admin, "presigner", [{ bucket: "mnemos-models", prefix: "public/", actions: ["read", "presign"] }, { bucket: "mnemos-models", actions: ["presign"] }]);
    const presigner = clientsFor("grpc", engram.url, key.token);

    const denied = await outcome(() => presigner.presign.generatePresignedUrl({ bucket: "mnemos-models", key: "secret/weights", operation: PresignOperation.GET }));
    expect(denied).toBe("PermissionDenied");
    const putDenied = await outcome(() => presigner.presign.generatePresignedUrl({ bucket: "mnemos-models", key: "public/new", operation: PresignOperation.PUT }));
    expect(putDenied).toBe("PermissionDenied");
  });
});

describe("policy file", () => {
  let engram: TestEngram;
  let policyDir: string;
  let policyFile: string;
  const token = "policy-token-for-the-serving-fleet-0123456789";

  const policy = (actions: string[]) => JSON.stringify({ principals: [{ name: "serving", tokenSha256: [sha256Of(token)], grants: [{ bucket: "mnemos-models", actions }] }] });

  beforeAll(async () => {
    policyDir = await mkdtemp(join(tmpdir(), "engram-policy-"));
    policyFile = join(policyDir, "policy.json");
    await writeFile(policyFile, policy(["read", "list", "presign"]));
    engram = await startTestEngram({ ENGRAM_POLICY_FILE: policyFile });
  });

  afterAll(async () => {
    await engram.destroy();
    await rm(policyDir, { recursive: true, force: true });
  });

  it("grants its principals and reloads on change", async () => {
    const serving = clientsFor("grpc", engram.url, token);
    expect(await outcome(() => serving.storage.listObjects({ bucket: "mnemos-models" }))).toBe("OK");
    expect(await outcome(() => serving.storage.listObjects({ bucket: "mnemos-logs" }))).toBe("PermissionDenied");
    await upload(clientsFor("grpc", engram.url, TEST_ADMIN_TOKEN).storage, "mnemos-models", "policy/a", random(10));
    const { url } = await serving.presign.generatePresignedUrl({ bucket: "mnemos-models", key: "policy/a", operation: PresignOperation.GET });
    expect((await fetch(url)).status).toBe(200);

    await writeFile(policyFile, "{ not json");
    await waitFor(() => engram.logs.some((entry) => entry.msg === "policy file reload failed: the previous policy stays in force"), "the failed reload");
    expect(await outcome(() => serving.storage.listObjects({ bucket: "mnemos-models" }))).toBe("OK");

    await writeFile(policyFile, policy(["list"]));
    process.emit("SIGHUP", "SIGHUP");
    await waitFor(async () => (await outcome(() => serving.storage.getObject({ bucket: "mnemos-models", key: "policy/a" }))) === "PermissionDenied", "the narrowed policy");
    expect(await outcome(() => serving.storage.listObjects({ bucket: "mnemos-models" }))).toBe("OK");
    // The URL was made while the principal could read; now it cannot, so neither can the URL.
    expect((await fetch(url)).status).toBe(403);
  });

  it("invalid at start stops Engram", async () => {
    const bad = `${policyFile}.bad`;
    await writeFile(bad, JSON.stringify({ principals: [{ name: "x", tokenSha256: ["short"], grants: [] }] }));
    try {
      await expect(startTestEngram({ ENGRAM_POLICY_FILE: bad })).rejects.toThrow(/tokenSha256/);
    } finally {
      await rm(bad, { force: true });
    }
  });
});

describe("JWT", () => {
  let engram: TestEngram;
  let dir: string;
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const claims = { iss: "https://id.mnemos.test", aud: "engram", sub: "svc-reader" };

  function jwt(payload: Record<string, unknown>, algorithm: "ES256" | "RS256" = "ES256"): string {
    const header = { alg: algorithm, kid: algorithm === "ES256" ? "ec-1" : "rsa-1", typ: "JWT" };
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const signed = `${encode(header)}.${encode({ exp: Math.floor(Date.now() / 1000) + 300, ...payload })}`;
    const key = algorithm === "ES256" ? { key: ec.privateKey, dsaEncoding: "ieee-p1363" as const } : rsa.privateKey;
    return `${signed}.${sign("sha256", Buffer.from(signed), key).toString("base64url")}`;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "engram-jwt-"));
    const keys = [
      { ...ec.publicKey.export({ format: "jwk" }), kid: "ec-1" },
      { ...rsa.publicKey.export({ format: "jwk" }), kid: "rsa-1" },
    ];
    await writeFile(join(dir, "jwks.json"), JSON.stringify({ keys }));
    const principals = [{ name: "svc-reader", tokenSha256: [], grants: [{ bucket: "mnemos-models", actions: ["list"] }] }];
    await writeFile(join(dir, "policy.json"), JSON.stringify({ principals }));
    engram = await startTestEngram({
      ENGRAM_POLICY_FILE: join(dir, "policy.json"),
      ENGRAM_JWT_ISSUER: claims.iss,
      ENGRAM_JWT_AUDIENCE: claims.aud,
      ENGRAM_JWT_JWKS_FILE: join(dir, "jwks.json"),
    });
  });

  afterAll(async () => {
    await engram.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it("maps a valid token to its principal", async () => {
    const list = (token: string) => outcome(() => clientsFor("grpc", engram.url, token).storage.listObjects({ bucket: "mnemos-models" }));
    expect(await list(jwt(claims))).toBe("OK");
    expect(await list(jwt(claims, "RS256"))).toBe("OK");
    expect(await outcome(() => clientsFor("grpc", engram.url, jwt(claims)).storage.listObjects({ bucket: "mnemos-logs" }))).toBe("PermissionDenied");
    expect(await list(jwt({ ...claims, sub: "not-in-policy" }))).toBe("PermissionDenied");
  });

  it("rejects wrong claims and signatures", async () => {
    const list = (token: string) => outcome(() => clientsFor("connect", engram.url, token).storage.listObjects({ bucket: "mnemos-models" }));
    expect(await list(jwt({ ...claims, aud: "other" }))).toBe("Unauthenticated");
    expect(await list(jwt({ ...claims, iss: "https://evil.test" }))).toBe("Unauthenticated");
    expect(await list(jwt({ ...claims, exp: Math.floor(Date.now() / 1000) - 3600 }))).toBe("Unauthenticated");
    expect(await list(jwt({ ...claims, nbf: Math.floor(Date.now() / 1000) + 3600 }))).toBe("Unauthenticated");
    const [header, , signature] = jwt(claims).split(".");
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: "admin", exp: 9_999_999_999 })).toString("base64url")}.${signature}`;
    expect(await list(forged)).toBe("Unauthenticated");
    const unsigned = `${Buffer.from(JSON.stringify({ alg: "none", kid: "ec-1" })).toString("base64url")}.${jwt(claims).split(".")[1]}.x`;
    expect(await list(unsigned)).toBe("Unauthenticated");
  });
});

describe("first start", () => {
  it("creates one admin key and announces it", async () => {
    const announced: string[] = [];
    const engram = await startTestEngram({ ENGRAM_ADMIN_TOKEN: "" }, { announce: (text) => announced.push(text) });
    try {
      const token = (await readFile(join(engram.dataDir, "admin-token"), "utf8")).trim();
      expect(announced).toHaveLength(1);
      expect(announced[0]).toContain(token);
      expect((await stat(join(engram.dataDir, "admin-token"))).mode & 0o777).toBe(0o600);
      expect(JSON.stringify(engram.logs)).not.toContain(token);

      const admin = clientsFor("connect", engram.url, token).admin;
      const { accessKeys } = await admin.listAccessKeys({});
      expect(accessKeys.map((key) => key.principal)).toEqual(["admin"]);
      expect(await outcome(() => clientsFor("connect", engram.url, TEST_ADMIN_TOKEN).admin.listAccessKeys({}))).toBe("Unauthenticated");
    } finally {
      await engram.destroy();
    }
  });
});
