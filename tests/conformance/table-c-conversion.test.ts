/**
 * kernel-contract §8.C: x86/guest_memfd_conversions_test.c of the in-place conversion series (CONV8), on a
 * 'coco' VM with the neutral backend (the selftest's KVM_X86_SW_PROTECTED_VM): memslot 1 at GPA 4 GiB.
 */
import {
  createHost,
  FALLOC_FL_KEEP_SIZE,
  KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '@gmemlab/core';
import { describe, expect, it } from 'vitest';
import { allBytes, expectErrno, filled } from '../support/expect-errno.js';

const P = PAGE_SIZE;
const GPA = 4 * 1024 ** 3;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

function setup(pages: number, flags: number) {
  const host = createHost();
  const vm = host.createVm({ type: 'coco' });
  const gmem = vm.createGuestMemfd({ size: pages * P, flags: flags | GUEST_MEMFD_FLAG_MMAP });
  vm.setUserMemoryRegion2({
    slot: 1,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: GPA,
    memorySize: pages * P,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  const mem = gmem.mmap({ length: pages * P, shared: true });
  const toPrivate = (p: number) =>
    gmem.setMemoryAttributes2({ offset: p * P, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  const toShared = (p: number) => gmem.setMemoryAttributes2({ offset: p * P, size: P, attributes: 0 });
  const ch = (c: string) => c.charCodeAt(0);
  /** test_private: host accesses SIGBUS; the guest sees `start` and writes `w`. */
  const testPrivate = (p: number, start: number, w: number) => {
    expect(mem.write(p * P, filled(P, w))).toMatchObject({ ok: false, fault: 'sigbus' });
    const seen = vm.guestRead(GPA + p * P, P);
    expect(seen.ok && allBytes(seen.data, start), `guest reads ${start} on page ${p}`).toBe(true);
    expect(vm.guestWrite(GPA + p * P, filled(P, w)).ok).toBe(true);
    expect(mem.read(p * P, P)).toMatchObject({ ok: false, fault: 'sigbus' });
  };
  /** test_shared: host sees `start`, writes `hw`; guest sees `hw`, writes `gw`; host sees `gw`. */
  const testShared = (p: number, start: number, hw: number, gw: number) => {
    const host1 = mem.read(p * P, P);
    expect(host1.ok && allBytes(host1.data, start), `host reads ${start} on page ${p}`).toBe(true);
    mem.write(p * P, filled(P, hw));
    const guest = vm.guestRead(GPA + p * P, P);
    expect(guest.ok && allBytes(guest.data, hw)).toBe(true);
    vm.guestWrite(GPA + p * P, filled(P, gw));
    const host2 = mem.read(p * P, P);
    expect(host2.ok && allBytes(host2.data, gw)).toBe(true);
  };
  return { host, vm, gmem, mem, toPrivate, toShared, testPrivate, testShared, ch };
}

describe('guest_memfd_conversions_test', () => {
  it('C1 init_private: private -> shared -> private keeps contents', () => {
    const t = setup(1, 0);
    t.testPrivate(0, 0, t.ch('A'));
    t.toShared(0);
    t.testShared(0, t.ch('A'), t.ch('B'), t.ch('C'));
    t.toPrivate(0);
    t.testPrivate(0, t.ch('C'), t.ch('E'));
    expect(t.host.checkInvariants()).toEqual([]);
  });

  it('C2 init_shared: shared -> private -> shared', () => {
    const t = setup(1, GUEST_MEMFD_FLAG_INIT_SHARED);
    t.testShared(0, 0, t.ch('A'), t.ch('B'));
    t.toPrivate(0);
    t.testPrivate(0, t.ch('B'), t.ch('C'));
    t.toShared(0);
    t.testShared(0, t.ch('C'), t.ch('D'), t.ch('E'));
  });

  it('C3 indexing: converting one page of four leaves the others shared', () => {
    for (let test = 0; test < 4; test++) {
      const t = setup(4, GUEST_MEMFD_FLAG_INIT_SHARED);
      for (let p = 3; p >= 0; p--) t.testShared(p, 0, t.ch('A'), t.ch('B'));
      t.toPrivate(test);
      for (let p = 0; p < 4; p++) {
        if (p === test) t.testPrivate(p, t.ch('B'), t.ch('C'));
        else t.testShared(p, t.ch('B'), t.ch('A'), t.ch('B'));
      }
      t.toShared(test);
      for (let p = 0; p < 4; p++) t.testShared(p, p === test ? t.ch('C') : t.ch('B'), t.ch('D'), t.ch('E'));
    }
  });

  it('C4 before_allocation_shared: convert an untouched page to private; the guest reads zero', () => {
    const t = setup(1, GUEST_MEMFD_FLAG_INIT_SHARED);
    t.toPrivate(0);
    t.testPrivate(0, 0, t.ch('A'));
  });

  it('C5 before_allocation_private: convert an untouched page to shared; the host reads zero', () => {
    const t = setup(1, 0);
    t.toShared(0);
    t.testShared(0, 0, t.ch('A'), t.ch('B'));
  });

  it('C6 unallocated_folios: converting partly populated ranges keeps contents', () => {
    for (let test = 0; test < 8; test++) {
      const t = setup(8, GUEST_MEMFD_FLAG_INIT_SHARED);
      t.mem.write(test * P, filled(P, t.ch('A')));
      t.mem.write(4 * P, filled(P, t.ch('A')));
      t.gmem.setMemoryAttributes2({ offset: 0, size: 8 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      for (let p = 0; p < 8; p++) {
        const seen = t.vm.guestRead(GPA + p * P, P);
        expect(seen.ok && allBytes(seen.data, p === test || p === 4 ? t.ch('A') : 0)).toBe(true);
      }
      for (let p = 0; p < 8; p++) {
        t.toShared(p);
        const seen = t.mem.read(p * P, P);
        expect(seen.ok && allBytes(seen.data, p === test || p === 4 ? t.ch('A') : 0)).toBe(true);
      }
    }
  });

  it('C7 truncate: a punched page reads zero; the attribute stays private across the punch', () => {
    const t = setup(1, GUEST_MEMFD_FLAG_INIT_SHARED);
    t.testShared(0, 0, t.ch('A'), t.ch('A'));
    t.gmem.fallocate(PUNCH, 0, P);
    t.testShared(0, 0, t.ch('A'), t.ch('A'));
    t.toPrivate(0);
    t.testPrivate(0, t.ch('A'), t.ch('B'));
    t.gmem.fallocate(PUNCH, 0, P);
    t.testPrivate(0, 0, t.ch('A'));
  });

  it('C8 forked_accesses: conversion to private zaps every mapping of the page, in every process', () => {
    const t = setup(1, GUEST_MEMFD_FLAG_INIT_SHARED);
    // The child's mapping is a second mapping of the same file (the model has one process; a VMA is a VMA).
    const child = t.gmem.mmap({ length: P, shared: true });
    expect(child.write(0, filled(P, t.ch('A'))).ok).toBe(true);
    t.toPrivate(0);
    expect(child.read(0, 1)).toMatchObject({ ok: false, fault: 'sigbus' });
    expect(child.write(0, filled(1, 1))).toMatchObject({ ok: false, fault: 'sigbus' });
  });

  it('C9 elevated_refcount: a pinned page makes to-private EAGAIN at its offset, nothing changes', () => {
    for (let test = 0; test < 4; test++) {
      const t = setup(4, GUEST_MEMFD_FLAG_INIT_SHARED);
      for (let p = 0; p < 4; p++) t.mem.write(p * P, filled(P, t.ch('A') + p));
      const pin = t.gmem.pin(test * P, P);
      const before = t.host.snapshot();
      const bulk = expectErrno(
        () => t.gmem.setMemoryAttributes2({ offset: 0, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }),
        'EAGAIN',
      );
      expect(bulk.errorOffset).toBe(test * P);
      expect(t.host.snapshot()).toEqual(before);
      for (let p = 0; p < 4; p++) {
        if (p === test) expect(expectErrno(() => t.toPrivate(p), 'EAGAIN').errorOffset).toBe(test * P);
        else t.toPrivate(p);
      }
      pin.unpin();
      t.gmem.setMemoryAttributes2({ offset: 0, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      for (let p = 0; p < 4; p++) {
        const seen = t.vm.guestRead(GPA + p * P, P);
        expect(seen.ok && allBytes(seen.data, t.ch('A') + p)).toBe(true);
      }
    }
  });

  it('C10 argument validation: EINVAL for every malformed request; ENOTTY without in-place conversion', () => {
    const t = setup(4, GUEST_MEMFD_FLAG_INIT_SHARED);
    const PRIV = KVM_MEMORY_ATTRIBUTE_PRIVATE;
    const cases = [
      { offset: 0, size: P, attributes: PRIV, flags: 1 },
      { offset: 0, size: P, attributes: PRIV, reserved: [0, 0, 1] },
      { offset: 0, size: P, attributes: PRIV | 1 },
      { offset: 0, size: 0, attributes: PRIV },
      { offset: 2n ** 64n - BigInt(P), size: 2 * P, attributes: PRIV },
      { offset: 1, size: P, attributes: PRIV },
      { offset: 0, size: P + 1, attributes: PRIV },
      { offset: 4 * P, size: P, attributes: PRIV },
      { offset: 3 * P, size: 2 * P, attributes: PRIV },
    ];
    const before = t.host.snapshot();
    for (const args of cases) expectErrno(() => t.gmem.setMemoryAttributes2(args), 'EINVAL');
    expect(t.host.snapshot()).toEqual(before);
    // Already in the target state: success with no invalidation.
    const recording = t.host.events.record();
    t.gmem.setMemoryAttributes2({ offset: 0, size: 4 * P, attributes: 0 });
    recording.stop();
    expect(recording.events.filter((e) => e.type === 'invalidate-begin')).toEqual([]);
    // A 'default' VM has no private memory (step 4).
    const plain = createHost().createVm().createGuestMemfd({ size: P, flags: GUEST_MEMFD_FLAG_MMAP });
    expectErrno(() => plain.setMemoryAttributes2({ offset: 0, size: P, attributes: PRIV }), 'EINVAL');
    const offVm = createHost({ inPlaceConversion: false }).createVm({ type: 'coco' });
    const off = offVm.createGuestMemfd({ size: P });
    expectErrno(() => off.setMemoryAttributes2({ offset: 0, size: P, attributes: PRIV }), 'ENOTTY');
    // The selftest's precondition (§4.1, §4.3): KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES reports PRIVATE only with
    // in-place conversion on a VM with private memory.
    expect(t.vm.checkExtension(KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES)).toBe(PRIV);
    expect(offVm.checkExtension(KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES)).toBe(0);
    expect(createHost().createVm().checkExtension(KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES)).toBe(0);
  });
});
