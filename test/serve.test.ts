import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, expect, it } from "vitest";

import { TEST_ADMIN_TOKEN, storageClient } from "./support/engram.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const dirs: string[] = [];

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/**
 * Runs the container's start command, as the Dockerfile does, and waits for
 * its URL. The server gets the test admin token unless `env` sets
 * ENGRAM_ADMIN_TOKEN ("" leaves it unset).
 */
async function serve(env: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, "serve"], { env: { ...process.env, ENGRAM_ADMIN_TOKEN: TEST_ADMIN_TOKEN, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const lines: Record<string, unknown>[] = [];
  let metricsUrl = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("engram serve did not log its URL within 20 s")), 20_000);
    createInterface({ input: child.stdout }).on("line", (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      lines.push(entry);
      if (entry.msg === "engram started") {
        clearTimeout(timer);
        metricsUrl = String(entry.metricsUrl);
        resolve(String(entry.url));
      }
    });
    child.once("exit", (code) => reject(new Error(`engram serve exited with ${code} before it started`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, url, metricsUrl, lines, exited, stderr: () => stderr };
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

it("SIGTERM drains calls and cuts off the rest", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "engram-serve-"));
  dirs.push(dataDir);
  const server = await serve({ ENGRAM_PORT: "0", ENGRAM_METRICS_PORT: "0", ENGRAM_DATA_DIR: dataDir, ENGRAM_SHUTDOWN_GRACE_SECONDS: "3" });
  const client = storageClient("grpc", server.url);

  /** Sends `chunks` chunks of 64 KiB, one every `intervalMs`, then finishes. */
  const slowUpload = (key: string, chunks: number, intervalMs: number) =>
    client.upload(
      (async function* () {
        yield { spec: { bucket: "mnemos-models", key } };
        for (let i = 0; i < chunks; i++) {
          yield { writeOffset: BigInt(i * 65536), data: { content: randomBytes(65536) } };
          await new Promise((resolve) => setTimeout(resolve, intervalMs));
        }
        yield { writeOffset: BigInt(chunks * 65536), finishWrite: true };
      })(),
    );
  const quick = slowUpload("drain/quick", 4, 100);
  const slow = slowUpload("drain/slow", 100, 100).then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));

  server.child.kill("SIGTERM");
  let readiness = 0;
  for (let i = 0; i < 40 && readiness !== 503; i++) {
    readiness = await fetch(`${server.metricsUrl}/readyz`).then(
      (response) => response.status,
      () => 0,
    );
    if (readiness !== 503) await new Promise((resolve) => setTimeout(resolve, 25));
  }
  expect(readiness).toBe(503);

  const refused = await client.getObject({ bucket: "mnemos-models", key: "drain/quick" }).then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
  expect(refused?.code).toBe(Code.Unavailable);

  const quickObject = await quick;
  expect(quickObject.object?.size).toBe(BigInt(4 * 65536));
  const cut = await slow;
  expect(cut).toBeInstanceOf(ConnectError);
  expect(await server.exited).toBe(0);

  const again = await serve({ ENGRAM_PORT: "0", ENGRAM_METRICS_PORT: "0", ENGRAM_DATA_DIR: dataDir });
  const afterClient = storageClient("grpc", again.url);
  const kept = await afterClient.getObject({ bucket: "mnemos-models", key: "drain/quick" });
  expect(kept.object?.size).toBe(BigInt(4 * 65536));
  const gone = await afterClient.getObject({ bucket: "mnemos-models", key: "drain/slow" }).then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
  expect(gone?.code).toBe(Code.NotFound);
  again.child.kill("SIGTERM");
  expect(await again.exited).toBe(0);
});

it("first start creates and prints the admin token once", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "engram-serve-"));
  dirs.push(dataDir);
  const first = await serve({ ENGRAM_PORT: "0", ENGRAM_METRICS_PORT: "0", ENGRAM_DATA_DIR: dataDir, ENGRAM_ADMIN_TOKEN: "" });
  const tokenFile = join(dataDir, "admin-token");
  const token = (await readFile(tokenFile, "utf8")).trim();
  expect(token).toMatch(/^engram_[0-9a-f]{16}_/);
  expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
  expect(first.stderr()).toContain(token);
  expect(JSON.stringify(first.lines)).not.toContain(token);

  const withToken = await storageClient("grpc", first.url, token).listBuckets({});
  expect(withToken.buckets.length).toBeGreaterThan(0);
  const without = await storageClient("grpc", first.url, "").listBuckets({}).then(
    () => undefined,
    (err: unknown) => ConnectError.from(err),
  );
  expect(without?.code).toBe(Code.Unauthenticated);
  first.child.kill("SIGTERM");
  expect(await first.exited).toBe(0);

  const second = await serve({ ENGRAM_PORT: "0", ENGRAM_METRICS_PORT: "0", ENGRAM_DATA_DIR: dataDir, ENGRAM_ADMIN_TOKEN: "" });
  expect(second.stderr()).not.toContain(token);
  expect((await readFile(tokenFile, "utf8")).trim()).toBe(token);
  second.child.kill("SIGTERM");
  expect(await second.exited).toBe(0);
});

it("ENGRAM_AUTH=off warns at every start", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "engram-serve-"));
  dirs.push(dataDir);
  for (let start = 0; start < 2; start++) {
    const server = await serve({ ENGRAM_PORT: "0", ENGRAM_METRICS_PORT: "0", ENGRAM_DATA_DIR: dataDir, ENGRAM_AUTH: "off" });
    const warning = server.lines.find((line) => typeof line.msg === "string" && line.msg.startsWith("access control is off"));
    expect(warning?.level).toBe(40);
    const listed = await storageClient("grpc", server.url, "").listBuckets({});
    expect(listed.buckets.length).toBeGreaterThan(0);
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
  }
});
