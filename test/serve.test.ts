import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { afterAll, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const dirs: string[] = [];

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** Runs the container's start command, as the Dockerfile does, and waits for its URL. */
async function serve(env: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, "serve"], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const lines: Record<string, unknown>[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("engram serve did not log its URL within 20 s")), 20_000);
    createInterface({ input: child.stdout }).on("line", (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      lines.push(entry);
      if (entry.msg === "engram started") {
        clearTimeout(timer);
        resolve(String(entry.url));
      }
    });
    child.once("exit", (code) => reject(new Error(`engram serve exited with ${code} before it started`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, url, lines, exited };
}

function health(url: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, "health", "--url", url], { timeout: 20_000 }, (err, stdout) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout });
    });
  });
}

it("serve answers health and exits 0 on SIGTERM", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "engram-serve-"));
  dirs.push(dataDir);
  const server = await serve({ ENGRAM_PORT: "0", ENGRAM_METRICS_PORT: "0", ENGRAM_DATA_DIR: dataDir, ENGRAM_SHUTDOWN_GRACE_SECONDS: "1" });

  const check = await health(server.url);
  expect(check.stdout.trim()).toBe("SERVING");
  expect(check.code).toBe(0);

  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
  expect(server.lines.map((line) => line.msg)).toContain("engram stopped");
});

it("health fails when nothing listens", async () => {
  const check = await health("http://127.0.0.1:9");
  expect(check.code).not.toBe(0);
});

it("invalid setting names the variable", async () => {
  const result = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [CLI, "serve"], { env: { ...process.env, ENGRAM_PORT: "ninety" }, timeout: 20_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, stderr });
    });
  });
  expect(result.code).toBe(2);
  expect(result.stderr).toContain("ENGRAM_PORT");
});

it("taken port exits 1 at once", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "engram-serve-"));
  dirs.push(dataDir);
  const first = await serve({ ENGRAM_PORT: "0", ENGRAM_METRICS_PORT: "0", ENGRAM_DATA_DIR: dataDir });
  const port = new URL(first.url).port;
  const otherDir = await mkdtemp(join(tmpdir(), "engram-serve-"));
  dirs.push(otherDir);

  const started = Date.now();
  const second = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [CLI, "serve"], { env: { ...process.env, ENGRAM_PORT: port, ENGRAM_METRICS_PORT: "0", ENGRAM_DATA_DIR: otherDir }, timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, stderr });
    });
  });
  expect(second.code).toBe(1);
  expect(second.stderr).toContain("EADDRINUSE");
  expect(Date.now() - started).toBeLessThan(20_000);

  const sameDir = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [CLI, "serve"], { env: { ...process.env, ENGRAM_PORT: "0", ENGRAM_METRICS_PORT: "0", ENGRAM_DATA_DIR: dataDir }, timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, stderr });
    });
  });
  expect(sameDir.code).toBe(1);
  expect(sameDir.stderr).toContain("is in use by Engram process");

  first.child.kill("SIGTERM");
  expect(await first.exited).toBe(0);
});
