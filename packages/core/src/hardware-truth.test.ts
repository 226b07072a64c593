/**
 * The core's side of hardware truth: hardware state apart from attributes, two-step guest faults and their
 * retry, frames reused with their owners, fatal faults that stop the host, invalidation windows that block new
 * mappings, the RFC as posted, memory failure and registration by user address. Architecture rules are tested
 * in the backend packages; here a small inline backend stands in where one is needed.
 */
import { describe, expect, it } from 'vitest';
import {
  createHost,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GmemError,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  HostCrashedError,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
  swProtected,
  type ArchBackend,
  type Contract,
  type HostOptions,
} from './index.js';

const P = PAGE_SIZE;
const SIZE = 8 * P;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

/** Devices and the kernel must not touch hardware-private pages: a fatal machine check (TDX-like). */
const strict: ArchBackend = {
  ...swProtected,
  id: 'strict',
  name: 'strict test backend',
  mapsPrivatePages: false,
  deviceMayReach: ({ attribute }) => attribute === 'shared',
  deviceAccess: ({ hardware }) =>
    hardware === 'private'
      ? { allow: false, fault: 'machine-check', fatal: true, logged: true, mechanism: 'test: fatal DMA' }
      : { allow: true },
  privateEntry: ({ pages }) => [{ step: 'enter', count: pages }],
  removalPipeline: ({ pages }) => [{ step: 'leave', count: pages }],
};

function world(options: HostOptions & { contract?: Contract } = {}) {
  const host = createHost(options);
  const vm = host.createVm({ type: 'coco' });
  const gmem = vm.createGuestMemfd({ size: SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  vm.setUserMemoryRegion2({
    slot: 0,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: 0,
    memorySize: SIZE,
    guestMemfd: gmem,
  });
  const ioas = host.openIommufd().createIoas();
  const convert = (offset: number, length: number, to: 'shared' | 'private') =>
    gmem.setMemoryAttributes2({
      offset,
      size: length,
      attributes: to === 'private' ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
    });
  const punch = (offset: number, length: number) =>
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, offset, length);
  const hardware = () => (host.snapshot() as { inodes: Array<{ hardware: unknown }> }).inodes[0]!.hardware;
  return { host, vm, gmem, ioas, convert, punch, hardware };
}

describe('attribute and hardware state are two things', () => {
  it('to-private changes only the attribute; a private guest fault makes the page hardware-private and counts its entry', () => {
    const { host, vm, convert, hardware } = world({ backend: strict });
    convert(0, 4 * P, 'private');
    expect(hardware()).toEqual([]);
    expect(host.pipelineCounters()).toEqual({});
    expect(vm.guestWrite(P, new Uint8Array([1])).ok).toBe(true);
    expect(hardware()).toEqual([[1, 2, true]]);
    expect(host.pipelineCounters()).toEqual({ enter: 1 });
    // A second access to the same page needs no fault and enters nothing again.
    vm.guestRead(P, 8);
    expect(host.pipelineCounters()).toEqual({ enter: 1 });
  });

  it('removal counts only pages the hardware held, and the events say which pages enter and leave', () => {
    const { host, vm, convert, punch } = world({ backend: strict });
    convert(0, 4 * P, 'private');
    vm.guestRead(0, 1);
    vm.guestRead(2 * P, 1);
    const { events, stop } = host.events.record();
    punch(0, 4 * P);
    stop();
    expect(host.pipelineCounters()).toEqual({ enter: 2, leave: 2 });
    expect(events.filter((e) => e.type === 'hardware')).toEqual([
      { type: 'hardware', change: 'leave', cause: 'truncate', ino: expect.any(Number), offset: 0, length: P },
      { type: 'hardware', change: 'leave', cause: 'truncate', ino: expect.any(Number), offset: 2 * P, length: P },
    ]);
  });

  it("the 'hardware-state' invariant catches a private stage-2 entry over a page the hardware does not hold", () => {
    const { host, vm, convert } = world({ backend: strict });
    convert(0, P, 'private');
    vm.guestRead(0, 1);
    expect(host.checkInvariants()).toEqual([]);
    // Tamper with the model the way a kernel bug would: forget the hardware state but keep the entry.
    const inode = (vm as unknown as { kernel: { gmemInodes: Set<{ hardware: { clear(): void } }> } }).kernel.gmemInodes
      .values()
      .next().value!;
    inode.hardware.clear();
    expect(host.checkInvariants().map((v) => v.kind)).toEqual(['hardware-state']);
  });
});

describe('guest-initiated conversion: KVM_EXIT_MEMORY_FAULT', () => {
  it('a shared access to a private page exits with the kernel fields, flags 0; the VMM converts and the guest goes on', () => {
    const { vm, convert } = world();
    convert(0, P, 'private');
    const exit = vm.guestRead(0, 8, { intent: 'shared' });
    expect(exit).toMatchObject({
      ok: false,
      fault: 'memory-fault',
      address: 0,
      fatal: false,
      exit: { reason: 'KVM_EXIT_MEMORY_FAULT', gpa: 0, size: P, flags: 0 },
    });
    convert(0, P, 'shared');
    expect(vm.guestRead(0, 8, { intent: 'shared' }).ok).toBe(true);
  });

  it('after guest_memfd release, a shared access on a gmem-only memslot is a KVM_EXIT_MEMORY_FAULT (kvm_mmu_faultin_pfn_gmem)', () => {
    const { vm, gmem } = world();
    gmem.close();
    expect(vm.guestRead(2 * P, 8)).toMatchObject({
      ok: false,
      fault: 'efault',
      address: 2 * P,
      exit: { reason: 'KVM_EXIT_MEMORY_FAULT', gpa: 2 * P, size: P, flags: 0 },
    });
    expect(vm.guestWrite(3 * P, new Uint8Array([1]), { intent: 'private' })).toMatchObject({
      ok: false,
      exit: { reason: 'KVM_EXIT_MEMORY_FAULT', gpa: 3 * P, size: P, flags: KVM_MEMORY_ATTRIBUTE_PRIVATE },
    });
  });

  it('an EHWPOISON from kvm_gmem_get_pfn carries the exit too', () => {
    const { vm, gmem } = world();
    vm.guestWrite(P, new Uint8Array([1]));
    gmem.memoryFailure(1);
    expect(vm.guestRead(P, 1)).toMatchObject({
      ok: false,
      fault: 'poison',
      exit: { reason: 'KVM_EXIT_MEMORY_FAULT', gpa: P, size: P, flags: 0 },
    });
  });

  it('a private intent on a VM without private memory is EINVAL', () => {
    const host = createHost();
    const vm = host.createVm();
    expect(() => vm.guestRead(0, 1, { intent: 'private' })).toThrow(/EINVAL.*no private GPAs/);
    expect(() => vm.guestRead(0, 1, { intent: 'secret' as never })).toThrow(/EINVAL/);
    expect(() => vm.guestRead(0, 1, { intnet: 'shared' } as never)).toThrow(/EINVAL.*intent/);
    expect(() => vm.resolveGuestFault(0, { wirte: true } as never)).toThrow(/EINVAL.*write/);
  });
});

describe('two-step guest faults (kernel-contract §3.6)', () => {
  it('an invalidation between resolve and install makes the install retry, and the retried fault succeeds', () => {
    const { host, vm, punch } = world();
    const fault = vm.resolveGuestFault(0, { write: true });
    if ('ok' in fault) throw new Error('expected a pending fault');
    const seq = fault.mmuSeq;
    punch(0, P);
    expect(fault.install()).toMatchObject({ ok: false, fault: 'retry' });
    expect(host.checkInvariants()).toEqual([]);
    const again = vm.resolveGuestFault(0, { write: true });
    if ('ok' in again) throw new Error('expected a pending fault');
    expect(again.mmuSeq).toBe(seq + 1);
    expect(again.install()).toEqual({ ok: true });
    expect(() => again.install()).toThrow(/EINVAL/);
    expect(() => vm.resolveGuestFault(0)).toThrow(/EEXIST/);
  });

  it('a conversion between resolve and install makes it retry too; an unrelated invalidation does not', () => {
    const { vm, convert } = world();
    const fault = vm.resolveGuestFault(P);
    if ('ok' in fault) throw new Error('expected a pending fault');
    convert(4 * P, P, 'private');
    // kvm_gmem_invalidate bumps mmu_invalidate_seq for any range of the VM: the fault retries (§3.6: seq != mmu_seq).
    expect(fault.install()).toMatchObject({ ok: false, fault: 'retry' });
  });

  it('a fault install from a consumer callback inside an invalidation sees it in progress', () => {
    const { vm, gmem, punch } = world();
    const fault = vm.resolveGuestFault(6 * P);
    const outside = vm.resolveGuestFault(0);
    if ('ok' in fault || 'ok' in outside) throw new Error('expected pending faults');
    let inside: unknown;
    let elsewhere: unknown;
    gmem.registerConsumer({
      kind: 'probe',
      label: 'probe',
      first: 0,
      end: 8,
      invalidateBegin: () => {
        inside = fault.install();
        elsewhere = outside.install();
      },
    });
    punch(6 * P, P);
    // mmu_invalidate_retry_gfn: in progress and inside [range_start, range_end) -> retry; outside the range the
    // sequence has not moved yet (it moves at invalidate_end), so the fault installs.
    expect(inside).toMatchObject({ ok: false, fault: 'retry' });
    expect(elsewhere).toEqual({ ok: true });
  });
});

describe('freed frames are reused, and a stale access says whose memory it reached', () => {
  it('a punched frame goes to the next allocation (LIFO); a stale IOPTE then reaches that file', () => {
    const { host, gmem, ioas, punch } = world({ contract: 'vmm-driven' });
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
    const device = ioas.attachDevice();
    punch(3 * P, P);
    const memfd = host.memfdCreate(P);
    const mapping = memfd.mmap({ length: P, shared: true });
    expect(mapping.write(0, new Uint8Array([0x11])).ok).toBe(true);
    const dma = device.dmaRead(iova + 3 * P, 1);
    expect(dma).toMatchObject({
      ok: true,
      data: new Uint8Array([0x11]),
      reached: [{ address: iova + 3 * P, owner: { kind: 'shmem', offset: 0 } }],
    });
    expect(host.checkInvariants().map((v) => v.kind)).toContain('stale-iopte');
  });

  it("a stale write lands in the new owner: the other file sees the device's bytes", () => {
    const { host, gmem, ioas, punch } = world({ contract: 'vmm-driven' });
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
    const device = ioas.attachDevice();
    punch(0, P);
    const memfd = host.memfdCreate(P);
    memfd.fallocate(0, 0, P);
    expect(device.dmaWrite(iova, new Uint8Array([0xee])).ok).toBe(true);
    expect(memfd.pread(1, 0)).toEqual(new Uint8Array([0xee]));
  });
});

describe('a pinned page truncated is freed when the last pin goes (mm/gup.c unpin_user_page)', () => {
  it('the frame outlives the punch while pinned, and is free and handed out again after unpin', () => {
    const { host, gmem, punch } = world({ contract: 'vmm-driven' });
    const first = gmem.pin(2 * P, P);
    const second = gmem.pin(2 * P, 2 * P);
    const pfn = (
      host.snapshot() as { inodes: Array<{ pages: Array<[number, number, number]> }> }
    ).inodes[0]!.pages.find(([s, e]) => s <= 2 && e > 2)!;
    const frame = pfn[2] + (2 - pfn[0]);
    const live = host.allocatedPages;
    const owner = (frame: number) =>
      (host as unknown as { kernel: { describeFrame(pfn: number): unknown } }).kernel.describeFrame(frame);
    punch(2 * P, P);
    // The page cache let go of it (filemap_free_folio), the pins did not: it belongs to no file and is not free.
    expect(owner(frame)).toMatchObject({ kind: 'pinned', offset: 2 * P });
    expect(host.allocatedPages).toBe(live);
    first.unpin();
    // Another pin still covers it: still held.
    expect(owner(frame)).toMatchObject({ kind: 'pinned' });
    second.unpin();
    // The last reference went: the frame is free, and the next allocation gets it (most recently freed first).
    expect(owner(frame)).toEqual({ kind: 'free' });
    expect(host.allocatedPages).toBe(live - 1);
    const memfd = host.memfdCreate(P);
    memfd.fallocate(0, 0, P);
    expect(owner(frame)).toMatchObject({ kind: 'shmem', ino: expect.any(Number), offset: 0 });
    expect(host.checkInvariants()).toEqual([]);
  });

  it('a pin holds frames, not offsets: the page that refaults at a pinned offset after the punch is not pinned', () => {
    const { gmem, punch, convert } = world({ contract: 'vmm-driven' });
    const pin = gmem.pin(0, P);
    expect(() => convert(0, P, 'private')).toThrow(/EAGAIN/);
    punch(0, P);
    // The page cache gets a new folio at offset 0 on the next use; the pin still holds only the truncated one.
    gmem.mmap({ length: P, shared: true }).write(0, new Uint8Array([1]));
    expect(() => convert(0, P, 'private')).not.toThrow();
    pin.unpin();
  });

  it('a pinned page that was not truncated stays in its file at unpin', () => {
    const { host, gmem } = world({ contract: 'vmm-driven' });
    const live = host.allocatedPages;
    gmem.pin(0, P).unpin();
    expect(host.allocatedPages).toBeGreaterThanOrEqual(live);
    const owner = (frame: number) =>
      (host as unknown as { kernel: { describeFrame(pfn: number): unknown } }).kernel.describeFrame(frame);
    expect(
      owner((host.snapshot() as { inodes: Array<{ pages: Array<[number, number, number]> }> }).inodes[0]!.pages[0]![2]),
    ).toMatchObject({ kind: 'guest_memfd', offset: 0 });
  });
});

describe('fatal means fatal', () => {
  it('after a fatal fault every call throws HostCrashedError naming it; inspection still works', () => {
    const { host, vm, gmem, ioas, convert } = world({ backend: strict, contract: 'vmm-driven' });
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
    const device = ioas.attachDevice();
    convert(0, P, 'private');
    vm.guestWrite(0, new Uint8Array([1]));
    const { events, stop } = host.events.record();
    expect(device.dmaWrite(iova, new Uint8Array([1]))).toMatchObject({
      ok: false,
      fault: 'machine-check',
      fatal: true,
    });
    stop();
    expect(events.at(-1)).toMatchObject({ type: 'crash', by: 'device', mechanism: 'test: fatal DMA' });
    expect(host.crashed).toMatchObject({ by: 'device', via: 'device:dev0', address: iova });
    for (const call of [
      () => host.createVm(),
      () => vm.guestRead(0, 1),
      () => gmem.fallocate(0, 0, P),
      () => device.dmaRead(iova, 1),
      () => ioas.unmapAll(),
      () => gmem.close(),
    ]) {
      let thrown: unknown;
      try {
        call();
      } catch (error) {
        thrown = error;
      }
      expect(HostCrashedError.isInstance(thrown)).toBe(true);
      expect(String((thrown as Error).message)).toMatch(/the host crashed earlier: test: fatal DMA/);
    }
    expect(host.checkInvariants().map((v) => v.kind)).toContain('unsafe-iopte');
    expect(host.snapshot()).toMatchObject({ crashed: { fault: 'machine-check' } });
  });
});

describe('invalidation windows block new mappings (kernel-contract §3.5)', () => {
  it("'gmem-registry': IOMMU_IOAS_MAP_FILE of the range from inside a truncation is EAGAIN; after invalidate_end it works", () => {
    const { host, gmem, ioas, punch } = world();
    let inside: unknown;
    gmem.registerConsumer({
      kind: 'probe',
      label: 'probe',
      first: 0,
      end: 8,
      invalidateBegin: () => {
        try {
          ioas.mapFile({ fd: gmem, start: 0, length: 2 * P, flags: RW });
        } catch (error) {
          inside = error;
        }
      },
    });
    ioas.attachDevice();
    punch(0, P);
    expect(GmemError.isInstance(inside) && inside.errno).toBe('EAGAIN');
    expect(host.checkInvariants()).toEqual([]);
    expect(() => ioas.mapFile({ fd: gmem, start: 0, length: 2 * P, flags: RW })).not.toThrow();
  });

  it("'vmm-driven' (no registry): the same map succeeds inside the window and leaves a stale IOPTE", () => {
    const { host, gmem, ioas, punch } = world({ contract: 'vmm-driven' });
    gmem.registerConsumer({
      kind: 'probe',
      label: 'probe',
      first: 0,
      end: 8,
      invalidateBegin: () => void ioas.mapFile({ fd: gmem, start: 0, length: 2 * P, flags: RW }),
    });
    ioas.attachDevice();
    punch(0, P);
    expect(host.checkInvariants().map((v) => v.kind)).toContain('stale-iopte');
  });
});

describe("'vmm-driven' is the RFC as posted", () => {
  it('IOMMU_IOAS_MAP_FILE maps private pages whatever mapsPrivatePages says; the registry design does not', () => {
    for (const [contract, mapped] of [
      ['vmm-driven', true],
      ['gmem-registry', false],
    ] as const) {
      const { host, gmem, ioas, convert } = world({ backend: strict, contract });
      convert(0, P, 'private');
      const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
      const read = ioas.attachDevice().dmaRead(iova, 1);
      expect(read.ok).toBe(mapped);
      expect(host.checkInvariants().map((v) => v.kind)).toEqual(mapped ? ['unsafe-iopte'] : []);
    }
  });
});

describe('memory failure invalidates KVM only (kernel-contract §3.11)', () => {
  it('stage-2 is zapped, IOPTEs stay', () => {
    const { host, vm, gmem, ioas } = world();
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
    const device = ioas.attachDevice();
    vm.guestRead(0, 1);
    const { events, stop } = host.events.record();
    gmem.memoryFailure(0);
    stop();
    expect(events.filter((e) => e.type === 'zap').map((e) => (e as { target: string }).target)).toEqual(['stage2']);
    expect(events.some((e) => e.type === 'revoke')).toBe(false);
    expect(device.dmaRead(iova, 1).ok).toBe(true);
    expect(vm.guestRead(0, 1)).toMatchObject({ ok: false, fault: 'poison' });
  });
});

describe('registration of IOMMU_IOAS_MAP through a guest_memfd mmap (HostOptions.registerUserRanges)', () => {
  for (const [registerUserRanges, registered] of [
    [undefined, true],
    [true, true],
    [false, false],
  ] as const) {
    it(`registerUserRanges ${String(registerUserRanges)}: the user range is ${registered ? 'registered (the seed)' : 'only pinned (§9.1)'}`, () => {
      const { host, gmem, ioas, punch } = world({ registerUserRanges });
      const mapping = gmem.mmap({ length: SIZE, shared: true });
      ioas.map({ mapping, offset: 0, length: SIZE, flags: RW });
      ioas.attachDevice();
      const area = (host.snapshot() as { ioases: Array<{ areas: Array<{ registered: boolean }> }> }).ioases[0]!
        .areas[0]!;
      expect(area.registered).toBe(registered);
      punch(0, P);
      expect(host.checkInvariants().map((v) => v.kind)).toEqual(registered ? [] : ['stale-iopte']);
    });
  }

  it('is validated', () => {
    expect(() => createHost({ registerUserRanges: 'yes' as never })).toThrow(/EINVAL/);
  });
});

describe('what crosses the surface inward is checked', () => {
  it('a consumer whose invalidateBegin throws cannot stop a truncation; the error is reported', () => {
    const { host, gmem, punch } = world();
    gmem.fallocate(FALLOC_FL_KEEP_SIZE, 0, SIZE);
    gmem.registerConsumer({
      kind: 'bad',
      label: 'bad',
      first: 0,
      end: 8,
      invalidateBegin: () => {
        throw new Error('boom');
      },
    });
    punch(0, SIZE);
    expect(host.allocatedPages).toBe(0);
    expect(host.observerErrors()).toEqual([{ source: 'consumer bad', hook: 'invalidateBegin', message: 'boom' }]);
    expect((host.snapshot() as { vms: Array<{ mmu: { inProgress: number } }> }).vms[0]!.mmu.inProgress).toBe(0);
  });

  it('a malformed conversionResponse or conversionPolicy fails the conversion with EIO naming it, and changes nothing', () => {
    for (const [backend, consumerAnswer, who] of [
      [swProtected, 'nope', 'consumer odd'],
      [
        { ...swProtected, id: 'typo', conversionPolicy: () => 'revok' } as unknown as ArchBackend,
        'revoke',
        'backend typo',
      ],
      [
        { ...swProtected, id: 'async', conversionPolicy: async () => 'revoke' } as unknown as ArchBackend,
        'revoke',
        'backend async',
      ],
    ] as const) {
      const { host, gmem, ioas, convert } = world({ backend });
      ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: RW });
      gmem.registerConsumer({
        kind: 'odd',
        label: 'odd',
        first: 0,
        end: 8,
        conversionResponse: () => consumerAnswer as never,
        invalidateBegin: () => {},
      });
      const before = host.snapshot();
      expect(() => convert(0, P, 'private')).toThrow(new RegExp(`EIO: ${who}`));
      expect(host.snapshot()).toEqual(before);
    }
  });

  it('a conversionPolicy cannot write into the area it is told about: EIO, and the next call sees the area as it is', () => {
    const seen: number[] = [];
    const backend = {
      ...swProtected,
      id: 'scribbler',
      conversionPolicy: (context: { area: { iova: number } }) => {
        seen.push(context.area.iova);
        context.area.iova = 0;
        return 'revoke';
      },
    } as unknown as ArchBackend;
    const { host, gmem, ioas, convert } = world({ backend });
    ioas.mapFile({ fd: gmem, start: 0, length: SIZE, iova: 0x100000, flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA });
    const before = host.snapshot();
    expect(() => convert(0, P, 'private')).toThrow(/EIO: backend scribbler: conversionPolicy threw/);
    expect(() => convert(0, P, 'private')).toThrow(/EIO/);
    expect(seen).toEqual([0x100000, 0x100000]);
    expect(host.snapshot()).toEqual(before);
  });

  it('a hypervisorRefusal outside the range is EIO, not a wild errorOffset', () => {
    const { host, convert } = world({ backend: { ...swProtected, id: 'wild', hypervisorRefusal: () => -4096 } });
    const before = host.snapshot();
    expect(() => convert(0, P, 'private')).toThrow(/EIO: backend wild: hypervisorRefusal returned -4096/);
    expect(host.snapshot()).toEqual(before);
  });

  it('broken pipeline steps fail the truncation with EIO, nothing changed; at the release, which cannot fail, they are reported and count nothing', () => {
    const { host, vm, gmem, convert, punch } = world({
      backend: { ...swProtected, id: 'broken', removalPipeline: () => [{ step: '', count: -1 }] },
    });
    convert(0, P, 'private');
    vm.guestRead(0, 1);
    const before = host.snapshot();
    expect(() => punch(0, P)).toThrow(/EIO: backend broken: removalPipeline returned/);
    expect(host.snapshot()).toEqual(before);
    expect(host.observerErrors()).toEqual([]);
    gmem.close();
    expect(host.allocatedPages).toBe(0);
    expect(host.pipelineCounters()).toEqual({});
    expect(host.observerErrors()).toEqual([
      { source: 'backend broken', hook: 'removalPipeline', message: expect.stringMatching(/returned/) },
    ]);
  });
});

describe('internals refuse what they cannot mean (issue 8 item 8)', () => {
  it('an mmu invalidation end without a begin, a bogus gfn range, and detaching a foreign device are refused; nothing changes', () => {
    const { host, vm, ioas } = world();
    const other = world().ioas.attachDevice('elsewhere');
    const before = host.snapshot();
    expect(() => vm.mmuInvalidateEnd()).toThrow(/EIO: .*KVM_BUG_ON/);
    expect(() => vm.unmapGfnRange(NaN, 1, 'truncate')).toThrow(/EINVAL/);
    expect(() => vm.unmapGfnRange(0, 1, 'bogus' as never)).toThrow(/EINVAL/);
    expect(() => vm.unmapGfnRange(0, 1, 'truncate')).toThrow(/EIO: .*outside an mmu invalidation/);
    expect(() => ioas.detach(other)).toThrow(/EINVAL/);
    expect(() => ioas.detach({} as never)).toThrow(/EINVAL/);
    expect(() => {
      (vm.mmu as { inProgress: number }).inProgress = -1;
    }).toThrow(TypeError);
    expect(host.snapshot()).toEqual(before);
  });
});
