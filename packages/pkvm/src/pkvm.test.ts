import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GmemError, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, PAGE_SIZE, type ArchBackend, type Contract } from '@gmemlab/core';
import { describeBackendConformance, createScenario } from '@gmemlab/core/testing';
import { describe, expect, it } from 'vitest';
import defaultExport, { PKVM_STEPS, pkvm } from './index.js';

const P = PAGE_SIZE;
const SIZE = 16 * P;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const upstream = pkvm({ variant: 'upstream' });

describeBackendConformance(pkvm, { describe, it });
describeBackendConformance(upstream, { describe, it });

function setup(backend: ArchBackend, contract: Contract) {
  const scenario = createScenario(backend, { contract, map: { start: 4 * P, length: 4 * P } });
  return { ...scenario, device: scenario.device! };
}

function refused(fn: () => void): GmemError {
  try {
    fn();
  } catch (error) {
    if (GmemError.isInstance(error)) return error;
    throw error;
  }
  throw new Error('expected the conversion to be refused');
}

describe('@gmemlab/pkvm exports', () => {
  it('the ready instance is Android pKVM and the default export; upstream is a variant', () => {
    expect(defaultExport).toBe(pkvm);
    expect(pkvm.id).toBe('pkvm');
    expect(typeof pkvm.hypervisorRefusal).toBe('function');
    expect(upstream.id).toBe('pkvm:upstream');
    expect(upstream.hypervisorRefusal).toBeUndefined();
    expect(() => pkvm({ variant: 'x' as never })).toThrow(/unknown variant/);
  });
});

describe('Android pKVM row of the table', () => {
  for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
    it(`[P-d, P-e] the hypervisor refuses to donate a DMA-mapped page: EAGAIN + errorOffset, nothing changed (${contract})`, () => {
      const { host, convert, ioas } = setup(pkvm, contract);
      const before = host.snapshot();
      const error = refused(() => convert(0, 8 * P, 'private'));
      expect(error.errno).toBe('EAGAIN');
      expect(error.errorOffset).toBe(4 * P);
      expect(host.snapshot()).toEqual(before);
      ioas.unmapAll();
      convert(0, 8 * P, 'private');
      expect(host.checkInvariants()).toEqual([]);
    });
  }

  it('to-shared is tolerated, and a page outside every DMA mapping converts freely', () => {
    const { host, convert } = setup(pkvm, 'gmem-registry');
    convert(0, 4 * P, 'private');
    convert(0, 4 * P, 'shared');
    expect(host.checkInvariants()).toEqual([]);
  });

  it('[P-c] a device reaching a donated page through the host identity domain gets an IOMMU fault', () => {
    expect(pkvm.deviceAccess({ attribute: 'private', write: true, vmType: 'coco' })).toMatchObject({ allow: false, fault: 'iommu-fault', fatal: false });
  });

  it('[P-a, P-g] a host-kernel access to a protected page is a stage-2 abort injected by the hypervisor', () => {
    const { gmem, convert } = setup(pkvm, 'gmem-registry');
    convert(0, P, 'private');
    expect(gmem.directMapWrite(0, new Uint8Array([1]))).toMatchObject({ ok: false, fault: 'contained', fatal: false, logged: true });
  });

  it('prior-art §7 (Fuad Tabba): conversion preserves contents both ways', () => {
    const { vm, gmem, convert } = setup(pkvm, 'gmem-registry');
    convert(0, P, 'private');
    vm.guestWrite(0, new Uint8Array([0x31]));
    convert(0, P, 'shared');
    expect(gmem.mmap({ length: P, shared: true }).read(0, 1)).toEqual({ ok: true, data: new Uint8Array([0x31]) });
  });

  it('[P-b, P-c, P-d] teardown: stage-2 unmap + TLBI, hyp_poison_page, reclaim, then the host IOMMU domain', () => {
    const { host, gmem, ioas, convert } = setup(pkvm, 'gmem-registry');
    ioas.unmapAll();
    convert(0, 3 * P, 'private');
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * P);
    expect(host.pipelineCounters()).toEqual({
      [PKVM_STEPS.unmap]: 3,
      [PKVM_STEPS.tlbi]: 3,
      [PKVM_STEPS.poison]: 3,
      [PKVM_STEPS.reclaim]: 3,
      [PKVM_STEPS.idmap]: 1,
      [PKVM_STEPS.iotlb]: 1,
    });
  });
});

describe('upstream pKVM variant (no IOMMU isolation)', () => {
  it("[pKVM-IA#92] 'gmem-registry': the registry refuses to-private of a DMA-mapped page, since no hypervisor will", () => {
    const { host, convert } = setup(upstream, 'gmem-registry');
    const before = host.snapshot();
    expect(refused(() => convert(4 * P, P, 'private')).errorOffset).toBe(4 * P);
    expect(host.snapshot()).toEqual(before);
  });

  it("[P-a] 'vmm-driven': nothing refuses; the device reads the protected page and the IOPTE is 'unsafe-iopte'", () => {
    const { host, vm, device, iova, convert } = setup(upstream, 'vmm-driven');
    convert(4 * P, P, 'private');
    vm.guestWrite(4 * P, new Uint8Array([0x5e]));
    expect(device.dmaRead(iova, 1)).toEqual({ ok: true, data: new Uint8Array([0x5e]) });
    expect(host.checkInvariants().map((v) => v.kind)).toEqual(['unsafe-iopte']);
  });

  it('has no host IOMMU steps in its removal pipeline', () => {
    const { host, gmem, ioas, convert } = setup(upstream, 'gmem-registry');
    ioas.unmapAll();
    convert(0, P, 'private');
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    expect(Object.keys(host.pipelineCounters())).not.toContain(PKVM_STEPS.idmap);
  });
});
