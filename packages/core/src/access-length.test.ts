/**
 * Accesses are bounded the way the kernel bounds read(2)/write(2) (issue 8, item 3): a length above MAX_RW_COUNT
 * is EINVAL before anything is allocated or touched, never a RangeError; memfd read(2) truncates to it.
 */
import { describe, expect, it } from 'vitest';
import { MAX_RW_COUNT, PAGE_SIZE } from './constants.js';
import { GmemError } from './errors.js';
import { swProtected } from './arch/sw-protected.js';
import { createHost } from './host.js';
import { createScenario } from './testing/scenario.js';
import { expectRefused } from './test-support.js';
import { parseAccessLength, parseRwCount } from './util/args.js';

const P = PAGE_SIZE;
const GiB = 2 ** 30;

function world() {
  // 8 GiB: big enough that a 4 GiB access is inside the file, the memslot, the mapping and the area.
  const { host, vm, gmem, iova, device } = createScenario(swProtected, { size: 8 * GiB });
  const mapping = gmem.mmap({ length: 8 * GiB, shared: true });
  vm.guestWrite(0, new Uint8Array(P).fill(9));
  return { host, vm, gmem, mapping, device: device!, iova };
}

const TOO_LONG: Array<number | bigint> = [4 * GiB, 4 * GiB + 1, MAX_RW_COUNT + 1, 2n ** 32n];

describe('access lengths above MAX_RW_COUNT', () => {
  for (const length of TOO_LONG) {
    it(`${String(length)}: EINVAL from dmaRead, guestRead, mapping.read and directMapRead; nothing changes`, () => {
      const { host, vm, gmem, mapping, device, iova } = world();
      for (const read of [
        () => device.dmaRead(iova, length),
        () => vm.guestRead(0, length),
        () => mapping.read(0, length),
        () => gmem.directMapRead(0, length),
      ]) {
        const error = expectRefused(host, read, 'EINVAL');
        expect(error.argument).toBe('length');
        expect(error.message).toMatch(/MAX_RW_COUNT/);
      }
    });
  }

  it('a length at MAX_RW_COUNT is accepted (the bound is inclusive)', () => {
    expect(parseAccessLength('x', 'length', MAX_RW_COUNT)).toBe(MAX_RW_COUNT);
    expect(MAX_RW_COUNT).toBe((2 ** 31 - 1) & ~(P - 1));
  });

  it('ordinary reads still work', () => {
    const { vm, gmem, mapping, device, iova } = world();
    for (const result of [
      device.dmaRead(iova, 2 * P),
      vm.guestRead(0, 2 * P),
      mapping.read(0, 2 * P),
      gmem.directMapRead(0, 2 * P),
    ]) {
      expect(result.ok && result.data?.[0]).toBe(9);
    }
  });
});

describe('read(2) counts', () => {
  it('are truncated to MAX_RW_COUNT, as vfs_read does; a count negative as ssize_t is EINVAL', () => {
    expect(parseRwCount('read', 'length', 4 * GiB)).toBe(MAX_RW_COUNT);
    expect(parseRwCount('read', 'length', 2n ** 63n - 1n)).toBe(MAX_RW_COUNT);
    expect(parseRwCount('read', 'length', 5)).toBe(5);
    expect(() => parseRwCount('read', 'length', 2n ** 63n)).toThrow(GmemError);
  });

  it('a memfd pread of 4 GiB near EOF returns the bytes up to EOF, no RangeError', () => {
    const host = createHost();
    const memfd = host.memfdCreate(8 * GiB);
    memfd.pwrite(new Uint8Array([1, 2, 3]), 8 * GiB - 3);
    expect([...memfd.pread(4 * GiB, 8 * GiB - 3)]).toEqual([1, 2, 3]);
    expect(() => memfd.pread(2n ** 63n, 0)).toThrow(/EINVAL/);
  });
});
