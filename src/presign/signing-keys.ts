import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

import type { Logger } from "pino";

import type { Config } from "../config.js";
import type { SigningKey } from "./url-signer.js";

const KEY_FILE = "signing-key.json";

/**
 * Returns the keys for signing data plane URLs and upload tokens: those of
 * ENGRAM_SIGNING_KEYS, or else one generated once into the data directory
 * and read from there on later starts. Replicas that share a store must
 * share their keys through ENGRAM_SIGNING_KEYS, or a URL signed by one of
 * them fails on the others.
 */
export async function loadSigningKeys(config: Config, log: Logger): Promise<SigningKey[]> {
  if (config.signingKeys.length > 0) {
    return config.signingKeys.map((key) => ({ id: key.id, secret: Buffer.from(key.secret, "utf8") }));
  }

  const path = join(config.dataDir, KEY_FILE);
  try {
    const stored = JSON.parse(await readFile(path, "utf8")) as { id: string; secret: string };
    return [{ id: stored.id, secret: Buffer.from(stored.secret, "hex") }];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }

  const key = { id: `k${Date.now().toString(36)}`, secret: randomBytes(32) };
  await mkdir(config.dataDir, { recursive: true });
  await writeFile(path, JSON.stringify({ id: key.id, secret: key.secret.toString("hex") }), { mode: 0o600, flag: "wx" });
  if (config.blobStore === "s3" || config.metadataStore === "postgres") {
    log.warn({ path }, "generated a URL signing key for this replica only: set ENGRAM_SIGNING_KEYS so all replicas accept each other's URLs");
  }
  return [key];
}
