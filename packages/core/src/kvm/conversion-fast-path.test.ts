/**
 * GmemInode.convert's shortcut (conversionShortcuts): where the backend's policy answer reads only the
 * conversion's own fields and no other consumer over the range answers anything, one pages object is asked in
 * place of all of them, found without listing the others. The model must do exactly what it does with the
 * shortcut off, where every consumer over the range is listed and asked in registration order: random sequences
 * of conversions, punches, re-maps, DMA, host mmaps and third-party consumers (some answering, some not) run on
 * two hosts, one each way, and every outcome, event, snapshot, counter, invariant and consumer call must match.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConsumerResponse, ConversionContext, ConversionPolicyInput, ArchBackend } from '../arch/backend.js';
import { swProtected } from '../arch/sw-protected.js';
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
import type { ConversionRequest, Invalidation, MappingConsumer, Registration } from '../registry/registry.js';
import { conversionShortcuts } from './conversion-shortcuts.js';

const P = PAGE_SIZE;
const PAGES = 48;
const AREA = 6;
const AREAS = 6;
const FLAGS = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
// GMEMLAB_PROPERTY_RUNS scales every property test (1000 by default): this one runs a fifth of it.
const RUNS = Math.max(1, Math.round(Number(process.env.GMEMLAB_PROPERTY_RUNS ?? 1000) / 5));

afterEach(() => {
  conversionShortcuts.enabled = true;
});

/** Policies whose declared inputs make one question per conversion (the shortcut's case), and one that does not. */
const POLICIES: ReadonlyArray<{
  name: string;
  inputs: readonly ConversionPolicyInput[];
  policy: (context: ConversionContext) => ConsumerResponse;
}> = [
  { name: 'tolerate', inputs: [], policy: () => 'tolerate' },
  { name: 'revoke to private', inputs: ['to'], policy: ({ to }) => (to === 'private' ? 'revoke' : 'tolerate') },
  { name: 'split to private', inputs: ['to'], policy: ({ to }) => (to === 'private' ? 'split' : 'tolerate') },
  { name: 'refuse to private', inputs: ['to'], policy: ({ to }) => (to === 'private' ? 'refuse' : 'tolerate') },
  {
    name: 'by offset',
    inputs: ['offset', 'to'],
    policy: ({ offset, to }) => ((offset / P) % 3 === 0 && to === 'private' ? 'revoke' : 'tolerate'),
  },
  {
    name: 'by IOPTEs',
    inputs: ['to', 'area.hasIoptes'],
    policy: ({ to, area }) => (area.hasIoptes && to === 'private' ? 'revoke' : 'tolerate'),
  },
];

/**
 * A backend with `policy`, declaring `inputs`, counting its questions and writing each into `log` (which area was
 * asked is left out: it is not part of the backend's promise).
 */
function backendWith(
  policy: (context: ConversionContext) => ConsumerResponse,
  inputs: readonly ConversionPolicyInput[],
  log: string[] = [],
) {
  const asked = { count: 0 };
  const conversionPolicy = (context: ConversionContext) => {
    asked.count++;
    log.push(`policy ${context.to} [${context.offset / P}, ${(context.offset + context.length) / P})`);
    return policy(context);
  };
  const backend: ArchBackend = {
    ...swProtected,
    id: 't:shortcut',
    conversionPolicy,
    deviceMayReach: ({ attribute, vmType }) => vmType !== 'coco' || attribute === 'shared',
    mapsPrivatePages: false,
    conversionPolicyInputs: { policy: conversionPolicy, inputs },
  };
  return { backend, asked };
}

/**
 * A third-party consumer that answers nothing (KVM's kind of consumer: every conversion revokes it). It writes
 * every call into `log`, which the world's consumers and its backend share: the order across them is compared.
 */
class Quiet implements MappingConsumer {
  readonly kind = 'test-quiet';
  constructor(
    readonly label: string,
    readonly first: number,
    readonly end: number,
    readonly log: string[],
  ) {}
  invalidateBegin(inv: Invalidation): void {
    this.log.push(`${this.label} begin ${inv.cause} [${inv.start}, ${inv.end})`);
  }
  invalidateEnd(inv: Invalidation): void {
    this.log.push(`${this.label} end ${inv.cause} [${inv.start}, ${inv.end})`);
  }
  restore(inv: Invalidation): void {
    this.log.push(`${this.label} restore [${inv.start}, ${inv.end})`);
  }
}

/** A third-party consumer with an answer of its own ('throw': its conversionResponse throws). */
class Answering extends Quiet {
  constructor(
    label: string,
    first: number,
    end: number,
    log: string[],
    private readonly answer: ConsumerResponse | 'throw',
  ) {
    super(label, first, end, log);
  }
  conversionResponse(request: ConversionRequest): ConsumerResponse {
    this.log.push(`${this.label} asked ${request.to} [${request.start}, ${request.end})`);
    if (this.answer === 'throw') throw new Error(`${this.label} is broken`);
    return this.answer;
  }
  split(inv: Invalidation): void {
    this.log.push(`${this.label} split [${inv.start}, ${inv.end})`);
  }
}

/**
 * A file of 48 pages: six MAP_FILE areas in IOAS 1 with a device (IOPTEs), two in IOAS 2 without one, a copy of
 * IOAS 1's second area into IOAS 2, and an IOMMU_IOAS_MAP of a host mmap of the file.
 */
function world(backend: ArchBackend, contract: Contract, log: string[]) {
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
  for (let a = 0; a < AREAS; a++)
    one.mapFile({ fd: gmem, start: a * AREA * P, length: AREA * P, iova: iova + a * AREA * P, flags: FLAGS });
  two.mapFile({ fd: gmem, start: 3 * P, length: 10 * P, iova, flags: FLAGS });
  two.mapFile({ fd: gmem, start: 30 * P, length: 12 * P, iova: iova + 16 * P, flags: FLAGS });
  two.copy({ src: one, srcIova: iova + AREA * P, length: AREA * P, iova: iova + 32 * P, flags: FLAGS });
  const device = one.attachDevice('nic');
  const consumers: Quiet[] = [];
  const registrations: Registration[] = [];
  const mappings: Array<ReturnType<typeof gmem.mmap>> = [];
  return { host, vm, gmem, one, two, iova, device, consumers, registrations, mappings, log };
}
type World = ReturnType<typeof world>;

type Step =
  | { kind: 'convert'; first: number; count: number; to: 'private' | 'shared' }
  | { kind: 'punch'; first: number; count: number }
  | { kind: 'remap'; area: number }
  | { kind: 'dma'; page: number }
  | { kind: 'guest'; page: number; count: number; private: boolean }
  | { kind: 'mmap'; first: number; count: number }
  | { kind: 'munmap' }
  | { kind: 'register'; first: number; count: number; answer: ConsumerResponse | 'throw' | 'none' }
  | { kind: 'unregister'; which: number };

const page = fc.integer({ min: 0, max: PAGES - 1 });
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant('convert' as const),
      first: page,
      count: fc.integer({ min: 1, max: 16 }),
      to: fc.constantFrom('private' as const, 'shared' as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('punch' as const), first: page, count: fc.integer({ min: 1, max: 4 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('remap' as const), area: fc.integer({ min: 0, max: AREAS - 1 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dma' as const), page }) },
  // The guest's accesses fill stage-2, which a conversion's KVM invalidation zaps.
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('guest' as const),
      page,
      count: fc.integer({ min: 1, max: 6 }),
      private: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('mmap' as const), first: page, count: fc.integer({ min: 1, max: 8 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'munmap' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('register' as const),
      first: page,
      count: fc.integer({ min: 1, max: 20 }),
      answer: fc.constantFrom<ConsumerResponse | 'throw' | 'none'>(
        'none',
        'none',
        'revoke',
        'tolerate',
        'split',
        'refuse',
        'throw',
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('unregister' as const), which: fc.nat() }) },
);

/** Run `s` on `w` with the shortcut on or off: its outcome as data (a documented error is one), and the events. */
function run(w: World, s: Step, shortcuts: boolean, record = true): { outcome: unknown; events: GmemEvent[] } {
  conversionShortcuts.enabled = shortcuts;
  // Without a listener the model takes its listener-free paths (no event built, no list kept for one).
  const recording = record ? w.host.events.record() : { events: [] as GmemEvent[], stop: () => {} };
  let outcome: unknown = 'ok';
  try {
    if (s.kind === 'convert') {
      const count = Math.min(s.count, PAGES - s.first);
      w.gmem.setMemoryAttributes2({
        offset: s.first * P,
        size: count * P,
        attributes: s.to === 'private' ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
      });
    } else if (s.kind === 'punch') {
      w.gmem.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s.first * P, s.count * P);
    } else if (s.kind === 'remap') {
      // IOMMU_IOAS_UNMAP and MAP_FILE again: a fresh area and pages object, registered last.
      const at = w.iova + s.area * AREA * P;
      w.one.unmap({ iova: at, length: AREA * P });
      w.one.mapFile({ fd: w.gmem, start: s.area * AREA * P, length: AREA * P, iova: at, flags: FLAGS });
    } else if (s.kind === 'dma') {
      outcome = w.device.dmaWrite(w.iova + s.page * P, new Uint8Array([s.page + 1]));
    } else if (s.kind === 'guest') {
      const count = Math.min(s.count, PAGES - s.page);
      outcome = w.vm.guestWrite(
        s.page * P,
        new Uint8Array(count * P).fill(s.page + 1),
        s.private ? undefined : { intent: 'shared' },
      );
    } else if (s.kind === 'mmap') {
      const count = Math.min(s.count, PAGES - s.first);
      w.mappings.push(w.gmem.mmap({ offset: s.first * P, length: count * P, shared: true }));
    } else if (s.kind === 'munmap') {
      w.mappings.pop()?.munmap();
    } else if (s.kind === 'register') {
      const end = Math.min(PAGES, s.first + s.count);
      const label = `consumer:${w.consumers.length}`;
      const consumer =
        s.answer === 'none'
          ? new Quiet(label, s.first, end, w.log)
          : new Answering(label, s.first, end, w.log, s.answer);
      w.consumers.push(consumer);
      w.registrations.push(w.gmem.registerConsumer(consumer));
    } else if (w.registrations.length > 0) {
      w.registrations.splice(s.which % w.registrations.length, 1)[0]!.unregister();
    }
  } catch (error) {
    if (GmemError.isInstance(error))
      outcome = { errno: error.errno, errorOffset: error.errorOffset, message: error.message };
    else if (error instanceof HostCrashedError) outcome = { crashed: error.message };
    else throw error;
  } finally {
    recording.stop();
    conversionShortcuts.enabled = true;
  }
  return { outcome, events: recording.events };
}

describe('conversion shortcut: the same model with it on and off', () => {
  it(`random sequences give the same outcomes, events, snapshots, counters, invariants and consumer calls (${RUNS} runs)`, () => {
    let fewerLists = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(...POLICIES),
        fc.constantFrom<Contract>('gmem-registry', 'mirror'),
        fc.array(fc.tuple(step, fc.boolean()), { minLength: 1, maxLength: 24 }),
        ({ policy, inputs }, contract, recorded) => {
          const steps = recorded.map(([s]) => s);
          const logA: string[] = [];
          const logB: string[] = [];
          const on = backendWith(policy, inputs, logA);
          const off = backendWith(policy, inputs, logB);
          const a = world(on.backend, contract, logA);
          const b = world(off.backend, contract, logB);
          for (const [s, record] of recorded) {
            const ra = run(a, s, true, record);
            const rb = run(b, s, false, record);
            expect(ra.outcome).toEqual(rb.outcome);
            expect(ra.events).toEqual(rb.events);
            expect(a.host.snapshot()).toEqual(b.host.snapshot());
            expect(a.host.pipelineCounters()).toEqual(b.host.pipelineCounters());
            expect(logA).toEqual(logB);
          }
          expect(a.host.checkInvariants()).toEqual(b.host.checkInvariants());
          // The shortcut asks no more than listing does: one question per conversion either way.
          expect(on.asked.count).toBe(off.asked.count);
          if (steps.some((s) => s.kind === 'convert')) fewerLists++;
        },
      ),
      { numRuns: RUNS },
    );
    expect(fewerLists).toBeGreaterThan(0);
  }, 180_000); // ~4 s alone; ten times that under a loaded CI (39 s seen), past vitest's 30 s

  it('a conversion over five pages objects asks the policy once either way, and the same consumers hear of it', () => {
    for (const shortcuts of [true, false]) {
      const log: string[] = [];
      const { backend, asked } = backendWith(({ to }) => (to === 'private' ? 'revoke' : 'tolerate'), ['to'], log);
      const w = world(backend, 'gmem-registry', log);
      const quiet = new Quiet('quiet', 0, PAGES, log);
      w.consumers.push(quiet);
      w.gmem.registerConsumer(quiet);
      // Pages [4, 16): IOAS 1's areas 0-2, IOAS 2's first area and the copy: five pages objects.
      const s: Step = { kind: 'convert', first: 4, count: 12, to: 'shared' };
      run(w, { ...s, to: 'private' }, shortcuts);
      expect(asked.count).toBe(1);
      run(w, s, shortcuts);
      expect(asked.count).toBe(2);
      expect(log).toEqual([
        'policy private [4, 16)',
        'quiet begin to-private [4, 16)',
        'quiet end to-private [4, 16)',
        'policy shared [4, 16)',
        'quiet begin to-shared [4, 16)',
        'quiet end to-shared [4, 16)',
      ]);
    }
  });

  it('a consumer that answers, registered before every pages object over the range, is asked before the policy', () => {
    const logs: string[][] = [];
    for (const shortcuts of [true, false]) {
      const log: string[] = [];
      const { backend } = backendWith(() => 'tolerate', [], log);
      const w = world(backend, 'gmem-registry', log);
      // IOAS 1's area 4 (pages [24, 30)) is the only area there; mapped again, its pages object registers after
      // the consumer.
      run(w, { kind: 'register', first: 24, count: 6, answer: 'tolerate' }, shortcuts);
      run(w, { kind: 'remap', area: 4 }, shortcuts);
      run(w, { kind: 'convert', first: 25, count: 2, to: 'private' }, shortcuts);
      // A throwing one fails the conversion before the policy is asked.
      run(w, { kind: 'register', first: 24, count: 6, answer: 'throw' }, shortcuts);
      run(w, { kind: 'remap', area: 4 }, shortcuts);
      const failed = run(w, { kind: 'convert', first: 25, count: 2, to: 'shared' }, shortcuts);
      expect(failed.outcome).toMatchObject({ errno: 'EIO' });
      logs.push(log);
    }
    expect(logs[0]).toEqual([
      'consumer:0 asked private [25, 27)',
      'policy private [25, 27)',
      'consumer:0 asked shared [25, 27)',
      'consumer:1 asked shared [25, 27)',
    ]);
    expect(logs[1]).toEqual(logs[0]);
  });
});
