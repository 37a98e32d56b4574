/*
 * The `engram` command: runs the server, and moves files in and out of a
 * running one. main.ts calls `run` with the process's arguments and streams.
 */
import { parseArgs } from "node:util";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ConfigError, loadConfig, SECRET_VARIABLES, secretSource } from "../config.js";
import { openStores, startEngram } from "../engram.js";
import { rebuildIndex } from "../service/rebuild-index.js";
import { createLogger } from "../log.js";
import { redactConfig } from "../secrets/redact.js";
import * as admin from "./admin.js";
import * as bucketCommands from "./bucket-commands.js";
import { DEFAULT_URL, UsageError, findToken, type Server } from "./client.js";
import * as commands from "./commands.js";

const USAGE = `Usage: engram COMMAND [options]

Commands:
  serve                      run the server (settings from ENGRAM_* variables)
  put FILE BUCKET/KEY        upload a file [--content-type TYPE]
  get BUCKET/KEY [FILE]      download an object to FILE (default: the key's
                             last segment; "-" writes to stdout)
                             [--generation N]
  ls BUCKET[/PREFIX]         list objects and prefixes [--recursive]; with
                             --versions every version and delete marker
  stat BUCKET/KEY            print an object's metadata as JSON
                             [--generation N]
  rm BUCKET/KEY              delete an object; --generation N removes that
                             version or delete marker for good
  restore BUCKET/KEY GEN     make a copy of generation GEN the live version
  buckets                    list buckets
  mb BUCKET                  create a bucket [--versioning]
  rb BUCKET                  delete an empty bucket
  versioning BUCKET STATE    set versioning to enabled or suspended
  health                     exit 0 if the server reports SERVING
  admin keys create PRINCIPAL --grant BUCKET[/PREFIX]=ACTION[,ACTION...]
                             create an access key and print its token once
                             (actions: read, write, delete, list, presign,
                             admin; bucket "*" is every bucket)
                             [--description TEXT]
  admin keys list            list access keys, revoked ones included
  admin keys revoke KEY_ID   revoke a key at once, with its presigned URLs
  admin audit                print the newest recorded writes, deletes,
                             presigns and admin calls [--principal ID]
                             [--bucket BUCKET]
  admin rebuild-index        restore the metadata of every stored object from
                             the blob store into an empty metadata database
                             (same ENGRAM_* settings as serve; stop serve first
                             on the embedded default)
  config check               print the effective settings (from ENGRAM_*
                             variables, *_FILE files and Vault) as JSON with
                             secrets redacted; exit 2 if a setting is invalid

Options:
  --url URL                  server to talk to (default: $ENGRAM_URL or ${DEFAULT_URL})
  -h, --help                 print this help

The token sent to the server comes from $ENGRAM_TOKEN, else the file named
by $ENGRAM_TOKEN_FILE, else ~/.config/engram/token, else the admin token a
local server wrote to $ENGRAM_DATA_DIR/admin-token (default ./data).
`;

/** Commands that take --generation. */
const GENERATION_COMMANDS = new Set(["get", "stat", "rm"]);

/** Standard streams and environment of one command run. */
export interface CommandIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly env: NodeJS.ProcessEnv;
}

/** Runs one command and returns its exit code: 0 done, 1 failed, 2 usage or configuration error. */
export async function run(argv: string[], io: CommandIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      io.stderr.write(`engram: ${(err as Error).message}\nRun "engram --help" for the commands and options.\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      io.stderr.write(`engram: invalid configuration: ${err.message}\n`);
      return 2;
    }
    if (err instanceof ConnectError) {
      const hint = HINTS[err.code] === undefined ? "" : `\n${HINTS[err.code]}`;
      io.stderr.write(`engram: ${err.rawMessage} (${grpcCodeName(err.code)})${hint}\n`);
      return 1;
    }
    io.stderr.write(`engram: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
}

/** Advice printed under an error with these codes, for what the CLI user controls. */
const HINTS: Partial<Record<Code, string>> = {
  [Code.Unavailable]: "Check that the server runs and that --url or ENGRAM_URL names it.",
  [Code.Unauthenticated]:
    "The token comes from ENGRAM_TOKEN, else the file ENGRAM_TOKEN_FILE names, else ~/.config/engram/token, else $ENGRAM_DATA_DIR/admin-token (default ./data/admin-token).",
};

/** Returns the name the gRPC specification gives a status code, such as NOT_FOUND. */
function grpcCodeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

async function dispatch(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: "string" },
      "content-type": { type: "string" },
      recursive: { type: "boolean", short: "r" },
      versions: { type: "boolean" },
      versioning: { type: "boolean" },
      generation: { type: "string" },
      grant: { type: "string", multiple: true },
      description: { type: "string" },
      principal: { type: "string" },
      bucket: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, ...args] = positionals;
  if (values.help || command === undefined) {
    io.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }

  // Only commands that call a server read the token, so a bad ENGRAM_TOKEN_FILE does not stop serve.
  const callsServer = command !== "serve" && command !== "config";
  const server: Server = { url: serverUrl(values.url ?? io.env.ENGRAM_URL ?? DEFAULT_URL), token: callsServer ? findToken(io.env) : undefined };
  const print = (line: string): void => {
    io.stdout.write(`${line}\n`);
  };

  if (values.generation !== undefined && !GENERATION_COMMANDS.has(command)) {
    throw new UsageError(`--generation applies to get, stat and rm only, not to ${command}`);
  }
  switch (command) {
    case "serve":
      return serve(io.env);
    case "put":
      await commands.put(server, need(args, 0, "FILE"), need(args, 1, "BUCKET/KEY"), values["content-type"], print);
      return 0;
    case "get":
      await commands.get(server, need(args, 0, "BUCKET/KEY"), args[1], commands.parseGeneration(values.generation), print, io.stdout);
      return 0;
    case "ls":
      if (values.versions) {
        await bucketCommands.listVersions(server, need(args, 0, "BUCKET[/PREFIX]"), print);
        return 0;
      }
      await commands.list(server, need(args, 0, "BUCKET[/PREFIX]"), print, values.recursive ?? false);
      return 0;
    case "stat":
      await commands.stat(server, need(args, 0, "BUCKET/KEY"), commands.parseGeneration(values.generation), print);
      return 0;
    case "rm":
      await commands.remove(server, need(args, 0, "BUCKET/KEY"), commands.parseGeneration(values.generation), print);
      return 0;
    case "restore":
      await bucketCommands.restore(server, need(args, 0, "BUCKET/KEY"), need(args, 1, "GENERATION"), print);
      return 0;
    case "mb":
      await bucketCommands.makeBucket(server, need(args, 0, "BUCKET"), values.versioning ?? false, print);
      return 0;
    case "rb":
      await bucketCommands.removeBucket(server, need(args, 0, "BUCKET"), print);
      return 0;
    case "versioning":
      await bucketCommands.setVersioning(server, need(args, 0, "BUCKET"), need(args, 1, "STATE"), print);
      return 0;
    case "buckets":
      await commands.buckets(server, print);
      return 0;
    case "health":
      return checkHealth(server.url, print);
    case "config":
      if (args[0] !== "check") throw new UsageError(`unknown config command ${JSON.stringify(args[0] ?? "")}: use check`);
      return checkConfig(io.env, print);
    case "admin":
      return runAdmin(args, values, server, io.env, print);
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

async function runAdmin(
  args: string[],
  values: { grant?: string[]; description?: string; principal?: string; bucket?: string },
  server: Server,
  env: NodeJS.ProcessEnv,
  print: (line: string) => void,
): Promise<number> {
  const [group, action] = args;
  if (group === "rebuild-index") return rebuild(env, print);
  if (group === "audit") {
    await admin.audit(server, values.principal ?? "", values.bucket ?? "", print);
    return 0;
  }
  if (group !== "keys") throw new UsageError(`unknown admin command ${JSON.stringify(group ?? "")}: use keys, audit or rebuild-index`);
  switch (action) {
    case "create":
      await admin.createKey(server, need(args, 2, "PRINCIPAL"), values.grant ?? [], values.description ?? "", print);
      return 0;
    case "list":
      await admin.listKeys(server, print);
      return 0;
    case "revoke":
      await admin.revokeKey(server, need(args, 2, "KEY_ID"), print);
      return 0;
    default:
      throw new UsageError(`unknown admin keys command ${JSON.stringify(action ?? "")}: use create, list or revoke`);
  }
}

/** Checks the server URL before any call, so a typo gets a clear message. */
function serverUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(value)} is not a URL: give one such as ${DEFAULT_URL}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--url ${JSON.stringify(value)} must start with http:// or https://, such as ${DEFAULT_URL}`);
  }
  return value;
}

function need(args: string[], index: number, name: string): string {
  const value = args[index];
  if (value === undefined) throw new UsageError(`missing argument ${name}`);
  return value;
}

/** Runs the server until SIGTERM or SIGINT, then shuts down gracefully. */
async function serve(env: NodeJS.ProcessEnv): Promise<number> {
  const config = await loadConfig(env);
  const log = createLogger(config.logLevel, undefined, config.logFormat);
  const engram = await startEngram(config, { log, announce: (text) => process.stderr.write(text) });

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

/** Rebuilds the metadata index from the blob store with the server's own settings. */
async function rebuild(env: NodeJS.ProcessEnv, print: (line: string) => void): Promise<number> {
  const config = await loadConfig(env);
  const log = createLogger(config.logLevel === "info" ? "warn" : config.logLevel);
  const { blobs, metadata } = await openStores(config, log);
  try {
    const reports = await rebuildIndex(metadata, blobs, config.buckets, log);
    for (const report of reports) {
      print(`${report.bucket}: restored ${report.restored} objects, skipped ${report.superseded} older versions`);
    }
    return 0;
  } finally {
    await metadata.close();
    await blobs.close();
  }
}

/**
 * Prints the effective configuration as JSON with secrets redacted, and
 * where each secret setting came from. An invalid setting throws
 * ConfigError, which `run` turns into exit code 2.
 */
async function checkConfig(env: NodeJS.ProcessEnv, print: (line: string) => void): Promise<number> {
  const config = await loadConfig(env);
  const secretSources = Object.fromEntries(SECRET_VARIABLES.map((name) => [name, secretSource(env, name)]));
  // An unset optional secret is undefined, which JSON.stringify would drop, so null keeps the setting visible.
  print(JSON.stringify({ ...redactConfig(config), secretSources }, (_key, value: unknown) => (value === undefined ? null : value), 2));
  return 0;
}

async function checkHealth(url: string, print: (line: string) => void): Promise<number> {
  const client = createClient(Health, createGrpcTransport({ baseUrl: url }));
  const { status } = await client.check({ service: "" }, { timeoutMs: 5000 });
  print(HealthCheckResponse_ServingStatus[status] ?? String(status));
  return status === HealthCheckResponse_ServingStatus.SERVING ? 0 : 1;
}

