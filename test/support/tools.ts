/*
 * Locates the command-line clients (grpcurl, buf) that the interop tests
 * run against a real server. A missing tool fails the tests in CI, where
 * it must be installed, and skips them elsewhere with a warning.
 */
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Absolute path of the buf CLI from the @bufbuild/buf dev dependency. */
export const BUF_BIN = join(REPO_ROOT, "node_modules", ".bin", "buf");

export type ToolName = "grpcurl" | "buf";

const INSTALL_COMMANDS: Record<ToolName, string> = {
  grpcurl: "go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3",
  buf: "npm ci (buf comes from the @bufbuild/buf dev dependency)",
};

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds the grpcurl binary in $ENGRAM_GRPCURL, then $PATH, then
 * $HOME/go/bin, then .ci/cache/bin in the repository. Returns undefined
 * when none of them contains it.
 *
 * @throws Error when $ENGRAM_GRPCURL is set but not an executable file, so
 *   a mistyped path never falls back to another grpcurl silently.
 */
export async function findGrpcurl(): Promise<string | undefined> {
  const override = process.env.ENGRAM_GRPCURL;
  if (override !== undefined && override !== "") {
    if (await isExecutable(override)) return override;
    throw new Error(`ENGRAM_GRPCURL=${override} is not an executable file: fix the path or unset ENGRAM_GRPCURL`);
  }

  const candidates: string[] = [];
  for (const directory of (process.env.PATH ?? "").split(delimiter)) {
    if (directory !== "") candidates.push(join(directory, "grpcurl"));
  }
  const home = process.env.HOME;
  if (home !== undefined && home !== "") candidates.push(join(home, "go", "bin", "grpcurl"));
  candidates.push(join(REPO_ROOT, ".ci", "cache", "bin", "grpcurl"));

  for (const candidate of candidates) {
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** Returns BUF_BIN, or undefined when the dev dependencies are not installed. */
export async function findBuf(): Promise<string | undefined> {
  return (await isExecutable(BUF_BIN)) ? BUF_BIN : undefined;
}

/** A command-line tool that some tests need. */
export interface RequiredTool {
  /** True when the tool is missing outside CI: pass to `it.skipIf` or `describe.skipIf`. */
  readonly skip: boolean;
  /**
   * Returns the path of the tool. Call it at the start of each test.
   *
   * @throws Error naming the install command when the tool is missing, which
   *   fails the test in CI.
   */
  path(): string;
}

/**
 * Decides what tests that need `name` do when `path` is undefined. In CI
 * ($CI set to anything but "" or "false") they run and fail with the
 * install command. Elsewhere they are skipped, and a warning names the
 * install command.
 */
export function requireTool(name: ToolName, path: string | undefined): RequiredTool {
  const missing = `${name} not found: install it with ${INSTALL_COMMANDS[name]}`;
  const runningInCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";
  if (path === undefined && !runningInCi) {
    console.warn(`${missing}. Skipping the tests that run ${name}.`);
  }

  return {
    skip: path === undefined && !runningInCi,
    path() {
      if (path === undefined) throw new Error(missing);
      return path;
    },
  };
}
