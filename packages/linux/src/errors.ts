/**
 * A failed kernel call, shaped like @gmemlab/core's GmemError: the errno name the kernel returned and the call
 * that returned it. A helper crash or timeout is a HelperError instead: it says nothing about the kernel.
 */

const KERNEL_BRAND = Symbol.for('gmemlab.KernelError');
const HELPER_BRAND = Symbol.for('gmemlab.HelperError');

export class KernelError extends Error {
  readonly [KERNEL_BRAND] = true;
  override readonly name = 'KernelError';
  /** The errno name, e.g. 'EINVAL', as the kernel spells it. */
  readonly errno: string;
  /** The call that failed, with core's names: 'KVM_CREATE_GUEST_MEMFD', 'fallocate', 'mmap'. */
  readonly op: string;

  constructor(errno: string, op: string, message?: string) {
    super(`${op}: ${errno}${message ? `: ${message}` : ''}`);
    this.errno = errno;
    this.op = op;
  }

  /** True for a KernelError from any copy of this package. */
  static isInstance(value: unknown): value is KernelError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[KERNEL_BRAND] === true;
  }
}

export class HelperError extends Error {
  readonly [HELPER_BRAND] = true;
  override readonly name = 'HelperError';

  static isInstance(value: unknown): value is HelperError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[HELPER_BRAND] === true;
  }
}
