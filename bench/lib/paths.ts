import { fileURLToPath } from "node:url";

/** Root of the checkout; this file runs compiled as dist/bench/lib/paths.js. */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
