import { GmemError, type Errno } from '@gmemlab/core';
import { expect } from 'vitest';

/** Run `fn`, expect a GmemError with `errno`, and return it. */
export function expectErrno(fn: () => unknown, errno: Errno): GmemError {
  try {
    fn();
  } catch (error) {
    if (!GmemError.isInstance(error)) throw error;
    expect(error.errno, error.message).toBe(errno);
    return error;
  }
  throw new Error(`expected ${errno}, but the call succeeded`);
}

export function filled(length: number, byte: number): Uint8Array {
  return new Uint8Array(length).fill(byte);
}

/** Whether every byte of `data` is `byte`. */
export function allBytes(data: Uint8Array | undefined, byte: number): boolean {
  return data !== undefined && data.every((b) => b === byte);
}
