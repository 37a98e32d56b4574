import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

import type { Logger } from "pino";

import type { AccessStore } from "../metadata/access-store.js";
import { ADMIN_GRANTS } from "./grants.js";
import { generateToken } from "./tokens.js";

/** File in the data directory that receives the admin token generated at first start. */
export const ADMIN_TOKEN_FILE = "admin-token";

/**
 * Creates the first admin access key when the metadata store has never
 * held one, writes its token to `<dataDir>/admin-token` with mode 0600, and
 * passes the token to `announce` (the console, never the log). Returns the
 * file's path when it created a key.
 *
 * NOTE: two replicas that start together on an empty PostgreSQL database
 * may both create a key. Each writes its own data directory, and either
 * key can be revoked.
 */
export async function createFirstAdminKey(store: AccessStore, dataDir: string, log: Logger, announce: (text: string) => void): Promise<string | undefined> {
  if ((await store.countAccessKeys()) > 0) return undefined;

  const { keyId, token, sha256 } = generateToken();
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  await mkdir(dataDir, { recursive: true });
  await writeFile(path, `${token}\n`, { mode: 0o600 });
  // The mode applies only when the file is created, so an old file is narrowed too.
  await chmod(path, 0o600);
  await store.createAccessKey({ keyId, principal: "admin", description: "admin key generated at first start", grants: ADMIN_GRANTS, tokenSha256: sha256 });

  log.warn({ keyId, tokenFile: path }, "created the first admin access key; its token is in the token file and is shown once on the console");
  announce(`Engram admin token (shown once, also in ${path}):\n  ${token}\nUse it with: export ENGRAM_TOKEN=$(cat ${path})\n`);
  return path;
}
