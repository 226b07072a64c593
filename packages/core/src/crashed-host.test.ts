/**
 * A crashed host refuses every call with HostCrashedError before it looks at the arguments: a dead kernel
 * returns no errno, not even EINVAL (found by pnpm fuzz: these calls parsed first and answered EINVAL).
 */
import { describe, expect, it } from 'vitest';
import type { ArchBackend } from './arch/backend.js';
import { swProtected } from './arch/sw-protected.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE } from './constants.js';
import { HostCrashedError } from './errors.js';
import { createHost } from './host.js';

const P = PAGE_SIZE;
const fatal: ArchBackend = {
  ...swProtected,
  id: 'fatal-host-access',
  hostKernelAccess: ({ hardware }) => (hardware === 'private' ? { allow: false, fault: 'machine-check', fatal: true, logged: true, mechanism: 'test: fatal host access' } : { allow: true }),
};

function crashed() {
  const host = createHost({ backend: fatal });
  const vm = host.createVm({ type: 'coco' });
  const gmem = vm.createGuestMemfd({ size: 4 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  const mapping = gmem.mmap({ length: 4 * P, shared: true });
  const memfd = host.memfdCreate(P);
  const ioas = host.openIommufd().createIoas();
  const device = ioas.attachDevice();
  vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 4 * P, guestMemfd: gmem });
  gmem.setMemoryAttributes2({ offset: 0, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  vm.guestWrite(0, new Uint8Array([1]));
  expect(gmem.directMapRead(0, 1)).toMatchObject({ ok: false, fatal: true });
  expect(host.crashed).toBeTruthy();
  return { host, vm, gmem, mapping, memfd, ioas, device };
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
