import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { runCommand, type CommandRun } from "./support/cli.js";

import { TEST_ADMIN_TOKEN, startTestEngram, type TestEngram } from "./support/engram.js";
import { MiB, random } from "./support/objects.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));

type Run = CommandRun;

/** Runs the built `engram` command against the test server. */
function engramCli(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, ENGRAM_URL: engram.url, ENGRAM_TOKEN: TEST_ADMIN_TOKEN }, timeout: 60_000 }, (err, stdout, stderr) => {
      let code = 0;
      if (err) {
        code = typeof err.code === "number" ? err.code : 1;
      }
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a command in this process against the test server. */
function engramInProcess(args: string[]): Promise<Run> {
  return runCommand(args, { ENGRAM_URL: engram.url, ENGRAM_TOKEN: TEST_ADMIN_TOKEN });
}

let engram: TestEngram;
let work: string;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
  engram = await startTestEngram();
  work = await mkdtemp(join(tmpdir(), "engram-cli-"));
});

afterAll(async () => {
  await engram.destroy();
  await rm(work, { recursive: true, force: true });
});

describe("engram command", () => {
  it("put then get returns the same file", async () => {
    const content = random(9 * MiB + 3);
    const sha256 = createHash("sha256").update(content).digest("hex");
    await writeFile(join(work, "model.safetensors"), content);

    const put = await engramCli(["put", "model.safetensors", "mnemos-models/demo/model.safetensors"], work);
    expect(put.stderr).toBe("");
    expect(put.code).toBe(0);
    expect(put.stdout).toContain(sha256);

    const get = await engramCli(["get", "mnemos-models/demo/model.safetensors", "copy.safetensors"], work);
    expect(get.code).toBe(0);
    expect(get.stdout).toContain(sha256);
    const copy = await readFile(join(work, "copy.safetensors"));
    expect(createHash("sha256").update(copy).digest("hex")).toBe(sha256);
  });

  it("get without FILE uses the key's last segment", async () => {
    await writeFile(join(work, "notes.txt"), "hello\n");
    expect((await engramCli(["put", "notes.txt", "mnemos-artifacts/a/b/notes.txt"], work)).code).toBe(0);
    const sub = await mkdtemp(join(work, "get-"));
    const get = await engramCli(["get", "mnemos-artifacts/a/b/notes.txt"], sub);
    expect(get.code).toBe(0);
    expect(await readFile(join(sub, "notes.txt"), "utf8")).toBe("hello\n");

    const stdout = await engramCli(["get", "mnemos-artifacts/a/b/notes.txt", "-"], work);
    expect(stdout.stdout).toBe("hello\n");
  });

  it("ls shows prefixes and objects", async () => {
    await writeFile(join(work, "x"), "x");
    expect((await engramInProcess(["put", join(work, "x"), "mnemos-logs/run/1/x"])).code).toBe(0);
    expect((await engramInProcess(["put", join(work, "x"), "mnemos-logs/run/top"])).code).toBe(0);

    const ls = await engramInProcess(["ls", "mnemos-logs/run/"]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/PRE\s+run\/1\//);
    expect(ls.stdout).toMatch(/\s1\s+\S+\s+run\/top\n/);

    const recursive = await engramInProcess(["ls", "-r", "mnemos-logs"]);
    expect(recursive.stdout).toContain("run/1/x");
  });

  it("stat prints metadata with hex sha256", async () => {
    await writeFile(join(work, "s"), "stat me");
    expect((await engramInProcess(["put", "--content-type", "text/plain", join(work, "s"), "mnemos-logs/stat/s"])).code).toBe(0);
    const stat = await engramInProcess(["stat", "mnemos-logs/stat/s"]);
    expect(stat.code).toBe(0);
    const json = JSON.parse(stat.stdout) as { size: string; contentType: string; checksums: { sha256: string } };
    expect(json.size).toBe("7");
    expect(json.contentType).toBe("text/plain");
    expect(json.checksums.sha256).toBe(createHash("sha256").update("stat me").digest("hex"));
  });

  it("rm deletes and a second rm is NOT_FOUND", async () => {
    await writeFile(join(work, "r"), "r");
    expect((await engramInProcess(["put", join(work, "r"), "mnemos-logs/rm/r"])).code).toBe(0);
    expect((await engramInProcess(["rm", "mnemos-logs/rm/r"])).code).toBe(0);

    const again = await engramInProcess(["rm", "mnemos-logs/rm/r"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("not found");
    expect(again.stderr).toContain("NOT_FOUND");
  });

  it("failed get leaves no file", async () => {
    const get = await engramInProcess(["get", "mnemos-logs/missing", join(work, "missing.out")]);
    expect(get.code).toBe(1);
    expect(existsSync(join(work, "missing.out"))).toBe(false);
    expect(existsSync(join(work, "missing.out.engram-partial"))).toBe(false);
  });

  it("bad arguments print usage with exit 2", async () => {
    const noKey = await engramCli(["put", "x", "mnemos-logs"], work);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain("BUCKET/KEY");

    const unknown = await engramCli(["frobnicate"], work);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stderr).toContain("engram --help");
  });

  it("help prints usage", async () => {
    const help = await engramInProcess(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: engram");

    const nothing = await engramInProcess([]);
    expect(nothing.code).toBe(2);
  });

  it("put of a missing file fails", async () => {
    const put = await engramInProcess(["put", join(work, "does-not-exist"), "mnemos-logs/x"]);
    expect(put.code).toBe(1);
    expect(put.stderr).toContain("does-not-exist");
  });

  it("unknown option is a usage error", async () => {
    const result = await engramInProcess(["ls", "--colour", "mnemos-logs"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--colour");
  });

  it("buckets and health answer", async () => {
    const buckets = await engramInProcess(["buckets"]);
    expect(buckets.stdout.split("\n")).toContain("mnemos-models");
    const health = await engramInProcess(["health"]);
    expect(health.code).toBe(0);
    expect(health.stdout.trim()).toBe("SERVING");
  });

  it("versioned bucket commands", async () => {
    const created = await engramInProcess(["mb", "cli-versions", "--versioning"]);
    expect(created.stdout).toBe("created bucket cli-versions with versioning enabled\n");
    await writeFile(join(work, "v1.txt"), "first");
    await writeFile(join(work, "v2.txt"), "second!");
    await engramCli(["put", "v1.txt", "cli-versions/notes.txt"], work);
    await engramCli(["put", "v2.txt", "cli-versions/notes.txt"], work);

    const versions = await engramInProcess(["ls", "--versions", "cli-versions"]);
    const lines = versions.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\s*7 .* live\s+notes\.txt$/);
    expect(lines[1]).toMatch(/^\s*5 .* noncurrent\s+notes\.txt$/);
    const firstGeneration = lines[1]!.trim().split(/\s+/)[2]!;

    const older = await engramInProcess(["get", "--generation", firstGeneration, "cli-versions/notes.txt", "-"]);
    expect(older.stdout).toBe("first");
    const olderStat = JSON.parse((await engramInProcess(["stat", "--generation", firstGeneration, "cli-versions/notes.txt"])).stdout) as { generation: string };
    expect(olderStat.generation).toBe(firstGeneration);
    const misplaced = await engramInProcess(["ls", "--generation", firstGeneration, "cli-versions"]);
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toContain("--generation applies to get, stat and rm only");

    const restored = await engramInProcess(["restore", "cli-versions/notes.txt", firstGeneration]);
    expect(restored.stdout).toContain(`generation ${firstGeneration} as generation`);
    expect((await engramInProcess(["get", "cli-versions/notes.txt", "-"])).stdout).toBe("first");

    const removed = await engramInProcess(["rm", "cli-versions/notes.txt"]);
    expect(removed.stdout).toContain("delete marker generation");
    const busy = await engramInProcess(["rb", "cli-versions"]);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain("FAILED_PRECONDITION");

    const all = (await engramInProcess(["ls", "--versions", "cli-versions"])).stdout.trim().split("\n");
    for (const line of all) {
      const generation = line.trim().split(/\s+/)[2]!;
      expect((await engramInProcess(["rm", "cli-versions/notes.txt", "--generation", generation])).code).toBe(0);
    }
    expect((await engramInProcess(["versioning", "cli-versions", "suspended"])).stdout).toBe("versioning of cli-versions is suspended\n");
    expect((await engramInProcess(["versioning", "cli-versions", "off"])).code).toBe(2);
    expect((await engramInProcess(["rb", "cli-versions"])).stdout).toBe("deleted bucket cli-versions\n");
  });

  it("admin keys create, list and revoke", async () => {
    const created = await engramInProcess(["admin", "keys", "create", "ci-job", "--grant", "mnemos-artifacts/jobs/7/=write,read,list", "--description", "CI"]);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    const token = /token: +(\S+)/.exec(created.stdout)?.[1] ?? "";
    const keyId = /key id: +(\S+)/.exec(created.stdout)?.[1] ?? "";
    expect(token).toMatch(/^engram_/);
    await writeFile(join(work, "job.bin"), random(1000));

    const asJob = (args: string[]) => runCommand(args, { ENGRAM_URL: engram.url, ENGRAM_TOKEN: token });
    expect((await asJob(["put", join(work, "job.bin"), "mnemos-artifacts/jobs/7/out.bin"])).code).toBe(0);
    const outside = await asJob(["put", join(work, "job.bin"), "mnemos-artifacts/jobs/8/out.bin"]);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toContain("PERMISSION_DENIED");

    const listed = await engramInProcess(["admin", "keys", "list"]);
    expect(listed.stdout).toContain(`${keyId}  active   `);
    expect(listed.stdout).toContain("mnemos-artifacts/jobs/7/=write,read,list");
    expect(listed.stdout).not.toContain(token);

    expect((await engramInProcess(["admin", "keys", "revoke", keyId])).code).toBe(0);
    const revoked = await asJob(["ls", "mnemos-artifacts/jobs/7/"]);
    expect(revoked.code).toBe(1);
    expect(revoked.stderr).toContain("UNAUTHENTICATED");
    expect(revoked.stderr).toContain("The token comes from ENGRAM_TOKEN");

    // A bare key id, as `keys list` prints it, filters like key:ID.
    const audit = await engramInProcess(["admin", "audit", "--principal", keyId]);
    expect(audit.stdout).toContain("PermissionDenied");
    expect(audit.stdout).toContain("mnemos-artifacts/jobs/7/out.bin");
  });

  it("bad grant is a usage error", async () => {
    const result = await engramInProcess(["admin", "keys", "create", "x", "--grant", "mnemos-logs"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("BUCKET[/PREFIX]=ACTION");
  });

  it("token comes from the data directory", async () => {
    const dataDir = join(work, "data");
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dataDir, "admin-token"), `${TEST_ADMIN_TOKEN}\n`);
    const env = { ENGRAM_URL: engram.url, ENGRAM_DATA_DIR: dataDir, HOME: work };
    const listed = await runCommand(["buckets"], env);
    expect(listed.code).toBe(0);
    const withoutToken = await runCommand(["buckets"], { ...env, ENGRAM_DATA_DIR: join(work, "nowhere") });
    expect(withoutToken.code).toBe(1);
    expect(withoutToken.stderr).toContain("credentials are missing");
  });
});
