/* Converters between bucket records and the generated Protobuf messages. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

import {
  BucketSchema,
  BucketStatus,
  LifecycleRuleSchema,
  StorageClass,
  VersioningState,
  type Bucket as BucketMessage,
  type LifecycleRule as LifecycleRuleMessage,
} from "../../gen/engram/v1/object_pb.js";
import type { BucketRecord, BucketSettings, BucketStatus as BucketStatusName, LifecycleRule, VersioningState as VersioningName } from "../metadata/metadata-store.js";
import { invalidArgument } from "../service/errors.js";
import { storageClassFromProto, storageClassToProto } from "./convert.js";

const STATUS_TO_PROTO: Record<BucketStatusName, BucketStatus> = {
  active: BucketStatus.ACTIVE,
  suspended: BucketStatus.SUSPENDED,
  archived: BucketStatus.ARCHIVED,
};

const VERSIONING_TO_PROTO: Record<VersioningName, VersioningState> = {
  unversioned: VersioningState.UNVERSIONED,
  enabled: VersioningState.ENABLED,
  suspended: VersioningState.SUSPENDED,
};

/** Field mask paths UpdateBucket accepts, in the Protobuf and the JSON spelling. */
const UPDATABLE_FIELDS: Record<string, keyof BucketSettings> = {
  status: "status",
  versioning: "versioning",
  lifecycle_rules: "lifecycleRules",
  lifecycleRules: "lifecycleRules",
};

export function bucketToProto(bucket: BucketRecord): BucketMessage {
  return create(BucketSchema, {
    name: bucket.name,
    createTime: timestampFromDate(bucket.createdAt),
    updateTime: timestampFromDate(bucket.updatedAt),
    metageneration: BigInt(bucket.metageneration),
    status: STATUS_TO_PROTO[bucket.status],
    versioning: VERSIONING_TO_PROTO[bucket.versioning],
    lifecycleRules: bucket.lifecycleRules.map(ruleToProto),
    objectCount: BigInt(bucket.objectCount),
    totalBytes: BigInt(bucket.totalBytes),
    versionCount: BigInt(bucket.versionCount),
    versionBytes: BigInt(bucket.versionBytes),
  });
}

/** Returns the settings of a bucket to create; unset enums take their defaults. */
export function bucketSettingsFromProto(bucket: BucketMessage): BucketSettings {
  return {
    status: bucket.status === BucketStatus.UNSPECIFIED ? "active" : statusFromProto(bucket.status),
    versioning: bucket.versioning === VersioningState.UNSPECIFIED ? "unversioned" : versioningFromProto(bucket.versioning),
    lifecycleRules: bucket.lifecycleRules.map(ruleFromProto),
  };
}

/** Returns the settings named in an update mask, with their new values. */
export function bucketChangesFromProto(bucket: BucketMessage, paths: readonly string[]): Partial<BucketSettings> {
  if (paths.length === 0) {
    throw invalidArgument(`update_mask is empty: name the fields to change, of ${Object.keys(UPDATABLE_FIELDS).slice(0, 3).join(", ")}`);
  }
  const changes: { -readonly [K in keyof BucketSettings]?: BucketSettings[K] } = {};
  for (const path of paths) {
    const field = UPDATABLE_FIELDS[path];
    if (field === undefined) {
      throw invalidArgument(`update_mask path ${JSON.stringify(path)} cannot be changed: use status, versioning or lifecycle_rules`);
    }
    if (field === "status") changes.status = statusFromProto(bucket.status);
    if (field === "versioning") changes.versioning = versioningFromProto(bucket.versioning);
    if (field === "lifecycleRules") changes.lifecycleRules = bucket.lifecycleRules.map(ruleFromProto);
  }
  return changes;
}

function statusFromProto(status: BucketStatus): BucketStatusName {
  const name = (Object.keys(STATUS_TO_PROTO) as BucketStatusName[]).find((key) => STATUS_TO_PROTO[key] === status);
  if (name === undefined) {
    throw invalidArgument(`bucket status ${status} is invalid: use BUCKET_STATUS_ACTIVE, BUCKET_STATUS_SUSPENDED or BUCKET_STATUS_ARCHIVED`);
  }
  return name;
}

function versioningFromProto(state: VersioningState): VersioningName {
  const name = (Object.keys(VERSIONING_TO_PROTO) as VersioningName[]).find((key) => VERSIONING_TO_PROTO[key] === state);
  if (name === undefined) {
    throw invalidArgument(
      `versioning ${state} is invalid: use VERSIONING_STATE_UNVERSIONED, VERSIONING_STATE_ENABLED or VERSIONING_STATE_SUSPENDED`,
    );
  }
  return name;
}

function ruleToProto(rule: LifecycleRule): LifecycleRuleMessage {
  return create(LifecycleRuleSchema, {
    id: rule.id,
    enabled: rule.enabled,
    prefix: rule.prefix,
    tags: { ...rule.tags },
    expirationDays: rule.expirationDays,
    noncurrentExpirationDays: rule.noncurrentExpirationDays,
    noncurrentNewerVersions: rule.noncurrentNewerVersions,
    abortIncompleteUploadDays: rule.abortIncompleteUploadDays,
    ...(rule.transition ? { transition: { days: rule.transition.days, storageClass: storageClassToProto(rule.transition.storageClass) } } : {}),
  });
}

function ruleFromProto(rule: LifecycleRuleMessage): LifecycleRule {
  if (rule.transition && rule.transition.storageClass === StorageClass.UNSPECIFIED) {
    throw invalidArgument(`lifecycle rule ${JSON.stringify(rule.id)} has a transition without storage_class: name the class to move to`);
  }
  return {
    id: rule.id,
    enabled: rule.enabled,
    prefix: rule.prefix,
    tags: { ...rule.tags },
    expirationDays: rule.expirationDays,
    noncurrentExpirationDays: rule.noncurrentExpirationDays,
    noncurrentNewerVersions: rule.noncurrentNewerVersions,
    abortIncompleteUploadDays: rule.abortIncompleteUploadDays,
    transition: rule.transition ? { days: rule.transition.days, storageClass: storageClassFromProto(rule.transition.storageClass) } : undefined,
  };
}
