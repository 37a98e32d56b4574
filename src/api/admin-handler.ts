import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";

import { AdminService, type AccessKey, type AuditEvent } from "../../gen/engram/v1/admin_service_pb.js";
import { parseGrants } from "../auth/grants.js";
import { generateToken } from "../auth/tokens.js";
import type { AccessKeyRecord, AccessStore, AuditRecord } from "../metadata/access-store.js";
import { invalidArgument, notFound } from "../service/errors.js";

const PRINCIPAL_PATTERN = /^[A-Za-z0-9._@:-]{1,128}$/;
const MAX_DESCRIPTION_CHARS = 1024;
const DEFAULT_AUDIT_PAGE_SIZE = 100;
const MAX_AUDIT_PAGE_SIZE = 1000;

/** Registers engram.v1.AdminService: access keys and the audit log. */
export function registerAdminService(router: ConnectRouter, store: AccessStore): void {
  router.service(AdminService, {
    async createAccessKey(request) {
      if (!PRINCIPAL_PATTERN.test(request.principal)) {
        throw invalidArgument(`principal ${JSON.stringify(request.principal)} is invalid: use 1 to 128 letters, digits, ".", "_", "-", "@" or ":"`);
      }
      if (request.description.length > MAX_DESCRIPTION_CHARS) {
        throw invalidArgument(`description has ${request.description.length} characters: use at most ${MAX_DESCRIPTION_CHARS}`);
      }
      const grants = parseGrants(
        request.grants.map((grant) => ({ bucket: grant.bucket, prefix: grant.prefix, actions: grant.actions })),
        "grants",
      );
      const { keyId, token, sha256 } = generateToken();
      const key = await store.createAccessKey({ keyId, principal: request.principal, description: request.description, grants, tokenSha256: sha256 });
      return { accessKey: accessKeyToProto(key), token };
    },

    async listAccessKeys() {
      const keys = await store.listAccessKeys();
      return { accessKeys: keys.map(accessKeyToProto) };
    },

    async revokeAccessKey(request) {
      if (request.keyId === "") throw invalidArgument("key_id is empty: give the key_id that CreateAccessKey or ListAccessKeys returned");
      const key = await store.revokeAccessKey(request.keyId);
      if (key === undefined) throw notFound(`access key ${JSON.stringify(request.keyId)} not found: list the keys with ListAccessKeys`);
      return { accessKey: accessKeyToProto(key) };
    },

    async listAuditEvents(request) {
      if (!Number.isInteger(request.pageSize) || request.pageSize < 0 || request.pageSize > MAX_AUDIT_PAGE_SIZE) {
        throw invalidArgument(`page_size ${request.pageSize} is invalid: give 1 to ${MAX_AUDIT_PAGE_SIZE}, or 0 for ${DEFAULT_AUDIT_PAGE_SIZE}`);
      }
      const limit = request.pageSize === 0 ? DEFAULT_AUDIT_PAGE_SIZE : request.pageSize;
      const beforeId = auditCursorOf(request.pageToken);
      const events = await store.listAudit({ principal: request.principal, bucket: request.bucket, beforeId, limit: limit + 1 });
      const page = events.slice(0, limit);
      const nextPageToken = events.length > limit ? String(page[page.length - 1]!.id) : "";
      return { events: page.map(auditEventToProto), nextPageToken };
    },
  });
}

function auditCursorOf(token: string): number | undefined {
  if (token === "") return undefined;
  if (!/^\d{1,15}$/.test(token)) throw invalidArgument("page_token is invalid: pass next_page_token from the previous response unchanged");
  return Number(token);
}

function accessKeyToProto(key: AccessKeyRecord): Omit<AccessKey, "$typeName"> {
  return {
    keyId: key.keyId,
    principal: key.principal,
    description: key.description,
    grants: key.grants.map((grant) => ({ $typeName: "engram.v1.Grant", bucket: grant.bucket, prefix: grant.prefix, actions: [...grant.actions] })),
    createTime: timestampFromDate(key.createdAt),
    revokeTime: key.revokedAt === undefined ? undefined : timestampFromDate(key.revokedAt),
  };
}

function auditEventToProto(event: AuditRecord): Omit<AuditEvent, "$typeName"> {
  return {
    time: timestampFromDate(event.time),
    principal: event.principal,
    action: event.action,
    bucket: event.bucket,
    key: event.key,
    result: event.result,
    operation: event.operation,
  };
}
