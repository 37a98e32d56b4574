import { MAX_LIFECYCLE_RULES, type LifecycleRule } from "../metadata/metadata-store.js";
import { invalidArgument } from "./errors.js";

/** Maximum lifecycle duration, in days (100 years). */
const MAX_DAYS = 36_500;
const MAX_RULE_ID_LENGTH = 255;

/** Checks a bucket's lifecycle rules: count, unique ids, at least one action each, day counts in range. */
export function validateLifecycleRules(rules: readonly LifecycleRule[]): void {
  if (rules.length > MAX_LIFECYCLE_RULES) {
    throw invalidArgument(`${rules.length} lifecycle rules given: a bucket takes at most ${MAX_LIFECYCLE_RULES}; merge rules that share a prefix`);
  }
  const ids = new Set<string>();
  for (const rule of rules) {
    if (rule.id.length === 0 || rule.id.length > MAX_RULE_ID_LENGTH) {
      throw invalidArgument(`lifecycle rule id ${JSON.stringify(rule.id)} is invalid: give every rule an id of 1 to ${MAX_RULE_ID_LENGTH} characters`);
    }
    if (ids.has(rule.id)) {
      throw invalidArgument(`lifecycle rule id ${JSON.stringify(rule.id)} is used twice: give every rule its own id`);
    }
    ids.add(rule.id);

    const where = `lifecycle rule ${JSON.stringify(rule.id)}`;
    checkDays(where, "expiration_days", rule.expirationDays);
    checkDays(where, "noncurrent_expiration_days", rule.noncurrentExpirationDays);
    checkDays(where, "abort_incomplete_upload_days", rule.abortIncompleteUploadDays);
    checkDays(where, "transition.days", rule.transition?.days);
    const newer = rule.noncurrentNewerVersions;
    if (newer !== undefined && (!Number.isInteger(newer) || newer < 0 || newer > 100)) {
      throw invalidArgument(`${where} has noncurrent_newer_versions ${newer}: give 0 to 100`);
    }
    const actions = [rule.expirationDays, rule.noncurrentExpirationDays, newer, rule.abortIncompleteUploadDays, rule.transition];
    if (actions.every((action) => action === undefined)) {
      throw invalidArgument(
        `${where} has no action: set expiration_days, noncurrent_expiration_days, noncurrent_newer_versions, abort_incomplete_upload_days or transition`,
      );
    }
    if (rule.abortIncompleteUploadDays !== undefined && Object.keys(rule.tags).length > 0) {
      throw invalidArgument(`${where} combines abort_incomplete_upload_days with tags: uploads have no tags until they complete; put the abort in a rule without tags`);
    }
  }
}

function checkDays(where: string, field: string, days: number | undefined): void {
  if (days === undefined) return;
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw invalidArgument(`${where} has ${field} ${days}: give 1 to ${MAX_DAYS} days`);
  }
}
