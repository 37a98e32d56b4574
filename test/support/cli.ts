import { Writable } from "node:stream";

import { run } from "../../src/cli/run.js";

/** Exit code and output of one `engram` command. */
export interface CommandRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs an `engram` command in this process, as main.ts does, with captured output. */
export async function runCommand(args: string[], env: NodeJS.ProcessEnv): Promise<CommandRun> {
  let stdout = "";
  let stderr = "";
  const capture = (append: (text: string) => void) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        append(chunk.toString("utf8"));
        done();
      },
    });
  const code = await run(args, {
    stdout: capture((text) => (stdout += text)),
    stderr: capture((text) => (stderr += text)),
    env,
  });
  return { code, stdout, stderr };
}
