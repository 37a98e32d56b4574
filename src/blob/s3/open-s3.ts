import { Client } from "minio";

import type { S3Config } from "../../config.js";
import { S3BlobStore } from "./s3-blob-store.js";

/**
 * Creates the S3 blob store from the configuration. The region is given
 * explicitly, so the client signs requests without a region lookup call.
 */
export function openS3BlobStore(config: S3Config): S3BlobStore {
  const client = clientFor(config.endpoint, config);
  const publicClient = config.publicEndpoint === "" ? undefined : clientFor(config.publicEndpoint, config);
  return new S3BlobStore(client, {
    publicClient,
    bucketPrefix: config.bucketPrefix,
    region: config.region,
    createBuckets: config.createBuckets,
    partSizeBytes: config.partSizeBytes,
    partsInFlight: config.partsInFlight,
  });
}

function clientFor(endpointUrl: string, config: S3Config): Client {
  const endpoint = new URL(endpointUrl);
  const useSSL = endpoint.protocol === "https:";
  const defaultPort = useSSL ? 443 : 80;
  return new Client({
    endPoint: endpoint.hostname,
    port: endpoint.port === "" ? defaultPort : Number(endpoint.port),
    useSSL,
    accessKey: config.accessKey,
    secretKey: config.secretKey,
    region: config.region,
    pathStyle: true,
  });
}
