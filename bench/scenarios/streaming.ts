/*
 * Scenario 1: upload and download of one random file through Engram on its
 * embedded default (filesystem and PGlite), with three clients, against
 * raw TCP and a tus server moving the same bytes over loopback. Every path
 * runs once per round, in an order that rotates from round to round.
 */
import { createReadStream } from "node:fs";

import { connectGrpcClient, connectProtocolClient, grpcJsClient, type ChunkSource, type EngramClient } from "../lib/engram-clients.js";
import { PresignedClient } from "../lib/presigned-client.js";
import { startEngramServer, startPeer, type EngramServer, type PeerServer } from "../lib/processes.js";
import { TusClient, tcpDownload, tcpUpload, type TcpReceiver } from "../lib/reference-clients.js";
import { MiB } from "../lib/stats.js";
import { rotate, timed, type Timed } from "../lib/timing.js";

/** A file of random bytes on disk and its digest. */
export interface DataFile {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
}

/** Reads a file in chunks of `chunkBytes`. */
export function fileSource(path: string, chunkBytes: number): ChunkSource {
  return () => createReadStream(path, { highWaterMark: chunkBytes }) as AsyncIterable<Buffer>;
}

export type PathRole = "ceiling" | "reference" | "engram";

/** Measurements of one transfer path over all rounds. */
export interface PathMeasurements {
  readonly name: string;
  readonly role: PathRole;
  readonly uploadSeconds: number[];
  readonly downloadSeconds: number[];
  /** Peak RSS of the receiving or sending server during each transfer. */
  readonly uploadPeakRss: number[];
  readonly downloadPeakRss: number[];
  /** CPU seconds of the server and of the client (the benchmark process) per transfer. */
  readonly uploadServerCpu: number[];
  readonly uploadClientCpu: number[];
  readonly downloadServerCpu: number[];
  readonly downloadClientCpu: number[];
}

export interface StreamingResult {
  readonly sizeBytes: number;
  readonly rounds: number;
  readonly paths: PathMeasurements[];
}

/** One way of moving the file up and back: a client and the server it talks to. */
export interface TransferPath {
  readonly name: string;
  readonly role: PathRole;
  readonly serverPid: number;
  upload(file: DataFile, round: string): Promise<void>;
  /** Missing where the path has no download, such as writing to disk on the receiver. */
  download?(file: DataFile, round: string): Promise<void>;
  cleanup(round: string): Promise<void>;
}

export interface StreamingOptions {
  readonly file: DataFile;
  readonly warmupFile: DataFile;
  readonly rounds: number;
  readonly log: (line: string) => void;
  readonly engramNodeArgs?: readonly string[];
}

const BUCKET = "mnemos-models";

export async function runEmbeddedStreaming(options: StreamingOptions): Promise<StreamingResult> {
  const { file, warmupFile, rounds, log } = options;
  let engram: EngramServer | undefined;
  let tcp: PeerServer | undefined;
  let tus: PeerServer | undefined;
  const clients: EngramClient[] = [];
  let tusClient: TusClient | undefined;
  let presigned: PresignedClient | undefined;
  try {
    engram = await startEngramServer({ nodeArgs: options.engramNodeArgs ?? [] });
    tcp = await startPeer("tcp");
    tus = await startPeer("tus");
    tusClient = new TusClient(`http://127.0.0.1:${tus.port}`);
    clients.push(connectGrpcClient(engram.url), grpcJsClient(engram.url), connectProtocolClient(engram.url));
    presigned = new PresignedClient(engram.url, "presigned URLs to Engram's data plane, HTTP/1.1");

    const paths: TransferPath[] = [
      tcpPath("raw TCP", "ceiling", tcp, "discard"),
      tcpPath("raw TCP, receiver hashes sha256", "reference", tcp, "hash"),
      tcpPath("raw TCP, server writes and fsyncs (upload only)", "reference", tcp, "disk"),
      tusPath(tus, tusClient),
      ...clients.map((client) => engramPath(engram!, client)),
      presignedPath(engram, presigned),
    ];

    return { sizeBytes: file.size, rounds, paths: await measurePaths(paths, file, warmupFile, rounds, log) };
  } finally {
    for (const client of clients) client.close();
    presigned?.close();
    tusClient?.close();
    await engram?.stop();
    await tcp?.stop();
    await tus?.stop();
  }
}

/** Runs one unmeasured round with the warm-up file, then `rounds` measured rounds with `file`. */
export async function measurePaths(
  paths: readonly TransferPath[],
  file: DataFile,
  warmupFile: DataFile,
  rounds: number,
  log: (line: string) => void,
): Promise<PathMeasurements[]> {
  log(`  warm-up with ${warmupFile.size / MiB} MiB on every path`);
  await runRound(paths, warmupFile, "warmup", 0);

  const measured = new Map(paths.map((path) => [path.name, emptyMeasurements(path)]));
  for (let round = 0; round < rounds; round++) {
    log(`  round ${round + 1} of ${rounds}`);
    const results = await runRound(paths, file, `r${round}`, round);
    for (const [name, result] of results) {
      const entry = measured.get(name)!;
      entry.uploadSeconds.push(result.upload.seconds);
      entry.downloadSeconds.push(result.download?.seconds ?? Number.NaN);
      entry.uploadPeakRss.push(result.upload.rss?.peakBytes ?? Number.NaN);
      entry.downloadPeakRss.push(result.download?.rss?.peakBytes ?? Number.NaN);
      entry.uploadServerCpu.push(result.upload.serverCpuSeconds);
      entry.uploadClientCpu.push(result.upload.clientCpuSeconds);
      entry.downloadServerCpu.push(result.download?.serverCpuSeconds ?? Number.NaN);
      entry.downloadClientCpu.push(result.download?.clientCpuSeconds ?? Number.NaN);
      const down = result.download ? `, down ${(file.size / MiB / result.download.seconds).toFixed(0)} MiB/s` : "";
      log(`    ${name}: up ${(file.size / MiB / result.upload.seconds).toFixed(0)} MiB/s${down}`);
    }
  }
  return [...measured.values()];
}

function emptyMeasurements(path: TransferPath): PathMeasurements {
  return {
    name: path.name,
    role: path.role,
    uploadSeconds: [],
    downloadSeconds: [],
    uploadPeakRss: [],
    downloadPeakRss: [],
    uploadServerCpu: [],
    uploadClientCpu: [],
    downloadServerCpu: [],
    downloadClientCpu: [],
  };
}

type TimedStep = Timed<void>;
type RoundResult = Map<string, { upload: TimedStep; download: TimedStep | undefined }>;

/** Uploads on every path in rotated order, then downloads in that order shifted by one, then cleans up. */
async function runRound(paths: readonly TransferPath[], file: DataFile, round: string, index: number): Promise<RoundResult> {
  const uploads = new Map<string, TimedStep>();
  for (const path of rotate(paths, index)) {
    uploads.set(path.name, await timed(path.serverPid, () => path.upload(file, round)));
  }
  const results: RoundResult = new Map();
  for (const path of rotate(paths, index + 1)) {
    const download = path.download ? await timed(path.serverPid, () => path.download!(file, round)) : undefined;
    results.set(path.name, { upload: uploads.get(path.name)!, download });
  }
  for (const path of paths) await path.cleanup(round);
  return results;
}

/**
 * Raw TCP with 1 MiB writes. The receiver (the peer for uploads, the client
 * for downloads) discards or hashes the bytes. With "disk" the peer writes
 * them to a file and fsyncs it, and the path has no download.
 */
function tcpPath(name: string, role: PathRole, peer: PeerServer, receiver: TcpReceiver): TransferPath {
  const path: TransferPath = {
    name,
    role,
    serverPid: peer.pid,
    async upload(file) {
      await tcpUpload(peer.port, fileSource(file.path, MiB), file.size, receiver, file.sha256);
    },
    async cleanup() {},
  };
  if (receiver === "disk") return path;
  return {
    ...path,
    async download(file) {
      await tcpDownload(peer.port, file.path, file.size, receiver === "hash", file.sha256);
    },
  };
}

function tusPath(peer: PeerServer, client: TusClient): TransferPath {
  const urls = new Map<string, string>();
  return {
    name: "tus: @tus/server + @tus/file-store, one PATCH / GET",
    role: "reference",
    serverPid: peer.pid,
    async upload(file, round) {
      const { url } = await client.upload(fileSource(file.path, MiB), file.size, file.sha256);
      urls.set(round, url);
    },
    async download(file, round) {
      await client.download(urls.get(round)!, file.size, file.sha256);
    },
    async cleanup(round) {
      const url = urls.get(round);
      urls.delete(round);
      if (url) await client.delete(url);
    },
  };
}

export function engramPath(server: EngramServer, client: EngramClient, name = `Engram: ${client.name}`): TransferPath {
  const keyOf = (round: string): string => `bench/streaming/${client.name.replace(/[^a-zA-Z0-9-]+/g, "-")}/${round}`;
  return {
    name,
    role: "engram",
    serverPid: server.pid,
    async upload(file, round) {
      await client.upload(BUCKET, keyOf(round), fileSource(file.path, 4 * MiB), file.size, file.sha256);
    },
    async download(file, round) {
      await client.download(BUCKET, keyOf(round), file.sha256);
    },
    async cleanup(round) {
      await deleteObject(server, keyOf(round));
    },
  };
}

/**
 * Moves the file through presigned URLs that Engram issues for one PUT and
 * one GET. The bytes go over plain HTTP/1.1 to wherever the URLs point.
 */
export function presignedPath(server: EngramServer, client: PresignedClient, name = `Engram: ${client.name}`): TransferPath {
  const keyOf = (round: string): string => `bench/streaming/presigned/${round}`;
  return {
    name,
    role: "engram",
    serverPid: server.pid,
    async upload(file, round) {
      await client.upload(BUCKET, keyOf(round), fileSource(file.path, MiB), file.size, file.sha256);
    },
    async download(file, round) {
      await client.download(BUCKET, keyOf(round), file.size, file.sha256);
    },
    async cleanup(round) {
      await deleteObject(server, keyOf(round));
    },
  };
}

/** Deletes an object with the Connect protocol over HTTP/1.1 (curl's way), so no client state is involved. */
export async function deleteObject(server: EngramServer, key: string, bucket = BUCKET): Promise<void> {
  const response = await fetch(`${server.url}/engram.v1.StorageService/DeleteObject`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ bucket, key }),
  });
  if (!response.ok) throw new Error(`DeleteObject ${bucket}/${key} failed with HTTP ${response.status}: ${await response.text()}`);
}
