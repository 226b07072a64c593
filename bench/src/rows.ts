/** What a benchmark reports: rows of bench-results.json, and problems that make the run a failure. */
export interface Row {
  name: string;
  /** null when there is nothing to measure yet (the row says why in `note`). */
  value: number | null;
  unit: string;
  baseline?: string;
  /** value / the baseline's value, both measured in the same process. */
  ratio?: number;
  /** Shown in the table only. */
  note?: string;
}

export interface BenchResult {
  rows: Row[];
  /**
   * Broken results: a crash, an invariant broken after the run, a rate that is not a number, a property-test
   * failure. Any problem makes `pnpm bench` exit non-zero; a missed target does not.
   */
  problems: string[];
}

export const GiB = 2 ** 30;
export const MiB = 2 ** 20;
export const TiB = 2 ** 40;

export function sizeName(bytes: number): string {
  return bytes >= TiB ? `${bytes / TiB}TiB` : `${bytes / GiB}GiB`;
}

/** Resident memory of this process: now (after a full GC when --expose-gc is on) and its peak, in MB. */
export function residentMB(): { now: number; peak: number } {
  (globalThis as { gc?: () => void }).gc?.();
  return { now: process.memoryUsage().rss / MiB, peak: (process.resourceUsage().maxRSS * 1024) / MiB };
}

/** A rate that is not a positive finite number is a broken result. */
export function checkRate(name: string, rate: number, problems: string[]): number {
  if (!Number.isFinite(rate) || rate <= 0) problems.push(`${name}: rate ${rate} is not a positive number`);
  return rate;
}
