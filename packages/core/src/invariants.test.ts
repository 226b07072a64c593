import { describe, expect, it } from 'vitest';
import type { ArchBackend } from './arch/backend.js';
import { swProtected } from './arch/sw-protected.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE } from './constants.js';
import { violationKey } from './invariants.js';
import { createScenario } from './testing/scenario.js';

const P = PAGE_SIZE;
/** Hardware that does not stop DMA to private pages (the TDX case): such an IOPTE is unsafe. */
const unchecked: ArchBackend = {
  ...swProtected,
  id: 'unchecked',
  deviceMayReach: ({ attribute }) => attribute === 'shared',
};

const vmmDriven = () => createScenario(unchecked, { contract: 'vmm-driven', size: 4 * P, populate: false });

describe('checkInvariants', () => {
  it('reports a live IOPTE over a page no device may reach as unsafe-iopte, with its range', () => {
    const { host, gmem } = vmmDriven();
    gmem.setMemoryAttributes2({ offset: P, size: 2 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(host.checkInvariants()).toMatchObject([
      { kind: 'unsafe-iopte', offset: P, length: 2 * P, owner: 'ioas:1/area:1' },
    ]);
  });

  it('reports a truncated page under an IOPTE as stale-iopte only, not also unsafe', () => {
    const { host, gmem } = vmmDriven();
    gmem.setMemoryAttributes2({ offset: P, size: 2 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, P, P);
    expect(host.checkInvariants().map((v) => [v.kind, v.offset, v.length])).toEqual([
      ['stale-iopte', P, P],
      ['unsafe-iopte', 2 * P, P],
    ]);
  });

  it('is empty for the same actions in gmem-registry mode with a revoking policy', () => {
    const { host, gmem } = createScenario(
      { ...unchecked, conversionPolicy: () => 'revoke' },
      { size: 4 * P, populate: false },
    );
    gmem.setMemoryAttributes2({ offset: P, size: 2 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, P, P);
    expect(host.checkInvariants()).toEqual([]);
  });
});

describe('violationKey', () => {
  it('names a violation by kind, owner, inode and range, not by its message', () => {
    const v = {
      kind: 'stale-iopte',
      message: 'one wording',
      owner: 'ioas:1/area:2',
      ino: 7,
      offset: 4096,
      length: 8192,
    } as const;
    expect(violationKey(v)).toBe(violationKey({ ...v, message: 'another wording' }));
    for (const other of [
      { kind: 'stale-spte' },
      { owner: 'ioas:1/area:3' },
      { ino: 8 },
      { offset: 0 },
      { length: 4096 },
    ] as const)
      expect(violationKey({ ...v, ...other })).not.toBe(violationKey(v));
    expect(violationKey({ kind: 'attributes', message: 'm' })).toBe('attributes||||');
  });
});
