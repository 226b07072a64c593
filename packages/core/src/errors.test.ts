import { describe, expect, it } from 'vitest';
import { GmemError } from './errors.js';

describe('GmemError', () => {
  it('is recognised by brand, also when built by another copy of the package', () => {
    const error = new GmemError('EINVAL', 'fallocate', 'offset is negative', { argument: 'offset' });
    expect(GmemError.isInstance(error)).toBe(true);
    const foreign = Object.assign(new Error('x'), { [Symbol.for('gmemlab.GmemError')]: true });
    expect(GmemError.isInstance(foreign)).toBe(true);
    expect(GmemError.isInstance(new Error('EINVAL'))).toBe(false);
    expect(GmemError.isInstance(undefined)).toBe(false);
  });

  it('carries errno, op, argument and errorOffset', () => {
    const error = new GmemError('EAGAIN', 'KVM_SET_MEMORY_ATTRIBUTES2', 'pinned', { errorOffset: 8192 });
    expect(error).toMatchObject({ errno: 'EAGAIN', op: 'KVM_SET_MEMORY_ATTRIBUTES2', errorOffset: 8192 });
    expect(error.message).toBe('KVM_SET_MEMORY_ATTRIBUTES2: EAGAIN: pinned');
  });
});
