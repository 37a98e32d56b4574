import type { ServiceImpl } from "@connectrpc/connect";

import type { StorageService } from "../../gen/engram/v1/storage_service_pb.js";
import { seesBucket } from "../auth/grants.js";
import type { BucketService } from "../service/bucket-service.js";
import { invalidArgument } from "../service/errors.js";
import type { RestoreService } from "../service/restore.js";
import { principalOf } from "./access-interceptor.js";
import { bucketChangesFromProto, bucketSettingsFromProto, bucketToProto } from "./bucket-convert.js";
import { callFactsOf } from "./call-log.js";
import { numberFromInt64, objectToProto } from "./convert.js";

type BucketMethods = "listBuckets" | "getBucket" | "createBucket" | "updateBucket" | "deleteBucket" | "restoreObject";

/** Implements the bucket RPCs of StorageService, and RestoreObject; the access interceptor has authorized each call. */
export function createBucketHandler(buckets: BucketService, restores: RestoreService): Pick<ServiceImpl<typeof StorageService>, BucketMethods> {
  return {
    async listBuckets(_request, ctx) {
      // Callers see only the buckets that some grant of theirs names.
      const principal = principalOf(ctx.values);
      const list = (await buckets.listBuckets()).filter((bucket) => seesBucket(principal, bucket.name));
      return { buckets: list.map(bucketToProto) };
    },

    async getBucket(request, ctx) {
      callFactsOf(ctx.values).bucket = request.name;
      return { bucket: bucketToProto(await buckets.getBucket(request.name)) };
    },

    async createBucket(request, ctx) {
      if (request.bucket === undefined) {
        throw invalidArgument("bucket is missing: give at least its name");
      }
      const name = request.bucket.name;
      callFactsOf(ctx.values).bucket = name;
      const bucket = await buckets.createBucket(name, bucketSettingsFromProto(request.bucket));
      return { bucket: bucketToProto(bucket) };
    },

    async updateBucket(request, ctx) {
      if (request.bucket === undefined) {
        throw invalidArgument("bucket is missing: give its name and the new values of the fields in update_mask");
      }
      const name = request.bucket.name;
      callFactsOf(ctx.values).bucket = name;
      const changes = bucketChangesFromProto(request.bucket, request.updateMask?.paths ?? []);
      const ifMatch = request.ifMetagenerationMatch === undefined ? undefined : numberFromInt64(request.ifMetagenerationMatch, "if_metageneration_match");
      return { bucket: bucketToProto(await buckets.updateBucket(name, changes, ifMatch)) };
    },

    async deleteBucket(request, ctx) {
      callFactsOf(ctx.values).bucket = request.name;
      const ifMatch = request.ifMetagenerationMatch === undefined ? undefined : numberFromInt64(request.ifMetagenerationMatch, "if_metageneration_match");
      await buckets.deleteBucket(request.name, ifMatch);
      return {};
    },

    async restoreObject(request, ctx) {
      callFactsOf(ctx.values).bucket = request.bucket;
      const object = await restores.restore({
        bucket: request.bucket,
        key: request.key,
        generation: numberFromInt64(request.generation, "generation"),
        ifGenerationMatch: request.ifGenerationMatch === undefined ? undefined : numberFromInt64(request.ifGenerationMatch, "if_generation_match"),
      });
      return { object: objectToProto(object) };
    },
  };
}
