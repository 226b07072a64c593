/**
 * ArchBackend.conversionPolicyInputs: a backend that declares what its conversionPolicy answer depends on is asked
 * once per distinct value of those inputs in a conversion (door.conversionPolicyForArea, policy-memo.ts), and the
 * model does exactly what it does for the same backend asked about every area. A declaration is data read once at
 * createHost: one that is not a list of ConversionContext's fields, or whose getter throws, gets no host (EINVAL);
 * one that lies about the answer is caught by the conformance kit, where the backend is tested.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '../constants.js';
import type { Contract } from '../contract.js';
import { GmemError, HostCrashedError } from '../errors.js';
import type { GmemEvent } from '../events.js';
import { createHost } from '../host.js';
import { conformanceCases } from '../testing/conformance.js';
import type { ArchBackend, ConsumerResponse, ConversionContext, ConversionPolicyInput } from './backend.js';
import { describeBackendProblems } from './backend.js';
import { swProtected } from './sw-protected.js';

const P = PAGE_SIZE;
const PAGES = 32;
const FLAGS = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
// GMEMLAB_PROPERTY_RUNS scales every property test (1000 by default): this one runs a fifth of it.
const RUNS = Math.max(1, Math.round(Number(process.env.GMEMLAB_PROPERTY_RUNS ?? 1000) / 5));

/** Policies that depend on a few inputs, each with the inputs it reads. */
const POLICIES: ReadonlyArray<{
  name: string;
  inputs: readonly ConversionPolicyInput[];
  policy: (context: ConversionContext) => ConsumerResponse;
}> = [
  { name: 'revoke to private', inputs: ['to'], policy: ({ to }) => (to === 'private' ? 'revoke' : 'tolerate') },
  { name: 'tolerate', inputs: [], policy: () => 'tolerate' },
  {
    name: 'by IOPTEs',
    inputs: ['to', 'area.hasIoptes'],
    policy: ({ to, area }) => (area.hasIoptes ? (to === 'private' ? 'revoke' : 'tolerate') : 'split'),
  },
  {
    name: 'refuse user areas to private',
    inputs: ['to', 'area.source'],
    policy: ({ to, area }) => (to === 'private' && area.source === 'user' ? 'refuse' : 'revoke'),
  },
  {
    name: 'by overlap',
    inputs: ['overlapOffset', 'overlapLength'],
    policy: ({ overlapOffset, overlapLength }) =>
      (overlapOffset / P + overlapLength / P) % 3 === 0 ? 'tolerate' : 'revoke',
  },
  {
    name: 'by IOAS',
    inputs: ['to', 'area.ioas'],
    policy: ({ to, area }) => (area.ioas === 1 && to === 'private' ? 'revoke' : 'tolerate'),
  },
];

/** A backend with `policy`, declaring `inputs` (or nothing), counting its questions. */
function counted(policy: (context: ConversionContext) => ConsumerResponse, inputs?: readonly ConversionPolicyInput[]) {
  const asked = { count: 0 };
  const conversionPolicy = (context: ConversionContext) => {
    asked.count++;
    return policy(context);
  };
  // Spread from swProtected and given a conversionPolicy of its own: swProtected's declaration, about its own
  // policy, describes nothing here, so the backend without `inputs` is asked per area.
  const backend: ArchBackend = {
    ...swProtected,
    id: inputs ? 't:declared' : 't:per-area',
    conversionPolicy,
    deviceMayReach: ({ attribute, vmType }) => vmType !== 'coco' || attribute === 'shared',
    mapsPrivatePages: false,
    ...(inputs ? { conversionPolicyInputs: { policy: conversionPolicy, inputs } } : {}),
  };
  return { backend, asked };
}

/**
 * A file of 32 pages under several areas of several kinds: four MAP_FILE areas in IOAS 1 (a device attached, so
 * they have IOPTEs; one copied into IOAS 2), two MAP_FILE areas and an IOMMU_IOAS_MAP of the file's mmap ('user')
 * in IOAS 2, which has no device.
 */
function world(backend: ArchBackend, contract: Contract) {
  const host = createHost({ backend, contract });
  const vm = host.createVm({ type: 'coco', vcpus: 2 });
  const gmem = vm.createGuestMemfd({ size: PAGES * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  vm.setUserMemoryRegion2({
    slot: 0,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: 0,
    memorySize: PAGES * P,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  const iommufd = host.openIommufd();
  const one = iommufd.createIoas();
  const two = iommufd.createIoas();
  const iova = 1 << 30;
  for (let a = 0; a < 4; a++)
    one.mapFile({ fd: gmem, start: a * 8 * P, length: 8 * P, iova: iova + a * 8 * P, flags: FLAGS });
  two.mapFile({ fd: gmem, start: 4 * P, length: 8 * P, iova, flags: FLAGS });
  two.mapFile({ fd: gmem, start: 20 * P, length: 6 * P, iova: iova + 8 * P, flags: FLAGS });
  const mapping = gmem.mmap({ length: PAGES * P, shared: true });
  two.map({ mapping, offset: 12 * P, length: 4 * P, iova: iova + 16 * P, flags: FLAGS });
  two.copy({ src: one, srcIova: iova + 8 * P, length: 8 * P, iova: iova + 24 * P, flags: FLAGS });
  const device = one.attachDevice('nic');
  return { host, vm, gmem, one, two, iova, device };
}

type Step =
  | { kind: 'convert'; first: number; count: number; to: 'private' | 'shared' }
  | { kind: 'punch'; first: number; count: number }
  | { kind: 'remap'; area: number }
  | { kind: 'dma'; page: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('convert' as const),
      first: fc.integer({ min: 0, max: PAGES - 1 }),
      count: fc.integer({ min: 1, max: 12 }),
      to: fc.constantFrom('private' as const, 'shared' as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('punch' as const),
      first: fc.integer({ min: 0, max: PAGES - 1 }),
      count: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remap' as const), area: fc.integer({ min: 0, max: 3 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('dma' as const), page: fc.integer({ min: 0, max: PAGES - 1 }) }),
  },
);

/** Run `step` on `w`: its outcome as data (a documented error is an outcome), and the events it emitted. */
function run(w: ReturnType<typeof world>, s: Step): { outcome: unknown; events: GmemEvent[] } {
  const recording = w.host.events.record();
  let outcome: unknown;
  try {
    if (s.kind === 'convert') {
      const count = Math.min(s.count, PAGES - s.first);
      w.gmem.setMemoryAttributes2({
        offset: s.first * P,
        size: count * P,
        attributes: s.to === 'private' ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
      });
      outcome = 'ok';
    } else if (s.kind === 'punch') {
      w.gmem.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s.first * P, s.count * P);
      outcome = 'ok';
    } else if (s.kind === 'remap') {
      // IOMMU_IOAS_UNMAP and MAP_FILE again: the VMM's way back from a revoke (a fresh area, a fresh pages object).
      const at = w.iova + s.area * 8 * P;
      w.one.unmap({ iova: at, length: 8 * P });
      w.one.mapFile({ fd: w.gmem, start: s.area * 8 * P, length: 8 * P, iova: at, flags: FLAGS });
      outcome = 'ok';
    } else {
      outcome = w.device.dmaWrite(w.iova + s.page * P, new Uint8Array([s.page + 1]));
    }
  } catch (error) {
    if (GmemError.isInstance(error))
      outcome = { errno: error.errno, errorOffset: error.errorOffset, message: error.message };
    else if (error instanceof HostCrashedError) outcome = { crashed: error.message };
    else throw error;
  } finally {
    recording.stop();
  }
  return { outcome, events: recording.events };
}

describe('conversionPolicyInputs: one question per conversion per distinct declared input', () => {
  it(`a backend that declares its inputs does exactly what it does asked per area (${RUNS} random sequences)`, () => {
    let fewer = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(...POLICIES),
        fc.constantFrom<Contract>('gmem-registry', 'mirror'),
        fc.array(step, { minLength: 1, maxLength: 14 }),
        ({ policy, inputs }, contract, steps) => {
          const declared = counted(policy, inputs);
          const perArea = counted(policy);
          const a = world(declared.backend, contract);
          const b = world(perArea.backend, contract);
          for (const s of steps) {
            const ra = run(a, s);
            const rb = run(b, s);
            expect(ra.outcome).toEqual(rb.outcome);
            expect(ra.events).toEqual(rb.events);
            expect(a.host.snapshot()).toEqual(b.host.snapshot());
            expect(a.host.pipelineCounters()).toEqual(b.host.pipelineCounters());
          }
          expect(a.host.checkInvariants()).toEqual(b.host.checkInvariants());
          expect(declared.asked.count).toBeLessThanOrEqual(perArea.asked.count);
          if (declared.asked.count < perArea.asked.count) fewer++;
        },
      ),
      { numRuns: RUNS },
    );
    // Not vacuous: the declaration saved questions in some sequences.
    expect(fewer).toBeGreaterThan(0);
  }, 180_000); // ~4 s alone; ten times that under a loaded CI (39 s seen), past vitest's 30 s

  it('a conversion over four areas asks a backend that declares only `to` once, and one that declares nothing four times', () => {
    const policy = ({ to }: ConversionContext): ConsumerResponse => (to === 'private' ? 'revoke' : 'tolerate');
    const declared = counted(policy, ['to']);
    const perArea = counted(policy);
    const a = world(declared.backend, 'gmem-registry');
    const b = world(perArea.backend, 'gmem-registry');
    // Pages [8, 16): IOAS 1's second area and its copy in IOAS 2, IOAS 2's first area and its user area: four areas
    // over three pages objects, plus nothing else.
    for (const w of [a, b])
      w.gmem.setMemoryAttributes2({ offset: 8 * P, size: 8 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(perArea.asked.count).toBe(4);
    expect(declared.asked.count).toBe(1);
    expect(a.host.snapshot()).toEqual(b.host.snapshot());
  });

  it('a declaration by kind of area asks once per kind: IOPTEs or none', () => {
    const policy = ({ area }: ConversionContext): ConsumerResponse => (area.hasIoptes ? 'revoke' : 'tolerate');
    const declared = counted(policy, ['area.hasIoptes']);
    const w = world(declared.backend, 'gmem-registry');
    w.gmem.setMemoryAttributes2({ offset: 8 * P, size: 8 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    // IOAS 1's area has IOPTEs; the three areas of IOAS 2 (no device) have none.
    expect(declared.asked.count).toBe(2);
  });

  it('a throwing policy is EIO at the first area asked, and the conversion changes nothing, declared or not', () => {
    for (const inputs of [['to'] as const, undefined]) {
      const { backend } = counted(() => {
        throw new Error('broken policy');
      }, inputs);
      const w = world(backend, 'gmem-registry');
      const before = w.host.snapshot();
      const { outcome, events } = run(w, { kind: 'convert', first: 8, count: 8, to: 'private' });
      expect(outcome).toMatchObject({ errno: 'EIO' });
      expect((outcome as { message: string }).message).toContain('conversionPolicy threw: broken policy');
      expect(events.filter((e) => e.type !== 'call')).toEqual([]);
      expect(w.host.snapshot()).toEqual(before);
    }
  });

  it('an answer outside the four responses is EIO and changes nothing: it is checked before it is kept', () => {
    const { backend, asked } = counted(() => 'unmap' as ConsumerResponse, ['to']);
    const w = world(backend, 'gmem-registry');
    const before = w.host.snapshot();
    const { outcome } = run(w, { kind: 'convert', first: 8, count: 8, to: 'private' });
    expect(outcome).toMatchObject({ errno: 'EIO' });
    expect(w.host.snapshot()).toEqual(before);
    // The broken answer was not kept: the next conversion asks again, and fails the same way.
    expect(run(w, { kind: 'convert', first: 8, count: 8, to: 'private' }).outcome).toMatchObject({ errno: 'EIO' });
    expect(asked.count).toBe(2);
  });
});

describe('a broken declaration gets no host', () => {
  const policy = swProtected.conversionPolicy;
  const cases: Array<[string, unknown]> = [
    ['a bare list, not { policy, inputs }', ['to']],
    ['no policy named', { inputs: ['to'] }],
    ['inputs not an array', { policy, inputs: 'to' }],
    ['an unknown field', { policy, inputs: ['to', 'area.colour'] }],
    ['the whole area (its fields are listed one by one)', { policy, inputs: ['area'] }],
    ['an entry that is not a string', { policy, inputs: [1] }],
    ['longer than there are fields', { policy, inputs: new Array(100).fill('to') }],
    ['a sparse array of 2^32 - 1 holes', { policy, inputs: new Array(2 ** 32 - 1) }],
  ];
  for (const [name, declaration] of cases)
    it(`${name}: describeBackendProblems names it, and createHost is EINVAL`, () => {
      const backend = { ...swProtected, id: 't:inputs', conversionPolicyInputs: declaration } as unknown as ArchBackend;
      expect(describeBackendProblems(backend).join('; ')).toContain('conversionPolicyInputs');
      expect(() => createHost({ backend })).toThrow(expect.objectContaining({ errno: 'EINVAL' }));
    });

  it('a declaration about another function (a spread backend with a conversionPolicy of its own) is ignored: every area is asked', () => {
    const mine = counted(({ area }) => (area.hasIoptes ? 'revoke' : 'tolerate'));
    expect(mine.backend.conversionPolicyInputs).toBe(swProtected.conversionPolicyInputs);
    const w = world(mine.backend, 'gmem-registry');
    w.gmem.setMemoryAttributes2({ offset: 8 * P, size: 8 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(mine.asked.count).toBe(4);
  });

  it('a getter that throws is EINVAL at createHost; one that changes its answer is read once', () => {
    const throwing = {
      ...swProtected,
      id: 't:inputs-getter',
      get conversionPolicyInputs(): never {
        throw new Error('getter');
      },
    };
    expect(() => createHost({ backend: throwing })).toThrow(expect.objectContaining({ errno: 'EINVAL' }));
    let reads = 0;
    const asked = { count: 0 };
    const conversionPolicy = ({ area }: ConversionContext): ConsumerResponse => {
      asked.count++;
      return area.hasIoptes ? 'revoke' : 'tolerate';
    };
    const flipping = {
      ...swProtected,
      id: 't:inputs-flip',
      conversionPolicy,
      deviceMayReach: ({ attribute }: { attribute: string }) => attribute === 'shared',
      mapsPrivatePages: false,
      conversionPolicyInputs: {
        policy: conversionPolicy,
        get inputs() {
          return reads++ === 0 ? ['area.hasIoptes'] : [];
        },
      },
    } as unknown as ArchBackend;
    const w = world(flipping, 'gmem-registry');
    w.gmem.setMemoryAttributes2({ offset: 8 * P, size: 8 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    // Read once, as ['area.hasIoptes']: two kinds of area, two questions (the later [] would have made one).
    expect(reads).toBe(1);
    expect(asked.count).toBe(2);
  });
});

describe('a declaration that lies is caught by the conformance kit', () => {
  it("a backend declaring ['to'] whose answer depends on the area's IOPTEs fails the kit's case for it", () => {
    const policy = ({ area }: ConversionContext): ConsumerResponse => (area.hasIoptes ? 'revoke' : 'tolerate');
    const liar: ArchBackend = {
      ...swProtected,
      id: 't:liar',
      conversionPolicy: policy,
      conversionPolicyInputs: { policy, inputs: ['to'] },
    };
    const check = conformanceCases(liar).find((c) => c.name.startsWith('conversionPolicy depends only on'));
    expect(check).toBeDefined();
    expect(() => check!.run()).toThrow(/answers differently for two contexts equal in the declared inputs/);
  });

  it('the same backend declaring what it reads passes it', () => {
    const policy = ({ area }: ConversionContext): ConsumerResponse => (area.hasIoptes ? 'revoke' : 'tolerate');
    const honest: ArchBackend = {
      ...swProtected,
      id: 't:honest',
      conversionPolicy: policy,
      conversionPolicyInputs: { policy, inputs: ['area.hasIoptes'] },
    };
    const check = conformanceCases(honest).find((c) => c.name.startsWith('conversionPolicy depends only on'));
    expect(() => check!.run()).not.toThrow();
  });

  it('a backend that declares nothing, or whose declaration is about another function, has no such case', () => {
    const { conversionPolicyInputs: _, ...undeclared } = swProtected;
    const spread: ArchBackend = {
      ...swProtected,
      conversionPolicy: ({ to }) => (to === 'private' ? 'revoke' : 'tolerate'),
    };
    const hasCase = (backend: ArchBackend) =>
      conformanceCases(backend).some((c) => c.name.startsWith('conversionPolicy depends only on'));
    expect(hasCase(undeclared as ArchBackend)).toBe(false);
    expect(hasCase(spread)).toBe(false);
    expect(hasCase(swProtected)).toBe(true);
  });
});
