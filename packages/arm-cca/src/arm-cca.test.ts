import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, PAGE_SIZE, type ArchBackend, type Contract } from '@gmemlab/core';
import { describeBackendConformance, createScenario } from '@gmemlab/core/testing';
import { describe, expect, it } from 'vitest';
import defaultExport, { ARM_CCA_STEPS, armCca } from './index.js';

const P = PAGE_SIZE;
const SIZE = 16 * P;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

describeBackendConformance(armCca, { describe, it });
describeBackendConformance(armCca({ variant: 'da' }), { describe, it });

function setup(backend: ArchBackend, contract: Contract, initShared = true) {
  const scenario = createScenario(backend, { contract, initShared });
  return { ...scenario, device: scenario.device! };
}

describe('@gmemlab/arm-cca exports', () => {
  it('the ready instance is the default export, callable for variants', () => {
    expect(defaultExport).toBe(armCca);
    expect(armCca.id).toBe('arm-cca');
    expect(armCca({ variant: 'da' }).id).toBe('arm-cca:da');
    expect(() => armCca({ variant: 'x' as never })).toThrow(/unknown variant/);
  });
});

describe('Arm CCA row of the table', () => {
  for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
    it(`[T1d, C-c] to-private under DMA is tolerated; a stale DMA is an external abort to the device, not logged (${contract})`, () => {
      const { host, device, iova, convert } = setup(armCca, contract);
      convert(0, 2 * P, 'private');
      expect(device.dmaWrite(iova, new Uint8Array([1]))).toMatchObject({ ok: false, fault: 'contained', fatal: false, logged: false });
      expect(host.checkInvariants()).toEqual([]);
    });
  }

  it('[C-b] a host-kernel access to a Realm granule is a Granule Protection Fault: oops', () => {
    const { gmem, convert } = setup(armCca, 'gmem-registry');
    convert(0, P, 'private');
    for (const result of [gmem.directMapRead(0, 8), gmem.directMapWrite(0, new Uint8Array([1]))]) {
      expect(result).toMatchObject({ ok: false, fault: 'contained', fatal: true, logged: true });
    }
  });

  it('[T1d] IOMMU_IOAS_MAP_FILE maps private pages (the GPC guards them); the da variant maps shared pages only', () => {
    for (const [backend, reaches] of [[armCca, 'contained'], [armCca({ variant: 'da' }), 'iommu-fault']] as const) {
      const { device, iova } = setup(backend, 'gmem-registry', false);
      expect(device.dmaRead(iova, 8)).toMatchObject({ ok: false, fault: reaches });
    }
  });

  it('[C-e2] private -> shared undelegates, and the RMM scrubs the granule', () => {
    const { vm, gmem, convert } = setup(armCca, 'gmem-registry');
    convert(0, P, 'private');
    vm.guestWrite(0, new Uint8Array([0x99]));
    convert(0, P, 'shared');
    expect(gmem.mmap({ length: P, shared: true }).read(0, 1)).toEqual({ ok: true, data: new Uint8Array([0]) });
  });

  it('[C-a, C-d] removal pipeline: RMI_DATA_DESTROY, RMI_GRANULE_UNDELEGATE, GPT update + TLBI, scrub, per granule', () => {
    const { host, gmem, ioas, convert } = setup(armCca, 'gmem-registry');
    ioas.unmapAll();
    convert(0, 5 * P, 'private');
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 8 * P);
    expect(host.pipelineCounters()).toEqual({
      [ARM_CCA_STEPS.dataDestroy]: 5,
      [ARM_CCA_STEPS.undelegate]: 5,
      [ARM_CCA_STEPS.gptUpdate]: 5,
      [ARM_CCA_STEPS.scrub]: 5,
    });
  });
});
