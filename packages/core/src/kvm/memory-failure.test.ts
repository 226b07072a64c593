/** gmem.memoryFailure(index) validates its argument like every other entry point (issue 8, item 2). */
import { describe, expect, it } from 'vitest';
import { swProtected } from '../arch/sw-protected.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, PAGE_SIZE } from '../constants.js';
import { HostCrashedError } from '../errors.js';
import { MADV_HWPOISON } from '../mm/host-mapping.js';
import { expectRefused, fatalHostAccess } from '../test-support.js';
import { createScenario } from '../testing/scenario.js';

const P = PAGE_SIZE;

function world() {
  const { host, gmem } = createScenario(swProtected, { size: 4 * P, map: false, attach: false });
  const mapping = gmem.mmap({ length: 4 * P, shared: true });
  mapping.write(0, new Uint8Array(4 * P).fill(1));
  return { host, gmem, mapping };
}

describe('memoryFailure(index)', () => {
  it.each([NaN, '4096', -1, 3.5, 2 ** 53, Infinity, -1n, 2n ** 64n, undefined, null, {}, Symbol('page')])(
    '%s is EINVAL, and nothing changes',
    (index) => {
      const { host, gmem } = world();
      const error = expectRefused(host, () => gmem.memoryFailure(index as number), 'EINVAL');
      expect(error.argument).toBe('index');
    },
  );

  it.each([4, 1e15, 2 ** 53 - 1, 4n])(
    'page %s, at or beyond EOF, is EFAULT (as madvise(MADV_HWPOISON) there), and nothing changes',
    (index) => {
      const { host, gmem } = world();
      expectRefused(host, () => gmem.memoryFailure(index), 'EFAULT');
    },
  );

  it('beyond EOF is EFAULT through madvise(MADV_HWPOISON) too', () => {
    const { host, gmem } = world();
    const beyond = gmem.mmap({ length: 8 * P, shared: true });
    expectRefused(host, () => beyond.madvise(4 * P, P, MADV_HWPOISON), 'EFAULT');
  });

  it('a bigint index is accepted where valid, and a full punch then frees every frame', () => {
    const { host, gmem, mapping } = world();
    gmem.memoryFailure(2n);
    expect(host.snapshot()).toMatchObject({ inodes: [{ hwpoison: [[2, 3, true]] }] });
    expect(mapping.read(2 * P, 1)).toMatchObject({ ok: false, fault: 'sigbus' });
    mapping.munmap();
    gmem.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4 * P);
    expect(host.allocatedPages).toBe(0);
    expect(host.checkInvariants()).toEqual([]);
  });

  it('on a crashed host is HostCrashedError, as every call, and changes nothing', () => {
    const { host, vm, gmem } = createScenario(fatalHostAccess, {
      size: 4 * P,
      map: false,
      attach: false,
      private: [{ offset: 0, length: P }],
    });
    vm.guestWrite(0, new Uint8Array([1]));
    expect(gmem.directMapRead(0, 1)).toMatchObject({ ok: false, fatal: true });
    expect(host.crashed).toBeTruthy();
    const before = host.snapshot();
    expect(() => gmem.memoryFailure(1)).toThrow(HostCrashedError);
    expect(host.snapshot()).toEqual(before);
  });

  it('a released guest_memfd has no pages: EBADF', () => {
    const { host, gmem, mapping } = world();
    mapping.munmap();
    gmem.close();
    expectRefused(host, () => gmem.memoryFailure(0), 'EBADF');
  });
});
