/*
 * The access each RPC needs, in one table: the access interceptor looks each
 * call up here before the handler runs. An RPC without an entry is denied
 * at run time, the table's type makes a missing entry of a generated
 * service a compile error, and a test checks every method of every service
 * descriptor against it. A new RPC therefore needs one entry here and
 * nothing in its handler.
 */
import type { DescService, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";

import { AdminService } from "../../gen/engram/v1/admin_service_pb.js";
import { PresignOperation, PresignService } from "../../gen/engram/v1/presign_service_pb.js";
import { StorageService } from "../../gen/engram/v1/storage_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import * as reflectionV1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as reflectionV1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { AccessCheck } from "../auth/access-control.js";
import { ANY_BUCKET, type Action, type Resource } from "../auth/grants.js";

/** Lookups a rule may need to find the resource of a call. */
export interface RuleContext {
  /**
   * Returns the bucket and key of an upload session. It first checks that
   * the caller may do the action somewhere, so that callers without such a
   * grant cannot probe upload ids.
   */
  uploadTarget(uploadId: string, action: Action): Promise<Resource>;
  /** Returns the bucket and key named by a finalize token of a presigned S3 upload. */
  finalizeTarget(token: string): Resource;
}

export type AccessRule<M = never> =
  /** No credentials needed: health checks and server reflection. */
  | { readonly kind: "public" }
  /** Any valid credentials; the handler narrows the result to the caller's grants where it lists things. */
  | { readonly kind: "authenticated" }
  /** Valid credentials with every check granted. For client streams, `message` is the first message. */
  | { readonly kind: "checked"; checks(message: M, context: RuleContext): AccessCheck[] | Promise<AccessCheck[]> };

type RulesOf<T extends GenServiceMethods> = { readonly [K in keyof T]: AccessRule<MessageShape<T[K]["input"]>> };

const PUBLIC = { kind: "public" } as const;
const AUTHENTICATED = { kind: "authenticated" } as const;
const ADMIN: Resource = { bucket: ANY_BUCKET, key: "" };

function checked<M>(checks: (message: M, context: RuleContext) => AccessCheck[] | Promise<AccessCheck[]>): AccessRule<M> {
  return { kind: "checked", checks };
}

function on(action: Action, bucket: string, key: string): AccessCheck[] {
  return [{ action, resource: { bucket, key } }];
}

async function onUpload(action: Action, uploadId: string, context: RuleContext): Promise<AccessCheck[]> {
  return [{ action, resource: await context.uploadTarget(uploadId, action) }];
}

const storageRules: RulesOf<(typeof StorageService)["method"]> = {
  upload: checked((m, context) => (m.spec === undefined && m.uploadId !== "" ? onUpload("write", m.uploadId, context) : on("write", m.spec?.bucket ?? "", m.spec?.key ?? ""))),
  download: checked((m) => on("read", m.bucket, m.key)),
  getObject: checked((m) => on("read", m.bucket, m.key)),
  listObjects: checked((m) => on("list", m.bucket, m.prefix)),
  deleteObject: checked((m) => on("delete", m.bucket, m.key)),
  listBuckets: AUTHENTICATED,
  getBucket: checked((m) => on("list", m.name, "")),
  // Bucket settings decide what happens to every object, so changing them
  // takes the admin action on that bucket (a grant on "*" covers all).
  createBucket: checked((m) => on("admin", m.bucket?.name ?? "", "")),
  updateBucket: checked((m) => on("admin", m.bucket?.name ?? "", "")),
  deleteBucket: checked((m) => on("admin", m.name, "")),
  // A restore reads an older generation and writes it as the live one.
  restoreObject: checked((m) => [...on("read", m.bucket, m.key), ...on("write", m.bucket, m.key)]),
  getCapabilities: AUTHENTICATED,
  createMultipartUpload: checked((m) => on("write", m.spec?.bucket ?? "", m.spec?.key ?? "")),
  uploadPart: checked((m, context) => onUpload("write", m.uploadId, context)),
  uploadPartChunk: checked((m, context) => onUpload("write", m.uploadId, context)),
  listParts: checked((m, context) => onUpload("write", m.uploadId, context)),
  listMultipartUploads: checked((m) => on("list", m.bucket, m.prefix)),
  completeMultipartUpload: checked((m, context) => onUpload("write", m.uploadId, context)),
  abortMultipartUpload: checked((m, context) => onUpload("write", m.uploadId, context)),
  startResumableWrite: checked((m) => on("write", m.spec?.bucket ?? "", m.spec?.key ?? "")),
  queryWriteStatus: checked((m, context) => onUpload("write", m.uploadId, context)),
  writeChunk: checked((m, context) => onUpload("write", m.uploadId, context)),
};

const presignRules: RulesOf<(typeof PresignService)["method"]> = {
  // A URL carries the creator's id and is checked against the creator's
  // grants again when used, so it never grants more than the creator has.
  generatePresignedUrl: checked(async (m, context) => {
    switch (m.operation) {
      case PresignOperation.GET:
        return [...on("presign", m.bucket, m.key), ...on("read", m.bucket, m.key)];
      case PresignOperation.UPLOAD_PART: {
        const target = await context.uploadTarget(m.uploadId, "presign");
        return [...on("presign", target.bucket, target.key), ...on("write", target.bucket, target.key)];
      }
      default:
        return [...on("presign", m.bucket, m.key), ...on("write", m.bucket, m.key)];
    }
  }),
  finalizePresignedUpload: checked((m, context) => {
    const target = context.finalizeTarget(m.finalizeToken);
    return on("write", target.bucket, target.key);
  }),
};

const adminRules: RulesOf<(typeof AdminService)["method"]> = {
  createAccessKey: checked(() => on("admin", ADMIN.bucket, ADMIN.key)),
  listAccessKeys: checked(() => on("admin", ADMIN.bucket, ADMIN.key)),
  revokeAccessKey: checked(() => on("admin", ADMIN.bucket, ADMIN.key)),
  listAuditEvents: checked(() => on("admin", ADMIN.bucket, ADMIN.key)),
};

const healthRules: RulesOf<(typeof Health)["method"]> = { check: PUBLIC, watch: PUBLIC };
const reflectionV1Rules: RulesOf<(typeof reflectionV1.ServerReflection)["method"]> = { serverReflectionInfo: PUBLIC };
const reflectionV1alphaRules: RulesOf<(typeof reflectionV1alpha.ServerReflection)["method"]> = { serverReflectionInfo: PUBLIC };

/** Rules keyed by "package.Service/Method", as in the call log. */
export const ACCESS_RULES: ReadonlyMap<string, AccessRule<unknown>> = new Map([
  ...entries(StorageService, storageRules),
  ...entries(PresignService, presignRules),
  ...entries(AdminService, adminRules),
  ...entries(Health, healthRules),
  ...entries(reflectionV1.ServerReflection, reflectionV1Rules),
  ...entries(reflectionV1alpha.ServerReflection, reflectionV1alphaRules),
]);

function entries<T extends GenServiceMethods>(service: GenService<T>, rules: RulesOf<T>): [string, AccessRule<unknown>][] {
  return (service as DescService).methods.map((method) => [`${service.typeName}/${method.name}`, rules[method.localName as keyof T] as AccessRule<unknown>]);
}
