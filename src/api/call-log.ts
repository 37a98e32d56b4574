import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";

import { toConnectError } from "./errors.js";

/** Per-call facts that handlers fill in for the call's log line. */
export interface CallFacts {
  bucket?: string;
  /** Content bytes received or sent. */
  bytes?: number;
}

export const callFactsKey = createContextKey<CallFacts>({});

/**
 * Maps every error to its gRPC code and writes one log line per call with
 * rpc, bucket, code, duration and bytes. Streaming responses are logged
 * when their last message is sent, without buffering them.
 */
export function callLogInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const facts: CallFacts = {};
    req.contextValues.set(callFactsKey, facts);
    const rpc = `${req.service.typeName}/${req.method.name}`;

    let logged = false;
    const finish = (err: unknown): ConnectError | undefined => {
      const error = err === undefined ? undefined : toConnectError(err, req.signal);
      if (logged) return error;
      logged = true;
      const entry = {
        rpc,
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
