/* `engram admin keys` and `engram admin audit`: access keys and the audit log through AdminService. */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import { AdminService, type Grant } from "../../gen/engram/v1/admin_service_pb.js";
import { createEngramClient, UsageError, type Server } from "./client.js";

type Print = (line: string) => void;

/**
 * Parses a --grant value, BUCKET[/PREFIX]=ACTION[,ACTION...], such as
 * "mnemos-artifacts/jobs/=read,write,list" or "*=admin". The server checks
 * the names of the bucket and the actions.
 */
export function parseGrantOption(value: string): Pick<Grant, "bucket" | "prefix" | "actions"> {
  const equals = value.lastIndexOf("=");
  const target = equals === -1 ? "" : value.slice(0, equals);
  const actions = equals === -1 ? [] : value.slice(equals + 1).split(",").filter((action) => action !== "");
  if (target === "" || actions.length === 0) {
    throw new UsageError(`--grant ${JSON.stringify(value)} is not of the form BUCKET[/PREFIX]=ACTION[,ACTION...], such as mnemos-models=read,list`);
  }
  const slash = target.indexOf("/");
  return slash === -1 ? { bucket: target, prefix: "", actions } : { bucket: target.slice(0, slash), prefix: target.slice(slash + 1), actions };
}

/** Creates an access key and prints its id and its token, which the server shows only once. */
export async function createKey(server: Server, principal: string, grants: string[], description: string, print: Print): Promise<void> {
  if (grants.length === 0) throw new UsageError("keys create needs at least one --grant BUCKET[/PREFIX]=ACTION[,ACTION...]");
  const response = await createEngramClient(AdminService, server).createAccessKey({ principal, description, grants: grants.map(parseGrantOption) });
  print(`key id: ${response.accessKey?.keyId ?? ""}`);
  print(`token:  ${response.token}`);
  print("Store the token now: Engram keeps only its hash and cannot show it again.");
}

/** Prints one line per access key: id, principal, state, creation time and grants. */
export async function listKeys(server: Server, print: Print): Promise<void> {
  const { accessKeys } = await createEngramClient(AdminService, server).listAccessKeys({});
  for (const key of accessKeys) {
    const state = key.revokeTime === undefined ? "active " : "revoked";
    print(`${key.keyId}  ${state}  ${isoOf(key.createTime)}  ${key.principal}  ${key.grants.map(grantText).join(" ")}`);
  }
}

export async function revokeKey(server: Server, keyId: string, print: Print): Promise<void> {
  const { accessKey } = await createEngramClient(AdminService, server).revokeAccessKey({ keyId });
  print(`revoked ${accessKey?.keyId ?? keyId} (${accessKey?.principal ?? ""}) at ${isoOf(accessKey?.revokeTime)}`);
}

/** Prints the newest audit events, one line each. */
export async function audit(server: Server, principal: string, bucket: string, print: Print): Promise<void> {
  // A bare key id, as `keys list` prints it, means that stored key.
  const principalId = principal === "" || principal.includes(":") ? principal : `key:${principal}`;
  const { events } = await createEngramClient(AdminService, server).listAuditEvents({ principal: principalId, bucket });
  for (const event of events) {
    print(`${isoOf(event.time)}  ${event.result}  ${event.principal}  ${event.action}  ${event.bucket}/${event.key}  ${event.operation}`);
  }
}

function grantText(grant: Grant): string {
  return `${grant.bucket}${grant.prefix === "" ? "" : `/${grant.prefix}`}=${grant.actions.join(",")}`;
}

function isoOf(time: Timestamp | undefined): string {
  return time === undefined ? "-" : timestampDate(time).toISOString();
}
