/**
 * Random sequences of API calls, valid and hostile, in both contract modes (issue: at least 100,000 calls per
 * CI run in all). Properties:
 * - nothing but GmemError escapes a call, until a fatal fault crashes the host; from then on every call throws
 *   HostCrashedError (the sequence stops there);
 * - a call that throws leaves the model as it was (host.snapshot() before and after), with two documented
 *   exceptions the kernel itself makes: IOMMU_IOAS_UNMAP unmaps areas one by one, and areas wholly inside the
 *   range that were unmapped before the failing area stay unmapped (kernel-contract §5.3); madvise applies the
 *   advice to the mapped part of a range before it reports ENOMEM for the hole (madvise_walk_vmas, as the
 *   running kernel shows);
 * - in 'gmem-registry' mode, host.checkInvariants() is empty after every step.
 */
import {
  createHost,
  GmemError,
  HostCrashedError,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  MADV_HWPOISON,
  PAGE_SIZE,
  type ArchBackend,
  type Contract,
  type Device,
  type GuestMemfd,
  type Host,
  type HostMapping,
  type Ioas,
  type Memfd,
  type Vm,
} from '@gmemlab/core';
import { armCca } from '@gmemlab/arm-cca';
import { pkvm } from '@gmemlab/pkvm';
import { sevSnp } from '@gmemlab/sev-snp';
import { tdx } from '@gmemlab/tdx';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const P = PAGE_SIZE;
const RUNS = Number(process.env.GMEMLAB_PROPERTY_RUNS ?? 1000);
const STEPS = 60;
const BACKEND_RUNS = Math.max(1, Math.round(RUNS / 10));
const BACKENDS: ArchBackend[] = [
  tdx,
  tdx({ variant: 'connect' }),
  tdx({ dmaToPrivate: 'poison', pwMceErratum: false }),
  sevSnp,
  sevSnp({ variant: 'tio' }),
  armCca,
  armCca({ variant: 'da' }),
  pkvm,
  pkvm({ variant: 'upstream' }),
  pkvm({ unshare: 'refuse-dma-mapped', hostAbort: 'hyp-bug' }),
];

interface World {
  host: Host;
  vms: Vm[];
  gmems: GuestMemfd[];
  memfds: Memfd[];
  mappings: HostMapping[];
  ioases: Ioas[];
  devices: Device[];
  pins: Array<{ unpin(): void }>;
  /** Guest faults after their first step (resolve), waiting to be installed. */
  faults: Array<{ install(): unknown }>;
  /** The range of the last IOMMU_IOAS_UNMAP attempted. */
  lastUnmap?: { iova: unknown; length: unknown };
}

/** Hostile values a JavaScript caller might pass anywhere a number is expected. */
const hostile = fc.constantFrom<unknown>(NaN, -1, -P, 1.5, 2 ** 53, 2 ** 64, 2n ** 63n, 2n ** 64n - 1n, -1n, '4096', undefined, null, {}, Infinity);
/** Offsets and lengths around page boundaries and small file ends. */
const nearPage = fc.tuple(fc.integer({ min: 0, max: 20 }), fc.constantFrom(-1, 0, 0, 0, 1)).map(([k, d]) => Math.max(0, k * P + d));
const pages = fc.integer({ min: 0, max: 16 }).map((n) => n * P);
const value = fc.oneof({ weight: 6, arbitrary: pages }, { weight: 3, arbitrary: nearPage }, { weight: 1, arbitrary: hostile });
const pick = fc.nat();

type Step = { name: string; run: (w: World) => void; toString?: () => string };

const step = <T,>(name: string, arb: fc.Arbitrary<T>, run: (w: World, a: T) => void): fc.Arbitrary<Step> =>
  arb.map((a) => {
    const shown = `${name}(${JSON.stringify(a, (_k, v) => (typeof v === 'bigint' ? `${v}n` : Number.isNaN(v) ? 'NaN' : v === undefined ? 'undefined' : v))})`;
    return { name: shown, run: (w: World) => run(w, a), toString: () => shown };
  });

/** Thrown when a step has nothing to act on; such a step is not counted as a call. */
const NOTHING = Symbol('nothing to act on');

function at<T>(list: T[], i: number): T {
  if (list.length === 0) throw NOTHING;
  return list[i % list.length]!;
}

const steps: fc.Arbitrary<Step> = fc.oneof(
  // First, so that shrinking turns irrelevant steps into no-ops and a counterexample shows only what matters.
  { weight: 1, arbitrary: fc.constant<Step>({ name: 'noop()', run: () => { throw NOTHING; } }) },
  step('createVm', fc.constantFrom('default', 'coco', 'coco', 'bogus'), (w, type) => w.vms.push(w.host.createVm({ type: type as 'coco' }))),
  step('createGuestMemfd', fc.record({ vm: pick, size: value, flags: fc.oneof(fc.integer({ min: 0, max: 7 }), hostile) }), (w, a) => {
    const vm = at(w.vms, a.vm);
    if (vm) w.gmems.push(vm.createGuestMemfd({ size: a.size as number, flags: a.flags as number }));
  }),
  step('close', fc.record({ g: pick }), (w, a) => at(w.gmems, a.g).close()),
  step('closeVm', fc.record({ vm: pick }), (w, a) => at(w.vms, a.vm).close()),
  step('closeMemfd', fc.record({ m: pick }), (w, a) => at(w.memfds, a.m).close()),
  step('fallocate', fc.record({ g: pick, mode: fc.oneof(fc.constantFrom(0, 1, 3, 2, 0x11, 0x81), hostile), off: value, len: value }), (w, a) =>
    at(w.gmems, a.g).fallocate(a.mode as number, a.off as number, a.len as number),
  ),
  step('mmap', fc.record({ g: pick, length: value, shared: fc.constantFrom<unknown>(true, true, false, 1), offset: value }), (w, a) => {
    const g = at(w.gmems, a.g);
    if (g) w.mappings.push(g.mmap({ length: a.length as number, shared: a.shared as boolean, offset: a.offset as number }));
  }),
  step('memfdMmap', fc.record({ m: pick, length: pages, shared: fc.boolean() }), (w, a) => {
    const m = at(w.memfds, a.m);
    if (m) w.mappings.push(m.mmap({ length: a.length, shared: a.shared }));
  }),
  step('munmap', fc.record({ m: pick }), (w, a) => at(w.mappings, a.m).munmap()),
  step('hostWrite', fc.record({ m: pick, off: value, len: fc.integer({ min: 0, max: 3 * P }), byte: fc.integer({ min: 1, max: 255 }) }), (w, a) =>
    at(w.mappings, a.m).write(a.off as number, new Uint8Array(a.len).fill(a.byte)),
  ),
  step('hostRead', fc.record({ m: pick, off: value, len: fc.oneof(fc.integer({ min: 0, max: 3 * P }), hostile) }), (w, a) => at(w.mappings, a.m).read(a.off as number, a.len as number)),
  step('madvise', fc.record({ m: pick, off: value, len: value, advice: fc.constantFrom<unknown>(4, 9, 14, 25, MADV_HWPOISON, 77, NaN) }), (w, a) =>
    at(w.mappings, a.m).madvise(a.off as number, a.len as number, a.advice as number),
  ),
  step('convert', fc.record({ g: pick, off: value, size: value, attributes: fc.oneof(fc.constantFrom(0, 8, 8), hostile), flags: fc.constantFrom<unknown>(undefined, 0, 0, 1) }), (w, a) =>
    at(w.gmems, a.g).setMemoryAttributes2({ offset: a.off as number, size: a.size as number, attributes: a.attributes as number, flags: a.flags as number }),
  ),
  step('pin', fc.record({ g: pick, off: pages, len: value }), (w, a) => {
    const g = at(w.gmems, a.g);
    if (g) w.pins.push(g.pin(a.off, a.len as number));
  }),
  step('unpin', fc.record({ p: pick }), (w, a) => at(w.pins, a.p).unpin()),
  step('bind', fc.record({ vm: pick, g: pick, slot: fc.integer({ min: 0, max: 3 }), gpa: value, size: value, off: value, flags: fc.constantFrom(4, 4, 0, 5, 6) }), (w, a) => {
    const vm = at(w.vms, a.vm);
    const g = at(w.gmems, a.g);
    vm.setUserMemoryRegion2({ slot: a.slot, flags: a.flags, guestPhysAddr: a.gpa as number, memorySize: a.size as number, guestMemfd: g ?? 0, guestMemfdOffset: a.off as number });
  }),
  step('deleteSlot', fc.record({ vm: pick, slot: fc.integer({ min: 0, max: 3 }) }), (w, a) =>
    at(w.vms, a.vm).setUserMemoryRegion2({ slot: a.slot, flags: 0, guestPhysAddr: 0, memorySize: 0 }),
  ),
  step('guestWrite', fc.record({ vm: pick, gpa: value, len: fc.integer({ min: 0, max: 2 * P }), byte: fc.integer({ min: 1, max: 255 }) }), (w, a) =>
    at(w.vms, a.vm).guestWrite(a.gpa as number, new Uint8Array(a.len).fill(a.byte)),
  ),
  step('guestRead', fc.record({ vm: pick, gpa: value, len: fc.integer({ min: 0, max: 2 * P }) }), (w, a) => at(w.vms, a.vm).guestRead(a.gpa as number, a.len)),
  // The guest names its intent (the TDX shared bit, the SNP C-bit): a mismatch is KVM_EXIT_MEMORY_FAULT.
  step('guestAccessIntent', fc.record({ vm: pick, gpa: fc.oneof(pages, value), write: fc.boolean(), intent: fc.constantFrom<unknown>('private', 'shared', 'private', 'other') }), (w, a) => {
    const vm = at(w.vms, a.vm);
    const options = { intent: a.intent as 'private' };
    return a.write ? vm.guestWrite(a.gpa as number, new Uint8Array([7]), options) : vm.guestRead(a.gpa as number, 8, options);
  }),
  // A guest fault in two steps, with anything in between (kernel-contract §3.6).
  step('resolveFault', fc.record({ vm: pick, gpa: fc.oneof(pages, value), write: fc.boolean(), intent: fc.constantFrom<unknown>(undefined, 'private', 'shared') }), (w, a) => {
    const fault = at(w.vms, a.vm).resolveGuestFault(a.gpa as number, { write: a.write, intent: a.intent as 'private' | undefined });
    if (!('ok' in fault)) w.faults.push(fault);
  }),
  step('installFault', fc.record({ f: pick }), (w, a) => at(w.faults, a.f).install()),
  step('memfdCreate', pages, (w, size) => w.memfds.push(w.host.memfdCreate(size))),
  step('createIoas', fc.constant(0), (w) => w.ioases.push(w.host.openIommufd().createIoas())),
  step('mapFile', fc.record({ i: pick, useMemfd: fc.boolean(), f: pick, start: value, len: value, iova: value, flags: fc.constantFrom<unknown>(6, 7, 2, 4, 1, 0, 8, 7) }), (w, a) => {
    const ioas = at(w.ioases, a.i);
    const file = a.useMemfd ? at(w.memfds, a.f) : at(w.gmems, a.f);
    ioas.mapFile({ fd: file ?? 99, start: a.start as number, length: a.len as number, iova: a.iova as number, flags: a.flags as number });
  }),
  step('mapUser', fc.record({ i: pick, m: pick, off: pages, len: value, fixed: fc.boolean(), iova: pages }), (w, a) => {
    const ioas = at(w.ioases, a.i);
    const mapping = at(w.mappings, a.m);
    const flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | (a.fixed ? IOMMU_IOAS_MAP_FIXED_IOVA : 0);
    if (ioas && mapping) ioas.map({ mapping, offset: a.off, length: a.len as number, iova: a.iova, flags });
  }),
  step('unmap', fc.record({ i: pick, iova: value, len: value }), (w, a) => {
    const ioas = at(w.ioases, a.i);
    w.lastUnmap = { iova: a.iova, length: a.len };
    ioas.unmap({ iova: a.iova as number, length: a.len as number });
  }),
  step('unmapArea', fc.record({ i: pick, a: pick, grow: fc.constantFrom(0, 0, P) }), (w, a) => {
    const ioas = at(w.ioases, a.i);
    const area = at(ioas.areaList(), a.a);
    const range = { iova: area.iova - a.grow, length: area.length + 2 * a.grow };
    w.lastUnmap = range;
    ioas.unmap(range);
  }),
  step('unmapAll', fc.record({ i: pick }), (w, a) => at(w.ioases, a.i).unmapAll()),
  step('attach', fc.record({ i: pick }), (w, a) => {
    const ioas = at(w.ioases, a.i);
    if (ioas) w.devices.push(ioas.attachDevice());
  }),
  step('detach', fc.record({ d: pick }), (w, a) => at(w.devices, a.d).detach()),
  step('dmaWrite', fc.record({ d: pick, iova: value, len: fc.integer({ min: 0, max: 2 * P }), byte: fc.integer({ min: 1, max: 255 }) }), (w, a) =>
    at(w.devices, a.d).dmaWrite(a.iova as number, new Uint8Array(a.len).fill(a.byte)),
  ),
  step('dmaRead', fc.record({ d: pick, iova: value, len: fc.integer({ min: 0, max: 2 * P }) }), (w, a) => at(w.devices, a.d).dmaRead(a.iova as number, a.len)),
  step('directMapWrite', fc.record({ g: pick, off: value, len: fc.integer({ min: 0, max: P }) }), (w, a) => at(w.gmems, a.g).directMapWrite(a.off as number, new Uint8Array(a.len).fill(7))),
);

type AreaSnap = { id: number; iova: number; length: number };
type IoasSnap = { id: number; areas: AreaSnap[] };

/**
 * A failed IOMMU_IOAS_UNMAP may have unmapped areas before the one that failed (and whatever their file
 * references kept alive may have been released). Check the kernel's rule instead of equality: only areas
 * wholly inside the range went, and at least one area partly inside it is still there.
 */
function checkPartialUnmap(before: unknown, after: unknown, iova: unknown, length: unknown, message: string): void {
  if (typeof iova !== 'number' || typeof length !== 'number') {
    expect(after, message).toEqual(before);
    return;
  }
  // IOAS ids are per iommufd, so pair the IOASes by position (the host lists them in creation order).
  const areasOf = (snap: unknown) => new Map((snap as { ioases: IoasSnap[] }).ioases.map((i, n) => [n, i.areas]));
  const was = areasOf(before);
  const now = areasOf(after);
  const last = iova + length - 1;
  let survivorPartlyInside = false;
  let vanished = 0;
  for (const [id, areas] of was) {
    const remaining = new Set((now.get(id) ?? []).map((a) => `${a.iova}:${a.length}`));
    for (const area of areas) {
      const inside = area.iova >= iova && area.iova + area.length - 1 <= last;
      const overlaps = area.iova <= last && area.iova + area.length - 1 >= iova;
      if (!remaining.has(`${area.iova}:${area.length}`)) {
        vanished++;
        expect(inside, `${message}: area ${area.iova}+${area.length} vanished`).toBe(true);
      }
      else if (overlaps && !inside) survivorPartlyInside = true;
    }
  }
  if (vanished === 0) expect(JSON.stringify(after, null, 1), message).toEqual(JSON.stringify(before, null, 1));
  else expect(survivorPartlyInside, message).toBe(true);
}

let callsMade = 0;
/** Successful calls by step name, so that the test can insist the sequences reach deep states. */
const succeeded = new Map<string, number>();

function runSequence(contract: Contract, sequence: Step[], backend?: ArchBackend): void {
  const host = createHost({ contract, ...(backend ? { backend } : {}) });
  const world: World = { host, vms: [host.createVm({ type: 'coco' })], gmems: [], memfds: [], mappings: [], ioases: [], devices: [], pins: [], faults: [] };
  // Start from a state worth exploring: a private-memory VM with a bound, mapped guest_memfd and an IOAS.
  const gmem = world.vms[0]!.createGuestMemfd({ size: 16 * P, flags: 3 });
  world.gmems.push(gmem);
  world.mappings.push(gmem.mmap({ length: 16 * P, shared: true }));
  world.ioases.push(host.openIommufd().createIoas());
  world.vms[0]!.setUserMemoryRegion2({ slot: 0, flags: 4, guestPhysAddr: 0, memorySize: 16 * P, guestMemfd: gmem });
  const unsafeByDesign = backend !== undefined && backend.mapsPrivatePages && !backend.deviceMayReach({ attribute: 'private', vmType: 'coco' });
  for (const s of sequence) {
    if (host.crashed) {
      // A fatal fault brought the host down: every call now throws HostCrashedError, and the sequence ends.
      let thrown: unknown;
      try {
        s.run(world);
      } catch (error) {
        thrown = error;
      }
      if (thrown !== NOTHING) expect(HostCrashedError.isInstance(thrown), `${s.name} on a crashed host must throw HostCrashedError, got ${String(thrown)}`).toBe(true);
      return;
    }
    const before = host.snapshot();
    try {
      s.run(world);
      callsMade++;
      const name = s.name.slice(0, s.name.indexOf('('));
      succeeded.set(name, (succeeded.get(name) ?? 0) + 1);
    } catch (error) {
      if (error === NOTHING) continue;
      callsMade++;
      if (!GmemError.isInstance(error)) throw new Error(`${s.name} threw a non-GmemError: ${String(error)}`);
      const after = host.snapshot();
      if (error.op === 'IOMMU_IOAS_UNMAP' && error.errno === 'ENOENT' && world.lastUnmap) {
        checkPartialUnmap(before, after, world.lastUnmap.iova, world.lastUnmap.length, `${s.name}: ${error.message}`);
      } else if (!(error.op === 'madvise' && error.errno === 'ENOMEM')) {
        expect(after, `${s.name} failed with ${error.message} but changed the model`).toEqual(before);
      }
    }
    // pKVM upstream maps private pages and has no DMA isolation: 'unsafe-iopte' is the truth about it, in both modes.
    if (contract === 'gmem-registry') expect(host.checkInvariants().filter((v) => !(unsafeByDesign && v.kind === 'unsafe-iopte')), `after ${s.name}`).toEqual([]);
  }
}

describe('random call sequences', () => {
  for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
    it(`only GmemError escapes, failed calls change nothing${contract === 'gmem-registry' ? ', invariants hold' : ''} ('${contract}')`, () => {
      const start = callsMade;
      fc.assert(
        fc.property(fc.array(steps, { minLength: STEPS, maxLength: STEPS }), (sequence) => runSequence(contract, sequence.filter((s) => s.name !== 'noop()'))),
        { numRuns: RUNS },
      );
      console.log(`${contract}: ${callsMade - start} calls in ${RUNS} sequences; successes: ${JSON.stringify(Object.fromEntries(succeeded))}`);
      // The sequences must reach the interesting states, not stop at argument checks (each of these succeeds
      // 50-250 times per 1,000 sequences; the floor leaves room for chance).
      for (const name of ['convert', 'fallocate', 'mapFile', 'attach', 'dmaWrite', 'guestWrite', 'bind', 'hostWrite', 'unmapArea']) {
        expect(succeeded.get(name) ?? 0, `successful ${name} calls`).toBeGreaterThan(RUNS / 100);
      }
      succeeded.clear();
    });
  }

  // The same properties with every architecture's backend and variant: whatever the policy, failed calls change
  // nothing and, in 'gmem-registry' mode, the invariants hold (the backend's own 'unsafe-iopte' rule included).
  for (const backend of BACKENDS) {
    it(`holds with the ${backend.id} backend in both modes`, () => {
      for (const contract of ['gmem-registry', 'vmm-driven'] as const) {
        fc.assert(
          fc.property(fc.array(steps, { minLength: STEPS, maxLength: STEPS }), (sequence) => runSequence(contract, sequence.filter((s) => s.name !== 'noop()'), backend)),
          { numRuns: BACKEND_RUNS },
        );
      }
    });
  }

  it('in vmm-driven mode a truncation under a live DMA mapping leaves a stale IOPTE', () => {
    const host = createHost({ contract: 'vmm-driven' });
    const gmem = host.createVm({ type: 'coco' }).createGuestMemfd({ size: 4 * P, flags: 3 });
    const ioas = host.openIommufd().createIoas();
    ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, flags: 6 });
    ioas.attachDevice();
    gmem.fallocate(3, 0, P);
    expect(host.checkInvariants().map((v) => v.kind)).toEqual(['stale-iopte']);
  });
});
