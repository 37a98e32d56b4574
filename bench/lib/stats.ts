/** Median and spread of a few rounds, as the report prints them. */
export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly count: number;
}

export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, count: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, count: sorted.length };
}

/** Nearest-rank percentile (0 < p <= 100) of unsorted values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Formats a byte count as MiB or GiB with few digits, such as "6 GiB" or "8 MiB". */
export function formatBytes(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(2)} GiB`;
  return `${Number((bytes / MiB).toFixed(1))} MiB`;
}

/** Formats a ratio as a percentage, such as "27%"; NaN prints as "n/a". */
export function percent(ratio: number): string {
  if (!Number.isFinite(ratio)) return "n/a";
  return `${ratio >= 0.1 ? Math.round(ratio * 100) : (ratio * 100).toFixed(1)}%`;
}

/** Formats the median and range of ratios, such as "27% (24–31%)"; one round prints the median alone. */
export function percentSummary(summary: Summary): string {
  if (summary.count <= 1) return percent(summary.median);
  return `${percent(summary.median)} (${percent(summary.min)}–${percent(summary.max)})`;
}

/** Formats a median and range of plain numbers with a unit, such as "3.1 ms (2.9–3.4)". */
export function numberSummary(summary: Summary, digits: number, unit: string): string {
  const median = `${summary.median.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
  if (summary.count <= 1) return median;
  return `${median} (${summary.min.toFixed(digits)}–${summary.max.toFixed(digits)})`;
}
