/**
 * Today's path (HostOptions.conversion 'separate', kernel-contract §4.4): KVM_SET_MEMORY_ATTRIBUTES on the VM fd,
 * its errno in the kernel's order (rows E1-E11 of kernel-contract §8.E), its interplay with guest_memfd, the shared side as the
 * VMM's own memfd at the memslot's userspace address, and double allocation until the VMM discards a side.
 */
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  MADV_DONTNEED,
  MADV_REMOVE,
  PAGE_SIZE,
} from '../constants.js';
import type { ArchBackend, RemovalContext } from '../arch/backend.js';
import { describeBackendProblems } from '../arch/backend.js';
import { swProtected } from '../arch/sw-protected.js';
import { createHost, type HostOptions } from '../host.js';
import { expectRefused } from '../test-support.js';
import { createScenario } from '../testing/scenario.js';

const P = PAGE_SIZE;
const GPA = 4 * 2 ** 30;
const PRIVATE = KVM_MEMORY_ATTRIBUTE_PRIVATE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const bytes = (v: number, n = 16) => new Uint8Array(n).fill(v);

/**
 * QEMU's layout today: a guest_memfd for the private side, a memfd mapped at userspace_addr for the shared side.
 * Hand-built: createScenario builds the in-place layout (one mappable guest_memfd for both sides), not this one.
 */
function today(options: HostOptions = {}) {
  const host = createHost({ conversion: 'separate', ...options });
  const vm = host.createVm({ type: 'coco' });
  const gmem = vm.createGuestMemfd({ size: 4 * P });
  const memfd = host.memfdCreate(4 * P);
  const shared = memfd.mmap({ length: 4 * P, shared: true });
  vm.setUserMemoryRegion2({
    slot: 1,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: GPA,
    memorySize: 4 * P,
    userspaceAddr: shared.address,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  return { host, vm, gmem, memfd, shared };
}

describe('HostOptions.conversion', () => {
  it("defaults to 'in-place'; 'separate' turns kvm.gmem_in_place_conversion off", () => {
    expect(createHost().conversion).toBe('in-place');
    const host = createHost({ conversion: 'separate' });
    expect([host.conversion, host.inPlaceConversion]).toEqual(['separate', false]);
    expect(createHost({ inPlaceConversion: false }).conversion).toBe('separate');
  });

  it('an unknown value, or one that contradicts inPlaceConversion, is EINVAL', () => {
    expect(() => createHost({ conversion: 'both' as never })).toThrow(
      expect.objectContaining({ errno: 'EINVAL', argument: 'conversion' }),
    );
    expect(() => createHost({ conversion: 'separate', inPlaceConversion: true })).toThrow(
      expect.objectContaining({ errno: 'EINVAL', argument: 'inPlaceConversion' }),
    );
    expect(createHost({ conversion: 'in-place', inPlaceConversion: true }).conversion).toBe('in-place');
  });
});

describe('KVM_CHECK_EXTENSION(KVM_CAP_MEMORY_ATTRIBUTES) is kvm_supported_mem_attributes', () => {
  it('PRIVATE for a VM with private memory under separate conversion; 0 for a default VM; 0 with in-place conversion on', () => {
    expect(
      createHost({ conversion: 'separate' }).createVm({ type: 'coco' }).checkExtension(KVM_CAP_MEMORY_ATTRIBUTES),
    ).toBe(PRIVATE);
    expect(
      createHost({ conversion: 'separate' }).createVm({ type: 'default' }).checkExtension(KVM_CAP_MEMORY_ATTRIBUTES),
    ).toBe(0);
    expect(createHost().createVm({ type: 'coco' }).checkExtension(KVM_CAP_MEMORY_ATTRIBUTES)).toBe(0);
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES errno, in the order of kvm_vm_ioctl_set_mem_attributes (§8.E)', () => {
  const ok = { address: GPA, size: P, attributes: PRIVATE };
  it.each([
    ['E1 flags != 0', { ...ok, flags: 1 }, 'flags'],
    ['E1 flags are checked before the attributes', { ...ok, flags: 1, attributes: 1 }, 'flags'],
    ['E2 an attribute bit other than PRIVATE', { ...ok, attributes: PRIVATE | 1 }, 'attributes'],
    ['E2 attributes are checked before the size', { ...ok, attributes: 2, size: 0 }, 'attributes'],
    ['E3 size 0', { ...ok, size: 0 }, 'size'],
    ['E3 size 0 is checked before alignment', { ...ok, address: 1, size: 0 }, 'size'],
    ['E4 address + size wraps', { ...ok, address: 2n ** 64n - BigInt(P), size: P }, 'size'],
    ['E4 a wrap is checked before alignment', { ...ok, address: 2n ** 64n - 1n, size: 2 }, 'size'],
    ['E5 address not page aligned', { ...ok, address: GPA + 1 }, 'address'],
    ['E5 size not page aligned', { ...ok, size: P + 1 }, 'size'],
  ])('%s: EINVAL, nothing changes', (_name, args, argument) => {
    const { host, vm } = today();
    const error = expectRefused(host, () => vm.setMemoryAttributes(args as never), 'EINVAL');
    expect(error.argument).toBe(argument);
  });

  it('E6 a VM without private memory supports no attribute: PRIVATE is EINVAL, 0 is a no-op', () => {
    const host = createHost({ conversion: 'separate' });
    const vm = host.createVm({ type: 'default' });
    expectRefused(host, () => vm.setMemoryAttributes({ address: 0, size: P, attributes: PRIVATE }), 'EINVAL');
    const before = host.snapshot();
    vm.setMemoryAttributes({ address: 0, size: P, attributes: 0 });
    expect(host.snapshot()).toEqual(before);
  });

  it('E7 with in-place conversion on, the per-VM attributes are off: PRIVATE is EINVAL (convert on the guest_memfd)', () => {
    const host = createHost();
    const vm = host.createVm({ type: 'coco' });
    const error = expectRefused(
      host,
      () => vm.setMemoryAttributes({ address: GPA, size: P, attributes: PRIVATE }),
      'EINVAL',
    );
    expect(error.message).toMatch(/KVM_SET_MEMORY_ATTRIBUTES2/);
  });

  it('E8 under separate conversion the per-gmem KVM_SET_MEMORY_ATTRIBUTES2 does not exist (ENOTTY), nor INIT_SHARED for a confidential VM', () => {
    const { host, vm, gmem } = today();
    expectRefused(host, () => gmem.setMemoryAttributes2({ offset: 0, size: P, attributes: PRIVATE }), 'ENOTTY');
    expectRefused(host, () => vm.createGuestMemfd({ size: P, flags: GUEST_MEMFD_FLAG_INIT_SHARED }), 'EINVAL');
  });

  it('E9 a closed VM fd is EBADF', () => {
    const { host, vm } = today();
    vm.close();
    expectRefused(host, () => vm.setMemoryAttributes(ok), 'EBADF');
  });

  it('non-integers are EINVAL naming the field; an unknown field is EINVAL', () => {
    const { host, vm } = today();
    expect(expectRefused(host, () => vm.setMemoryAttributes({ ...ok, size: -1 }), 'EINVAL').argument).toBe('size');
    expectRefused(host, () => vm.setMemoryAttributes({ ...ok, attribute: 8 } as never), 'EINVAL');
  });
});

describe('a conversion on the VM fd (kvm_vm_set_mem_attributes)', () => {
  it('the guest follows the per-VM attribute: shared accesses reach the memfd at userspace_addr, private ones guest_memfd', () => {
    const { vm, shared, gmem } = today();
    expect(vm.guestWrite(GPA, bytes(0x11)).ok).toBe(true);
    const seen = shared.read(0, 16);
    expect(seen.ok && [...seen.data!]).toEqual([...bytes(0x11)]);
    expect(gmem.inode.pages.runCount).toBe(0); // nothing allocated in guest_memfd by a shared access
    expect(vm.guestRead(GPA, 1, { intent: 'private' })).toMatchObject({
      ok: false,
      fault: 'memory-fault',
      exit: { gpa: GPA },
    });
    vm.setMemoryAttributes({ address: GPA, size: P, attributes: PRIVATE });
    expect(vm.guestWrite(GPA, bytes(0x22)).ok).toBe(true);
    expect(gmem.inode.pages.has(0)).toBe(true);
    // The memfd page is untouched by the conversion and still holds what the guest wrote while shared.
    const still = shared.read(0, 16);
    expect(still.ok && [...still.data!]).toEqual([...bytes(0x11)]);
  });

  it('zaps the side that goes away, inside an mmu invalidation of the memslots the range meets', () => {
    const { vm } = today();
    vm.setMemoryAttributes({ address: GPA, size: 2 * P, attributes: PRIVATE });
    vm.guestRead(GPA, 2 * P);
    expect(vm.stage2.private.runCount).toBe(1);
    const seq = vm.mmu.seq;
    vm.setMemoryAttributes({ address: GPA + P, size: P, attributes: 0 });
    expect(vm.stage2.private.toArray().map((r) => [r.start - GPA / P, r.end - GPA / P])).toEqual([[0, 1]]);
    expect(vm.mmu).toMatchObject({ seq: seq + 1, inProgress: 0 });
  });

  it("host.snapshot() lists the per-VM attributes, so a fork and a failed call's check see them", () => {
    const { host, vm } = today();
    vm.setMemoryAttributes({ address: GPA, size: 2 * P, attributes: PRIVATE });
    const vms = (host.snapshot() as { vms: Array<{ memoryAttributes?: unknown }> }).vms;
    expect(vms[0]!.memoryAttributes).toEqual([[GPA / P, GPA / P + 2, true]]);
    const copy = host.forkWith(vm).held;
    expect(copy.memoryAttributes.isPrivate(GPA / P + 1)).toBe(true);
    copy.setMemoryAttributes({ address: GPA, size: 2 * P, attributes: 0 });
    expect(vm.memoryAttributes.isPrivate(GPA / P)).toBe(true);
  });

  it('E10 a range already holding the attribute, or one no memslot meets, runs no invalidation', () => {
    const { vm } = today();
    const seq = vm.mmu.seq;
    vm.setMemoryAttributes({ address: GPA, size: P, attributes: 0 });
    vm.setMemoryAttributes({ address: 0, size: P, attributes: PRIVATE });
    expect(vm.mmu.seq).toBe(seq);
    expect(vm.memoryAttributes.isPrivate(0)).toBe(true);
  });

  it('does no refcount check: a page pinned by IOMMU_IOAS_MAP converts to private (in place, the same pin is EAGAIN)', () => {
    const { vm, shared, host } = today();
    const ioas = host.openIommufd().createIoas();
    ioas.map({ mapping: shared, offset: 0, length: P, flags: RW });
    ioas.attachDevice();
    vm.setMemoryAttributes({ address: GPA, size: P, attributes: PRIVATE });
    expect(vm.memoryAttributes.isPrivate(GPA / P)).toBe(true);
  });

  it('E11 a private gfn in a memslot without guest_memfd is a memory-fault exit with EFAULT (kvm_slot_has_gmem)', () => {
    // Hand-built: a memslot over a memfd, with no guest_memfd (createScenario always binds one).
    const host = createHost({ conversion: 'separate' });
    const vm = host.createVm({ type: 'coco' });
    const memfd = host.memfdCreate(P);
    const m = memfd.mmap({ length: P, shared: true });
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: P, userspaceAddr: m.address });
    expect(vm.guestRead(0, 1).ok).toBe(true);
    vm.setMemoryAttributes({ address: 0, size: P, attributes: PRIVATE });
    expect(vm.guestRead(0, 1)).toMatchObject({
      ok: false,
      fault: 'efault',
      exit: { reason: 'KVM_EXIT_MEMORY_FAULT', gpa: 0 },
    });
  });

  it('a guest_memfd with MMAP binds gmem-only only by its flag, so shared faults of a confidential VM use userspace_addr without it', () => {
    const { vm } = today();
    expect(vm.memslots()[0]!.gmemOnly).toBe(false);
    // Hand-built: the binding call is what the test reads (its flags make the memslot gmem-only).
    const host = createHost({ conversion: 'separate' });
    const vm2 = host.createVm({ type: 'coco' });
    const gmem = vm2.createGuestMemfd({ size: P, flags: GUEST_MEMFD_FLAG_MMAP });
    vm2.setUserMemoryRegion2({
      slot: 1,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: P,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    expect(vm2.memslots()[0]!.gmemOnly).toBe(true);
  });
});

describe('double allocation: both sides populated until the VMM discards one (page map)', () => {
  function populated() {
    const w = today();
    w.vm.guestWrite(GPA, bytes(0x11, P)); // shared side
    w.vm.setMemoryAttributes({ address: GPA, size: P, attributes: PRIVATE });
    w.vm.guestWrite(GPA, bytes(0x22, P)); // private side
    return w;
  }
  const mapOf = (w: ReturnType<typeof today>) => w.host.pageMaps()[0]!;

  it('after a conversion to private the page is in guest_memfd and in the memfd', () => {
    const w = populated();
    expect(mapOf(w).sharedBacking?.map(([s, e]) => [s, e])).toEqual([[0, 1]]);
    expect(mapOf(w).doubleAllocated).toEqual([[0, 1, true]]);
  });

  it('fallocate(PUNCH_HOLE) on the memfd discards the shared side (QEMU ram_block_discard_range)', () => {
    const w = populated();
    w.memfd.fallocate(PUNCH, 0, P);
    expect(mapOf(w).doubleAllocated ?? []).toEqual([]);
  });

  it('madvise(MADV_REMOVE) on the shared mapping punches the memfd too; MADV_DONTNEED on a shared mapping frees nothing', () => {
    const w = populated();
    w.shared.madvise(0, P, MADV_DONTNEED);
    expect(mapOf(w).doubleAllocated).toEqual([[0, 1, true]]);
    w.shared.madvise(0, P, MADV_REMOVE);
    expect(mapOf(w).doubleAllocated ?? []).toEqual([]);
  });

  it('a conversion back to shared leaves the private page in guest_memfd until the VMM punches it (ram_block_discard_guest_memfd_range)', () => {
    const w = populated();
    w.vm.setMemoryAttributes({ address: GPA, size: P, attributes: 0 });
    w.vm.guestWrite(GPA, bytes(0x33, P));
    expect(mapOf(w).doubleAllocated).toEqual([[0, 1, true]]);
    w.gmem.fallocate(PUNCH, 0, P);
    expect(mapOf(w).doubleAllocated ?? []).toEqual([]);
    const back = w.shared.read(0, 4);
    expect(back.ok && [...back.data!]).toEqual([0x33, 0x33, 0x33, 0x33]);
  });

  it('a pin keeps the discarded shared page allocated: the DMA still reaches the old frame, which the guest no longer sees', () => {
    const w = populated();
    const ioas = w.host.openIommufd().createIoas();
    const iova = ioas.map({ mapping: w.shared, offset: 0, length: P, flags: RW });
    const dev = ioas.attachDevice();
    const before = w.host.allocatedPages;
    w.memfd.fallocate(PUNCH, 0, P);
    expect(w.host.allocatedPages).toBe(before); // the pin holds the frame
    const dma = dev.dmaWrite(iova, bytes(0x44));
    expect(dma.ok && dma.reached?.map((r) => r.owner.kind)).toEqual(['pinned']);
    const guest = w.vm.guestRead(GPA, 4);
    expect(guest.ok && [...guest.data!]).toEqual([0x22, 0x22, 0x22, 0x22]);
    expect(w.host.checkInvariants().filter((v) => v.kind === 'stale-iopte')).toEqual([]);
    ioas.unmap({ iova, length: P });
    expect(w.host.allocatedPages).toBe(before - 1);
  });

  it('in-place conversion has no shared backing to report', () => {
    const { host, vm } = createScenario(swProtected, { size: P, populate: false, map: false, attach: false });
    vm.guestWrite(0, bytes(1));
    expect(host.pageMaps()[0]!.sharedBacking).toBeUndefined();
  });
});

describe("ArchBackend.privateRemovalAt: where today's path ends a page's hardware-private state (§4.4)", () => {
  /** sw-protected with a removal pipeline that records what it is told, and the given removal point. */
  function recording(privateRemovalAt: 'zap' | 'free' | undefined, extra: Partial<ArchBackend> = {}) {
    const seen: RemovalContext[] = [];
    const backend: ArchBackend = {
      ...swProtected,
      id: 'test:removal-point',
      ...(privateRemovalAt ? { privateRemovalAt } : {}),
      removalPipeline: (context) => (seen.push(context), [{ step: 'remove', count: context.pages }]),
      ...extra,
    };
    const w = today({ backend });
    w.vm.setMemoryAttributes({ address: GPA, size: 4 * P, attributes: PRIVATE });
    w.vm.guestWrite(GPA, bytes(0x11, 2 * P)); // pages 0 and 1 enter the hardware-private state
    return { ...w, seen };
  }
  const hardware = (host: ReturnType<typeof createHost>) => host.pageMaps()[0]!.hardware.map(([s, e]) => [s, e]);

  it("'zap': the conversion to shared removes the pages there, once; guest_memfd keeps them; the punch removes nothing", () => {
    const { host, vm, gmem, seen } = recording('zap');
    vm.setMemoryAttributes({ address: GPA, size: 2 * P + P, attributes: 0 });
    expect(seen).toMatchObject([{ cause: 'to-shared', pages: 2, ranges: [{ offset: 0, length: 2 * P }] }]);
    expect(hardware(host)).toEqual([]);
    expect(host.pageMaps()[0]!.populated.map(([s, e]) => [s, e])).toEqual([[0, 2]]);
    gmem.fallocate(PUNCH, 0, 4 * P);
    expect(seen).toHaveLength(1);
    expect(host.pipelineCounters().remove).toBe(2);
  });

  it("'free' and absent (the default): the conversion only zaps stage-2; the pages stay hardware-private until the punch", () => {
    for (const at of ['free', undefined] as const) {
      const { host, vm, gmem, seen } = recording(at);
      vm.setMemoryAttributes({ address: GPA, size: 4 * P, attributes: 0 });
      expect(seen, String(at)).toEqual([]);
      expect(hardware(host)).toEqual([[0, 2]]);
      gmem.fallocate(PUNCH, 0, 4 * P);
      expect(seen).toMatchObject([{ cause: 'truncate', pages: 2 }]);
    }
  });

  it("'zap': a conversion to private zaps the shared side and removes nothing", () => {
    const { host, vm, seen } = recording('zap');
    vm.setMemoryAttributes({ address: GPA, size: 4 * P, attributes: 0 });
    seen.length = 0;
    vm.setMemoryAttributes({ address: GPA, size: 4 * P, attributes: PRIVATE });
    expect(seen).toEqual([]);
    expect(hardware(host)).toEqual([]);
  });

  it("'zap' asks the contents rule before anything changes: a broken answer fails the call and leaves the model as it was", () => {
    const { host, vm, seen } = recording('zap', { contentsOnConversion: () => 'maybe' as never });
    const before = host.snapshot();
    expect(() => vm.setMemoryAttributes({ address: GPA, size: P, attributes: 0 })).toThrow();
    expect(host.snapshot()).toEqual(before);
    expect(seen).toEqual([]);
    expect(vm.memoryAttributes.isPrivate(GPA / P)).toBe(true);
  });

  it("'zap': the contents rule of a conversion applies at the zap ('zero' clears the page guest_memfd keeps, 'keep' does not)", () => {
    for (const [rule, first] of [
      ['zero', 0],
      ['keep', 0x11],
    ] as const) {
      const { host, vm } = recording('zap', { contentsOnConversion: () => rule });
      vm.setMemoryAttributes({ address: GPA, size: P, attributes: 0 });
      vm.setMemoryAttributes({ address: GPA, size: P, attributes: PRIVATE });
      const back = vm.guestRead(GPA, 4, { intent: 'private' });
      expect(back.ok && [...back.data!], rule).toEqual([first, first, first, first]);
      expect(hardware(host)).toEqual([[0, 2]]);
    }
  });

  it('a value other than zap or free is a backend problem', () => {
    expect(describeBackendProblems({ ...swProtected, privateRemovalAt: 'later' as never })).toEqual([
      "privateRemovalAt is later, expected 'zap' or 'free'",
    ]);
  });
});
