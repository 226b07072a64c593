/**
 * A revoke that cuts a huge IOPTE, as the host's IOMMU driver does it (HostOptions.hugeIopteCut), and the IOPTE
 * sizes a backend's hosts use (ArchBackend.iommuPageSizes). Sources: commit 33729a5fc0ca "iommu/io-pgtable-arm:
 * Remove split on unmap behavior" (AMD v1/v2 and VT-d unmap the whole large IOPTE; io-pgtable-arm now refuses);
 * the thread on splitting huge IOPTEs as an open problem (RFC-J6); [T2] for SEV-SNP's 4K IOMMU pages.
 */
import { describe, expect, it } from 'vitest';
import {
  createHost,
  GmemError,
  IOPTE_SPLIT_STEP,
  IOPTE_UNMAP_WHOLE_STEP,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
  swProtected,
  type ArchBackend,
  type HugeIopteCut,
} from '../index.js';
import { createScenario } from '../testing/scenario.js';

const MiB = 1 << 20;
const IOVA = 1 << 30;
/** A backend whose registry consumers revoke on every conversion (TDX-like). */
const revoking: ArchBackend = {
  ...swProtected,
  id: 'revoking',
  name: 'revoking test backend',
  conversionPolicy: () => 'revoke',
};

/** 4 MiB at a 2 MiB-aligned IOVA (and GPA), so that the area's IOPTEs are huge where the backend allows. */
function world(hugeIopteCut?: HugeIopteCut, backend: ArchBackend = revoking) {
  const {
    host,
    gmem,
    device: attached,
  } = createScenario(backend, {
    host: hugeIopteCut ? { hugeIopteCut } : {},
    size: 4 * MiB,
    guestPhysAddr: IOVA,
    populate: false,
    map: { start: 0, length: 4 * MiB, iova: IOVA },
  });
  const device = attached!;
  // 64 KiB at 1 MiB: inside the first 2 MiB IOPTE.
  const convert = () =>
    gmem.setMemoryAttributes2({ offset: MiB, size: 64 * 1024, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  return { host, gmem, device, convert };
}

describe('a revoke inside a huge IOPTE (HostOptions.hugeIopteCut)', () => {
  it("'unmap-whole' (default, AMD v1/v2 and VT-d): the whole 2 MiB IOPTE goes; a device touching the rest of it faults", () => {
    const { host, device, convert } = world();
    convert();
    expect(host.pipelineCounters()).toEqual({ [IOPTE_UNMAP_WHOLE_STEP]: 1 });
    // Outside the converted range but under the same IOPTE: collateral.
    expect(device.dmaRead(IOVA, 1)).toMatchObject({ ok: false, fault: 'iommu-fault' });
    expect(device.dmaRead(IOVA + 2 * MiB - PAGE_SIZE, 1)).toMatchObject({ ok: false, fault: 'iommu-fault' });
    // The next 2 MiB IOPTE is untouched.
    expect(device.dmaRead(IOVA + 2 * MiB, 1).ok).toBe(true);
  });

  it("'split': the IOPTE becomes 4K IOPTEs first, one counted step, and only the range goes", () => {
    const { host, device, convert } = world('split');
    convert();
    expect(host.pipelineCounters()).toEqual({ [IOPTE_SPLIT_STEP]: 1 });
    expect(device.dmaRead(IOVA, 1).ok).toBe(true);
    expect(device.dmaRead(IOVA + MiB, 1)).toMatchObject({ ok: false });
  });

  it("'refuse' (io-pgtable-arm since v6.13): the conversion fails with EAGAIN at the cut and nothing changes", () => {
    const { host, gmem, device, convert } = world('refuse');
    const before = host.snapshot();
    let thrown: unknown;
    try {
      convert();
    } catch (error) {
      thrown = error;
    }
    expect(GmemError.isInstance(thrown)).toBe(true);
    expect(thrown).toMatchObject({ errno: 'EAGAIN', errorOffset: MiB });
    expect(host.snapshot()).toEqual(before);
    expect(device.dmaRead(IOVA + MiB, 1).ok).toBe(true);
    // A conversion that cuts no huge IOPTE goes through.
    gmem.setMemoryAttributes2({ offset: 2 * MiB, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(device.dmaRead(IOVA + 2 * MiB, 1)).toMatchObject({ ok: false });
  });

  it('an unknown reading is EINVAL', () => {
    // No world: the call under test is createHost.
    expect(() => createHost({ hugeIopteCut: 'shatter' as never })).toThrow(/EINVAL.*hugeIopteCut/);
  });
});

describe('ArchBackend.iommuPageSizes', () => {
  it('a host restricted to 4K IOMMU pages maps the area with 4K IOPTEs, so no conversion cuts a huge one', () => {
    const { host, device, convert } = world(undefined, { ...revoking, iommuPageSizes: [PAGE_SIZE] });
    convert();
    expect(host.pipelineCounters()).toEqual({});
    expect(device.dmaRead(IOVA, 1).ok).toBe(true);
    expect(device.dmaRead(IOVA + MiB, 1)).toMatchObject({ ok: false });
  });

  it('a malformed iommuPageSizes is refused by createHost', () => {
    // No world: the call under test is createHost.
    expect(() => createHost({ backend: { ...revoking, iommuPageSizes: [PAGE_SIZE * 512] } })).toThrow(
      /EINVAL.*iommuPageSizes/,
    );
  });
});
