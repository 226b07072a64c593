import { describe, expect, it } from 'vitest';
import { swProtected } from '../arch/sw-protected.js';
import { PAGE_SIZE } from '../constants.js';
import { createHost } from '../host.js';
import { createScenario } from '../testing/scenario.js';

const P = PAGE_SIZE;

describe('VM lifetime', () => {
  it('a guest_memfd pins its VM: closing the VM fd leaves the VM until the guest_memfd goes', () => {
    const { host, vm, gmem } = createScenario(swProtected, { size: 2 * P, populate: false, map: false, attach: false });
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
    // Hand-built: a memslot over a memfd, with no guest_memfd (createScenario always binds one).
    const host = createHost();
    const vm = host.createVm();
    const memfd = host.memfdCreate(P);
    const mapping = memfd.mmap({ length: P, shared: true });
    vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: P, userspaceAddr: mapping.address });
    vm.close();
    expect(host.snapshot()).toMatchObject({ vms: [] });
  });
});
