/*
 * Starts the S3 servers once for the whole test run and hands their
 * endpoints to the test files through vitest's provide/inject. A missing
 * server fails the run in CI; elsewhere its suites are skipped, and this
 * prints one line saying what was skipped and how to enable it.
 */
import { fileURLToPath } from "node:url";

import type { TestProject } from "vitest/node";

import { CEPH_INSTALL, MINIO_INSTALL, findMinio, findRadosgw, startCephRgw, startMinio, type RunningPeer, type S3Peer } from "./support/s3-peers.js";

declare module "vitest" {
  export interface ProvidedContext {
    minio: S3Peer | null;
    cephRgw: S3Peer | null;
  }
}

const inCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";
const CEPH_SCRIPTS = process.env.ENGRAM_CEPH_SCRIPTS ?? fileURLToPath(new URL("../../shared/peers/ceph-rgw", import.meta.url));

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const running: RunningPeer[] = [];
  const stopAll = async (): Promise<void> => {
    for (const peer of running.splice(0)) await peer.stop();
  };
  try {
    await startPeers(running);
  } catch (err) {
    await stopAll();
    throw err;
  }

  const describe = (peer: RunningPeer | undefined): S3Peer | null =>
    peer ? { name: peer.name, endpoint: peer.endpoint, accessKey: peer.accessKey, secretKey: peer.secretKey } : null;
  project.provide("minio", describe(running.find((peer) => peer.name === "minio")));
  project.provide("cephRgw", describe(running.find((peer) => peer.name === "ceph-rgw")));
  return stopAll;
}

async function startPeers(running: RunningPeer[]): Promise<void> {
  const minioBinary = await findMinio();
  if (minioBinary) {
    running.push(await startMinio(minioBinary));
  } else if (inCi) {
    throw new Error(`MinIO is required in CI but was not found: ${MINIO_INSTALL}`);
  } else {
    console.warn(`Skipping the MinIO suites: no minio binary. Enable them with ${MINIO_INSTALL}`);
  }

  const radosgw = await findRadosgw();
  const cephDisabled = process.env.ENGRAM_TEST_CEPH === "0";
  if (radosgw && !cephDisabled) {
    running.push(await startCephRgw(CEPH_SCRIPTS));
  } else if (inCi) {
    throw new Error(`Ceph RGW is required in CI but ${cephDisabled ? "ENGRAM_TEST_CEPH=0 disabled it" : `radosgw was not found: ${CEPH_INSTALL}`}`);
  } else {
    console.warn(`Skipping the Ceph RGW suites: ${cephDisabled ? "ENGRAM_TEST_CEPH=0" : `no radosgw. Enable them with ${CEPH_INSTALL}`}`);
  }
}
