/*
 * Scenario 4: many concurrent uploads of small objects, then all of them
 * downloaded at once, through Engram on the embedded default and through
 * the tus peer. Each object has its own random content; every upload and
 * download is checked against its sha256. The content is generated while
 * it is sent, so the client never keeps all objects in memory.
 */
import { connectGrpcClient, type EngramClient } from "../lib/engram-clients.js";
import { startEngramServer, startPeer, type EngramServer, type PeerServer } from "../lib/processes.js";
import { randomChunks, sha256OfRandom } from "../lib/random-data.js";
import { TusClient } from "../lib/reference-clients.js";
import { RssWatch } from "../lib/rss.js";
import { MiB } from "../lib/stats.js";
import { rotate } from "../lib/timing.js";
import { deleteObject } from "./streaming.js";

export type LoadTarget = "Engram" | "tus";

/** One batch: `count` concurrent uploads to one target, then `count` concurrent downloads. */
export interface LoadPhase {
  readonly target: LoadTarget;
  readonly count: number;
  readonly round: number;
  readonly uploadSeconds: number;
  readonly downloadSeconds: number;
  readonly uploadFailures: number;
  readonly downloadFailures: number;
  /** Downloads whose bytes matched the sha256 of the uploaded content. */
  readonly verifiedDownloads: number;
  readonly uploadPeakRss: number;
  readonly downloadPeakRss: number;
  /** The first few failure messages. */
  readonly failureMessages: string[];
}

export interface LoadResult {
  readonly objectBytes: number;
  readonly counts: readonly number[];
  readonly rounds: number;
  readonly streamsPerConnection: number;
  readonly phases: LoadPhase[];
}

export interface LoadOptions {
  readonly counts: readonly number[];
  readonly objectBytes: number;
  readonly rounds: number;
  readonly log: (line: string) => void;
  readonly engramNodeArgs?: readonly string[];
}

const BUCKET = "mnemos-artifacts";
/** Engram clients share HTTP/2 connections: each connection carries this many of the concurrent streams. */
const STREAMS_PER_CONNECTION = 10;
const CHUNK_BYTES = MiB;
/** Maximum time of one upload or download; a slower one counts as failed. */
const OPERATION_TIMEOUT_MS = 5 * 60_000;
const MAX_FAILURE_MESSAGES = 5;

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { log, objectBytes } = options;
  const maxCount = Math.max(...options.counts);
  log(`  hashing the content of ${maxCount} objects of ${objectBytes / MiB} MiB`);
  const digests = Array.from({ length: maxCount }, (_, index) => sha256OfRandom(seedOf(index), objectBytes));

  let engram: EngramServer | undefined;
  let tus: PeerServer | undefined;
  try {
    engram = await startEngramServer({ nodeArgs: options.engramNodeArgs ?? [] });
    tus = await startPeer("tus");
    const phases: LoadPhase[] = [];
    for (let round = 0; round < options.rounds; round++) {
      for (const count of options.counts) {
        for (const target of rotate<LoadTarget>(["Engram", "tus"], round)) {
          log(`  round ${round + 1}: ${count} concurrent uploads of ${objectBytes / MiB} MiB to ${target}`);
          const phase =
            target === "Engram"
              ? await engramPhase(engram, count, round, objectBytes, digests)
              : await tusPhase(tus, count, round, objectBytes, digests);
          phases.push(phase);
          log(
            `    upload ${phase.uploadSeconds.toFixed(1)} s, download ${phase.downloadSeconds.toFixed(1)} s, ` +
              `failures ${phase.uploadFailures} + ${phase.downloadFailures}, verified ${phase.verifiedDownloads}, ` +
              `peak RSS ${(phase.uploadPeakRss / MiB).toFixed(0)} / ${(phase.downloadPeakRss / MiB).toFixed(0)} MiB`,
          );
        }
      }
    }
    return { objectBytes, counts: options.counts, rounds: options.rounds, streamsPerConnection: STREAMS_PER_CONNECTION, phases };
  } finally {
    await engram?.stop();
    await tus?.stop();
  }
}

function seedOf(index: number): string {
  return `load-object-${index}`;
}

/** Runs `count` operations at once; returns the time, the failures and the peak RSS of `pid`. */
async function concurrently(
  pid: number,
  count: number,
  operation: (index: number) => Promise<void>,
  messages: string[],
): Promise<{ seconds: number; failures: number; peakRss: number }> {
  const watch = new RssWatch(pid);
  const start = performance.now();
  const results = await Promise.allSettled(Array.from({ length: count }, (_, index) => withTimeout(operation(index), OPERATION_TIMEOUT_MS)));
  const seconds = (performance.now() - start) / 1000;
  const peakRss = watch.stop().peakBytes;
  let failures = 0;
  for (const result of results) {
    if (result.status === "rejected") {
      failures += 1;
      if (messages.length < MAX_FAILURE_MESSAGES) messages.push(String((result.reason as Error)?.message ?? result.reason));
    }
  }
  return { seconds, failures, peakRss };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function engramPhase(engram: EngramServer, count: number, round: number, objectBytes: number, digests: readonly string[]): Promise<LoadPhase> {
  const clients: EngramClient[] = Array.from({ length: Math.ceil(count / STREAMS_PER_CONNECTION) }, () => connectGrpcClient(engram.url));
  const keyOf = (index: number): string => `bench/load/${count}/${round}/object-${String(index).padStart(4, "0")}`;
  const clientOf = (index: number): EngramClient => clients[index % clients.length]!;
  const messages: string[] = [];
  let verified = 0;
  try {
    const uploads = await concurrently(
      engram.pid,
      count,
      async (index) => {
        await clientOf(index).upload(BUCKET, keyOf(index), () => randomChunks(seedOf(index), objectBytes, CHUNK_BYTES), objectBytes, digests[index]!);
      },
      messages,
    );
    const downloads = await concurrently(
      engram.pid,
      count,
      async (index) => {
        const { bytes } = await clientOf(index).download(BUCKET, keyOf(index), digests[index]!);
        if (bytes !== objectBytes) throw new Error(`download of ${keyOf(index)} returned ${bytes} bytes, expected ${objectBytes}`);
        verified += 1;
      },
      messages,
    );
    return {
      target: "Engram",
      count,
      round,
      uploadSeconds: uploads.seconds,
      downloadSeconds: downloads.seconds,
      uploadFailures: uploads.failures,
      downloadFailures: downloads.failures,
      verifiedDownloads: verified,
      uploadPeakRss: uploads.peakRss,
      downloadPeakRss: downloads.peakRss,
      failureMessages: messages,
    };
  } finally {
    for (const client of clients) client.close();
    for (let index = 0; index < count; index++) {
      await deleteObject(engram, keyOf(index), BUCKET).catch(() => undefined);
    }
  }
}

async function tusPhase(tus: PeerServer, count: number, round: number, objectBytes: number, digests: readonly string[]): Promise<LoadPhase> {
  const client = new TusClient(`http://127.0.0.1:${tus.port}`);
  const urls: (string | undefined)[] = new Array(count);
  const messages: string[] = [];
  let verified = 0;
  try {
    const uploads = await concurrently(
      tus.pid,
      count,
      async (index) => {
        const { url } = await client.upload(() => randomChunks(seedOf(index), objectBytes, CHUNK_BYTES), objectBytes, digests[index]!);
        urls[index] = url;
      },
      messages,
    );
    const downloads = await concurrently(
      tus.pid,
      count,
      async (index) => {
        const url = urls[index];
        if (!url) throw new Error(`upload ${index} failed, so there is nothing to download`);
        await client.download(url, objectBytes, digests[index]!);
        verified += 1;
      },
      messages,
    );
    return {
      target: "tus",
      count,
      round,
      uploadSeconds: uploads.seconds,
      downloadSeconds: downloads.seconds,
      uploadFailures: uploads.failures,
      downloadFailures: downloads.failures,
      verifiedDownloads: verified,
      uploadPeakRss: uploads.peakRss,
      downloadPeakRss: downloads.peakRss,
      failureMessages: messages,
    };
  } finally {
    for (const url of urls) {
      if (url) await client.delete(url).catch(() => undefined);
    }
    client.close();
  }
}
