import { createHost, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, GmemError, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, PAGE_SIZE, type Contract } from '@gmemlab/core';
import { describeBackendConformance, createScenario } from '@gmemlab/core/testing';
import { describe, expect, it } from 'vitest';
import defaultExport, { tdx, TDX_STEPS } from './index.js';

const P = PAGE_SIZE;
const SIZE = 16 * P;

describeBackendConformance(tdx, { describe, it });
describeBackendConformance(tdx({ variant: 'connect' }), { describe, it });

function setup(contract: Contract, vcpus = 4) {
  const scenario = createScenario(tdx, { contract, vcpus });
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
  });
});

describe('TDX row of the table', () => {
  it('[T1g] to-private revokes the shared IOPTEs over the converting pages before the attribute changes', () => {
    const { host, device, iova, convert } = setup('gmem-registry');
    convert(4 * P, 2 * P, 'private');
    const dma = device.dmaWrite(iova + 4 * P, new Uint8Array([1]));
    expect(dma).toMatchObject({ ok: false, fault: 'iommu-fault', mechanism: 'IO page fault: IOPTE revoked by guest_memfd' });
    expect(device.dmaWrite(iova + 6 * P, new Uint8Array([1])).ok).toBe(true);
    expect(host.checkInvariants()).toEqual([]);
  });

  it('[T1g] to-shared unmaps nothing; restoring IOPTEs is the VMM\'s job', () => {
    const { host, device, ioas, iova, gmem, convert } = setup('gmem-registry');
    convert(4 * P, 2 * P, 'private');
    convert(4 * P, 2 * P, 'shared');
    expect(device.dmaWrite(iova + 4 * P, new Uint8Array([1])).ok).toBe(false);
    ioas.unmapAll();
    const again = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE });
    expect(device.dmaWrite(again + 4 * P, new Uint8Array([1])).ok).toBe(true);
    expect(host.checkInvariants()).toEqual([]);
  });

  it("[T1e] in 'vmm-driven' mode a stale DMA write to a private page lands and is a fatal machine check", () => {
    const { host, device, iova, convert } = setup('vmm-driven');
    convert(4 * P, P, 'private');
    expect(host.checkInvariants().map((v) => v.kind)).toContain('unsafe-iopte');
    const dma = device.dmaWrite(iova + 4 * P, new Uint8Array([1]));
    expect(dma).toMatchObject({ ok: false, fault: 'machine-check', fatal: true, logged: true });
  });

  it('[X-d] a host-kernel write to a private page does not fault; it poisons, and the TD\'s next read consumes it', () => {
    const { vm, gmem, convert } = setup('gmem-registry');
    convert(0, P, 'private');
    expect(gmem.directMapRead(0, 8).ok).toBe(true);
    expect(gmem.directMapWrite(0, new Uint8Array([9])).ok).toBe(true);
    expect(vm.guestRead(0, 8)).toMatchObject({ ok: false, fault: 'poison' });
  });

  it('[T1g] IOMMU_IOAS_MAP_FILE over private pages makes no IOPTE: they are never device-reachable', () => {
    const host = createHost({ backend: tdx });
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: SIZE });
    const ioas = host.openIommufd().createIoas();
    const iova = ioas.mapFile({ fd: gmem, start: 0, length: SIZE, flags: IOMMU_IOAS_MAP_READABLE });
    const device = ioas.attachDevice();
    expect(device.dmaRead(iova, 8)).toMatchObject({ ok: false, fault: 'iommu-fault', mechanism: 'IO page fault: page not mapped in the domain' });
    expect(host.checkInvariants()).toEqual([]);
  });

  it('[X-a] private -> shared clears the page (MOVDIR64B)', () => {
    const { vm, gmem, convert } = setup('gmem-registry');
    convert(0, P, 'private');
    expect(vm.guestWrite(0, new Uint8Array([0x77])).ok).toBe(true);
    convert(0, P, 'shared');
    const mapping = gmem.mmap({ length: P, shared: true });
    expect(mapping.read(0, 1)).toEqual({ ok: true, data: new Uint8Array([0]) });
  });

  it('[X-a] removal pipeline: BLOCK, TRACK + an IPI per vCPU, PAGE.REMOVE, WBINVD, clear, per 4K page', () => {
    const { host, gmem, convert, ioas } = setup('gmem-registry', 4);
    ioas.unmapAll();
    convert(0, 3 * P, 'private');
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * P);
    expect(host.pipelineCounters()).toEqual({
      [TDX_STEPS.block]: 3,
      [TDX_STEPS.track]: 3,
      [TDX_STEPS.ipi]: 12,
      [TDX_STEPS.remove]: 3,
      [TDX_STEPS.wbinvd]: 3,
      [TDX_STEPS.clear]: 3,
    });
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
