/**
 * One host, one world (issue 8, item 7): an object used with a host other than its own is refused, and neither
 * host changes. An fd-like object (a guest_memfd, a memfd) of another host is EBADF: its fd number does not name
 * it here. A host mapping of another host is EFAULT: it is a user address of another process, and the
 * model already answers EFAULT for a `mapping` that is no mapping (user_va points nowhere).
 */
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  PAGE_SIZE,
} from './constants.js';
import { createHost } from './host.js';
import { expectRefused } from './test-support.js';

const P = PAGE_SIZE;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

/**
 * Two hosts built the same way, so that their objects have the same fd numbers and addresses. Hand-built: the
 * tests make the binding and mapping calls themselves, across hosts.
 */
function twin() {
  const make = () => {
    const host = createHost();
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: 4 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    const mapping = gmem.mmap({ length: 4 * P, shared: true });
    const memfd = host.memfdCreate(4 * P);
    const ioas = host.openIommufd().createIoas();
    const device = ioas.attachDevice();
    return { host, vm, gmem, mapping, memfd, ioas, device };
  };
  return [make(), make()] as const;
}

describe('objects of another host', () => {
  it('ioas.mapFile({ fd: gmem of host 2 }) is EBADF, though host 1 has a guest_memfd at that fd number', () => {
    const [one, two] = twin();
    expect(two.gmem.fd).toBe(one.gmem.fd);
    const error = expectRefused(
      [one.host, two.host],
      () => one.ioas.mapFile({ fd: two.gmem, start: 0, length: 4 * P, flags: RW }),
      'EBADF',
    );
    expect(error.message).toMatch(/another host/);
    expectRefused(
      [one.host, two.host],
      () => one.ioas.mapFile({ fd: two.memfd, start: 0, length: 4 * P, flags: RW }),
      'EBADF',
    );
  });

  it('ioas.map({ mapping of host 2 }) is EFAULT, and a punch on host 2 then leaves host 1 alone', () => {
    const [one, two] = twin();
    expectRefused(
      [one.host, two.host],
      () => one.ioas.map({ mapping: two.mapping, offset: 0, length: 4 * P, flags: RW }),
      'EFAULT',
    );
    const before = one.host.snapshot();
    two.gmem.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4 * P);
    expect(one.host.snapshot()).toEqual(before);
  });

  it('vm.setUserMemoryRegion2({ guestMemfd: gmem of host 2 }) is EBADF', () => {
    const [one, two] = twin();
    expectRefused(
      [one.host, two.host],
      () =>
        one.vm.setUserMemoryRegion2({
          slot: 0,
          flags: KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 0,
          memorySize: 4 * P,
          guestMemfd: two.gmem,
        }),
      'EBADF',
    );
  });

  it('objects of the same host still work, by object and by number', () => {
    const [one] = twin();
    one.vm.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: 4 * P,
      guestMemfd: one.gmem,
    });
    one.ioas.mapFile({ fd: one.gmem.fd, start: 0, length: 4 * P, flags: RW });
    one.ioas.map({ mapping: one.mapping, offset: 0, length: 4 * P, flags: RW });
    expect(one.host.checkInvariants()).toEqual([]);
  });
});

describe('an object whose fd was closed', () => {
  it('is EBADF even when its fd number now names another file', () => {
    // Hand-built: the test is about closing and reusing an fd number before anything is bound or mapped.
    const host = createHost();
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: 4 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    const mapping = gmem.mmap({ length: 4 * P, shared: true }); // keeps the file alive
    gmem.close();
    const other = vm.createGuestMemfd({ size: 4 * P });
    expect(other.fd).toBe(gmem.fd);
    const ioas = host.openIommufd().createIoas();
    const error = expectRefused(host, () => ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, flags: RW }), 'EBADF');
    expect(error.message).toMatch(/was closed/);
    expectRefused(
      host,
      () =>
        vm.setUserMemoryRegion2({
          slot: 0,
          flags: KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 0,
          memorySize: 4 * P,
          guestMemfd: gmem,
        }),
      'EBADF',
    );
    mapping.munmap();
  });
});
