/**
 * Errors are thrown; faults are returned (see access.ts). A GmemError is what the kernel would hand back as a
 * negative return value: its errno name, the call that failed, and the argument and rule that failed it.
 */

/** errno names the model can return, as the kernel spells them. */
export type Errno =
  | 'EINVAL'
  | 'EOPNOTSUPP'
  | 'ENODEV'
  | 'EEXIST'
  | 'ENOENT'
  | 'EAGAIN'
  | 'EBUSY'
  | 'EFAULT'
  | 'EBADF'
  | 'ENOSPC'
  | 'EOVERFLOW'
  | 'EPERM'
  | 'ENOTTY'
  | 'ENOMEM'
  | 'ESPIPE'
  | 'EFBIG'
  | 'EIO'
  | 'EADDRINUSE'
  | 'EACCES'
  | 'EHWPOISON';

/** The errno values of x86-64 Linux, for users comparing with a real kernel. */
export const ERRNO_VALUES: Readonly<Record<Errno, number>> = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  EHWPOISON: 133,
};

const BRAND = Symbol.for('gmemlab.GmemError');

export interface GmemErrorDetails {
  /** The offending argument, by its kernel field name where there is one. */
  argument?: string;
  /** Where the kernel writes an error offset back (KVM_SET_MEMORY_ATTRIBUTES2), the offset it writes. */
  errorOffset?: number;
  /** A hint for the user: what to do next. */
  hint?: string;
}

export class GmemError extends Error {
  readonly [BRAND] = true;
  override readonly name = 'GmemError';
  readonly errno: Errno;
  /** The kernel call that failed, e.g. 'KVM_CREATE_GUEST_MEMFD', 'fallocate', 'IOMMU_IOAS_MAP_FILE'. */
  readonly op: string;
  readonly argument: string | undefined;
  readonly errorOffset: number | undefined;
  readonly hint: string | undefined;

  constructor(errno: Errno, op: string, message: string, details: GmemErrorDetails = {}) {
    super(`${op}: ${errno}: ${message}`);
    this.errno = errno;
    this.op = op;
    this.argument = details.argument;
    this.errorOffset = details.errorOffset;
    this.hint = details.hint;
  }

  /** True for a GmemError from any copy of this package. */
  static isInstance(value: unknown): value is GmemError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** Shorthand used at the point where a rule is checked. */
export function fail(errno: Errno, op: string, message: string, details?: GmemErrorDetails): never {
  throw new GmemError(errno, op, message, details);
}

const CRASHED_BRAND = Symbol.for('gmemlab.HostCrashedError');

/**
 * Thrown by every call on a host after a fatal fault (a machine check that is not contained, a host kernel oops,
 * a hypervisor panic). It is not a GmemError: a crashed host returns no errno, it reboots. Inspection
 * (snapshot, checkInvariants, pipelineCounters, crashed) still works, for the post-mortem.
 */
export class HostCrashedError extends Error {
  readonly [CRASHED_BRAND] = true;
  override readonly name = 'HostCrashedError';
  /** The call that was attempted. */
  readonly op: string;
  /** The fatal fault. */
  readonly crash: { by: string; via: string; address: number; fault: string; mechanism: string };

  constructor(op: string, crash: HostCrashedError['crash']) {
    super(
      `${op}: the host crashed earlier: ${crash.mechanism} (${crash.by} access via ${crash.via} at 0x${crash.address.toString(16)}); nothing runs on a crashed host`,
    );
    this.op = op;
    this.crash = crash;
  }

  /** True for a HostCrashedError from any copy of this package. */
  static isInstance(value: unknown): value is HostCrashedError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[CRASHED_BRAND] === true;
  }
}
