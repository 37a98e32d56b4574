import { readFile, writeFile } from "node:fs/promises";

/**
 * Writes `report` into the file at `path` between the `start` and `end`
 * marker lines, keeping the rest of the file. A file without both markers
 * is appended to; a missing file is created with `title`.
 */
export async function writeBetweenMarkers(path: string, report: string, start: string, end: string, title: string): Promise<void> {
  const existing = await readFile(path, "utf8").catch(() => undefined);
  const block = `${start}\n${report}${end}`;
  if (existing === undefined) {
    await writeFile(path, `# ${title}\n\n${block}\n`);
    return;
  }
  if (!existing.includes(start) || !existing.includes(end)) {
    await writeFile(path, `${existing.trimEnd()}\n\n${block}\n`);
    return;
  }
  const before = existing.slice(0, existing.indexOf(start));
  const after = existing.slice(existing.indexOf(end) + end.length);
  await writeFile(path, `${before}${block}${after}`);
}
