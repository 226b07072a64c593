/**
 * A crashed host refuses every call with HostCrashedError before it looks at the arguments: a dead kernel
 * returns no errno, not even EINVAL (found by pnpm fuzz: these calls parsed first and answered EINVAL).
 */
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from './constants.js';
import { HostCrashedError } from './errors.js';
import { fatalHostAccess } from './test-support.js';
import { createScenario } from './testing/scenario.js';

const P = PAGE_SIZE;

function crashed() {
  const { host, vm, gmem, ioas, device } = createScenario(fatalHostAccess, {
    size: 4 * P,
    map: false,
    private: [{ offset: 0, length: P }],
  });
  const mapping = gmem.mmap({ length: 4 * P, shared: true });
  const memfd = host.memfdCreate(P);
  vm.guestWrite(0, new Uint8Array([1]));
  expect(gmem.directMapRead(0, 1)).toMatchObject({ ok: false, fatal: true });
  expect(host.crashed).toBeTruthy();
  return { host, vm, gmem, mapping, memfd, ioas, device: device! };
}

describe('a crashed host', () => {
  it('throws HostCrashedError for every call with bad arguments, and changes nothing', () => {
    const { host, vm, gmem, mapping, memfd, ioas, device } = crashed();
    const calls: Record<string, () => unknown> = {
      'gmem.fallocate': () => gmem.fallocate(NaN, 0, 0),
      'gmem.mmap': () => gmem.mmap({ length: NaN, shared: true }),
      'gmem.pin': () => gmem.pin(NaN, P),
      'gmem.pread': () => gmem.pread(1, -1),
      'gmem.pwrite': () => gmem.pwrite(new Uint8Array(1), -1),
      'gmem.directMapRead': () => gmem.directMapRead(NaN, 1),
      'gmem.directMapWrite': () => gmem.directMapWrite(0, 'x' as never),
      'gmem.memoryFailure': () => gmem.memoryFailure(NaN),
      'memfd.read': () => memfd.read(NaN),
      'memfd.write': () => memfd.write('x' as never),
      'memfd.pread': () => memfd.pread(NaN, 0),
      'memfd.pwrite': () => memfd.pwrite(new Uint8Array(1), NaN),
      'memfd.fallocate': () => memfd.fallocate(NaN, 0, 1),
      'memfd.mmap': () => memfd.mmap({ length: NaN, shared: true }),
      'ioas.mapFile': () => ioas.mapFile({ fd: NaN, start: 0, length: NaN, flags: 6 }),
      'ioas.map': () => ioas.map({ mapping, offset: 0, length: NaN, flags: 6 }),
      'ioas.unmap': () => ioas.unmap({ iova: NaN, length: P }),
      'device.dmaRead': () => device.dmaRead(NaN, 1),
      'device.dmaWrite': () => device.dmaWrite(NaN, new Uint8Array(1)),
      'vm.guestRead': () => vm.guestRead(NaN, 1),
      'host.checkExtension': () => host.checkExtension(NaN),
      'host.createVm': () => host.createVm({ type: 1 as never }),
    };
    const before = host.snapshot();
    for (const [name, call] of Object.entries(calls)) {
      let thrown: unknown;
      try {
        call();
      } catch (error) {
        thrown = error;
      }
      expect(HostCrashedError.isInstance(thrown), `${name}: ${String(thrown)}`).toBe(true);
    }
    expect(host.snapshot()).toEqual(before);
  });
});
