import { createHost, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GmemError, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, PAGE_SIZE, PMD_SIZE, type ArchBackend, type Contract } from '@gmemlab/core';
import { describeBackendConformance, createScenario } from '@gmemlab/core/testing';
import { describe, expect, it } from 'vitest';
import defaultExport, { SEV_SNP_STEPS, sevSnp } from './index.js';

const P = PAGE_SIZE;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

describeBackendConformance(sevSnp, { describe, it });
describeBackendConformance(sevSnp({ variant: 'tio' }), { describe, it });

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

describe('SEV-SNP row of the table', () => {
  for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
    it(`[T1d, S-c] to-private under DMA is tolerated; a stale DMA is blocked by the IOMMU RMP check and logged (${contract})`, () => {
      const { host, gmem, ioas, convert } = setup(sevSnp, contract);
      const iova = ioas.mapFile({ fd: gmem, start: 0, length: 16 * P, flags: RW });
      const device = ioas.attachDevice();
      convert(0, 4 * P, 'private');
      expect(device.dmaWrite(iova, new Uint8Array([1]))).toMatchObject({ ok: false, fault: 'contained', fatal: false, logged: true });
      expect(host.checkInvariants()).toEqual([]);
      convert(0, 4 * P, 'shared');
      expect(device.dmaWrite(iova, new Uint8Array([1])).ok).toBe(true);
    });
  }

  it('[S-e] a host-kernel write to a private page is an RMP #PF oops; a read is allowed ([U], see README)', () => {
    const { gmem, convert } = setup(sevSnp, 'gmem-registry');
    convert(0, P, 'private');
    expect(gmem.directMapWrite(0, new Uint8Array([1]))).toMatchObject({ ok: false, fault: 'contained', fatal: true, logged: true });
    expect(gmem.directMapRead(0, 8).ok).toBe(true);
  });

  it('[T1d] IOMMU_IOAS_MAP_FILE maps private pages too; the RMP guards them', () => {
    const host = createHost({ backend: sevSnp });
    const gmem = host.createVm({ type: 'coco' }).createGuestMemfd({ size: 4 * P });
    const ioas = host.openIommufd().createIoas();
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, flags: RW });
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

  it('[S-a] freeing a whole private 2M block is one 2M RMPUPDATE and one clflush', () => {
    const { host, gmem, convert } = setup(sevSnp, 'gmem-registry', 2 * PMD_SIZE);
    convert(0, PMD_SIZE, 'private');
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, PMD_SIZE);
    expect(host.pipelineCounters()).toEqual({ [SEV_SNP_STEPS.rmpupdate2M]: 1, [SEV_SNP_STEPS.clflush]: 1 });
  });

  it('[S-a] freeing part of a private 2M block needs a PSMASH, then 4K RMPUPDATEs', () => {
    const { host, gmem, convert } = setup(sevSnp, 'gmem-registry', 2 * PMD_SIZE);
    convert(0, PMD_SIZE, 'private');
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 8 * P, 3 * P);
    expect(host.pipelineCounters()).toEqual({ [SEV_SNP_STEPS.psmash]: 1, [SEV_SNP_STEPS.rmpupdate4K]: 3, [SEV_SNP_STEPS.clflush]: 1 });
  });

  it('[S-a] 4K private pages outside a whole private block need no PSMASH', () => {
    const { host, convert } = setup(sevSnp, 'gmem-registry', 2 * PMD_SIZE);
    convert(4 * P, 2 * P, 'private');
    convert(4 * P, 2 * P, 'shared');
    expect(host.pipelineCounters()).toEqual({ [SEV_SNP_STEPS.rmpupdate4K]: 2, [SEV_SNP_STEPS.clflush]: 1 });
  });
});

describe("SEV-TIO variant: an IOPTE may not be larger than the RMP entry under it", () => {
  const tio = sevSnp({ variant: 'tio' });

  it('[T2, S-j] a partial conversion inside a 2M IOPTE is refused with EAGAIN at the overlap; nothing changes', () => {
    const { host, gmem, ioas, convert } = setup(tio, 'gmem-registry', 2 * PMD_SIZE);
    ioas.mapFile({ fd: gmem, start: 0, length: 2 * PMD_SIZE, flags: RW });
    ioas.attachDevice();
    const before = host.snapshot();
    try {
      convert(PMD_SIZE + 4 * P, 2 * P, 'private');
      expect.unreachable('the conversion should be refused');
    } catch (error) {
      expect(GmemError.isInstance(error) && error.errno).toBe('EAGAIN');
      expect((error as GmemError).errorOffset).toBe(PMD_SIZE + 4 * P);
    }
    expect(host.snapshot()).toEqual(before);
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

  it("plain SEV-SNP tolerates the same partial conversion (the mismatch is TIO's problem, see README)", () => {
    const { gmem, ioas, convert } = setup(sevSnp, 'gmem-registry', 2 * PMD_SIZE);
    ioas.mapFile({ fd: gmem, start: 0, length: 2 * PMD_SIZE, flags: RW });
    ioas.attachDevice();
    expect(() => convert(PMD_SIZE + 4 * P, 2 * P, 'private')).not.toThrow();
  });
});
