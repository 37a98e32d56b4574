import { Client } from "minio";

import type { S3Config } from "../../config.js";
import { S3BlobStore } from "./s3-blob-store.js";

/**
 * Creates the S3 blob store from the configuration. The region is given
 * explicitly, so the client signs requests without a region lookup call.
 */
export function openS3BlobStore(config: S3Config): S3BlobStore {
  const endpoint = new URL(config.endpoint);
  const useSSL = endpoint.protocol === "https:";
  const defaultPort = useSSL ? 443 : 80;
  const client = new Client({
    endPoint: endpoint.hostname,
    port: endpoint.port === "" ? defaultPort : Number(endpoint.port),
    useSSL,
    accessKey: config.accessKey,
    secretKey: config.secretKey,
    region: config.region,
    pathStyle: true,
  });
  return new S3BlobStore(client, {
    bucketPrefix: config.bucketPrefix,
    region: config.region,
    createBuckets: config.createBuckets,
    partSizeBytes: config.partSizeBytes,
    partsInFlight: config.partsInFlight,
  });
}
