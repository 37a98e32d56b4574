import { VersioningState } from "../../gen/engram/v1/object_pb.js";
import { UsageError, createStorageClient, parseObjectPath, type Server } from "./client.js";

type Print = (line: string) => void;

const VERSIONING_ARGUMENTS: Record<string, VersioningState> = {
  enabled: VersioningState.ENABLED,
  suspended: VersioningState.SUSPENDED,
};

/** Creates a bucket, with versioning enabled when asked. */
export async function makeBucket(server: Server, name: string, versioning: boolean, print: Print): Promise<void> {
  const state = versioning ? VersioningState.ENABLED : VersioningState.UNVERSIONED;
  await createStorageClient(server).createBucket({ bucket: { name, versioning: state } });
  print(`created bucket ${name}${versioning ? " with versioning enabled" : ""}`);
}

export async function removeBucket(server: Server, name: string, print: Print): Promise<void> {
  await createStorageClient(server).deleteBucket({ name });
  print(`deleted bucket ${name}`);
}

/** Sets a bucket's versioning to "enabled" or "suspended". */
export async function setVersioning(server: Server, name: string, state: string, print: Print): Promise<void> {
  const versioning = VERSIONING_ARGUMENTS[state];
  if (versioning === undefined) {
    throw new UsageError(`versioning state ${JSON.stringify(state)} is invalid: use enabled or suspended`);
  }
  await createStorageClient(server).updateBucket({ bucket: { name, versioning }, updateMask: { paths: ["versioning"] } });
  print(`versioning of ${name} is ${state}`);
}

/** Lists every version and delete marker, newest generation first within a key. */
export async function listVersions(server: Server, path: string, print: Print): Promise<void> {
  const { bucket, key: prefix } = parseObjectPath(path, { keyRequired: false });
  const client = createStorageClient(server);
  let pageToken = "";
  do {
    const page = await client.listObjects({ bucket, prefix, versions: true, pageToken });
    for (const object of page.objects) {
      const created = object.createTime ? new Date(Number(object.createTime.seconds) * 1000).toISOString() : "";
      let state = "live";
      if (object.deleteMarker) state = "delete marker";
      else if (object.noncurrent) state = "noncurrent";
      print(`${object.size.toString().padStart(12)}  ${created.padEnd(24)}  ${object.generation.toString().padStart(8)}  ${state.padEnd(13)}  ${object.key}`);
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
}

/** Makes a copy of an older generation the live version. */
export async function restore(server: Server, path: string, generation: string, print: Print): Promise<void> {
  const { bucket, key } = parseObjectPath(path, { keyRequired: true });
  if (!/^[1-9][0-9]*$/.test(generation)) {
    throw new UsageError(`generation ${JSON.stringify(generation)} is invalid: give a generation as ls --versions prints it`);
  }
  const { object } = await createStorageClient(server).restoreObject({ bucket, key, generation: BigInt(generation) });
  print(`restored ${bucket}/${key} generation ${generation} as generation ${object!.generation}`);
}
