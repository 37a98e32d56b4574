import { mkdir } from "node:fs/promises";

import { PGlite } from "@electric-sql/pglite";
import { Kysely } from "kysely";

import { SqlMetadataStore } from "../sql/sql-metadata-store.js";
import type { Database } from "../sql/schema.js";
import { PGliteDialect } from "./pglite-dialect.js";

/**
 * Opens (or creates) the embedded PGlite database in a directory, and
 * applies migrations. Only one process may open a directory at a time.
 */
export async function openPGliteMetadataStore(dir: string): Promise<SqlMetadataStore> {
  await mkdir(dir, { recursive: true });
  const pglite = await PGlite.create(dir);
  const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
  const store = new SqlMetadataStore("pglite", db, { onClose: () => pglite.close() });
  await store.migrate();
  return store;
}
