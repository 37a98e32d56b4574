/*
 * Programs the benchmark needs beyond npm: ghz (a gRPC load generator
 * written in Go) and MinIO. Each is taken from its ENGRAM_* variable or the
 * cache first, and otherwise built with `go install` at a pinned version
 * into the cache.
 */
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Newest ghz release the Go module proxy served when this was written. */
export const GHZ_VERSION = "v0.121.0";
export const GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz";
/** The MinIO commit .ci/run installs; MinIO publishes only pseudo-versions to the Go module proxy. */
export const MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c";
export const MINIO_MODULE = "github.com/minio/minio";

const CACHE_DIR = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "engram-bench", "bin");
const GO_INSTALL_TIMEOUT_MS = 15 * 60_000;

/** A program the benchmark cannot find or build here. */
export class ToolMissingError extends Error {
  override readonly name = "ToolMissingError";
}

async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/** Returns ghz: $ENGRAM_GHZ, or the cached build of GHZ_VERSION, building it on first use. */
export async function findOrInstallGhz(log: (line: string) => void): Promise<string> {
  const override = process.env.ENGRAM_GHZ;
  if (override) {
    if (await isExecutable(override)) return override;
    throw new ToolMissingError(`ENGRAM_GHZ=${override} is not an executable file: unset it or point it at ghz`);
  }
  return goInstall("ghz", GHZ_MODULE, GHZ_VERSION, log);
}

/**
 * Returns MinIO: $ENGRAM_MINIO, the binary .ci/run caches, minio on PATH or
 * in ~/go/bin, or else a cached build of MINIO_VERSION (a build takes
 * several minutes).
 */
export async function findOrInstallMinio(log: (line: string) => void): Promise<string> {
  const override = process.env.ENGRAM_MINIO;
  if (override) {
    if (await isExecutable(override)) return override;
    throw new ToolMissingError(`ENGRAM_MINIO=${override} is not an executable file: unset it or point it at minio`);
  }
  const home = homedir();
  const candidates = [
    join(home, ".cache", "engram-ci", "bin", `minio-${MINIO_VERSION}`),
    ...(process.env.PATH ?? "").split(delimiter).filter(Boolean).map((directory) => join(directory, "minio")),
    join(home, "go", "bin", "minio"),
  ];
  for (const candidate of candidates) {
    if (await isExecutable(candidate)) return candidate;
  }
  return goInstall("minio", MINIO_MODULE, MINIO_VERSION, log);
}

async function goInstall(name: string, module: string, version: string, log: (line: string) => void): Promise<string> {
  const target = join(CACHE_DIR, `${name}-${version}`);
  if (await isExecutable(target)) return target;

  const staging = join(CACHE_DIR, `tmp-${name}-${process.pid}`);
  await mkdir(staging, { recursive: true });
  log(`installing ${module}@${version} into ${CACHE_DIR} with go install`);
  try {
    await execFileAsync("go", ["install", `${module}@${version}`], {
      env: { ...process.env, GOBIN: staging },
      timeout: GO_INSTALL_TIMEOUT_MS,
      maxBuffer: 16 * 1024 * 1024,
    });
    await rename(join(staging, name), target);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "go is not on PATH" : ((err as { stderr?: string }).stderr ?? (err as Error).message).trim();
    throw new ToolMissingError(`cannot install ${name}: ${reason}. Install it with go install ${module}@${version}, or set ENGRAM_${name.toUpperCase()}`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return target;
}

/** Returns the first line a program prints for its version flag, or "unknown". */
export async function versionOf(binary: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout, stderr } = await execFileAsync(binary, [...args], { timeout: 30_000 });
    return (stdout || stderr).trim().split("\n")[0] ?? "unknown";
  } catch {
    return "unknown";
  }
}
