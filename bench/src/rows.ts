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

/**
 * Resident memory of this process, in MB: its peak, and now (after a full GC when --expose-gc is on) with the
 * JavaScript heap in use and the memory held outside it (typed arrays).
 */
export function residentMB(): { now: number; peak: number; heap: number; external: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  // A second collection: the first frees the backing stores of dead typed arrays on a background thread, and until
  // that ends `external` still counts them (about 20 MB after a 1 TiB TDX warm-up); the next GC waits for it.
  gc?.();
  const m = process.memoryUsage();
  return {
    now: m.rss / MiB,
    peak: (process.resourceUsage().maxRSS * 1024) / MiB,
    heap: m.heapUsed / MiB,
    external: m.external / MiB,
  };
}

/** How a rate was measured, for the table: operations, time, and the CPU share when the machine was busy. */
export function rateNote(rate: { ops: number; seconds: number; cpuShare: number }, unit = ''): string {
  const busy =
    rate.cpuShare < 0.8 ? `; busy machine: this process had ${Math.round(rate.cpuShare * 100)}% of a core` : '';
  return `${rate.ops.toLocaleString('en-US')}${unit} in ${rate.seconds.toFixed(2)} s${busy}`;
}

/** A rate that is not a positive finite number is a broken result. */
export function checkRate(name: string, rate: number, problems: string[]): number {
  if (!Number.isFinite(rate) || rate <= 0) problems.push(`${name}: rate ${rate} is not a positive number`);
  return rate;
}
