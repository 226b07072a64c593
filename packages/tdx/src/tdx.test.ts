import {
  createHost,
  HostCrashedError,
  KVM_MEM_GUEST_MEMFD,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOPTE_SPLIT_STEP,
  IOPTE_UNMAP_WHOLE_STEP,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  type ArchBackend,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GmemError,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  PAGE_SIZE,
  type Contract,
} from '@gmemlab/core';
import { describeBackendConformance, describeFactoryConformance, createScenario } from '@gmemlab/core/testing';
import { describe, expect, it } from 'vitest';
import defaultExport, { tdx, TDX_STEPS } from './index.js';

const P = PAGE_SIZE;
const SIZE = 16 * P;

// The ready backend and every published variant ('connect', 'dma-poison', 'no-erratum'), then a combination.
describeFactoryConformance(tdx, { describe, it });
describeBackendConformance(tdx({ dmaToPrivate: 'poison', pwMceErratum: false }), { describe, it });

function setup(contract: Contract, vcpus = 4, backend: ArchBackend = tdx) {
  const scenario = createScenario(backend, { contract, vcpus });
  return { ...scenario, device: scenario.device! };
}

describe('@gmemlab/tdx exports', () => {
  it('the ready instance is the default export, callable for variants', () => {
    expect(defaultExport).toBe(tdx);
    expect(tdx.id).toBe('tdx');
    expect(tdx.name).toBe('Intel TDX');
    expect(tdx({ variant: 'connect' }).id).toBe('tdx:connect');
    expect(tdx().id).toBe('tdx');
    expect(() => tdx({ variant: 'io' as never })).toThrow(/unknown variant/);
    expect(tdx({ variant: 'connect', dmaToPrivate: 'poison' }).id).toBe('tdx:connect-dma-poison');
    expect(() => tdx({ dmaToPrivate: 'maybe' as never })).toThrow(/dmaToPrivate/);
  });
});

describe('rules (backend.rules)', () => {
  it('quotes its sources whole: X-c keeps its "w/o this erratum" condition, X-b is tdx.rst\'s own text, X-d keeps the original spelling (docs/audit-issue-16.md Q9-Q11)', () => {
    const quotes = (tdx.rules ?? []).flatMap((rule) => rule.evidence ?? []);
    const kernelReadWrite = quotes.filter((e) => e.tag === 'X-c' && e.quote.startsWith('Kernel read/write'));
    expect(kernelReadWrite.length).toBeGreaterThan(0);
    for (const e of kernelReadWrite)
      expect(e.quote).toBe(
        "Kernel read/write to TDX private memory doesn't cause machine check on hardware w/o this erratum.",
      );
    const doc = quotes.filter((e) => e.tag === 'X-b');
    expect(doc.length).toBeGreaterThan(0);
    for (const e of doc)
      expect(e.quote).toMatch(/^A partial write to a TDX private memory cacheline will silently "poison" the line\./);
    const integrity = quotes.filter((q) => q.tag === 'X-d');
    expect(integrity.length).toBeGreaterThan(0);
    for (const e of integrity) expect(e.quote).toContain('CPU poisones [sic] cache line');
  });

  const instances = [
    tdx,
    ...Object.values(tdx.variants).map((options) => tdx(options)),
    tdx({ dmaToPrivate: 'poison', pwMceErratum: false }),
    tdx({ variant: 'connect', dmaToPrivate: 'poison' }),
  ];
  const rulesOf = (backend: ArchBackend, topic: string) =>
    (backend.rules ?? []).filter((rule) => rule.topic === topic).map((rule) => rule.rule);

  it("[T1e] vs [X-d]: a device write to a page the TD holds is a machine check by default, poison under 'dma-poison'", () => {
    expect(rulesOf(tdx, 'device access to private')[0]).toMatch(/host machine check, fatal and not contained/);
    const poison = rulesOf(tdx(tdx.variants['dma-poison']!), 'device access to private')[0];
    expect(poison).toMatch(/poisons the line/);
    expect(poison).not.toMatch(/fatal and not contained/);
    expect(poison).toMatch(/\[U\]/);
  });

  it("[X-a] vs [X-c2]: the clear and the kernel read follow the erratum; 'connect' and 'no-erratum' say no clear", () => {
    expect(rulesOf(tdx, 'contents')[0]).toMatch(/cleared with MOVDIR64B/);
    expect(rulesOf(tdx, 'removal pipeline')[0]).toMatch(/then a MOVDIR64B clear/);
    expect(rulesOf(tdx, 'host access to private')[1]).toMatch(/does not fault, with or without the erratum/);
    expect(rulesOf(tdx({ hostRead: 'machine-check' }), 'host access to private')[1]).toMatch(
      /a reading no source states \[I\]/,
    );
    for (const key of ['connect', 'no-erratum']) {
      const backend = tdx(tdx.variants[key]!);
      expect(rulesOf(backend, 'contents')[0], key).toMatch(/^'keep'/);
      expect(rulesOf(backend, 'removal pipeline')[0], key).toMatch(/no clear/);
      expect(rulesOf(backend, 'host access to private')[1], key).toMatch(/does not fault/);
    }
  });

  it('the rules say what the hooks do', () => {
    for (const backend of instances) {
      const clears = backend.contentsOnRemoval?.({ cause: 'truncate' }) === 'zero';
      expect(rulesOf(backend, 'contents')[0]!.includes('MOVDIR64B'), backend.id).toBe(clears);
      const verdict = backend.deviceAccess({
        attribute: 'private',
        hardware: 'private',
        write: true,
        vmType: 'coco',
        stale: false,
      });
      const fatal = !verdict.allow && verdict.fatal;
      expect(rulesOf(backend, 'device access to private')[0]!.includes('fatal'), backend.id).toBe(fatal);
    }
  });

  it("[X-i2, X-i] 'connect' names its platform and that it implies no erratum; plain TDX does not", () => {
    const connect = tdx(tdx.variants.connect!);
    expect(connect.rules?.filter((rule) => rule.topic === 'variant').map((rule) => rule.source)).toEqual([
      '[T1g, X-i]',
      '[X-i2]',
    ]);
    expect(tdx.rules?.some((rule) => rule.source.includes('X-i'))).toBe(false);
  });
});

describe('TDX row of the table', () => {
  it('[T1g] to-private revokes the shared IOPTEs over the converting pages before the attribute changes', () => {
    const { host, device, iova, convert } = setup('gmem-registry');
    convert(4 * P, 2 * P, 'private');
    const dma = device.dmaWrite(iova + 4 * P, new Uint8Array([1]));
    expect(dma).toMatchObject({
      ok: false,
      fault: 'iommu-fault',
      mechanism: 'IO page fault: IOPTE revoked by guest_memfd',
    });
    expect(device.dmaWrite(iova + 6 * P, new Uint8Array([1])).ok).toBe(true);
    expect(host.checkInvariants()).toEqual([]);
  });

  it("'mirror' (RFC-J5, RFC-J6): to-private wipes the IOPTEs as [T1g] asks, and to-shared restores them, where 'gmem-registry' leaves that to the VMM", () => {
    const { host, vm, device, iova, convert } = setup('mirror');
    convert(4 * P, 2 * P, 'private');
    expect(device.dmaWrite(iova + 4 * P, new Uint8Array([1]))).toMatchObject({
      ok: false,
      fault: 'iommu-fault',
      fatal: false,
    });
    vm.guestRead(4 * P, 1, { intent: 'private' });
    expect(host.checkInvariants()).toEqual([]);
    convert(4 * P, 2 * P, 'shared');
    expect(device.dmaWrite(iova + 4 * P, new Uint8Array([1])).ok).toBe(true);
    expect(host.crashed).toBeUndefined();
    expect(host.checkInvariants()).toEqual([]);
  });

  it("[T1g] to-shared unmaps nothing; restoring IOPTEs is the VMM's job", () => {
    const { host, device, ioas, iova, gmem, convert } = setup('gmem-registry');
    convert(4 * P, 2 * P, 'private');
    convert(4 * P, 2 * P, 'shared');
    expect(device.dmaWrite(iova + 4 * P, new Uint8Array([1])).ok).toBe(false);
    ioas.unmapAll();
    const again = ioas.mapFile({
      fd: gmem,
      start: 0,
      length: SIZE,
      flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
    });
    expect(device.dmaWrite(again + 4 * P, new Uint8Array([1])).ok).toBe(true);
    expect(host.checkInvariants()).toEqual([]);
  });

  it("[T1e] 'vmm-driven' (the RFC as posted): the IOPTE kept over a page the TD accepted is a fatal machine check, and the host is down", () => {
    const { host, vm, device, iova, convert } = setup('vmm-driven');
    convert(4 * P, P, 'private');
    expect(host.checkInvariants().map((v) => v.kind)).toContain('unsafe-iopte');
    // Private in KVM's view but not yet accepted: the page is not TD memory yet, and DMA to it is harmless.
    expect(device.dmaRead(iova + 4 * P, 8).ok).toBe(true);
    expect(vm.guestWrite(4 * P, new Uint8Array([1]), { intent: 'private' }).ok).toBe(true);
    const dma = device.dmaWrite(iova + 4 * P, new Uint8Array([1]));
    expect(dma).toMatchObject({ ok: false, fault: 'machine-check', fatal: true, logged: true });
    expect(host.crashed).toMatchObject({ by: 'device', fault: 'machine-check' });
    expect(() => vm.guestRead(0, 8)).toThrow(HostCrashedError);
    expect(() => host.createVm()).toThrow(/the host crashed earlier: TDX: no ownership check on DMA/);
  });

  it("[T1e, X-d] the 'dma-poison' reading: the DMA write lands silently and the TD's next read takes the machine check; the VM dies, the host lives", () => {
    const { host, vm, device, iova, convert } = setup('vmm-driven', 4, tdx({ dmaToPrivate: 'poison' }));
    convert(4 * P, P, 'private');
    vm.guestWrite(4 * P, new Uint8Array([1]), { intent: 'private' });
    expect(device.dmaWrite(iova + 4 * P, new Uint8Array([2])).ok).toBe(true);
    expect(vm.guestRead(4 * P, 1)).toMatchObject({ ok: false, fault: 'machine-check', fatal: false });
    expect(host.crashed).toBeUndefined();
    expect(() => vm.guestRead(0, 1)).toThrow(/EIO: the VM is dead/);
  });

  it("[X-d] a host-kernel write to a TD page does not fault; it poisons, and the TD's next read consumes it", () => {
    const { vm, gmem, convert } = setup('gmem-registry');
    convert(0, P, 'private');
    expect(vm.guestWrite(0, new Uint8Array([3])).ok).toBe(true);
    expect(gmem.directMapWrite(0, new Uint8Array([9])).ok).toBe(true);
    expect(vm.guestRead(0, 8)).toMatchObject({
      ok: false,
      fault: 'machine-check',
      fatal: false,
      mechanism: expect.stringContaining('poisoned'),
    });
    expect(vm.dead).toMatch(/poisoned/);
  });

  it("[X-a] a stale IOPTE whose frame was freed and handed to another TD reaches that TD's private page: a fatal machine check", () => {
    const { host, device, iova, gmem } = setup('vmm-driven');
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, SIZE);
    // A second TD on the same host gets the freed frames (most recently freed first) and accepts one.
    const other = host.createVm({ type: 'coco' });
    const otherGmem = other.createGuestMemfd({ size: SIZE });
    other.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: SIZE,
      guestMemfd: otherGmem,
      guestMemfdOffset: 0,
    });
    for (let page = 0; page < SIZE / P; page++)
      expect(other.guestWrite(page * P, new Uint8Array([0x42])).ok).toBe(true);
    const dma = device.dmaWrite(iova + SIZE - P, new Uint8Array([1]));
    expect(dma).toMatchObject({ ok: false, fault: 'machine-check', fatal: true });
    expect(dma.reached?.[0]?.owner).toMatchObject({
      kind: 'guest_memfd',
      vm: `vm:${other.fd}`,
      attribute: 'private',
      hardware: 'private',
    });
    expect(host.crashed).toBeDefined();
  });

  it('[T1g] IOMMU_IOAS_MAP_FILE over private pages makes no IOPTE: they are never device-reachable', () => {
    const host = createHost({ backend: tdx });
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: SIZE });
    const ioas = host.openIommufd().createIoas();
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: IOMMU_IOAS_MAP_READABLE });
    const device = ioas.attachDevice();
    expect(device.dmaRead(iova, 8)).toMatchObject({
      ok: false,
      fault: 'iommu-fault',
      mechanism: 'IO page fault: page not mapped in the domain',
    });
    expect(host.checkInvariants()).toEqual([]);
  });

  it('[X-a] private -> shared clears the page the TD held (MOVDIR64B)', () => {
    const { host, vm, gmem, convert } = setup('gmem-registry');
    convert(0, P, 'private');
    expect(vm.guestWrite(0, new Uint8Array([0x77])).ok).toBe(true);
    convert(0, P, 'shared');
    expect(host.pipelineCounters()[TDX_STEPS.clear]).toBe(1);
    const mapping = gmem.mmap({ length: P, shared: true });
    expect(mapping.read(0, 1)).toEqual({ ok: true, data: new Uint8Array([0]) });
  });

  it('[X-a] entry: PAGE.AUG + ACCEPT at the private fault; removal: BLOCK, TRACK + an IPI per vCPU, PAGE.REMOVE, WBINVD, clear, per 4K page the TD held', () => {
    const { host, vm, gmem, convert, ioas } = setup('gmem-registry', 4);
    ioas.unmapAll();
    convert(0, 4 * P, 'private');
    for (const page of [0, 1, 2]) vm.guestWrite(page * P, new Uint8Array([1]));
    expect(host.pipelineCounters()).toEqual({ [TDX_STEPS.aug]: 3, [TDX_STEPS.accept]: 3 });
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * P);
    expect(host.pipelineCounters()).toEqual({
      [TDX_STEPS.aug]: 3,
      [TDX_STEPS.accept]: 3,
      [TDX_STEPS.block]: 3,
      [TDX_STEPS.track]: 3,
      [TDX_STEPS.ipi]: 12,
      [TDX_STEPS.remove]: 3,
      [TDX_STEPS.wbinvd]: 3,
      [TDX_STEPS.clear]: 3,
    });
  });

  it('[X-c, X-b] a kernel read of TD memory does not machine-check by itself, with or without the erratum; the old inference is the reading hostRead: machine-check', () => {
    for (const [backend, fatal] of [
      [tdx, false],
      [tdx({ pwMceErratum: false }), false],
      [tdx({ hostRead: 'machine-check' }), true],
    ] as const) {
      const { host, vm, gmem, convert } = setup('gmem-registry', 1, backend);
      convert(0, P, 'private');
      vm.guestWrite(0, new Uint8Array([3]));
      const read = gmem.directMapRead(0, 8);
      expect(read.ok, backend.id).toBe(!fatal);
      expect(host.crashed !== undefined, backend.id).toBe(fatal);
    }
    expect(tdx({ hostRead: 'machine-check' }).id).toBe('tdx:host-read-mce');
  });

  it('[X-c] a host-kernel write poisons the line and the read that consumes it is the machine check', () => {
    const { host, vm, gmem, convert } = setup('gmem-registry', 1, tdx);
    convert(0, P, 'private');
    vm.guestRead(0, 1);
    expect(gmem.directMapWrite(0, new Uint8Array([1])).ok).toBe(true);
    expect(host.crashed).toBeUndefined();
    expect(gmem.directMapRead(0, 1)).toMatchObject({ ok: false, fault: 'machine-check', fatal: true });
  });

  it("[T1e] vs [X-c]: a DMA read of TD memory is a machine check only under the default reading dmaRead: 'machine-check'", () => {
    const context = { attribute: 'private', hardware: 'private', write: false, vmType: 'coco', stale: false } as const;
    expect(tdx.deviceAccess(context)).toMatchObject({ allow: false, fault: 'machine-check', fatal: true });
    expect(tdx({ dmaRead: 'no-fault' }).deviceAccess(context)).toEqual({ allow: true });
    expect(tdx({ dmaRead: 'no-fault' }).deviceAccess({ ...context, write: true })).toMatchObject({
      allow: false,
      fault: 'machine-check',
    });
    expect(tdx({ dmaRead: 'no-fault' }).id).toBe('tdx:dma-read-ok');
  });

  it('[X-j] TDG.MEM.PAGE.ACCEPT zeroes the page: the TD does not read back what a device wrote while the page was shared', () => {
    const { vm, device, iova, ioas, convert } = setup('vmm-driven', 1, tdx);
    expect(device.dmaWrite(iova + 4 * P, new Uint8Array([0x77])).ok).toBe(true);
    convert(4 * P, P, 'private');
    ioas.unmapAll();
    expect(vm.guestRead(4 * P, 1, { intent: 'private' })).toEqual({ ok: true, data: new Uint8Array([0]) });
  });

  it('[X-a, KVMREQ] the IPI count of a removal is an upper bound (kvm_make_all_cpus_request IPIs only vCPUs in guest mode), and the host says so', () => {
    const steps = tdx.removalPipeline!({
      cause: 'truncate',
      pages: 2,
      ranges: [{ offset: 0, length: 2 * P }],
      vcpus: 4,
      iommuDomains: 0,
    });
    expect(steps.filter((step) => step.bound === 'upper').map((step) => step.step)).toEqual([TDX_STEPS.ipi]);
    const { host, vm, gmem, ioas, convert } = setup('gmem-registry', 1, tdx);
    ioas.unmapAll();
    convert(0, P, 'private');
    vm.guestRead(0, 1);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    expect(host.pipelineBounds()).toEqual({ [TDX_STEPS.ipi]: 'upper' });
  });

  it('[X-i2] TDX Connect implies a part without the erratum', () => {
    expect(tdx({ variant: 'connect' }).id).toBe('tdx:connect');
    expect(() => tdx({ variant: 'connect', pwMceErratum: true })).toThrow(/X86_BUG_TDX_PW_MCE/);
  });

  it('[X-c2, 6b] without the PW_MCE erratum the reclaimed page is not cleared', () => {
    const backend = tdx({ pwMceErratum: false });
    expect(backend.id).toBe('tdx:no-erratum');
    const { host, vm, gmem, convert, ioas } = setup('gmem-registry', 1, backend);
    ioas.unmapAll();
    convert(0, P, 'private');
    vm.guestWrite(0, new Uint8Array([0x77]));
    convert(0, P, 'shared');
    expect(host.pipelineCounters()[TDX_STEPS.clear]).toBeUndefined();
    expect(gmem.mmap({ length: P, shared: true }).read(0, 1)).toEqual({ ok: true, data: new Uint8Array([0x77]) });
  });

  it('a conversion to private under a GUP pin is still EAGAIN: the kernel refcount check comes first', () => {
    const { host, gmem, convert } = setup('gmem-registry');
    const pin = gmem.pin(2 * P, P);
    const before = host.snapshot();
    expect(() => convert(0, 4 * P, 'private')).toThrow(GmemError);
    expect(host.snapshot()).toEqual(before);
    pin.unpin();
  });
});

describe('a conversion that cuts a 2 MiB IOPTE (registry designs)', () => {
  const MiB = 1024 * 1024;
  // A revoke that cuts a huge IOPTE: with HostOptions.hugeIopteCut 'split' the IOMMU splits it first (one counted
  // split, RFC-J6); by default ('unmap-whole', VT-d) the whole IOPTE goes (one counted unmap).
  function convert(contract: Contract, offset: number, size: number, hugeIopteCut: 'split' | 'unmap-whole' = 'split') {
    const host = createHost({ backend: tdx, contract, hugeIopteCut });
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: 4 * MiB, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    vm.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 1 << 30,
      memorySize: 4 * MiB,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    const ioas = host.openIommufd().createIoas();
    ioas.mapFile({
      fd: gmem,
      start: 0,
      length: 4 * MiB,
      iova: 1 << 30,
      flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
    });
    ioas.attachDevice('nic');
    gmem.setMemoryAttributes2({ offset, size, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    return host.pipelineCounters()[hugeIopteCut === 'split' ? IOPTE_SPLIT_STEP : IOPTE_UNMAP_WHOLE_STEP] ?? 0;
  }

  it.each(['gmem-registry', 'mirror'] as const)(
    '%s: 64 KiB inside one 2 MiB IOPTE is one split (or one whole unmap, the default); 2 MiB-aligned ranges cut nothing',
    (contract) => {
      expect(convert(contract, MiB, 64 * 1024)).toBe(1);
      expect(convert(contract, MiB, 64 * 1024, 'unmap-whole')).toBe(1);
      expect(convert(contract, 0, 2 * MiB, 'unmap-whole')).toBe(0);
      expect(convert(contract, 2 * MiB - 4096, 8192)).toBe(2);
      expect(convert(contract, 0, 2 * MiB)).toBe(0);
    },
  );

  it('vmm-driven: nothing in the kernel touches the IOPTEs, so nothing splits', () => {
    expect(convert('vmm-driven', MiB, 64 * 1024)).toBe(0);
  });
});

describe("a memslot's deletion over TD private pages ([X-a]: every zapped private leaf leaves the S-EPT)", () => {
  it('the pages bound there are removed at the deletion (BLOCK, TRACK, PAGE.REMOVE, WBINVD), not at the later punch', () => {
    const { host, vm, gmem } = createScenario(tdx, {
      map: false,
      vcpus: 2,
      private: [{ offset: 0, length: 2 * P, faulted: true }],
    });
    const before = host.pipelineCounters();
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0 });
    const after = host.pipelineCounters();
    for (const step of [TDX_STEPS.block, TDX_STEPS.track, TDX_STEPS.remove, TDX_STEPS.wbinvd])
      expect(after[step]! - (before[step] ?? 0), step).toBe(2);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * P);
    expect(host.pipelineCounters()[TDX_STEPS.remove]).toBe(after[TDX_STEPS.remove]);
    expect(host.checkInvariants()).toEqual([]);
  });
});
