import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GmemError, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, PAGE_SIZE, type ArchBackend, type Contract } from '@gmemlab/core';
import { describeBackendConformance, createScenario } from '@gmemlab/core/testing';
import { describe, expect, it } from 'vitest';
import defaultExport, { PKVM_STEPS, pkvm } from './index.js';

const P = PAGE_SIZE;
const SIZE = 16 * P;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const upstream = pkvm({ variant: 'upstream' });
const refusing = pkvm({ unshare: 'refuse-dma-mapped' });

describeBackendConformance(pkvm, { describe, it });
describeBackendConformance(upstream, { describe, it });
describeBackendConformance(refusing, { describe, it });

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
  it('the ready instance is Android pKVM and the default export; upstream and the readings are variants', () => {
    expect(defaultExport).toBe(pkvm);
    expect(pkvm.id).toBe('pkvm');
    expect(pkvm.hypervisorRefusal).toBeUndefined();
    expect(upstream.id).toBe('pkvm:upstream');
    expect(refusing.id).toBe('pkvm:refuse-dma-mapped');
    expect(typeof refusing.hypervisorRefusal).toBe('function');
    expect(pkvm({ hostAbort: 'hyp-bug' }).id).toBe('pkvm:hyp-bug');
    expect(() => pkvm({ variant: 'x' as never })).toThrow(/unknown variant/);
    expect(() => pkvm({ unshare: 'sometimes' as never })).toThrow(/unshare/);
  });
});

describe('Android pKVM row of the table', () => {
  for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
    it(`[T1a, P-c] the seed: conversions under DMA are tolerated; the hypervisor takes a page the guest accepts out of the host's IOMMU view, and the device's access is blocked and logged (${contract})`, () => {
      const { host, vm, device, iova, convert } = setup(pkvm, contract);
      convert(0, 8 * P, 'private');
      expect(device.dmaWrite(iova, new Uint8Array([1])).ok).toBe(true);
      vm.guestRead(4 * P, 1);
      expect(device.dmaWrite(iova, new Uint8Array([1]))).toMatchObject({ ok: false, fault: 'iommu-fault', fatal: false, logged: true });
      expect(host.crashed).toBeUndefined();
      expect(host.checkInvariants()).toEqual([]);
    });
  }

  it('[P-c, 6b] every owner change updates the host identity domain: donation at the fault, the share back, the reclaim', () => {
    const { host, vm, gmem, ioas, convert } = setup(pkvm, 'gmem-registry');
    ioas.unmapAll();
    convert(0, 4 * P, 'private');
    for (let page = 0; page < 3; page++) vm.guestRead(page * P, 1);
    expect(host.pipelineCounters()).toEqual({ [PKVM_STEPS.donate]: 3, [PKVM_STEPS.idmap]: 3, [PKVM_STEPS.iotlb]: 3 });
    convert(0, P, 'shared');
    expect(host.pipelineCounters()[PKVM_STEPS.share]).toBe(1);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * P);
    expect(host.pipelineCounters()).toEqual({
      [PKVM_STEPS.donate]: 3,
      [PKVM_STEPS.share]: 1,
      [PKVM_STEPS.unmap]: 2,
      [PKVM_STEPS.tlbi]: 2,
      [PKVM_STEPS.poison]: 2,
      [PKVM_STEPS.reclaim]: 2,
      [PKVM_STEPS.idmap]: 6,
      [PKVM_STEPS.iotlb]: 6,
    });
  });

  it('[P-a, P-g] a host-kernel access to a page the guest owns is an abort injected by the hypervisor: the kernel oopses', () => {
    const { host, vm, gmem, convert } = setup(pkvm, 'gmem-registry');
    convert(0, P, 'private');
    expect(gmem.directMapWrite(0, new Uint8Array([1])).ok).toBe(true);
    vm.guestRead(0, 1);
    expect(gmem.directMapWrite(0, new Uint8Array([1]))).toMatchObject({ ok: false, fault: 'contained', fatal: true, logged: true });
    expect(host.crashed?.mechanism).toMatch(/host_inject_abort/);
  });

  it("[P-b] the 'hyp-bug' reading: the older hypervisor's BUG_ON panics the machine", () => {
    const { host, vm, gmem, convert } = setup(pkvm({ hostAbort: 'hyp-bug' }), 'gmem-registry');
    convert(0, P, 'private');
    vm.guestRead(0, 1);
    expect(gmem.directMapRead(0, 1)).toMatchObject({ ok: false, fatal: true });
    expect(host.crashed?.mechanism).toMatch(/BUG_ON/);
  });

  it('prior-art §7 (Fuad Tabba): conversion preserves contents both ways; teardown scrubs (hyp_poison_page)', () => {
    const { vm, gmem, convert } = setup(pkvm, 'gmem-registry');
    convert(0, P, 'private');
    vm.guestWrite(0, new Uint8Array([0x31]));
    convert(0, P, 'shared');
    expect(gmem.mmap({ length: P, shared: true }).read(0, 1)).toEqual({ ok: true, data: new Uint8Array([0x31]) });
  });
});

describe("the 'refuse-dma-mapped' reading (pKVM-IA#92)", () => {
  for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
    it(`the hypervisor refuses to take back a page some IOPTE maps, per page: EAGAIN + errorOffset, nothing changed (${contract})`, () => {
      const { host, convert, ioas } = setup(refusing, contract);
      convert(0, 4 * P, 'private');
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
});

describe('upstream pKVM variant (no IOMMU isolation)', () => {
  for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
    it(`[P-a] nothing isolates DMA: the area maps the protected page, the device reads it, and the invariants say 'unsafe-iopte' (${contract})`, () => {
      const { host, vm, device, iova, convert } = setup(upstream, contract);
      convert(4 * P, P, 'private');
      vm.guestWrite(4 * P, new Uint8Array([0x5e]));
      expect(device.dmaRead(iova, 1)).toEqual({ ok: true, data: new Uint8Array([0x5e]) });
      expect(host.checkInvariants().map((v) => v.kind)).toEqual(['unsafe-iopte']);
    });
  }

  it('has no host IOMMU steps in its pipelines', () => {
    const { host, vm, gmem, ioas, convert } = setup(upstream, 'gmem-registry');
    ioas.unmapAll();
    convert(0, P, 'private');
    vm.guestRead(0, 1);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    expect(host.pipelineCounters()).toEqual({
      [PKVM_STEPS.donate]: 1,
      [PKVM_STEPS.unmap]: 1,
      [PKVM_STEPS.tlbi]: 1,
      [PKVM_STEPS.poison]: 1,
      [PKVM_STEPS.reclaim]: 1,
    });
  });
});
