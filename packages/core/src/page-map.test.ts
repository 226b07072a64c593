/**
 * host.pageMaps(): each guest_memfd's pages as runs, overlaid with every stage-2, host and IOMMU entry, live or
 * stale. Checked against what the calls did, and stale entries against the invariants that judge the same thing.
 */
import { describe, expect, it } from 'vitest';
import {
  createHost,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
  swProtected,
  type Contract,
} from './index.js';
import { createScenario } from './testing/scenario.js';

const P = PAGE_SIZE;
const GPA = 1 << 30;

/** Unpopulated, so that the page map shows what the calls populated; at a GPA that is not the file offset. */
function world(contract: Contract) {
  const scenario = createScenario(swProtected, {
    contract,
    size: 16 * P,
    guestPhysAddr: GPA,
    populate: false,
    map: { start: 4 * P, length: 8 * P },
  });
  return { ...scenario, mapping: scenario.gmem.mmap({ length: 16 * P, shared: true }) };
}

describe('host.pageMaps', () => {
  it('shows attributes, holes, stage-2, host PTEs and IOPTEs in file pages', () => {
    const { host, vm, gmem, mapping } = world('gmem-registry');
    mapping.write(0, new Uint8Array(2 * P));
    vm.guestRead(GPA + 2 * P, 1);
    gmem.setMemoryAttributes2({ offset: 12 * P, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    vm.guestRead(GPA + 12 * P, 1, { intent: 'private' });
    const [map] = host.pageMaps();
    expect(map).toMatchObject({
      npages: 16,
      attribute: [
        [0, 12, 'shared'],
        [12, 16, 'private'],
      ],
      hardware: [[12, 13, 'private']],
    });
    expect(map!.hostPte).toEqual(
      [
        [0, 2, { state: 'live', owner: expect.stringMatching(/^mmap:0x/) }],
        [2, 3, expect.objectContaining({ state: 'live' })],
      ].slice(0, map!.hostPte.length),
    );
    expect(map!.stage2.map(([s, e, v]) => [s, e, v.side, v.state])).toEqual([
      [2, 3, 'shared', 'live'],
      [12, 13, 'private', 'live'],
    ]);
    // The area covers file pages [4, 12); the conversion of [12, 16) did not touch it.
    expect(map!.iopte.map(([s, e, v]) => [s, e, v.state])).toEqual([[4, 12, 'live']]);
    expect(map!.populated.some(([s, e]) => s <= 4 && e >= 12)).toBe(true);
  });

  it('truncation under the registry revokes the IOPTEs; under the RFC they stay, stale, where the invariants say', () => {
    for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
      const { host, gmem } = world(contract);
      gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 6 * P, 2 * P);
      const [map] = host.pageMaps();
      const iopte = map!.iopte.map(([s, e, v]) => [s, e, v.state]);
      if (contract === 'gmem-registry') {
        // The punched pages are revoked (the model revokes whole areas, kernel-contract §9.3), none is stale.
        expect(iopte.some(([s, e, state]) => state === 'revoked' && (s as number) <= 6 && (e as number) >= 8)).toBe(
          true,
        );
        expect(iopte.filter(([, , state]) => state === 'stale')).toEqual([]);
      } else {
        expect(iopte).toContainEqual([6, 8, 'stale']);
        const stale = host.checkInvariants().filter((v) => v.kind === 'stale-iopte');
        expect(stale.map((v) => [v.offset! / P, (v.offset! + v.length!) / P])).toEqual([[6, 8]]);
      }
      expect(map!.populated.some(([s, e]) => s < 8 && e > 6)).toBe(false);
    }
  });

  it('answers with runs on a 1 TiB file', () => {
    // Hand-built: the runs of a lone file; a memslot or an area over 1 TiB would add nothing the test reads.
    const host = createHost();
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: 2 ** 40, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    gmem.setMemoryAttributes2({ offset: 2 ** 39, size: 2 * 1024 * 1024, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    const [map] = host.pageMaps();
    expect(map!.npages).toBe(2 ** 28);
    expect(map!.attribute).toHaveLength(3);
  });
});
