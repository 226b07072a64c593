import { describe, expect, it } from 'vitest';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_GUEST_MEMFD, PAGE_SIZE } from '../constants.js';
import { createHost } from '../host.js';

const P = PAGE_SIZE;

describe('VM lifetime', () => {
  it('a guest_memfd pins its VM: closing the VM fd leaves the VM until the guest_memfd goes', () => {
    const host = createHost();
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    vm.setUserMemoryRegion2({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: 2 * P, guestMemfd: gmem });
    expect(vm.guestWrite(0, new Uint8Array([7])).ok).toBe(true);
    vm.close();
    // The fd is gone: every VM ioctl is EBADF, and so is KVM_RUN (the model's vCPUs go with the VM fd).
    expect(() => vm.createGuestMemfd({ size: P })).toThrow(/EBADF/);
    expect(() => vm.guestRead(0, 1)).toThrow(/EBADF/);
    expect(() => vm.close()).toThrow(/EBADF/);
    // The VM is still alive, held by the guest_memfd, and its memory too.
    expect(host.snapshot()).toMatchObject({ vms: [{ slots: [{ slot: 0 }] }] });
    const mapping = gmem.mmap({ length: P, shared: true });
    expect(mapping.read(0, 1)).toMatchObject({ ok: true, data: new Uint8Array([7]) });
    mapping.munmap();
    gmem.close();
    expect(host.snapshot()).toMatchObject({ vms: [] });
    expect(host.allocatedPages).toBe(0);
  });

  it('closing a VM with no guest_memfd destroys it and frees its memslots', () => {
    const host = createHost();
    const vm = host.createVm();
    const memfd = host.memfdCreate(P);
    const mapping = memfd.mmap({ length: P, shared: true });
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: P, userspaceAddr: mapping.address });
    vm.close();
    expect(host.snapshot()).toMatchObject({ vms: [] });
  });
});
