import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";

import type { Metrics } from "../metrics/metrics.js";
import { toConnectError } from "./errors.js";

/** Per-call facts that handlers fill in for the call's log line. */
export interface CallFacts {
  bucket?: string;
  /** Content bytes received or sent. */
  bytes?: number;
  /** Remote address and port, set from the HTTP request. */
  peer?: string;
  /** Size of the object that the call committed, if it committed one. */
  committedSize?: number;
}

export const callFactsKey = createContextKey<CallFacts | undefined>(undefined);

/** Returns the facts of the current call, which the interceptor created. */
export function callFactsOf(values: { get(key: typeof callFactsKey): CallFacts | undefined }): CallFacts {
  return values.get(callFactsKey) ?? {};
}

const DOWNLOAD = "engram.v1.StorageService/Download";
/** Calls that carry object or part data, counted in engram_active_uploads while they run. */
const DATA_UPLOAD_RPCS: ReadonlySet<string> = new Set(
  ["Upload", "UploadPart", "UploadPartChunk", "WriteChunk"].map((method) => `engram.v1.StorageService/${method}`),
);

/**
 * Calls in progress. At shutdown the server stops taking new calls and
 * waits for these to end.
 */
export class CallTracker {
  private active = 0;
  private waiters: (() => void)[] = [];
  shuttingDown = false;

  get count(): number {
    return this.active;
  }

  begin(): void {
    this.active += 1;
  }

  end(): void {
    this.active -= 1;
    if (this.active === 0) {
      for (const wake of this.waiters.splice(0)) wake();
    }
  }

  /** Resolves when no call is in progress, or after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<void> {
    if (this.active === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** Names the wire protocol of a request from its content type. */
function protocolOf(contentType: string | null): string {
  if (contentType === null) return "connect";
  if (contentType.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType.startsWith("application/grpc")) return "grpc";
  return "connect";
}

/**
 * Maps every error to its gRPC code, counts the call in the metrics, and
 * writes one log line per call with rpc, protocol, peer, bucket, code,
 * duration and bytes. Streaming responses are logged when their last
 * message is sent, without buffering them. During shutdown new calls are
 * rejected with UNAVAILABLE.
 */
export function callLogInterceptor(log: Logger, metrics: Metrics, calls: CallTracker): Interceptor {
  return (next) => async (req) => {
    const rpc = `${req.service.typeName}/${req.method.name}`;
    if (calls.shuttingDown) {
      throw new ConnectError("the server is shutting down: retry on another replica", Code.Unavailable);
    }

    const started = performance.now();
    // The HTTP layer may have created the facts with the peer address.
    const facts = req.contextValues.get(callFactsKey) ?? {};
    req.contextValues.set(callFactsKey, facts);
    const protocol = protocolOf(req.header.get("content-type"));
    const uploading = DATA_UPLOAD_RPCS.has(rpc);
    calls.begin();
    if (uploading) metrics.activeUploads.inc();

    let logged = false;
    const finish = (err: unknown): ConnectError | undefined => {
      const error = err === undefined ? undefined : toConnectError(err, req.signal);
      if (logged) return error;
      logged = true;
      calls.end();
      if (uploading) metrics.activeUploads.dec();
      count(metrics, rpc, facts, error);

      const entry = {
        rpc,
        protocol,
        peer: facts.peer,
        bucket: facts.bucket,
        code: error ? Code[error.code] : "OK",
        durationMs: Math.round(performance.now() - started),
        bytes: facts.bytes,
      };
      if (error === undefined) {
        log.info(entry, "call finished");
      } else if (error.code === Code.Internal || error.code === Code.Unknown || error.code === Code.DataLoss) {
        log.error({ ...entry, err: error.cause ?? error }, "call failed");
      } else {
        log.info({ ...entry, reason: error.rawMessage }, "call failed");
      }
      return error;
    };

    let res;
    try {
      res = await next(req);
    } catch (err) {
      throw finish(err);
    }
    if (!res.stream) {
      finish(undefined);
      return res;
    }

    // A stream whose client went away may never resume its generator, so
    // the cancellation is logged when the signal aborts.
    req.signal.addEventListener("abort", () => finish(new ConnectError("the call was cancelled by the client", Code.Canceled)), { once: true });

    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (err) {
          throw finish(err);
        }
        finish(undefined);
      })(),
    };
  };
}

function count(metrics: Metrics, rpc: string, facts: CallFacts, error: ConnectError | undefined): void {
  const bucket = facts.bucket ?? "";
  if (rpc === DOWNLOAD && facts.bytes) {
    metrics.downloadsBytesTotal.inc({ bucket }, facts.bytes);
  }
  if (error) {
    metrics.failedOperationsTotal.inc({ operation: rpc.slice(rpc.indexOf("/") + 1), code: Code[error.code] });
    return;
  }
  if (facts.committedSize !== undefined) {
    metrics.uploadsTotal.inc({ bucket });
    metrics.uploadsBytesTotal.inc({ bucket }, facts.committedSize);
  } else if (rpc === DOWNLOAD) {
    metrics.downloadsTotal.inc({ bucket });
  }
}
