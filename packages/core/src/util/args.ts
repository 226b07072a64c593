/**
 * Turning whatever a JavaScript caller passed into the integers a kernel call takes.
 *
 * The kernel's fields are u64/s64/u32; JavaScript callers can pass NaN, fractions, strings or undefined. Each
 * such value is EINVAL, decided here before any state is touched. Values are parsed exactly (bigint), so a
 * kernel rule about a u64 is judged on the u64 the caller meant; only then are they narrowed to numbers. The
 * model holds offsets and sizes as JavaScript numbers, so values above 2^53 are refused with EINVAL where the
 * kernel might accept them: a documented difference (kernel-contract has no such limit).
 */
import { MAX_RW_COUNT } from '../constants.js';
import { fail } from '../errors.js';

export const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A short, safe rendering of any value for an error message (never throws, whatever the value). */
export function describeValue(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null)
    return String(value);
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
const describe = describeValue;

/** An integer as the kernel would print it with %#x: negative values as their 32- or 64-bit two's complement. */
export function hex(value: number | bigint): string {
  let v = BigInt(value);
  if (v < 0n) v += v >= -(1n << 31n) ? 1n << 32n : 1n << 64n;
  return `0x${v.toString(16)}`;
}

/**
 * For a negative integer where a size or offset was expected: the likely cause in JavaScript, 32-bit overflow
 * of <<, | or ~ (2 << 30 is -2147483648).
 */
export function negativeHint(value: unknown): string | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value) || value >= 0) return undefined;
  if (value >= -(2 ** 31)) {
    const unsigned = value >>> 0;
    if ((unsigned & (unsigned - 1)) === 0) {
      return `${value} is 2^${Math.log2(unsigned)} overflowed to a negative 32-bit int: JavaScript's <<, | and ~ work on 32-bit ints (2 << 30 === -2147483648); write 2 * 2 ** 30 or use a bigint (2n << 30n)`;
    }
    return `${value} is negative; if it was computed with <<, | or ~, JavaScript's bitwise operators work on 32-bit ints and wrap above 2^31 - 1: use * 2 ** n or a bigint instead`;
  }
  return undefined;
}

/** A non-negative integer below 2^64, exactly, or EINVAL. */
export function parseU64(op: string, argument: string, value: unknown): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > (1n << 64n) - 1n)
      fail('EINVAL', op, `${argument}=${describe(value)} is not a u64`, { argument });
    return value;
  }
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < 2 ** 64) return BigInt(value);
  return fail('EINVAL', op, `${argument}=${describe(value)} is not a non-negative integer`, {
    argument,
    hint: negativeHint(value),
  });
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

/**
 * The length of a host, guest, device or direct-map access: at most MAX_RW_COUNT bytes, or EINVAL. read(2) and
 * write(2) truncate a larger count to MAX_RW_COUNT (vfs_read, vfs_write in fs/read_write.c), returning a short
 * count; an access here has no short count (it completes or faults), so a larger length is refused the way
 * rw_verify_area refuses a count it cannot take: EINVAL. Checked before anything is allocated or touched.
 */
export function parseAccessLength(op: string, argument: string, value: unknown): number {
  const length = parseSafe(op, argument, value);
  if (length > MAX_RW_COUNT) {
    fail(
      'EINVAL',
      op,
      `${argument}=${length} is above MAX_RW_COUNT (${hex(MAX_RW_COUNT)}), the most bytes one access transfers`,
      {
        argument,
        hint: 'split the access into pieces of at most MAX_RW_COUNT bytes, as read(2) and write(2) would',
      },
    );
  }
  return length;
}

/** The data of a write access: a Uint8Array (EFAULT otherwise) of at most MAX_RW_COUNT bytes (EINVAL otherwise). */
export function parseAccessBytes(op: string, argument: string, value: unknown): Uint8Array {
  const bytes = parseBytes(op, argument, value);
  parseAccessLength(op, `${argument}.length`, bytes.length);
  return bytes;
}

/**
 * A read(2)/write(2) count (size_t): a count that is negative as an ssize_t is EINVAL (rw_verify_area), and a
 * larger count is truncated to MAX_RW_COUNT (vfs_read, vfs_write), as the kernel does.
 */
export function parseRwCount(op: string, argument: string, value: unknown): number {
  const count = parseU64(op, argument, value);
  if (count >= 1n << 63n) fail('EINVAL', op, `${argument}=${count} is negative as an ssize_t`, { argument });
  return count > BigInt(MAX_RW_COUNT) ? MAX_RW_COUNT : Number(count);
}

/**
 * A C long (KVM_CHECK_EXTENSION's argument): any integer in [-2^63, 2^63), or EINVAL. Returned as a number;
 * values beyond 2^53 lose precision, which cannot make them equal a small capability number.
 */
export function parseLong(op: string, argument: string, value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) return value;
  if (typeof value === 'bigint' && value >= -(1n << 63n) && value < 1n << 63n) return Number(value);
  return fail('EINVAL', op, `${argument}=${describe(value)} is not an integer (a C long)`, { argument });
}

/**
 * fallocate(2)'s start, the same for every file the model has (vfs_fallocate): the host alive, mode, offset and len
 * parsed, `checkOpen` (EBADF), then a negative offset or a len that is not positive is EINVAL. MADV_REMOVE's punch
 * passes no `checkOpen`: it goes through the mapping's own file reference, and the fd may be closed by then.
 */
export function parseFallocate(
  host: { checkAlive(op: string): void },
  mode: unknown,
  offset: unknown,
  length: unknown,
  checkOpen: (() => void) | undefined,
): { mode: number; offset: number; length: number } {
  const op = 'fallocate';
  host.checkAlive(op);
  const m = parseInt32(op, 'mode', mode);
  const off = parseLoff(op, 'offset', offset);
  const len = parseLoff(op, 'len', length);
  checkOpen?.();
  if (off < 0 || len <= 0)
    fail('EINVAL', op, `offset ${off} must be >= 0 and len ${len} > 0`, {
      argument: off < 0 ? 'offset' : 'len',
      hint: negativeHint(off) ?? negativeHint(len),
    });
  return { mode: m, offset: off, length: len };
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
      fail('EINVAL', op, `${argument}=${describe(value)} is beyond 2^53-1, the largest offset the model holds`, {
        argument,
      });
    }
    return value;
  }
  if (typeof value === 'bigint') {
    if (value > MAX_SAFE || value < -MAX_SAFE) {
      fail('EINVAL', op, `${argument}=${describe(value)} is beyond 2^53-1, the largest offset the model holds`, {
        argument,
      });
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

/**
 * An object argument (the ioctl's struct); anything else is EFAULT, like a bad user pointer. With `fields`, every
 * own enumerable key must be one of them: a C struct has no other fields, and a misspelt optional field
 * (guestMemfdOfset) would otherwise be silently ignored. An unknown key is EINVAL naming it and the nearest
 * valid name.
 */
export function parseStruct(op: string, value: unknown, fields?: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail('EFAULT', op, `the argument struct is ${describe(value)}, not an object`, { argument: 'arg' });
  }
  if (fields) {
    // Own enumerable keys, as Object.keys lists them, without building the list on every call.
    for (const key in value) {
      if (!Object.prototype.hasOwnProperty.call(value, key) || fields.includes(key)) continue;
      const nearest = nearestName(key, fields);
      fail('EINVAL', op, `unknown field ${JSON.stringify(key)}${nearest ? ` (did you mean ${nearest}?)` : ''}`, {
        argument: key,
        hint: `the fields are ${fields.join(', ')}`,
      });
    }
  }
  return value as Record<string, unknown>;
}

/**
 * The field names of a struct-like type, for parseStruct: written as a Record over every key of T, so that the
 * compiler insists a field added to T is added here too (else parseStruct would refuse it).
 */
export function fieldsOf<T>(record: { [K in keyof Required<T>]: true }): readonly string[] {
  return Object.freeze(Object.keys(record));
}

/** The name in `names` closest to `key` (Levenshtein distance, ignoring case); undefined only if `names` is empty. */
export function nearestName(key: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of names) {
    const d = editDistance(key.toLowerCase(), name.toLowerCase());
    if (d < bestDistance) {
      best = name;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Math.abs(a.length - b.length) + 64;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
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
