/*
 * Scenario 5: peak RSS of the Engram server (embedded default) while it
 * receives and sends one large object. It also covers a client that stops
 * reading a download for a while without cancelling it: the server must
 * then wait instead of buffering the object. The tus peer moving the same
 * file is the reference.
 */
import { connectGrpcClient, connectProtocolClient, type EngramClient } from "../lib/engram-clients.js";
import { sleep, startEngramServer, startPeer, type EngramServer, type PeerServer } from "../lib/processes.js";
import { TusClient } from "../lib/reference-clients.js";
import { readRss, RssWatch, type RssPeak } from "../lib/rss.js";
import { MiB } from "../lib/stats.js";
import { timed } from "../lib/timing.js";
import { fileSource, type DataFile } from "./streaming.js";

export interface MemoryStep {
  readonly server: "Engram" | "tus";
  readonly step: string;
  readonly peakRssBytes: number;
  /** RSS at the end of the step (for a stall: after the client had stopped reading for the whole pause). */
  readonly endRssBytes: number;
  readonly seconds: number;
  /** False when the kernel's peak could not be reset, so the peak may include earlier steps. */
  readonly peakWasReset: boolean;
}

export interface MemoryResult {
  readonly sizeBytes: number;
  readonly stallSeconds: number;
  /** Peak RSS of Engram's first start, which creates the PGlite database. */
  readonly engramFirstStartPeakBytes: number;
  readonly engramIdleRssBytes: number;
  readonly tusIdleRssBytes: number;
  readonly steps: MemoryStep[];
}

export interface MemoryOptions {
  readonly file: DataFile;
  readonly stallSeconds: number;
  /** Bytes the client reads before it stops reading. */
  readonly stallAfterBytes: number;
  readonly log: (line: string) => void;
  readonly engramNodeArgs?: readonly string[];
}

const BUCKET = "mnemos-models";
const KEY = "bench/memory/large.safetensors";

export async function runMemory(options: MemoryOptions): Promise<MemoryResult> {
  const { file, log } = options;
  const steps: MemoryStep[] = [];
  const record = (server: MemoryStep["server"], step: string, seconds: number, rss: RssPeak | undefined): void => {
    steps.push({ server, step, seconds, peakRssBytes: rss?.peakBytes ?? Number.NaN, endRssBytes: rss?.lastBytes ?? Number.NaN, peakWasReset: rss?.peakWasReset ?? false });
    log(`    ${server} ${step}: ${seconds.toFixed(1)} s, peak RSS ${((rss?.peakBytes ?? Number.NaN) / MiB).toFixed(0)} MiB`);
  };

  let engram: EngramServer | undefined;
  let grpc: EngramClient | undefined;
  let connect: EngramClient | undefined;
  let firstStartPeak = Number.NaN;
  let engramIdle = Number.NaN;
  try {
    engram = await startEngramServer({ nodeArgs: options.engramNodeArgs ?? [] });
    firstStartPeak = engram.firstStartPeakBytes;
    engramIdle = engram.idleRssBytes;
    grpc = connectGrpcClient(engram.url);
    connect = connectProtocolClient(engram.url);
    const server = engram;

    log(`  Engram: upload of ${file.size / MiB} MiB`);
    const upload = await timed(server.pid, () => grpc!.upload(BUCKET, KEY, fileSource(file.path, 4 * MiB), file.size, file.sha256));
    record("Engram", `upload, ${grpc.name}`, upload.seconds, upload.rss);

    const download = await timed(server.pid, () => grpc!.download(BUCKET, KEY, file.sha256));
    record("Engram", `download, ${grpc.name}`, download.seconds, download.rss);

    for (const client of [grpc, connect]) {
      log(`  Engram: download with a ${options.stallSeconds} s stall, ${client.name}`);
      const stall = await stalledDownload(server, client, file, options);
      record("Engram", `download, client stops reading for ${options.stallSeconds} s after ${options.stallAfterBytes / MiB} MiB, ${client.name}`, stall.seconds, stall.rss);
    }
  } finally {
    grpc?.close();
    connect?.close();
    // Stopping the server removes its data directory, so the disk keeps one copy of the file at a time.
    await engram?.stop();
  }

  let tus: PeerServer | undefined;
  let tusClient: TusClient | undefined;
  let tusIdle = Number.NaN;
  try {
    tus = await startPeer("tus");
    tusIdle = readRss(tus.pid).rssBytes;
    tusClient = new TusClient(`http://127.0.0.1:${tus.port}`);
    const client = tusClient;
    log(`  tus: upload and download of ${file.size / MiB} MiB`);
    let url = "";
    const upload = await timed(tus.pid, async () => {
      url = (await client.upload(fileSource(file.path, MiB), file.size, file.sha256)).url;
    });
    record("tus", "upload, one PATCH", upload.seconds, upload.rss);
    const download = await timed(tus.pid, () => client.download(url, file.size, file.sha256));
    record("tus", "download, one GET", download.seconds, download.rss);
    await client.delete(url);
  } finally {
    tusClient?.close();
    await tus?.stop();
  }

  return {
    sizeBytes: file.size,
    stallSeconds: options.stallSeconds,
    engramFirstStartPeakBytes: firstStartPeak,
    engramIdleRssBytes: engramIdle,
    tusIdleRssBytes: tusIdle,
    steps,
  };
}

/**
 * Downloads the object, stops reading for `stallSeconds` once
 * `stallAfterBytes` arrived, then reads the rest and checks the sha256. The
 * peak covers the whole download; the end RSS is the one at the end of the pause.
 */
async function stalledDownload(server: EngramServer, client: EngramClient, file: DataFile, options: MemoryOptions): Promise<{ seconds: number; rss: RssPeak }> {
  const watch = new RssWatch(server.pid);
  let stalled = false;
  let rssAfterStall = Number.NaN;
  const start = performance.now();
  await client.download(BUCKET, KEY, file.sha256, async (received) => {
    if (stalled || received < options.stallAfterBytes) return;
    stalled = true;
    await sleep(options.stallSeconds * 1000);
    rssAfterStall = readRss(server.pid).rssBytes;
  });
  const seconds = (performance.now() - start) / 1000;
  const rss = watch.stop();
  if (!stalled) throw new Error(`the download ended before ${options.stallAfterBytes} bytes arrived, so it never stalled`);
  return { seconds, rss: { ...rss, lastBytes: rssAfterStall } };
}
