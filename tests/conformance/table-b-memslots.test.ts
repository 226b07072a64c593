/**
 * kernel-contract §8.B: the guest_memfd cases of set_memory_region_test.c, on a VM with private memory (the
 * selftest's KVM_X86_SW_PROTECTED_VM is the model's 'coco' VM with the neutral backend).
 */
import { createHost, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, PAGE_SIZE } from '@gmemlab/core';
import { describe, expect, it } from 'vitest';
import { expectErrno } from '../support/expect-errno.js';

const S = 0x200000;
const G = 0xc0000000;
const P = PAGE_SIZE;

function setup() {
  const host = createHost();
  const vm = host.createVm({ type: 'coco' });
  return { host, vm };
}

describe('set_memory_region_test guest_memfd cases', () => {
  it('B0 every unsupported flag bit is EINVAL', () => {
    const { vm } = setup();
    const supported = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD;
    for (let bit = 0; bit < 32; bit++) {
      const flags = 2 ** bit;
      if (flags & supported) continue;
      expectErrno(
        () =>
          vm.setUserMemoryRegion2({
            slot: 0,
            flags,
            guestPhysAddr: 0,
            memorySize: S,
            userspaceAddr: 0,
            guestMemfd: 0,
            guestMemfdOffset: 0,
          }),
        'EINVAL',
      );
    }
  });

  it('B1 the v1 ioctl refuses KVM_MEM_GUEST_MEMFD', () => {
    const { vm } = setup();
    expectErrno(
      () => vm.setUserMemoryRegion({ slot: 0, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0, memorySize: S }),
      'EINVAL',
    );
  });

  it('B2 dirty logging with guest_memfd is EINVAL', () => {
    const { vm } = setup();
    const gmem = vm.createGuestMemfd({ size: S });
    expectErrno(
      () =>
        vm.setUserMemoryRegion2({
          slot: 0,
          flags: KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 0,
          memorySize: S,
          guestMemfd: gmem,
        }),
      'EINVAL',
    );
  });

  it('B3 the /dev/kvm fd is not a guest_memfd', () => {
    const { host, vm } = setup();
    expectErrno(
      () =>
        vm.setUserMemoryRegion2({
          slot: 0,
          flags: KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 0,
          memorySize: S,
          guestMemfd: host.fd,
        }),
      'EINVAL',
    );
  });

  it('B4 the VM fd is not a guest_memfd', () => {
    const { vm } = setup();
    expectErrno(
      () =>
        vm.setUserMemoryRegion2({
          slot: 0,
          flags: KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 0,
          memorySize: S,
          guestMemfd: vm.fd,
        }),
      'EINVAL',
    );
  });

  it('B5 a regular memfd is not a guest_memfd', () => {
    const { host, vm } = setup();
    const memfd = host.memfdCreate(S);
    expectErrno(
      () =>
        vm.setUserMemoryRegion2({
          slot: 0,
          flags: KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 0,
          memorySize: S,
          guestMemfd: memfd,
        }),
      'EINVAL',
    );
  });

  it("B6 another VM's guest_memfd is EINVAL; that VM binds it fine", () => {
    const { host, vm } = setup();
    const other = host.createVm({ type: 'coco' });
    const gmem = other.createGuestMemfd({ size: S });
    expectErrno(
      () =>
        vm.setUserMemoryRegion2({
          slot: 0,
          flags: KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 0,
          memorySize: S,
          guestMemfd: gmem,
        }),
      'EINVAL',
    );
    other.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: S,
      guestMemfd: gmem,
    });
  });

  it('B7 offsets 1..P-1 are EINVAL; offset 0 binds', () => {
    const { vm } = setup();
    const gmem = vm.createGuestMemfd({ size: S });
    for (let offset = 1; offset < P; offset++) {
      expectErrno(
        () =>
          vm.setUserMemoryRegion2({
            slot: 0,
            flags: KVM_MEM_GUEST_MEMFD,
            guestPhysAddr: 0,
            memorySize: S,
            guestMemfd: gmem,
            guestMemfdOffset: offset,
          }),
        'EINVAL',
      );
    }
    vm.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: S,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    expect(vm.memslots()).toHaveLength(1);
  });

  const twoSlots = () => {
    const { vm } = setup();
    const gmem = vm.createGuestMemfd({ size: 4 * S });
    vm.setUserMemoryRegion2({
      slot: 10,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: G,
      memorySize: 2 * S,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    vm.setUserMemoryRegion2({
      slot: 11,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 2 * G,
      memorySize: 2 * S,
      guestMemfd: gmem,
      guestMemfdOffset: 2 * S,
    });
    vm.setUserMemoryRegion2({
      slot: 10,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: G,
      memorySize: 0,
      guestMemfd: gmem,
    });
    return { vm, gmem };
  };

  it('B8 recreating slot 10 overlapping slot 11 from below is EEXIST', () => {
    const { vm, gmem } = twoSlots();
    expectErrno(
      () =>
        vm.setUserMemoryRegion2({
          slot: 10,
          flags: KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 2 * G - S,
          memorySize: 2 * S,
          guestMemfd: gmem,
          guestMemfdOffset: 0,
        }),
      'EEXIST',
    );
  });

  it('B9 recreating slot 10 overlapping slot 11 from above is EEXIST', () => {
    const { vm, gmem } = twoSlots();
    expectErrno(
      () =>
        vm.setUserMemoryRegion2({
          slot: 10,
          flags: KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 2 * G + S,
          memorySize: 2 * S,
          guestMemfd: gmem,
          guestMemfdOffset: 0,
        }),
      'EEXIST',
    );
  });

  it('B10 disjoint GPAs over overlapping guest_memfd ranges is EINVAL (upstream kvm_gmem_bind)', () => {
    const { vm } = setup();
    const gmem = vm.createGuestMemfd({ size: 4 * S });
    vm.setUserMemoryRegion2({
      slot: 10,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: G,
      memorySize: 2 * S,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    expectErrno(
      () =>
        vm.setUserMemoryRegion2({
          slot: 11,
          flags: KVM_MEM_GUEST_MEMFD,
          guestPhysAddr: 2 * G,
          memorySize: 2 * S,
          guestMemfd: gmem,
          guestMemfdOffset: S,
        }),
      'EINVAL',
    );
  });
});
