/**
 * Turning whatever a JavaScript caller passed into the integers a kernel call takes.
 *
 * The kernel's fields are u64/s64/u32; JavaScript callers can pass NaN, fractions, strings or undefined. Each
 * such value is EINVAL, decided here before any state is touched. Values are parsed exactly (bigint), so a
 * kernel rule about a u64 is judged on the u64 the caller meant; only then are they narrowed to numbers. The
 * model holds offsets and sizes as JavaScript numbers, so values above 2^53 are refused with EINVAL where the
 * kernel might accept them: a documented difference (kernel-contract has no such limit).
 */
import { fail } from '../errors.js';

export const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) return String(value);
  return typeof value;
}

/** A non-negative integer below 2^64, exactly, or EINVAL. */
export function parseU64(op: string, argument: string, value: unknown): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > (1n << 64n) - 1n) fail('EINVAL', op, `${argument}=${describe(value)} is not a u64`, { argument });
    return value;
  }
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < 2 ** 64) return BigInt(value);
  return fail('EINVAL', op, `${argument}=${describe(value)} is not a non-negative integer`, { argument });
}

/** A u64 that must also fit a JavaScript number exactly (<= 2^53 - 1), or EINVAL. */
export function parseSafe(op: string, argument: string, value: unknown): number {
  const big = parseU64(op, argument, value);
  return narrow(op, argument, big);
}

/** Narrow a parsed u64 to a number; EINVAL above 2^53 - 1 (the model's documented limit). */
export function narrow(op: string, argument: string, value: bigint): number {
  if (value > MAX_SAFE) {
    fail('EINVAL', op, `${argument}=${value} is above 2^53-1, the largest offset or size the model holds`, {
      argument,
      hint: 'gmemlab keeps offsets as JavaScript numbers; the kernel may accept this value',
    });
  }
  return Number(value);
}

/** An optional u64 argument (absent means 0). */
export function parseOptionalU64(op: string, argument: string, value: unknown): bigint {
  return value === undefined ? 0n : parseU64(op, argument, value);
}

/** A plain int (e.g. fallocate's mode, madvise's advice): any integer in the C int range, or EINVAL. */
export function parseInt32(op: string, argument: string, value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31) return value;
  if (typeof value === 'bigint' && value >= -(2n ** 31n) && value < 2n ** 31n) return Number(value);
  return fail('EINVAL', op, `${argument}=${describe(value)} is not an int`, { argument });
}

/** A signed 64-bit file offset (loff_t): negative values are kept so the caller can apply the kernel's rule. */
export function parseLoff(op: string, argument: string, value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value)) {
    if (Math.abs(value) > Number.MAX_SAFE_INTEGER) {
      fail('EINVAL', op, `${argument}=${describe(value)} is beyond 2^53-1, the largest offset the model holds`, { argument });
    }
    return value;
  }
  if (typeof value === 'bigint') {
    if (value > MAX_SAFE || value < -MAX_SAFE) {
      fail('EINVAL', op, `${argument}=${describe(value)} is beyond 2^53-1, the largest offset the model holds`, { argument });
    }
    return Number(value);
  }
  return fail('EINVAL', op, `${argument}=${describe(value)} is not an integer`, { argument });
}

/** A byte buffer argument. */
export function parseBytes(op: string, argument: string, value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  return fail('EFAULT', op, `${argument} is not a Uint8Array (${describe(value)})`, { argument });
}

/** An object argument (the ioctl's struct); anything else is EFAULT, like a bad user pointer. */
export function parseStruct(op: string, value: unknown): Record<string, unknown> {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  return fail('EFAULT', op, `the argument struct is ${describe(value)}, not an object`, { argument: 'arg' });
}

/** An fd argument: an fd number or an object with a numeric .fd. Returns the number; the fd table judges it. */
export function parseFdArgument(op: string, argument: string, value: unknown): number {
  const raw = typeof value === 'object' && value !== null && 'fd' in value ? (value as { fd: unknown }).fd : value;
  if (typeof raw === 'number' && Number.isInteger(raw)) return raw;
  if (typeof raw === 'bigint' && raw >= -(2n ** 31n) && raw < 2n ** 32n) return Number(raw);
  return fail('EINVAL', op, `${argument}=${describe(raw)} is not an fd`, { argument });
}

export function isPageAligned(value: number | bigint, pageSize: number): boolean {
  return typeof value === 'bigint' ? value % BigInt(pageSize) === 0n : value % pageSize === 0;
}
