/**
 * Sizes for display. Dependency-free, so that the web view's browser bundle shares it with the text formats.
 */

const UNITS = [
  ['TiB', 1n << 40n],
  ['GiB', 1n << 30n],
  ['MiB', 1n << 20n],
  ['KiB', 1n << 10n],
] as const;

/** A size for display: '2 MiB', '4 KiB', '0x1234' or a plain number. */
export function formatSize(value: number | bigint): string {
  const v = BigInt(value);
  if (v === 0n) return '0';
  for (const [unit, size] of UNITS) {
    if (v % size === 0n && v >= size) return `${v / size} ${unit}`;
  }
  return v >= 4096n ? `0x${v.toString(16)}` : String(v);
}
