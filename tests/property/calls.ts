/**
 * Random sequences of API calls, valid and hostile: the generators and the checks shared by the CI property
 * tests (random-calls.test.ts, a fixed number of sequences) and `pnpm fuzz` (fuzz.fuzz.ts, a time budget).
 * Properties checked after every call:
 * - nothing but GmemError escapes a call, whatever the arguments and whatever the event listeners throw, until a
 *   fatal fault (a backend's machine check, oops or hypervisor panic) crashes the host; from then on every call
 *   throws HostCrashedError and changes nothing, and the sequence stops there;
 * - a call that throws leaves the model as it was (host.snapshot() before and after, of every host involved),
 *   with two documented exceptions the kernel itself makes: IOMMU_IOAS_UNMAP unmaps areas one by one, and areas
 *   wholly inside the range that were unmapped before the failing area stay unmapped (kernel-contract §5.3);
 *   madvise applies the advice to the mapped part of a range before it reports ENOMEM for the hole
 *   (madvise_walk_vmas, as the running kernel shows);
 * - no invalidation is left open (every VM's mmu.inProgress is 0 between calls), and every exception a
 *   listener threw was collected by host.events;
 * - in the registering modes ('gmem-registry', 'mirror'), host.checkInvariants() is empty after every step (but for 'unsafe-iopte' on a
 *   backend that maps private pages no device may reach: pKVM upstream, where that is the truth about it).
 */
import {
  createHost,
  registersWithGmem,
  EVENT_TYPES,
  GmemError,
  HostCrashedError,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  MADV_HWPOISON,
  PAGE_SIZE,
  type ArchBackend,
  type Contract,
  type Device,
  type GmemEventType,
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
import { unsafeByDesign } from '@gmemlab/core/testing';
import { writeSync } from 'node:fs';
import fc from 'fast-check';
import { expect } from 'vitest';

export const P = PAGE_SIZE;
export const STEPS = 60;
/** Every architecture's backend and variant, loaded by package name. */
export const BACKENDS: ArchBackend[] = [
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
/** The other readings the backends offer as options (pnpm fuzz runs these too). */
export const BACKEND_READINGS: ArchBackend[] = [
  tdx({ dmaToPrivate: 'poison' }),
  tdx({ pwMceErratum: false }),
  pkvm({ unshare: 'refuse-dma-mapped' }),
  pkvm({ hostAbort: 'hyp-bug' }),
];

export interface World {
  host: Host;
  /** A second host, whose objects the steps pass to the first one's calls (one host, one world). */
  other: { host: Host; gmem: GuestMemfd; mapping: HostMapping; memfd: Memfd };
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
export const hostile = fc.constantFrom<unknown>(
  NaN,
  -1,
  -P,
  1.5,
  3.5,
  2 ** 53,
  2 ** 64,
  2n ** 63n,
  2n ** 64n - 1n,
  -1n,
  2n,
  '4096',
  undefined,
  null,
  {},
  Infinity,
  1e15,
  // 4 GiB, a 32-bit shift that overflowed, MAX_RW_COUNT + 1.
  2 ** 32,
  2 << 30,
  0x7fff_f001,
  Symbol('hostile'),
);
/** Offsets and lengths around page boundaries and small file ends. */
const nearPage = fc
  .tuple(fc.integer({ min: 0, max: 20 }), fc.constantFrom(-1, 0, 0, 0, 1))
  .map(([k, d]) => Math.max(0, k * P + d));
const pages = fc.integer({ min: 0, max: 16 }).map((n) => n * P);
const value = fc.oneof(
  { weight: 6, arbitrary: pages },
  { weight: 3, arbitrary: nearPage },
  { weight: 1, arbitrary: hostile },
);
/** An access length: mostly small, sometimes hostile (4 GiB and beyond included). */
const accessLength = (max: number) =>
  fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max }) }, { weight: 1, arbitrary: hostile });
const pick = fc.nat();
/** Misspelt or unknown fields of struct-like arguments. */
const typo = fc.oneof(
  { weight: 15, arbitrary: fc.constant<Record<string, unknown> | undefined>(undefined) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Record<string, unknown>>(
      { guestMemfdOfset: 0 },
      { flag: 0 },
      { lenght: P },
      { ofset: 0 },
      { extra: 1 },
    ),
  },
);
/** Now and then an object of the other host instead of one of this host's. */
const foreign = fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });

/**
 * One call. `kind` is the step's name ('convert'); `name` shows its arguments too ('convert({...})') and is
 * built only when read (reports and messages), not for every step generated.
 */
export type Step = { kind: string; readonly name: string; run: (w: World) => void; toString?: () => string };

/**
 * Steps that are no kernel call, only observation (host.events): they work on a crashed host too (like
 * snapshot() and checkInvariants()), so there they may fail with a GmemError for a bad argument instead of
 * HostCrashedError.
 */
const OBSERVER_STEPS = new Set(['subscribe']);

function show(a: unknown): string {
  return JSON.stringify(a, (_k, v) =>
    typeof v === 'bigint'
      ? `${v}n`
      : typeof v === 'symbol'
        ? v.toString()
        : Number.isNaN(v)
          ? 'NaN'
          : v === Infinity
            ? 'Infinity'
            : v === undefined
              ? 'undefined'
              : v,
  );
}

/** A step of one kind with its arguments: a class, so that making one (for every step generated) is cheap. */
class CallStep<T> implements Step {
  private shown: string | undefined;
  constructor(
    readonly kind: string,
    private readonly args: T,
    private readonly call: (w: World, a: T) => void,
  ) {}

  get name(): string {
    return (this.shown ??= `${this.kind}(${show(this.args)})`);
  }

  run(w: World): void {
    this.call(w, this.args);
  }

  toString(): string {
    return this.name;
  }
}

const step = <T>(kind: string, arb: fc.Arbitrary<T>, run: (w: World, a: T) => void): fc.Arbitrary<Step> =>
  arb.map((a) => new CallStep(kind, a, run));

/**
 * fc.record(model) for a step's arguments, cheaper to generate: the same tuple of values (and the same boolean
 * fc.record draws last, whether the object has a null prototype, drawn and dropped, so that a seed still names
 * the sequence it named before), put into a plain object. fc.record builds a null-prototype object half the
 * time, which V8 keeps as a dictionary; the steps only read the fields.
 */
function record<T extends Record<string, unknown>>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  const keys = Object.keys(model) as Array<keyof T & string>;
  const values = keys.map((key) => model[key] as fc.Arbitrary<unknown>);
  return fc.tuple(...values, fc.boolean()).map((drawn) => {
    const args: Record<string, unknown> = {};
    for (let i = 0; i < keys.length; i++) args[keys[i]!] = drawn[i];
    return args as T;
  });
}

/** Thrown when a step has nothing to act on; such a step is not counted as a call. */
export const NOTHING = Symbol('nothing to act on');

function at<T>(list: T[], i: number): T {
  if (list.length === 0) throw NOTHING;
  return list[i % list.length]!;
}

export const steps: fc.Arbitrary<Step> = fc.oneof(
  // withCrossShrink: a step shrinks to the first arbitrary, the no-op, so that a counterexample shows only the
  // steps that matter (without it, fast-check shrinks each step only within its own kind).
  { withCrossShrink: true },
  {
    weight: 1,
    arbitrary: fc.constant<Step>({
      kind: 'noop',
      name: 'noop()',
      run: () => {
        throw NOTHING;
      },
    }),
  },
  step('createVm', fc.constantFrom('default', 'coco', 'coco', 'bogus'), (w, type) =>
    w.vms.push(w.host.createVm({ type: type as 'coco' })),
  ),
  step(
    'createGuestMemfd',
    record({ vm: pick, size: value, flags: fc.oneof(fc.integer({ min: 0, max: 7 }), hostile), typo }),
    (w, a) => {
      const vm = at(w.vms, a.vm);
      if (vm) w.gmems.push(vm.createGuestMemfd({ size: a.size as number, flags: a.flags as number, ...a.typo }));
    },
  ),
  step('close', record({ g: pick }), (w, a) => at(w.gmems, a.g).close()),
  step('closeVm', record({ vm: pick }), (w, a) => at(w.vms, a.vm).close()),
  step('closeMemfd', record({ m: pick }), (w, a) => at(w.memfds, a.m).close()),
  step(
    'fallocate',
    record({
      g: pick,
      mode: fc.oneof(fc.constantFrom(0, 1, 3, 2, 0x11, 0x81, -0x1000), hostile),
      off: value,
      len: value,
    }),
    (w, a) => at(w.gmems, a.g).fallocate(a.mode as number, a.off as number, a.len as number),
  ),
  step(
    'mmap',
    record({ g: pick, length: value, shared: fc.constantFrom<unknown>(true, true, false, 1), offset: value, typo }),
    (w, a) => {
      const g = at(w.gmems, a.g);
      if (g)
        w.mappings.push(
          g.mmap({ length: a.length as number, shared: a.shared as boolean, offset: a.offset as number, ...a.typo }),
        );
    },
  ),
  step('memfdMmap', record({ m: pick, length: pages, shared: fc.boolean() }), (w, a) => {
    const m = at(w.memfds, a.m);
    if (m) w.mappings.push(m.mmap({ length: a.length, shared: a.shared }));
  }),
  step('memfdRead', record({ m: pick, off: value, len: accessLength(3 * P) }), (w, a) =>
    at(w.memfds, a.m).pread(a.len as number, a.off as number),
  ),
  step('munmap', record({ m: pick }), (w, a) => at(w.mappings, a.m).munmap()),
  step(
    'hostWrite',
    record({ m: pick, off: value, len: fc.integer({ min: 0, max: 3 * P }), byte: fc.integer({ min: 1, max: 255 }) }),
    (w, a) => at(w.mappings, a.m).write(a.off as number, new Uint8Array(a.len).fill(a.byte)),
  ),
  step('hostRead', record({ m: pick, off: value, len: accessLength(3 * P) }), (w, a) =>
    at(w.mappings, a.m).read(a.off as number, a.len as number),
  ),
  step(
    'madvise',
    record({
      m: pick,
      off: value,
      len: value,
      advice: fc.constantFrom<unknown>(4, 9, 14, 25, MADV_HWPOISON, 77, NaN),
    }),
    (w, a) => at(w.mappings, a.m).madvise(a.off as number, a.len as number, a.advice as number),
  ),
  step(
    'memoryFailure',
    record({
      g: pick,
      index: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 20 }) }, { weight: 1, arbitrary: hostile }),
    }),
    (w, a) => at(w.gmems, a.g).memoryFailure(a.index as number),
  ),
  step(
    'convert',
    record({
      g: pick,
      off: value,
      size: value,
      attributes: fc.oneof(fc.constantFrom(0, 8, 8), hostile),
      flags: fc.constantFrom<unknown>(undefined, 0, 0, 1),
      typo,
    }),
    (w, a) =>
      at(w.gmems, a.g).setMemoryAttributes2({
        offset: a.off as number,
        size: a.size as number,
        attributes: a.attributes as number,
        flags: a.flags as number,
        ...a.typo,
      }),
  ),
  step('pin', record({ g: pick, off: pages, len: value }), (w, a) => {
    const g = at(w.gmems, a.g);
    if (g) w.pins.push(g.pin(a.off, a.len as number));
  }),
  step('unpin', record({ p: pick }), (w, a) => at(w.pins, a.p).unpin()),
  step(
    'bind',
    record({
      vm: pick,
      g: pick,
      slot: fc.integer({ min: 0, max: 3 }),
      gpa: value,
      size: value,
      off: value,
      flags: fc.constantFrom(4, 4, 0, 5, 6),
      foreign,
      typo,
    }),
    (w, a) => {
      const vm = at(w.vms, a.vm);
      // Now and then the guest_memfd of the other host: EBADF, whatever fd number it has.
      const g = a.foreign ? w.other.gmem : at(w.gmems, a.g);
      vm.setUserMemoryRegion2({
        slot: a.slot,
        flags: a.flags,
        guestPhysAddr: a.gpa as number,
        memorySize: a.size as number,
        guestMemfd: g ?? 0,
        guestMemfdOffset: a.off as number,
        ...a.typo,
      });
    },
  ),
  step('deleteSlot', record({ vm: pick, slot: fc.integer({ min: 0, max: 3 }) }), (w, a) =>
    at(w.vms, a.vm).setUserMemoryRegion2({ slot: a.slot, flags: 0, guestPhysAddr: 0, memorySize: 0 }),
  ),
  step(
    'guestWrite',
    record({
      vm: pick,
      gpa: value,
      len: fc.integer({ min: 0, max: 2 * P }),
      byte: fc.integer({ min: 1, max: 255 }),
    }),
    (w, a) => at(w.vms, a.vm).guestWrite(a.gpa as number, new Uint8Array(a.len).fill(a.byte)),
  ),
  step('guestRead', record({ vm: pick, gpa: value, len: accessLength(2 * P) }), (w, a) =>
    at(w.vms, a.vm).guestRead(a.gpa as number, a.len as number),
  ),
  // The guest names its intent (the TDX shared bit, the SNP C-bit): a mismatch is KVM_EXIT_MEMORY_FAULT.
  step(
    'guestAccessIntent',
    record({
      vm: pick,
      gpa: fc.oneof(pages, value),
      write: fc.boolean(),
      intent: fc.constantFrom<unknown>('private', 'shared', 'private', 'other'),
    }),
    (w, a) => {
      const vm = at(w.vms, a.vm);
      const options = { intent: a.intent as 'private' };
      return a.write
        ? vm.guestWrite(a.gpa as number, new Uint8Array([7]), options)
        : vm.guestRead(a.gpa as number, 8, options);
    },
  ),
  // A guest fault in two steps, with anything in between (kernel-contract §3.6).
  step(
    'resolveFault',
    record({
      vm: pick,
      gpa: fc.oneof(pages, value),
      write: fc.boolean(),
      intent: fc.constantFrom<unknown>(undefined, 'private', 'shared'),
    }),
    (w, a) => {
      const fault = at(w.vms, a.vm).resolveGuestFault(a.gpa as number, {
        write: a.write,
        intent: a.intent as 'private' | undefined,
      });
      if (!('ok' in fault)) w.faults.push(fault);
    },
  ),
  step('installFault', record({ f: pick }), (w, a) => at(w.faults, a.f).install()),
  step(
    'checkExtension',
    record({
      vm: pick,
      onVm: fc.boolean(),
      cap: fc.oneof(fc.constantFrom(KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, 0, -1), hostile),
    }),
    (w, a) => (a.onVm ? at(w.vms, a.vm).checkExtension(a.cap as number) : w.host.checkExtension(a.cap as number)),
  ),
  step('memfdCreate', pages, (w, size) => w.memfds.push(w.host.memfdCreate(size))),
  step('createIoas', fc.constant(0), (w) => w.ioases.push(w.host.openIommufd().createIoas())),
  step(
    'mapFile',
    record({
      i: pick,
      useMemfd: fc.boolean(),
      foreign,
      f: pick,
      start: value,
      len: value,
      iova: value,
      flags: fc.constantFrom<unknown>(6, 7, 2, 4, 1, 0, 8, 7),
      typo,
    }),
    (w, a) => {
      const ioas = at(w.ioases, a.i);
      const file = a.foreign
        ? a.useMemfd
          ? w.other.memfd
          : w.other.gmem
        : a.useMemfd
          ? at(w.memfds, a.f)
          : at(w.gmems, a.f);
      ioas.mapFile({
        fd: file ?? 99,
        start: a.start as number,
        length: a.len as number,
        iova: a.iova as number,
        flags: a.flags as number,
        ...a.typo,
      });
    },
  ),
  step(
    'mapUser',
    record({ i: pick, m: pick, off: pages, len: value, fixed: fc.boolean(), iova: pages, foreign }),
    (w, a) => {
      const ioas = at(w.ioases, a.i);
      const mapping = a.foreign ? w.other.mapping : at(w.mappings, a.m);
      const flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | (a.fixed ? IOMMU_IOAS_MAP_FIXED_IOVA : 0);
      if (ioas && mapping) ioas.map({ mapping, offset: a.off, length: a.len as number, iova: a.iova, flags });
    },
  ),
  step('unmap', record({ i: pick, iova: value, len: value }), (w, a) => {
    const ioas = at(w.ioases, a.i);
    w.lastUnmap = { iova: a.iova, length: a.len };
    ioas.unmap({ iova: a.iova as number, length: a.len as number });
  }),
  step('unmapArea', record({ i: pick, a: pick, grow: fc.constantFrom(0, 0, P) }), (w, a) => {
    const ioas = at(w.ioases, a.i);
    const area = at(ioas.listAreas(), a.a);
    const range = { iova: area.iova - a.grow, length: area.length + 2 * a.grow };
    w.lastUnmap = range;
    ioas.unmap(range);
  }),
  step('unmapAll', record({ i: pick }), (w, a) => at(w.ioases, a.i).unmapAll()),
  // IOMMU_IOAS_COPY of a slice of an existing area (or a hostile range), into the same IOAS or another one
  // (another iommufd: ENOENT), with or without a fixed IOVA; the copy shares the source's pages (§5.3).
  step(
    'copy',
    record({
      i: pick,
      j: pick,
      same: fc.boolean(),
      a: pick,
      off: pages,
      len: fc.oneof({ weight: 3, arbitrary: fc.constant(P) }, { weight: 1, arbitrary: value }),
      fixed: fc.boolean(),
      iova: value,
      flags: fc.constantFrom<unknown>(6, 6, 4, 2, 0, 8),
      hostileSrc: fc.boolean(),
      src: value,
    }),
    (w, a) => {
      const src = at(w.ioases, a.i);
      const dst = a.same ? src : at(w.ioases, a.j);
      const area = at(src.listAreas(), a.a);
      const srcIova = (a.hostileSrc && a.fixed) || !area ? a.src : area.iova + Math.min(a.off, area.length - P);
      const flags = typeof a.flags === 'number' && a.fixed ? a.flags | IOMMU_IOAS_MAP_FIXED_IOVA : a.flags;
      dst.copy({
        src,
        srcIova: srcIova as number,
        length: a.len as number,
        ...(a.fixed ? { iova: a.iova as number } : {}),
        flags: flags as number,
      });
    },
  ),
  step('attach', record({ i: pick }), (w, a) => {
    const ioas = at(w.ioases, a.i);
    if (ioas) w.devices.push(ioas.attachDevice());
  }),
  step('detach', record({ d: pick }), (w, a) => at(w.devices, a.d).detach()),
  step(
    'dmaWrite',
    record({
      d: pick,
      iova: value,
      len: fc.integer({ min: 0, max: 2 * P }),
      byte: fc.integer({ min: 1, max: 255 }),
    }),
    (w, a) => at(w.devices, a.d).dmaWrite(a.iova as number, new Uint8Array(a.len).fill(a.byte)),
  ),
  step('dmaRead', record({ d: pick, iova: value, len: accessLength(2 * P) }), (w, a) =>
    at(w.devices, a.d).dmaRead(a.iova as number, a.len as number),
  ),
  step('directMapWrite', record({ g: pick, off: value, len: fc.integer({ min: 0, max: P }) }), (w, a) =>
    at(w.gmems, a.g).directMapWrite(a.off as number, new Uint8Array(a.len).fill(7)),
  ),
  step('directMapRead', record({ g: pick, off: value, len: accessLength(P) }), (w, a) =>
    at(w.gmems, a.g).directMapRead(a.off as number, a.len as number),
  ),
  step(
    'subscribe',
    record({ listener: hostile, type: fc.constantFrom<unknown>('zap', 'zapp', undefined, 'call') }),
    (w, a) =>
      a.type === undefined
        ? w.host.events.subscribe(a.listener as never)
        : w.host.events.on(a.type as 'zap', a.listener as never),
  ),
);

/** Event listeners that throw: on every `every`-th event of the chosen types, from the `skip`-th on. */
export interface ThrowingListeners {
  types: GmemEventType[];
  every: number;
  skip: number;
}

export const throwingListeners: fc.Arbitrary<ThrowingListeners> = fc.record({
  types: fc.subarray([...EVENT_TYPES], { minLength: 1 }),
  every: fc.integer({ min: 1, max: 20 }),
  skip: fc.nat({ max: 50 }),
});

/**
 * Exact equality of plain data (arrays, plain objects, primitives compared with Object.is), stricter than
 * toEqual (which also ignores undefined properties); anything else is "not known equal".
 */
function samePlainData(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!samePlainData(a[i], b[i])) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(a);
  if ((proto !== Object.prototype && proto !== null) || Object.getPrototypeOf(b) !== proto || Array.isArray(b))
    return false;
  // Own enumerable string keys, as Object.keys lists them, counted without building the two key arrays (a
  // for-in loop also visits inherited enumerable keys: those are skipped).
  let keys = 0;
  for (const key in a) {
    if (!hasOwn(a, key)) continue;
    keys++;
    if (!hasOwn(b, key) || !samePlainData((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]))
      return false;
  }
  for (const key in b) if (hasOwn(b, key)) keys--;
  return keys === 0;
}

const hasOwn = (o: object, key: string) => Object.prototype.hasOwnProperty.call(o, key);

/**
 * expect(actual, message).toEqual(expected), asked only when an exact comparison of the plain data finds a
 * difference: exact equality implies toEqual's, so the verdict is toEqual's, at a fraction of the cost of a
 * matcher per call.
 */
function expectSame(actual: unknown, expected: unknown, message: string | (() => string)): void {
  if (samePlainData(actual, expected)) return;
  expect(actual, typeof message === 'function' ? message() : message).toEqual(expected);
}

type AreaSnap = { id: number; iova: number; length: number };
type IoasSnap = { id: number; areas: AreaSnap[] };

/**
 * A failed IOMMU_IOAS_UNMAP may have unmapped areas before the one that failed (and whatever their file
 * references kept alive may have been released). Check the kernel's rule instead of equality: only areas
 * wholly inside the range went, and at least one area partly inside it is still there.
 */
function checkPartialUnmap(
  before: unknown,
  after: unknown,
  iovaArg: unknown,
  lengthArg: unknown,
  message: () => string,
): void {
  // Bigints are as good as numbers here (the hostile values include 2n).
  const iova = typeof iovaArg === 'bigint' && iovaArg <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(iovaArg) : iovaArg;
  const length =
    typeof lengthArg === 'bigint' && lengthArg <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(lengthArg) : lengthArg;
  if (typeof iova !== 'number' || typeof length !== 'number') {
    expectSame(after, before, message);
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
        if (!inside) expect(inside, `${message()}: area ${area.iova}+${area.length} vanished`).toBe(true);
      } else if (overlaps && !inside) survivorPartlyInside = true;
    }
  }
  if (vanished === 0) expectSame(after, before, message);
  else if (!survivorPartlyInside) expect(survivorPartlyInside, message()).toBe(true);
}

/**
 * Whether some area of the snapshot's IOASes has the IOAS id, area id and IOVA an area's info names, and holds
 * IOPTEs exactly when the info says so (IOAS ids are per iommufd, so more than one IOAS may carry an id).
 */
function snapshotHolds(
  ioases: ReadonlyArray<{ id: number; areas: ReadonlyArray<{ id: number; iova: number; ioptes: readonly unknown[] }> }>,
  info: { ioas: number; area: number; iova: number; hasIoptes: boolean },
): boolean {
  for (const ioas of ioases) {
    if (ioas.id !== info.ioas) continue;
    for (const area of ioas.areas)
      if (area.id === info.area && area.iova === info.iova && area.ioptes.length > 0 === info.hasIoptes) return true;
  }
  return false;
}

/** What the runs did, across sequences. */
export const stats = {
  calls: 0,
  /** Successful calls by step name, so that a test can insist the sequences reach deep states. */
  succeeded: new Map<string, number>(),
  /** Exceptions thrown by listeners (and recorded by the host: Host.observerErrors()). */
  listenerThrows: 0,
  /** Sequences that ended with the host crashed by a fatal fault. */
  crashes: 0,
};

/**
 * The seed of the property tests' sequences: GMEMLAB_PROPERTY_SEED, or a fresh one per test file (each file
 * imports this module afresh). A test file calls `announceSeed` before any sequence runs: the line goes to stderr
 * directly (not through the test runner's console, which a test that never returns would hold back), so a run that
 * hangs or fails can be replayed with GMEMLAB_PROPERTY_SEED=<seed>. Each assert draws from `seedFor(k)`, the seed
 * plus its own index (so two asserts do not draw the same sequences); `checkProperty` names the seed to set when
 * one fails (fast-check's message gives the assert's own seed, `seedFor(k)`).
 */
export const SEED = propertySeed();
export const seedFor = (k: number): number => (SEED + k) | 0;

function propertySeed(): number {
  const raw = process.env.GMEMLAB_PROPERTY_SEED;
  const seed = raw === undefined ? (Date.now() ^ Math.floor(Math.random() * 2 ** 31)) | 0 : Number(raw);
  if (!Number.isInteger(seed) || seed < -(2 ** 31) || seed >= 2 ** 31)
    throw new Error(`GMEMLAB_PROPERTY_SEED must be a 32-bit integer, not ${String(raw)}`);
  return seed;
}

/** Print this file's seed to stderr, before its sequences run. */
export function announceSeed(file: string): void {
  writeSync(2, `property tests (${file}): seed ${SEED} (replay with GMEMLAB_PROPERTY_SEED=${SEED})\n`);
}

/** fc.assert with the k-th seed; a failure's message ends with the environment that replays it. */
export function checkProperty<T extends [unknown, ...unknown[]]>(
  property: fc.IProperty<T>,
  numRuns: number,
  k: number,
): void {
  try {
    fc.assert(property, { numRuns, seed: seedFor(k) });
  } catch (error) {
    if (error instanceof Error)
      error.message += `\nReplay this file's sequences with GMEMLAB_PROPERTY_SEED=${SEED} (this assert's fast-check seed is ${seedFor(k)}).`;
    throw error;
  }
}

/**
 * How long one sequence may run (GMEMLAB_SEQUENCE_BUDGET_MS, default 60 s): a sequence of at most a few hundred
 * calls takes milliseconds, and seconds beside busy neighbours. One that takes longer fails, naming the call it
 * had reached, so a spin is a failure with a seed rather than a run that never ends (a single call that never
 * returns is still only stopped from outside).
 */
export const SEQUENCE_BUDGET_MS = sequenceBudget();

function sequenceBudget(): number {
  const raw = process.env.GMEMLAB_SEQUENCE_BUDGET_MS;
  const budget = raw === undefined ? 60_000 : Number(raw);
  if (!(budget > 0)) throw new Error(`GMEMLAB_SEQUENCE_BUDGET_MS must be a positive number of ms, not ${String(raw)}`);
  return budget;
}

/**
 * A sequence that ran past its time budget: a spin, or a machine too busy for the budget. Not a wrong answer of the
 * model, so `pnpm fuzz` reports it apart, with its seed, and does not shrink it (a shorter sequence that also runs
 * long on a busy machine says nothing).
 */
export class SequenceOverBudget extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SequenceOverBudget';
  }
}

export interface RunOptions {
  backend?: ArchBackend;
  listeners?: ThrowingListeners | null;
  /** How long the sequence may run (default SEQUENCE_BUDGET_MS). */
  budgetMs?: number;
}

/** A second host, with a guest_memfd, a mapping of it and a memfd, whose objects the steps pass to the first. */
function newOther(contract: Contract, backend: ArchBackend | undefined): World['other'] {
  const otherHost = createHost({ contract, ...(backend ? { backend } : {}) });
  const otherGmem = otherHost.createVm({ type: 'coco' }).createGuestMemfd({ size: 16 * P, flags: 3 });
  return {
    host: otherHost,
    gmem: otherGmem,
    mapping: otherGmem.mmap({ length: 16 * P, shared: true }),
    memfd: otherHost.memfdCreate(16 * P),
  };
}

/**
 * The second host of each backend and contract, shared by the sequences runSequence runs with them (building one
 * per sequence was about a twentieth of the time). No step acts on it: every sequence checks at its end that its
 * snapshot is the one it had at the start, and a sequence that fails a check drops it, so that the next one (and
 * the rerun with stack traces) starts with a new one.
 */
const sharedOthers = new Map<ArchBackend | undefined, Map<Contract, World['other']>>();

function sharedOther(contract: Contract, backend: ArchBackend | undefined): World['other'] {
  let byContract = sharedOthers.get(backend);
  if (byContract === undefined) sharedOthers.set(backend, (byContract = new Map()));
  let other = byContract.get(contract);
  if (other === undefined) byContract.set(contract, (other = newOther(contract, backend)));
  return other;
}

export function newWorld(
  contract: Contract,
  backend: ArchBackend | undefined,
  other: World['other'] = newOther(contract, backend),
): World {
  const host = createHost({ contract, ...(backend ? { backend } : {}) });
  const world: World = {
    host,
    other,
    vms: [host.createVm({ type: 'coco' })],
    gmems: [],
    memfds: [],
    mappings: [],
    ioases: [],
    devices: [],
    pins: [],
    faults: [],
  };
  // Start from a state worth exploring: a private-memory VM with a bound, mapped guest_memfd and an IOAS.
  const gmem = world.vms[0]!.createGuestMemfd({ size: 16 * P, flags: 3 });
  world.gmems.push(gmem);
  world.mappings.push(gmem.mmap({ length: 16 * P, shared: true }));
  world.ioases.push(host.openIommufd().createIoas());
  world.vms[0]!.setUserMemoryRegion2({ slot: 0, flags: 4, guestPhysAddr: 0, memorySize: 16 * P, guestMemfd: gmem });
  return world;
}

/**
 * Run a sequence on a new host (and the second host of its backend and contract, sharedOther) and check its
 * properties after every call. Most calls are hostile and fail with a GmemError, and capturing a
 * stack for each one (through fast-check's deep frames) cost about a seventh of a call, so the sequence runs
 * with Error.stackTraceLimit 0. The model is deterministic: when a property fails, the sequence runs again with
 * stack traces on, so the failure fast-check reports carries its stack.
 */
export function runSequence(contract: Contract, sequence: Step[], options: RunOptions = {}): void {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    runSequenceOnce(contract, sequence, options);
  } catch (error) {
    // A sequence over its budget is not run again (that would take its budget a second time).
    if (error instanceof SequenceOverBudget) throw error;
    Error.stackTraceLimit = limit;
    try {
      runSequenceOnce(contract, sequence, options);
    } catch (again) {
      // The run with stack traces is slower: one that runs past the budget must not hide the failure found.
      if (!(again instanceof SequenceOverBudget)) throw again;
    }
    throw error;
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function runSequenceOnce(contract: Contract, sequence: Step[], options: RunOptions): void {
  let checked = false;
  try {
    checkSequence(contract, sequence, options);
    checked = true;
  } finally {
    if (!checked) sharedOthers.get(options.backend)?.delete(contract);
  }
}

function checkSequence(contract: Contract, sequence: Step[], options: RunOptions): void {
  const world = newWorld(contract, options.backend, sharedOther(contract, options.backend));
  const { host } = world;
  let thrown = 0;
  const plan = options.listeners;
  if (plan) {
    let seen = 0;
    host.events.subscribe((event) => {
      if (!plan.types.includes(event.type)) return;
      seen++;
      if (seen > plan.skip && (seen - plan.skip) % plan.every === 0) {
        thrown++;
        throw new Error(`hostile listener on ${event.type} #${seen}`);
      }
    });
  }
  // No step acts on the other host directly: any change to it is a bug, checked at the end of the sequence.
  const otherBefore = world.other.host.snapshot();
  let last: Step | undefined;
  /** A snapshot of the state now, when one was taken since the last change. */
  let known: unknown;
  const checkNoOpenInvalidation = (snap: unknown) => {
    for (const vm of (snap as { vms: Array<{ fd: number; mmu: { inProgress: number } }> }).vms) {
      if (vm.mmu.inProgress !== 0)
        expect(
          vm.mmu.inProgress,
          `after ${last?.name ?? 'the set-up'}: vm ${vm.fd} has an invalidation left open`,
        ).toBe(0);
    }
  };
  const backend = options.backend;
  const unsafe = backend !== undefined && unsafeByDesign(backend);
  const started = performance.now();
  const budget = options.budgetMs ?? SEQUENCE_BUDGET_MS;
  let done = 0;
  for (const s of sequence) {
    if (performance.now() - started > budget)
      throw new SequenceOverBudget(
        `a sequence ran past ${budget} ms: ${done} of ${sequence.length} calls done, the last ${last?.name ?? 'none'}`,
      );
    done++;
    if (host.crashed) {
      // A fatal fault brought the host down: every call now throws HostCrashedError, changing nothing, and the
      // sequence ends.
      const crashed = host.snapshot();
      let refusal: unknown;
      try {
        s.run(world);
      } catch (error) {
        refusal = error;
      }
      if (refusal === NOTHING) continue;
      const observer = OBSERVER_STEPS.has(s.kind);
      const expected = HostCrashedError.isInstance(refusal) || (observer && GmemError.isInstance(refusal));
      if (!expected)
        expect(expected, `${s.name} on a crashed host must throw HostCrashedError, got ${String(refusal)}`).toBe(true);
      expectSame(host.snapshot(), crashed, () => `${s.name} on a crashed host changed the model`);
      break;
    }
    // The state after a failed call (checked equal to the one before it) is the state before the next call:
    // nothing runs in between but reads.
    const before = known ?? host.snapshot();
    known = undefined;
    checkNoOpenInvalidation(before);
    last = s;
    let failure: unknown;
    try {
      s.run(world);
      stats.calls++;
      stats.succeeded.set(s.kind, (stats.succeeded.get(s.kind) ?? 0) + 1);
    } catch (error) {
      if (error === NOTHING) {
        known = before;
        continue;
      }
      stats.calls++;
      failure = error;
    }
    // A call whose own fault crashed the host may end with HostCrashedError: the crash is recorded, and the
    // sequence ends.
    if (failure !== undefined && HostCrashedError.isInstance(failure)) {
      if (!host.crashed)
        expect(host.crashed, `${s.name} threw HostCrashedError, but the host has no crash record`).toBeTruthy();
      break;
    }
    if (failure !== undefined) {
      if (!GmemError.isInstance(failure))
        throw new Error(`escape: ${s.name} threw a non-GmemError: ${String(failure)}`, { cause: failure });
      const after = host.snapshot();
      if (failure.op === 'IOMMU_IOAS_UNMAP' && failure.errno === 'ENOENT' && world.lastUnmap) {
        checkPartialUnmap(
          before,
          after,
          world.lastUnmap.iova,
          world.lastUnmap.length,
          () => `${s.name}: ${failure.message}`,
        );
      } else if (!(failure.op === 'madvise' && failure.errno === 'ENOMEM')) {
        expectSame(after, before, () => `${s.name} failed with ${failure.message} but changed the model`);
      }
      known = after;
    }
    // Listeners are the only observers that throw here: every exception is one observer error.
    if (host.observerErrorCount !== thrown)
      expect(host.observerErrorCount, `after ${s.name}: listener exceptions recorded as observer errors`).toBe(thrown);
    // What a backend is told about an area (hasIoptes, kept on the area for speed) is what the area holds: every
    // area the world's IOASes list is in the snapshot with IOPTEs exactly when it says so. The snapshot is the
    // next call's `before` (nothing runs in between but reads).
    const now = (known ??= host.snapshot()) as {
      ioases: Array<{ id: number; areas: Array<{ id: number; iova: number; ioptes: readonly unknown[] }> }>;
    };
    for (const ioas of world.ioases) {
      for (const info of ioas.listAreas()) {
        if (!snapshotHolds(now.ioases, info)) {
          const held = now.ioases.flatMap((ioas) =>
            ioas.areas.map((area) => `ioas:${ioas.id}/area:${area.id}@${area.iova} ioptes:${area.ioptes.length > 0}`),
          );
          const told = `ioas:${info.ioas}/area:${info.area}@${info.iova} ioptes:${info.hasIoptes}`;
          expect(held, `after ${s.name}: an area is told ${told}`).toContain(told);
        }
      }
    }
    // pKVM upstream maps private pages and has no DMA isolation: 'unsafe-iopte' is the truth about it, in both modes.
    if (registersWithGmem(contract)) {
      const broken = host.checkInvariants().filter((v) => !(unsafe && v.kind === 'unsafe-iopte'));
      if (broken.length > 0) expect(broken, `after ${s.name}`).toEqual([]);
    }
  }
  if (host.crashed) stats.crashes++;
  else checkNoOpenInvalidation(host.snapshot());
  // Every comparison above is of snapshots that keep the parts they find unchanged (snapshot.ts): a part kept
  // though the model changed would hide that change from all of them. A fork's first snapshot is built from
  // nothing: the kept one must equal it.
  expectSame(host.snapshot(), host.fork().snapshot(), 'a kept part of the snapshot is stale');
  expectSame(world.other.host.snapshot(), otherBefore, 'the other host changed');
  stats.listenerThrows += thrown;
}

/** A sequence of STEPS random steps (no-ops are dropped when run). */
export const sequences = fc.array(steps, { minLength: STEPS, maxLength: STEPS });

export function withoutNoops(sequence: Step[]): Step[] {
  return sequence.filter((s) => s.kind !== 'noop');
}
