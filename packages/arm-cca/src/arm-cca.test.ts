import {
  CONTRACTS,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  PAGE_SIZE,
  type ArchBackend,
  type Contract,
} from '@gmemlab/core';
import { describeFactoryConformance, createScenario } from '@gmemlab/core/testing';
import { describe, expect, it } from 'vitest';
import defaultExport, { ARM_CCA_STEPS, armCca } from './index.js';

const P = PAGE_SIZE;
const SIZE = 16 * P;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

// The ready backend and its published variant 'da'.
describeFactoryConformance(armCca, { describe, it });

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

describe('rules (backend.rules)', () => {
  const da = armCca(armCca.variants.da);
  const rulesOf = (backend: ArchBackend, topic: string) =>
    (backend.rules ?? []).filter((rule) => rule.topic === topic).map((rule) => rule.rule);

  it("[T1d]: plain CCA maps shared pages only; 'rely-on-gpt' is the reading Jason doubted; 'da' is an inference from [C-f]", () => {
    const maps = (backend: ArchBackend) =>
      rulesOf(backend, 'IOPTEs over private').find((rule) => rule.includes('MAP_FILE'))!;
    const gpt = armCca({ mapFile: 'rely-on-gpt' });
    expect(armCca.mapsPrivatePages).toBe(false);
    expect(maps(armCca)).toMatch(/maps shared pages only/);
    expect(gpt.id).toBe('arm-cca:rely-on-gpt');
    expect(gpt.mapsPrivatePages).toBe(true);
    expect(maps(gpt)).toMatch(/maps private pages too.*doubted/);
    expect(da.mapsPrivatePages).toBe(false);
    expect(maps(da)).toMatch(/maps shared pages only.*\[I\]/);
    expect(rulesOf(da, 'variant')).toEqual([expect.stringMatching(/device assignment/)]);
    expect(rulesOf(gpt, 'variant')).toEqual([expect.stringMatching(/rely-on-gpt/)]);
    expect(rulesOf(armCca, 'variant')).toEqual([]);
    expect(() => armCca({ variant: 'da', mapFile: 'rely-on-gpt' })).toThrow(TypeError);
    expect(() => armCca({ mapFile: 'gpt' as never })).toThrow(TypeError);
  });

  it('[C-c, C-e2] the rules say what the hooks do: a silent, contained device abort and a scrub on the way out', () => {
    expect(
      armCca.deviceAccess({ attribute: 'private', hardware: 'private', write: true, vmType: 'coco', stale: false }),
    ).toMatchObject({ allow: false, fatal: false, logged: false });
    expect(rulesOf(armCca, 'device access to private')[0]).toMatch(/not fatal and not reported in the event queue/);
    expect(armCca.contentsOnConversion({ to: 'shared' })).toBe('zero');
    expect(rulesOf(armCca, 'contents')[0]).toMatch(/'zero' on conversion to shared/);
  });
});

describe('Arm CCA row of the table', () => {
  for (const contract of CONTRACTS) {
    it(`[T1d, C-c] to-private under DMA is tolerated; a stale DMA is an external abort to the device, not logged (${contract})`, () => {
      const { host, vm, device, iova, convert } = setup(armCca, contract);
      convert(0, 2 * P, 'private');
      // Not delegated until the realm faults it in: still Non-secure, the DMA reaches it.
      expect(device.dmaWrite(iova, new Uint8Array([1])).ok).toBe(true);
      vm.guestRead(0, 1, { intent: 'private' });
      expect(device.dmaWrite(iova, new Uint8Array([1]))).toMatchObject({
        ok: false,
        fault: 'contained',
        fatal: false,
        logged: false,
      });
      expect(host.checkInvariants()).toEqual([]);
    });
  }

  it('[C-b] a host-kernel access to a Realm granule is a Granule Protection Fault: oops', () => {
    for (const write of [false, true]) {
      const { host, vm, gmem, convert } = setup(armCca, 'gmem-registry');
      convert(0, P, 'private');
      vm.guestRead(0, 1);
      const result = write ? gmem.directMapWrite(0, new Uint8Array([1])) : gmem.directMapRead(0, 8);
      expect(result).toMatchObject({ ok: false, fault: 'contained', fatal: true, logged: true });
      expect(host.crashed?.mechanism).toMatch(/Granule Protection Fault/);
    }
  });

  it("[T1d] IOMMU_IOAS_MAP_FILE maps shared pages only; 'rely-on-gpt' maps private pages too (the GPC guards them)", () => {
    for (const [backend, mapped] of [
      [armCca, false],
      [armCca({ mapFile: 'rely-on-gpt' }), true],
      [armCca({ variant: 'da' }), false],
    ] as const) {
      const { vm, device, iova } = setup(backend, 'gmem-registry', false);
      vm.guestRead(0, 1);
      expect(device.dmaRead(iova, 8)).toMatchObject({ ok: false, fault: mapped ? 'contained' : 'iommu-fault' });
    }
  });

  it('[C-e2] private -> shared undelegates, and the RMM scrubs the granule', () => {
    const { vm, gmem, convert } = setup(armCca, 'gmem-registry');
    convert(0, P, 'private');
    vm.guestWrite(0, new Uint8Array([0x99]));
    convert(0, P, 'shared');
    expect(gmem.mmap({ length: P, shared: true }).read(0, 1)).toEqual({ ok: true, data: new Uint8Array([0]) });
  });

  it('[C-a, C-d] entry: DELEGATE (a GPT update) + DATA_CREATE_UNKNOWN per granule the realm faults in; removal: DATA_DESTROY, UNDELEGATE (a GPT update), scrub, only for those', () => {
    const { host, vm, gmem, ioas, convert } = setup(armCca, 'gmem-registry');
    ioas.unmapAll();
    convert(0, 8 * P, 'private');
    for (let page = 0; page < 5; page++) vm.guestRead(page * P, 1);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 8 * P);
    expect(host.pipelineCounters()).toEqual({
      [ARM_CCA_STEPS.delegate]: 5,
      [ARM_CCA_STEPS.dataCreate]: 5,
      [ARM_CCA_STEPS.gptUpdate]: 10,
      [ARM_CCA_STEPS.dataDestroy]: 5,
      [ARM_CCA_STEPS.undelegate]: 5,
      [ARM_CCA_STEPS.scrub]: 10,
    });
  });
});

describe("a memslot's deletion over Realm granules ([C-a]: kvm_stage2_unmap_range unmaps the private range too)", () => {
  it('the granules bound there are destroyed and undelegated at the deletion, not at the later punch', () => {
    const { host, vm, gmem } = createScenario(armCca, {
      map: false,
      private: [{ offset: 0, length: 2 * PAGE_SIZE, faulted: true }],
    });
    const before = host.pipelineCounters();
    vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0 });
    const after = host.pipelineCounters();
    for (const step of [ARM_CCA_STEPS.dataDestroy, ARM_CCA_STEPS.undelegate])
      expect(after[step]! - (before[step] ?? 0), step).toBe(2);
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * PAGE_SIZE);
    expect(host.pipelineCounters()[ARM_CCA_STEPS.dataDestroy]).toBe(after[ARM_CCA_STEPS.dataDestroy]);
    expect(host.checkInvariants()).toEqual([]);
  });
});
