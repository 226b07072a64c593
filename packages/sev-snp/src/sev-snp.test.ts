import {
  CONTRACTS,
  createHost,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  IOPTE_SPLIT_STEP,
  KVM_MEM_GUEST_MEMFD,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  PAGE_SIZE,
  PMD_SIZE,
  type ArchBackend,
  type Contract,
} from '@gmemlab/core';
import { describeFactoryConformance, createScenario } from '@gmemlab/core/testing';
import { describe, expect, it } from 'vitest';
import defaultExport, { SEV_SNP_STEPS, sevSnp } from './index.js';

const P = PAGE_SIZE;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

// The ready backend and its published variant 'tio'.
describeFactoryConformance(sevSnp, { describe, it });

function setup(backend: ArchBackend, contract: Contract, size = 16 * P) {
  return createScenario(backend, { contract, size, map: false, attach: false });
}

describe('@gmemlab/sev-snp exports', () => {
  it('the ready instance is the default export, callable for variants', () => {
    expect(defaultExport).toBe(sevSnp);
    expect(sevSnp.id).toBe('sev-snp');
    expect(sevSnp({ variant: 'tio' }).id).toBe('sev-snp:tio');
    expect(() => sevSnp({ variant: 'x' as never })).toThrow(/unknown variant/);
  });
});

describe('rules (backend.rules)', () => {
  const tio = sevSnp(sevSnp.variants.tio);
  const rulesOf = (backend: ArchBackend, topic: string) =>
    (backend.rules ?? []).filter((rule) => rule.topic === topic).map((rule) => rule.rule);

  it("[T2, S-g] the conversion policy: 'tolerate' for plain SNP, 'split' with TIO; only TIO has a variant rule", () => {
    expect(rulesOf(sevSnp, 'conversion policy')).toEqual([expect.stringMatching(/^'tolerate' both ways/)]);
    expect(rulesOf(tio, 'conversion policy')).toEqual([expect.stringMatching(/^'split' when/)]);
    expect(rulesOf(sevSnp, 'variant')).toEqual([]);
    expect(rulesOf(tio, 'variant')).toEqual([expect.stringMatching(/SEV-TIO/)]);
  });

  it('[S-e, S-b] the host-access rules say what the hook does: writes oops, reads are allowed, the read marked [U]', () => {
    const access = (write: boolean) =>
      sevSnp.hostKernelAccess({ attribute: 'private', hardware: 'private', write, vmType: 'coco', stale: false });
    expect(access(true)).toMatchObject({ allow: false, fatal: true });
    expect(access(false)).toEqual({ allow: true });
    const [write, read] = rulesOf(sevSnp, 'host access to private');
    expect(write).toMatch(/write .* RMP #PF: the kernel oopses/);
    expect(read).toMatch(/read .* is allowed/);
    expect(read).toMatch(/\[U\]/);
  });
});

describe('SEV-SNP row of the table', () => {
  for (const contract of CONTRACTS) {
    it(`[T1d, S-c] to-private under DMA is tolerated; a stale DMA is blocked by the IOMMU RMP check and logged (${contract})`, () => {
      const { host, vm, gmem, ioas, convert } = setup(sevSnp, contract);
      const iova = ioas.mapFile({ fd: gmem, start: 0, length: 16 * P, flags: RW });
      const device = ioas.attachDevice();
      convert(0, 4 * P, 'private');
      // Not yet RMP-assigned (the guest has not faulted it in): still hypervisor-owned, DMA reaches it.
      expect(device.dmaWrite(iova, new Uint8Array([1])).ok).toBe(true);
      expect(vm.guestRead(0, 1, { intent: 'private' }).ok).toBe(true);
      expect(device.dmaWrite(iova, new Uint8Array([1]))).toMatchObject({
        ok: false,
        fault: 'contained',
        fatal: false,
        logged: true,
      });
      expect(host.crashed).toBeUndefined();
      expect(host.checkInvariants()).toEqual([]);
      convert(0, 4 * P, 'shared');
      expect(device.dmaWrite(iova, new Uint8Array([1])).ok).toBe(true);
    });
  }

  it('[S-e] a host-kernel write to a private page is an RMP #PF oops; a read is allowed ([U], see README)', () => {
    const { host, vm, gmem, convert } = setup(sevSnp, 'gmem-registry');
    convert(0, P, 'private');
    vm.guestRead(0, 1, { intent: 'private' });
    expect(gmem.directMapRead(0, 8).ok).toBe(true);
    expect(gmem.directMapWrite(0, new Uint8Array([1]))).toMatchObject({
      ok: false,
      fault: 'contained',
      fatal: true,
      logged: true,
    });
    expect(host.crashed?.mechanism).toMatch(/RMP violation/);
  });

  it('[T1d] IOMMU_IOAS_MAP_FILE maps private pages too; the RMP guards them', () => {
    const host = createHost({ backend: sevSnp });
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: 4 * P });
    vm.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: 4 * P,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    const ioas = host.openIommufd().createIoas();
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, flags: RW });
    vm.guestRead(0, 1);
    expect(ioas.attachDevice().dmaRead(iova, 8)).toMatchObject({ ok: false, fault: 'contained' });
    expect(host.checkInvariants()).toEqual([]);
  });

  it('[S-a] contents survive a round trip: RMPUPDATE touches only the RMP entry', () => {
    const { gmem, convert } = setup(sevSnp, 'gmem-registry');
    const mapping = gmem.mmap({ length: P, shared: true });
    mapping.write(0, new Uint8Array([0x42]));
    convert(0, P, 'private');
    convert(0, P, 'shared');
    expect(mapping.read(0, 1)).toEqual({ ok: true, data: new Uint8Array([0x42]) });
  });

  it('[S-a, 6b] a private fault assigns the page with a 4K RMPUPDATE before the retry check; freeing 2 MiB the guest used is 512 4K RMPUPDATEs, no PSMASH', () => {
    const { host, vm, gmem, convert } = setup(sevSnp, 'gmem-registry', 2 * PMD_SIZE);
    convert(0, PMD_SIZE, 'private');
    for (let page = 0; page < PMD_SIZE / P; page++) vm.guestRead(page * P, 1);
    expect(host.pipelineCounters()).toEqual({ [SEV_SNP_STEPS.makePrivate]: 512, [SEV_SNP_STEPS.pvalidate]: 512 });
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, PMD_SIZE);
    expect(host.pipelineCounters()).toEqual({
      [SEV_SNP_STEPS.makePrivate]: 512,
      [SEV_SNP_STEPS.pvalidate]: 512,
      [SEV_SNP_STEPS.rmpupdate4K]: 512,
      [SEV_SNP_STEPS.clflush]: 512,
    });
  });

  it('[S-a] pages never assigned are skipped: 2 MiB converted and punched without private faults costs nothing', () => {
    const { host, gmem, convert } = setup(sevSnp, 'gmem-registry', 2 * PMD_SIZE);
    convert(0, PMD_SIZE, 'private');
    convert(0, PMD_SIZE, 'shared');
    convert(0, PMD_SIZE, 'private');
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, PMD_SIZE);
    expect(host.pipelineCounters()).toEqual({});
  });

  it('[S-a] the assignment happens at resolve: a fault whose install is retried has still made the page guest-owned', () => {
    const { host, vm, gmem, convert } = setup(sevSnp, 'gmem-registry');
    convert(0, P, 'private');
    const fault = vm.resolveGuestFault(0, { intent: 'private' });
    if ('ok' in fault) throw new Error('the fault should resolve');
    expect(host.pipelineCounters()).toEqual({ [SEV_SNP_STEPS.makePrivate]: 1, [SEV_SNP_STEPS.pvalidate]: 1 });
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    expect(fault.install()).toMatchObject({ ok: false, fault: 'retry' });
    expect(host.pipelineCounters()[SEV_SNP_STEPS.rmpupdate4K]).toBe(1);
    expect(host.checkInvariants()).toEqual([]);
  });
});

describe('SEV-TIO variant: an IOPTE may not be larger than the RMP entry under it', () => {
  const tio = sevSnp({ variant: 'tio' });

  it('[T2, S-j] a partial conversion inside a 2M IOPTE splits that IOPTE into 4K IOPTEs (one counted step) and keeps the mapping', () => {
    const { host, gmem, ioas, convert } = setup(tio, 'gmem-registry', 2 * PMD_SIZE);
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: 2 * PMD_SIZE, flags: RW });
    const device = ioas.attachDevice();
    convert(PMD_SIZE + 4 * P, 2 * P, 'private');
    expect(host.pipelineCounters()).toEqual({ [IOPTE_SPLIT_STEP]: 1 });
    const area = (host.snapshot() as { ioases: Array<{ areas: Array<{ split4K: unknown }> }> }).ioases[0]!.areas[0]!;
    expect(area.split4K).toEqual([[512, 1024, true]]);
    expect(device.dmaWrite(iova + PMD_SIZE, new Uint8Array([1])).ok).toBe(true);
    // A second cut inside the same (already 4K) block splits nothing more.
    convert(PMD_SIZE + 8 * P, P, 'private');
    expect(host.pipelineCounters()).toEqual({ [IOPTE_SPLIT_STEP]: 1 });
    expect(host.checkInvariants()).toEqual([]);
  });

  it('[T2] an area without IOPTEs yet only remembers the 4K layout: no step is counted', () => {
    const { host, gmem, ioas, convert } = setup(tio, 'gmem-registry', 2 * PMD_SIZE);
    ioas.mapFile({ fd: gmem, start: 0, length: 2 * PMD_SIZE, flags: RW });
    convert(4 * P, P, 'private');
    expect(host.pipelineCounters()).toEqual({});
    expect(
      (host.snapshot() as { ioases: Array<{ areas: Array<{ split4K: unknown }> }> }).ioases[0]!.areas[0]!.split4K,
    ).toEqual([[0, 512, true]]);
  });

  it('[T2] a conversion of whole 2M IOPTEs is tolerated', () => {
    const { host, gmem, ioas, convert } = setup(tio, 'gmem-registry', 2 * PMD_SIZE);
    ioas.mapFile({ fd: gmem, start: 0, length: 2 * PMD_SIZE, flags: RW });
    ioas.attachDevice();
    convert(PMD_SIZE, PMD_SIZE, 'private');
    expect(host.checkInvariants()).toEqual([]);
  });

  it('[S-d] with 4K IOPTEs (amd_iommu=nohugepages) any conversion is tolerated', () => {
    const { gmem, ioas, convert } = setup(tio, 'gmem-registry', 2 * PMD_SIZE);
    ioas.mapFile({ fd: gmem, start: 4 * P, length: 8 * P, flags: RW });
    ioas.attachDevice();
    expect(() => convert(5 * P, P, 'private')).not.toThrow();
  });

  it("SEV-SNP with huge IOMMU pages tolerates the same partial conversion (the mismatch is TIO's problem, see README)", () => {
    const { gmem, ioas, convert } = setup(sevSnp({ iommuHugePages: true }), 'gmem-registry', 2 * PMD_SIZE);
    ioas.mapFile({ fd: gmem, start: 0, length: 2 * PMD_SIZE, flags: RW });
    ioas.attachDevice();
    expect(() => convert(PMD_SIZE + 4 * P, 2 * P, 'private')).not.toThrow();
  });
});

describe('IOPTE sizes on SEV-SNP hosts: 4K by default (amd_iommu=nohugepages, [T2]; the v1 page table, [S-d])', () => {
  it('plain SEV-SNP maps a 2M-aligned area with 4K IOPTEs, so a partial conversion cuts no huge IOPTE', () => {
    expect(sevSnp.iommuPageSizes).toEqual([P]);
    const { host, gmem, ioas, convert } = setup(sevSnp, 'gmem-registry', 2 * PMD_SIZE);
    ioas.mapFile({ fd: gmem, start: 0, length: 2 * PMD_SIZE, flags: RW });
    ioas.attachDevice();
    convert(PMD_SIZE + 4 * P, 2 * P, 'private');
    expect(host.pipelineCounters()[IOPTE_SPLIT_STEP]).toBeUndefined();
    const rules = sevSnp.rules!.filter((r) => r.topic === 'page sizes').map((r) => r.rule);
    expect(rules).toContainEqual(expect.stringMatching(/IOPTEs are 4K/));
  });

  it("'iommu-hugepages' and SEV-TIO use the driver's huge IOPTEs; TIO with iommuHugePages: false is refused", () => {
    const huge = sevSnp({ iommuHugePages: true });
    expect(huge.id).toBe('sev-snp:iommu-hugepages');
    expect(huge.iommuPageSizes).toBeUndefined();
    expect(sevSnp({ variant: 'tio' }).iommuPageSizes).toBeUndefined();
    expect(() => sevSnp({ variant: 'tio', iommuHugePages: false })).toThrow(TypeError);
    expect(huge.rules!.filter((r) => r.topic === 'variant').map((r) => r.rule)).toEqual([
      expect.stringMatching(/nohugepages/),
    ]);
  });
});
