#!/usr/bin/env node
import { run } from "./run.js";

// A reader that goes away (`engram get KEY - | head`) ends the command quietly.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const code = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });

// Exit as soon as the command is done: a stream the server already rejected,
// or a store left open by a failed start, must not keep the process alive.
process.stdout.write("", () => process.exit(code));
