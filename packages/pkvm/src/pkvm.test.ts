import {
  CONTRACTS,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GmemError,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  PAGE_SIZE,
  type ArchBackend,
  type Contract,
} from '@gmemlab/core';
import { describeFactoryConformance, createScenario } from '@gmemlab/core/testing';
import { describe, expect, it } from 'vitest';
import defaultExport, { PKVM_STEPS, pkvm } from './index.js';

const P = PAGE_SIZE;
const SIZE = 16 * P;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const upstream = pkvm({ variant: 'upstream' });
const refusing = pkvm({ unshare: 'refuse-dma-mapped' });

// The ready backend and every published variant ('upstream', 'refuse-dma-mapped', 'hyp-bug').
describeFactoryConformance(pkvm, { describe, it });

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

describe('rules (backend.rules)', () => {
  const rulesOf = (backend: ArchBackend, topic: string) =>
    (backend.rules ?? []).filter((rule) => rule.topic === topic).map((rule) => rule.rule);

  it('[P-c] vs [P-a]: a device reaching a guest-owned page is blocked on Android, allowed upstream', () => {
    expect(rulesOf(pkvm, 'device access to private')[0]).toMatch(/faults in the hypervisor's IOMMU/);
    expect(rulesOf(upstream, 'device access to private')[0]).toMatch(/is allowed: nothing isolates DMA/);
    expect(rulesOf(upstream, 'IOPTEs over private').join(' ')).toMatch(/unsafe-iopte/);
    expect(rulesOf(pkvm, 'private entry')[0]).toMatch(/identity-domain update/);
    expect(rulesOf(upstream, 'private entry')[0]).not.toMatch(/identity-domain/);
  });

  it('pKVM-IA#92: only the refusing reading states a refusal, and says it is a proposal', () => {
    expect(rulesOf(pkvm, 'hypervisor refusal')[0]).toMatch(/^None/);
    const refusal = refusing.rules?.find((rule) => rule.topic === 'hypervisor refusal');
    expect(refusal?.rule).toMatch(/refuses any page some IOPTE maps/);
    expect(refusal?.rule).toMatch(/proposal/);
    expect(refusal?.source).toBe('pKVM-IA#92 (prior-art §7)');
  });

  it("[P-g] vs [P-b]: a host-kernel access oopses by default; 'hyp-bug' is the hypervisor's BUG_ON", () => {
    expect(rulesOf(pkvm, 'host access to private')[0]).toMatch(/kernel oopses/);
    expect(rulesOf(pkvm(pkvm.variants['hyp-bug']!), 'host access to private')[0]).toMatch(/BUG_ON/);
  });
});

describe('Android pKVM row of the table', () => {
  for (const contract of CONTRACTS) {
    it(`[T1a, P-c] the seed: conversions under DMA are tolerated, and a page no IOPTE maps is donated at the guest's fault (${contract})`, () => {
      const { host, vm, device, iova, convert } = setup(pkvm, contract);
      convert(0, 8 * P, 'private');
      expect(device.dmaWrite(iova, new Uint8Array([1])).ok).toBe(true);
      expect(vm.guestRead(0, 1).ok).toBe(true);
      expect(host.pipelineCounters()).toEqual({ [PKVM_STEPS.donate]: 1, [PKVM_STEPS.idmap]: 1, [PKVM_STEPS.iotlb]: 1 });
      expect(device.dmaWrite(iova, new Uint8Array([1])).ok).toBe(true);
      expect(host.crashed).toBeUndefined();
      expect(host.checkInvariants()).toEqual([]);
    });

    it(`[P-d, P-e, P-h] the guest's private fault on a page a live IOPTE maps fails the donation: KVM_RUN returns EINVAL, nothing changes, and the fault succeeds once the VMM unmaps the IOPTE (${contract})`, () => {
      const { host, vm, device, iova, ioas, convert } = setup(pkvm, contract);
      convert(0, 8 * P, 'private');
      const refused = vm.guestRead(4 * P, 1);
      expect(refused).toMatchObject({ ok: false, fault: 'einval', fatal: false, address: 4 * P });
      expect(host.pipelineCounters()).toEqual({});
      expect(host.pageMaps()[0]!.hardware).toEqual([]);
      expect(host.pageMaps()[0]!.stage2.filter((run) => run[2].side === 'private')).toEqual([]);
      // The page is still the host's: the device reaches it, and nothing is unsafe.
      expect(device.dmaWrite(iova, new Uint8Array([1])).ok).toBe(true);
      expect(host.crashed).toBeUndefined();
      // The VMM unmaps the IOPTE and runs the vCPU again: the donation goes through.
      ioas.unmapAll();
      expect(vm.guestRead(4 * P, 1).ok).toBe(true);
      expect(host.pipelineCounters()[PKVM_STEPS.donate]).toBe(1);
      expect(host.checkInvariants()).toEqual([]);
    });
  }

  it('[P-d, P-h] per-page donation and IOTLB-sync counts are upper bounds on Android (the sglist path batches them); upstream counts are exact', () => {
    const { host, vm, ioas, convert } = setup(pkvm, 'gmem-registry');
    ioas.unmapAll();
    convert(0, P, 'private');
    vm.guestRead(0, 1);
    expect(host.pipelineBounds()).toEqual({ [PKVM_STEPS.donate]: 'upper', [PKVM_STEPS.iotlb]: 'upper' });
    const up = setup(upstream, 'gmem-registry');
    up.ioas.unmapAll();
    up.convert(0, P, 'private');
    up.vm.guestRead(0, 1);
    expect(up.host.pipelineBounds()).toEqual({});
  });

  it('[P-h] only Android refuses: upstream pKVM has no DMA refcount and donates the page', () => {
    expect(upstream.privateEntryRefusal).toBeUndefined();
    expect(
      pkvm.privateEntryRefusal?.({ offset: 0, length: P, dmaMapped: false, contract: 'gmem-registry' }),
    ).toBeUndefined();
  });

  it('[P-c, 6b] every owner change updates the host identity domain: donation at the fault, the share back, the reclaim', () => {
    const { host, vm, gmem, ioas, convert } = setup(pkvm, 'gmem-registry');
    ioas.unmapAll();
    convert(0, 4 * P, 'private');
    for (let page = 0; page < 3; page++) vm.guestRead(page * P, 1);
    expect(host.pipelineCounters()).toEqual({ [PKVM_STEPS.donate]: 3, [PKVM_STEPS.idmap]: 3, [PKVM_STEPS.iotlb]: 3 });
    convert(0, P, 'shared');
    expect(host.pipelineCounters()[PKVM_STEPS.share]).toBe(1);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * P);
    // Two pages the guest owns and one it shared back (PKVM_PAGE_SHARED_OWNED) are reclaimed; only the owned
    // ones are poisoned.
    expect(host.pipelineCounters()).toEqual({
      [PKVM_STEPS.donate]: 3,
      [PKVM_STEPS.share]: 1,
      [PKVM_STEPS.unmap]: 3,
      [PKVM_STEPS.tlbi]: 3,
      [PKVM_STEPS.poison]: 2,
      [PKVM_STEPS.reclaim]: 3,
      [PKVM_STEPS.idmap]: 7,
      [PKVM_STEPS.iotlb]: 7,
    });
  });

  it('[P-d] truncating a page the guest shared back takes __pkvm_host_reclaim_page (stage-2 unmap, owner back to the host) and no hyp_poison_page', () => {
    const { host, vm, gmem, ioas, convert } = setup(pkvm, 'gmem-registry');
    ioas.unmapAll();
    convert(0, P, 'private');
    vm.guestWrite(0, new Uint8Array([0x42]));
    convert(0, P, 'shared');
    const before = host.pipelineCounters();
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    const after = host.pipelineCounters();
    const delta = Object.fromEntries(
      Object.entries(after)
        .map(([step, count]) => [step, count - (before[step] ?? 0)])
        .filter(([, count]) => count !== 0),
    );
    expect(delta).toEqual({
      [PKVM_STEPS.unmap]: 1,
      [PKVM_STEPS.tlbi]: 1,
      [PKVM_STEPS.reclaim]: 1,
      [PKVM_STEPS.idmap]: 1,
      [PKVM_STEPS.iotlb]: 1,
    });
    // Freed once: a second punch of the same hole costs nothing.
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    expect(host.pipelineCounters()).toEqual(after);
  });

  it('[P-d] the host cannot IOMMU-map a page the guest shared back (only borrowed): MAP_FILE fills no IOPTE for it on Android, upstream maps it', () => {
    for (const [backend, maps] of [
      [pkvm, false],
      [upstream, true],
    ] as const) {
      const { vm, gmem, ioas, device, convert } = setup(backend, 'gmem-registry');
      ioas.unmapAll();
      convert(0, 2 * P, 'private');
      vm.guestRead(0, 1);
      convert(0, 2 * P, 'shared');
      // Page 0 was owned and shared back; page 1 was never faulted in, so it is an ordinary host page.
      const iova = 1 << 30;
      ioas.mapFile({ fd: gmem, start: 0, length: 2 * P, iova, flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA });
      expect(device.dmaWrite(iova, new Uint8Array([1])).ok, backend.id).toBe(maps);
      if (!maps)
        expect(device.dmaWrite(iova, new Uint8Array([1]))).toMatchObject({ fault: 'iommu-fault', fatal: false });
      expect(device.dmaWrite(iova + P, new Uint8Array([1])).ok, backend.id).toBe(true);
    }
  });

  it('[P-d] a page shared back and faulted in as private again is owned, not shared back: truncation poisons it', () => {
    const { host, vm, gmem, ioas, convert } = setup(pkvm, 'gmem-registry');
    ioas.unmapAll();
    convert(0, P, 'private');
    vm.guestRead(0, 1);
    convert(0, P, 'shared');
    convert(0, P, 'private');
    vm.guestRead(0, 1);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, P);
    expect(host.pipelineCounters()).toMatchObject({ [PKVM_STEPS.poison]: 1, [PKVM_STEPS.reclaim]: 1 });
  });

  it('[P-a, P-g] a host-kernel access to a page the guest owns is an abort injected by the hypervisor: the kernel oopses', () => {
    const { host, vm, gmem, convert } = setup(pkvm, 'gmem-registry');
    convert(0, P, 'private');
    expect(gmem.directMapWrite(0, new Uint8Array([1])).ok).toBe(true);
    vm.guestRead(0, 1);
    expect(gmem.directMapWrite(0, new Uint8Array([1]))).toMatchObject({
      ok: false,
      fault: 'contained',
      fatal: true,
      logged: true,
    });
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
  for (const contract of CONTRACTS) {
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
  for (const contract of CONTRACTS) {
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
