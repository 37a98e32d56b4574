#!/usr/bin/env node
/*
 * The `engram` command: runs the server, and moves files in and out of a
 * running one.
 */
import { parseArgs } from "node:util";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ConfigError, readConfig } from "../config.js";
import { startEngram } from "../engram.js";
import { createLogger } from "../log.js";
import { DEFAULT_URL, UsageError } from "./client.js";
import * as commands from "./commands.js";

const USAGE = `Usage: engram COMMAND [options]

Commands:
  serve                      run the server (settings from ENGRAM_* variables)
  put FILE BUCKET/KEY        upload a file [--content-type TYPE]
  get BUCKET/KEY [FILE]      download an object to FILE (default: the key's
                             last segment; "-" writes to stdout)
  ls BUCKET[/PREFIX]         list objects and prefixes [--recursive]
  stat BUCKET/KEY            print an object's metadata as JSON
  rm BUCKET/KEY              delete an object
  buckets                    list buckets
  health                     exit 0 if the server reports SERVING

Options:
  --url URL                  server to talk to (default: $ENGRAM_URL or ${DEFAULT_URL})
  -h, --help                 print this help
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: "string" },
      "content-type": { type: "string" },
      recursive: { type: "boolean", short: "r" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, ...args] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }

  const url = values.url ?? process.env.ENGRAM_URL ?? DEFAULT_URL;
  const print = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };

  switch (command) {
    case "serve":
      return serve();
    case "put":
      await commands.put(url, need(args, 0, "FILE"), need(args, 1, "BUCKET/KEY"), values["content-type"], print);
      return 0;
    case "get":
      await commands.get(url, need(args, 0, "BUCKET/KEY"), args[1], print, process.stdout);
      return 0;
    case "ls":
      await commands.list(url, need(args, 0, "BUCKET[/PREFIX]"), print, values.recursive ?? false);
      return 0;
    case "stat":
      await commands.stat(url, need(args, 0, "BUCKET/KEY"), print);
      return 0;
    case "rm":
      await commands.remove(url, need(args, 0, "BUCKET/KEY"), print);
      return 0;
    case "buckets":
      await commands.buckets(url, print);
      return 0;
    case "health":
      return checkHealth(url);
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

function need(args: string[], index: number, name: string): string {
  const value = args[index];
  if (value === undefined) throw new UsageError(`missing argument ${name}`);
  return value;
}

/** Runs the server until SIGTERM or SIGINT, then shuts down gracefully. */
async function serve(): Promise<number> {
  const config = readConfig();
  const log = createLogger(config.logLevel);
  const engram = await startEngram(config, { log });

  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal, graceMs: config.shutdownGraceMs }, "shutting down");
      engram.close().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
}

async function checkHealth(url: string): Promise<number> {
  const client = createClient(Health, createGrpcTransport({ baseUrl: url }));
  const { status } = await client.check({ service: "" }, { timeoutMs: 5000 });
  process.stdout.write(`${HealthCheckResponse_ServingStatus[status]}\n`);
  return status === HealthCheckResponse_ServingStatus.SERVING ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || (err as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      process.stderr.write(`engram: ${(err as Error).message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else if (err instanceof ConnectError) {
      process.stderr.write(`engram: ${err.rawMessage} (${Code[err.code]})\n`);
      process.exitCode = 1;
    } else if (err instanceof ConfigError) {
      process.stderr.write(`engram: invalid configuration: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`engram: ${(err as Error).message ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
