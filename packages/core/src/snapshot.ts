/**
 * Host.snapshot(): a plain-data picture of everything a later call can observe, built so that the parts of the
 * state that did not change since the previous snapshot of the same host are the same objects as in it. The
 * property tests take a snapshot before every call and compare two after every failed one; with shared parts,
 * the comparison costs what changed rather than the whole state (equal parts compare at a glance).
 *
 * Nothing here relies on being told of a change. Each part kept from the previous snapshot is checked against
 * the model on every snapshot before it is used again: every value it was built from is read again and compared
 * with the value the part holds (Object.is, so 0 and -0 differ, as they do for deep equality), lists of runs
 * (which RangeMap keeps as the same frozen array while the map does not change) by identity, and every object's
 * and list's size, so that a part a caller changed by assigning to its fields or elements, or adding or removing
 * some, is not used again either (a symbol key, a non-index key on an array or a new prototype is not looked at:
 * a snapshot is read-only by contract, and deep equality is for plain data). A part that fails the check is built
 * again. So a snapshot is always deep-equal to the one a build from nothing would give; only the sharing differs.
 *
 * Parts are not frozen (freezing cost more than the rest of a snapshot): a snapshot is read-only by contract, as
 * changing a part of one changes every snapshot that shares it.
 */
import type { GmemInode } from './kvm/gmem-inode.js';
import type { Vm } from './kvm/vm.js';
import type { Memslot } from './kvm/memslot.js';
import type { IoasArea } from './iommufd/area.js';
import type { Ioas } from './iommufd/ioas.js';
import type { HostMapping } from './mm/host-mapping.js';
import type { PinRecord } from './mm/inode.js';
import { Memfd } from './mm/memfd.js';
import type { PhysicalMemory } from './mm/physical.js';
import type { FdTable } from './files.js';
import type { RangeMap } from './util/range-map.js';
import { cloneSelf } from './util/clone.js';

/** What the snapshot reads of the host kernel. */
export interface SnapshotSource {
  readonly phys: PhysicalMemory;
  readonly files: FdTable;
  readonly addressSpace: { liveList(): readonly HostMapping[] };
  readonly gmemInodes: Iterable<GmemInode>;
  readonly vms: Iterable<Vm>;
  readonly ioases: Iterable<Ioas>;
  readonly crashed: unknown;
}

type Obj = Readonly<Record<string, unknown>>;
type Shmem = { kind: string; ino: number; pins: PinRecord[] };

const EMPTY: readonly never[] = Object.freeze([]);
const runs = <V>(map: RangeMap<V>) => map.snapshotRuns();
/** Whether a kept value is still a plain object (a caller may have put anything in its place). */
function isRecord(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

/** How many own enumerable string keys `o` has (what deep equality compares). */
function keyCount(o: object): number {
  let n = 0;
  for (const key in o) if (Object.prototype.hasOwnProperty.call(o, key)) n++;
  return n;
}

/** A list picture kept with the objects it shows, position by position. */
interface Kept<S, P> {
  sources: S[];
  parts: P[];
  /** The list of `parts` last returned. */
  list?: readonly P[];
}

/** The previous snapshot's parts, for one host. */
export class SnapshotParts {
  private last: Obj | undefined;
  private readonly inodes: Kept<GmemInode, Obj> = { sources: [], parts: [] };
  private readonly vms: Kept<Vm, Obj> = { sources: [], parts: [] };
  private readonly areas: Kept<IoasArea, Obj> = { sources: [], parts: [] };
  private readonly ioases: Kept<Ioas, Obj> = { sources: [], parts: [] };

  /** A fork starts with nothing kept: its first snapshot is built from nothing (and the fork copies less). */
  [cloneSelf](): SnapshotParts {
    return new SnapshotParts();
  }

  take(k: SnapshotSource, counters: ReadonlyMap<string, number>): unknown {
    const last = this.last;
    const frames = k.phys.snapshotFrames();
    const ioasList = [...k.ioases];
    const areasByIoas = ioasList.map((ioas) => ioas.areaList());
    const mappingList = k.addressSpace.liveList();
    const fdList = k.files.fds();
    // memfd (shmem) inodes: reachable from an fd, a mapping or an area, listed by ino (deterministic).
    const shmem = new Map<number, Shmem>();
    const addShmem = (inode: Shmem | undefined) => {
      if (inode?.kind === 'shmem') shmem.set(inode.ino, inode);
    };
    for (const fd of fdList) {
      const file = k.files.lookup(fd)!;
      if (file instanceof Memfd) addShmem(file.inode as unknown as Shmem);
    }
    for (const m of mappingList) addShmem(m.file.inode as unknown as Shmem);
    for (const list of areasByIoas) for (const a of list) addShmem(a.inode as unknown as Shmem | undefined);

    const fds = this.fdPart(k, fdList, last?.fds as FdPart | undefined, (file) => file.kind);
    // The reference count of each open fd's file (an fd, a pages object, a mapping each hold one).
    const fileRefs = this.fdPart(k, fdList, last?.fileRefs as FdPart | undefined, (file) => file.refCount);
    const inodes = this.list(this.inodes, [...k.gmemInodes], inodeMatches, inodePart);
    const vms = this.list(this.vms, [...k.vms], vmMatches, vmPart);
    const mappings = mappingsPart(mappingList, last?.mappings as MappingsPart | undefined);
    const memfdInodes = memfdInodesPart(
      [...shmem.values()].sort((a, b) => a.ino - b.ino),
      last?.memfdInodes as readonly MemfdInodePart[] | undefined,
    );
    const allAreas: IoasArea[] = [];
    for (const list of areasByIoas) for (const a of list) allAreas.push(a);
    const areaParts = this.list(this.areas, allAreas, areaMatches, areaPart);
    let at = 0;
    const ioasParts: Obj[] = ioasList.map((ioas, i) => {
      const areas = areaParts.slice(at, (at += areasByIoas[i]!.length));
      return this.one(
        this.ioases,
        i,
        ioas,
        areas,
        (kept) => Object.is(kept.id, ioas.id) && Object.is(kept.domain, ioas.hasDomain) && keyCount(kept) === 3,
      );
    });
    this.ioases.sources.length = this.ioases.parts.length = ioasList.length;
    const ioases = sameItems(last?.ioases as readonly Obj[] | undefined, ioasParts) ?? ioasParts;
    const pagesObjects = pagesObjectsPart(areasByIoas, last?.pagesObjects as readonly PagesPart[] | undefined);
    const countersPart = countersOf(counters, last?.counters as Obj | undefined);
    const poisoned = poisonedPart(k.phys, last?.poisoned as readonly number[] | undefined);
    const picture = {
      fds,
      fileRefs,
      liveFrames: k.phys.liveFrames,
      frames,
      inodes,
      vms,
      mappings,
      // Pins on memfd inodes (GUP and memfd_pin_folios pins of areas, long-term pins): a leaked pin shows here.
      memfdInodes,
      ioases,
      pagesObjects,
      counters: countersPart,
      frameHolders: k.phys.snapshotHolders(),
      freeFrames: k.phys.snapshotFree(),
      poisoned,
      crashed: k.crashed ?? null,
    };
    if (last !== undefined && sameFields(last, picture)) return last;
    this.last = picture;
    return picture;
  }

  /** [fd, value] for every open fd, the previous list when no entry changed. */
  private fdPart(
    k: SnapshotSource,
    fdList: readonly number[],
    kept: FdPart | undefined,
    value: (file: { kind: string; refCount: number }) => string | number,
  ): FdPart {
    if (kept !== undefined && Array.isArray(kept) && kept.length === fdList.length) {
      let same = true;
      for (let i = 0; i < fdList.length && same; i++) {
        const entry = kept[i]!;
        same =
          Array.isArray(entry) &&
          entry.length === 2 &&
          entry[0] === fdList[i] &&
          Object.is(entry[1], value(k.files.lookup(fdList[i]!)!));
      }
      if (same) return kept;
    }
    return fdList.map((fd) => [fd, value(k.files.lookup(fd)!)] as const);
  }

  /**
   * The parts of a list of model objects: position by position, the kept part when it shows the same object and
   * `matches` finds it still true; otherwise a new one. The list itself is the previous one when every part is.
   */
  private list<S, P extends Obj>(
    kept: Kept<S, P>,
    sources: S[],
    matches: (source: S, part: P) => boolean,
    build: (source: S) => P,
  ): readonly P[] {
    const parts: P[] = [];
    let same = sources.length === kept.parts.length;
    for (let i = 0; i < sources.length; i++) {
      const source = sources[i]!;
      const part = kept.sources[i] === source ? kept.parts[i] : undefined;
      if (part !== undefined && matches(source, part)) parts.push(part);
      else {
        same = false;
        const built = build(source);
        kept.sources[i] = source;
        kept.parts[i] = built;
        parts.push(built);
      }
    }
    // The list returned last time, unless a caller changed it.
    const list = same ? sameItems(kept.list, parts) : undefined;
    if (list !== undefined) return list;
    kept.sources.length = kept.parts.length = sources.length;
    kept.list = parts;
    return parts;
  }

  /** An IOAS's part: its id, domain and area parts, the kept one when all three are the same. */
  private one(
    kept: Kept<Ioas, Obj>,
    i: number,
    ioas: Ioas,
    areas: readonly Obj[],
    matches: (part: Obj) => boolean,
  ): Obj {
    const part = kept.sources[i] === ioas ? kept.parts[i] : undefined;
    if (part !== undefined && matches(part) && Array.isArray(part.areas)) {
      const same = sameItems(part.areas as readonly Obj[], areas);
      if (same !== undefined) return part;
    }
    const built = { id: ioas.id, domain: ioas.hasDomain, areas: areas.slice() };
    kept.sources[i] = ioas;
    kept.parts[i] = built;
    return built;
  }
}

type FdPart = ReadonlyArray<readonly [number, string | number]>;
type MappingsPart = ReadonlyArray<readonly [number, number, number, boolean]>;
type PinPart = readonly [number, number, string, ReadonlyArray<readonly [number, number, number]>];
type MemfdInodePart = Readonly<{ ino: number; pins: readonly PinPart[] }>;
type PagesPart = Readonly<{
  label: string;
  fileRefs: number | null;
  registered: boolean;
  revoked: boolean;
  areas: readonly string[];
}>;

/** `kept` when it lists the same items (by identity) as `items`. */
function sameItems<T>(kept: readonly T[] | undefined, items: readonly T[]): readonly T[] | undefined {
  if (kept === undefined || !Array.isArray(kept) || kept.length !== items.length) return undefined;
  for (let i = 0; i < items.length; i++) if (kept[i] !== items[i]) return undefined;
  return kept;
}

/** Whether two pictures have the same keys with identical values. */
function sameFields(a: Obj, b: Obj): boolean {
  let keys = 0;
  for (const key in b) {
    keys++;
    if (!Object.prototype.hasOwnProperty.call(a, key) || !Object.is(a[key], b[key])) return false;
  }
  for (const _ in a) keys--;
  return keys === 0;
}

// --- pins ---

function pinsPart(pins: readonly PinRecord[]): readonly PinPart[] {
  if (pins.length === 0) return EMPTY;
  return pins.map((p) => [p.start, p.end, p.holder, (p.frames ?? []).map((r) => [r.start, r.end, r.value] as const)]);
}

function samePins(pins: readonly PinRecord[], kept: readonly PinPart[]): boolean {
  if (!Array.isArray(kept) || pins.length !== kept.length) return false;
  for (let i = 0; i < pins.length; i++) {
    const p = pins[i]!;
    const k = kept[i]!;
    if (
      !Array.isArray(k) ||
      k.length !== 4 ||
      !Object.is(p.start, k[0]) ||
      !Object.is(p.end, k[1]) ||
      !Object.is(p.holder, k[2])
    )
      return false;
    const frames = p.frames ?? EMPTY;
    const keptFrames = k[3];
    if (!Array.isArray(keptFrames) || frames.length !== keptFrames.length) return false;
    for (let j = 0; j < frames.length; j++) {
      const r = frames[j]!;
      const kr = keptFrames[j]!;
      if (
        !Array.isArray(kr) ||
        kr.length !== 3 ||
        !Object.is(r.start, kr[0]) ||
        !Object.is(r.end, kr[1]) ||
        !Object.is(r.value, kr[2])
      )
        return false;
    }
  }
  return true;
}

// --- guest_memfd inodes ---

function consumerName(c: { kind: string; label: string; first: number; end: number }): string {
  return `${c.kind}:${c.label}:${c.first}-${c.end}`;
}

function inodePart(inode: GmemInode): Obj {
  return {
    ino: inode.ino,
    size: inode.size,
    attributes: runs(inode.attributes),
    pages: runs(inode.pages),
    // The frames each pin holds (index runs -> pfn): a page that refaults at a pinned index is a new folio.
    pins: pinsPart(inode.pins),
    hardware: runs(inode.hardware),
    hwpoison: runs(inode.hwpoison),
    // Pages the guest shared back (RemovalContext.sharedBack); listed only when there are some.
    ...(inode.sharedBack.runCount > 0 ? { sharedBack: runs(inode.sharedBack) } : {}),
    consumers: inode.registry.all().map(consumerName),
  };
}

function inodeMatches(inode: GmemInode, part: Obj): boolean {
  if (
    !Object.is(part.ino, inode.ino) ||
    !Object.is(part.size, inode.size) ||
    part.attributes !== runs(inode.attributes) ||
    part.pages !== runs(inode.pages) ||
    part.hardware !== runs(inode.hardware) ||
    part.hwpoison !== runs(inode.hwpoison) ||
    !samePins(inode.pins, part.pins as readonly PinPart[])
  )
    return false;
  const shared = inode.sharedBack.runCount > 0;
  if (shared ? part.sharedBack !== runs(inode.sharedBack) : 'sharedBack' in part) return false;
  if (keyCount(part) !== (shared ? 9 : 8)) return false;
  const consumers = inode.registry.all();
  const kept = part.consumers as readonly string[];
  if (!Array.isArray(kept) || consumers.length !== kept.length) return false;
  // A consumer's name is rebuilt only to compare it: no list is built when nothing changed.
  for (let i = 0; i < consumers.length; i++) if (consumerName(consumers[i]!) !== kept[i]) return false;
  return true;
}

// --- VMs ---

function slotPart(s: Memslot): Obj {
  return { ...s, gmem: s.gmem ? { fd: s.gmem.file?.fd ?? null, pgoff: s.gmem.pgoff } : null };
}

function sameSlot(s: Memslot, part: Obj): boolean {
  if (!isRecord(part)) return false;
  // Every own enumerable field the spread in slotPart copies, with gmem shown by its fd and offset. (A memslot is
  // an object literal made by Vm.setMemoryRegion, a plain object with string keys only.)
  let keys = 0;
  for (const key in s) {
    keys++;
    if (key === 'gmem') continue;
    if (!Object.prototype.hasOwnProperty.call(part, key) || !Object.is(part[key], (s as unknown as Obj)[key]))
      return false;
  }
  for (const _ in part) keys--;
  if (keys !== 0) return false;
  const gmem = part.gmem as Obj | null;
  if (s.gmem === null || gmem === null) return s.gmem === gmem;
  if (!isRecord(gmem)) return false;
  return Object.is(gmem.fd, s.gmem.file?.fd ?? null) && Object.is(gmem.pgoff, s.gmem.pgoff) && keyCount(gmem) === 2;
}

function vmPart(vm: Vm): Obj {
  return {
    fd: vm.fd,
    dead: vm.dead ?? null,
    mmu: vm.mmuSnapshot(),
    slots: vm.memslotList().map(slotPart),
    shared: runs(vm.stage2.shared),
    private: runs(vm.stage2.private),
    // The per-VM attributes (today's path, §4.4): the gfns KVM holds as private; listed only when there are some.
    ...(vm.memoryAttributes.private.runCount > 0 ? { memoryAttributes: runs(vm.memoryAttributes.private) } : {}),
  };
}

function vmMatches(vm: Vm, part: Obj): boolean {
  if (
    !Object.is(part.fd, vm.fd) ||
    !Object.is(part.dead, vm.dead ?? null) ||
    part.shared !== runs(vm.stage2.shared) ||
    part.private !== runs(vm.stage2.private) ||
    !isRecord(part.mmu) ||
    !vm.mmuIs(part.mmu as { seq: number; inProgress: number; rangeStart: number; rangeEnd: number }) ||
    keyCount(part.mmu as Obj) !== 4
  )
    return false;
  const attributes = vm.memoryAttributes.private.runCount > 0;
  if (attributes ? part.memoryAttributes !== runs(vm.memoryAttributes.private) : 'memoryAttributes' in part)
    return false;
  if (keyCount(part) !== (attributes ? 7 : 6)) return false;
  const slots = vm.memslotList();
  const kept = part.slots as readonly Obj[];
  if (!Array.isArray(kept) || slots.length !== kept.length) return false;
  for (let i = 0; i < slots.length; i++) if (!sameSlot(slots[i]!, kept[i]!)) return false;
  return true;
}

// --- host mappings, memfd inodes ---

function mappingsPart(list: readonly HostMapping[], kept: MappingsPart | undefined): MappingsPart {
  if (kept !== undefined && Array.isArray(kept) && kept.length === list.length) {
    let same = true;
    for (let i = 0; i < list.length && same; i++) {
      const m = list[i]!;
      const k = kept[i]!;
      same =
        Array.isArray(k) &&
        k.length === 4 &&
        Object.is(k[0], m.address) &&
        Object.is(k[1], m.length) &&
        Object.is(k[2], m.fileOffset) &&
        Object.is(k[3], m.shared);
    }
    if (same) return kept;
  }
  return list.map((m) => [m.address, m.length, m.fileOffset, m.shared] as const);
}

function memfdInodesPart(list: readonly Shmem[], kept: readonly MemfdInodePart[] | undefined) {
  if (kept !== undefined && Array.isArray(kept) && kept.length === list.length) {
    let same = true;
    for (let i = 0; i < list.length && same; i++)
      same =
        isRecord(kept[i]) &&
        Object.is(kept[i]!.ino, list[i]!.ino) &&
        samePins(list[i]!.pins, kept[i]!.pins) &&
        keyCount(kept[i]!) === 2;
    if (same) return kept;
  }
  return list.map((inode) => ({ ino: inode.ino, pins: pinsPart(inode.pins) }));
}

// --- IOAS areas and their pages objects ---

function areaPart(a: IoasArea): Obj {
  return {
    id: a.id,
    pagesId: a.pages.label,
    iova: a.iova,
    length: a.length,
    registered: a.registered,
    revoked: runs(a.revoked),
    unmappedPrivate: runs(a.unmappedPrivate),
    split4K: runs(a.split4K),
    ioptes: runs(a.ioptes),
  };
}

function areaMatches(a: IoasArea, part: Obj): boolean {
  return (
    Object.is(part.id, a.id) &&
    Object.is(part.pagesId, a.pages.label) &&
    Object.is(part.iova, a.iova) &&
    Object.is(part.length, a.length) &&
    Object.is(part.registered, a.registered) &&
    part.revoked === runs(a.revoked) &&
    part.unmappedPrivate === runs(a.unmappedPrivate) &&
    part.split4K === runs(a.split4K) &&
    part.ioptes === runs(a.ioptes) &&
    keyCount(part) === 9
  );
}

/** The pages objects the areas share, by label in area order: who holds them, their file's reference count. */
function pagesObjectsPart(areasByIoas: readonly IoasArea[][], kept: readonly PagesPart[] | undefined) {
  const objects = new Map<
    string,
    { label: string; fileRefs: number | null; registered: boolean; revoked: boolean; areas: string[] }
  >();
  for (const list of areasByIoas) {
    for (const a of list) {
      const pages = a.pages;
      const seen = objects.get(pages.label);
      if (seen) seen.areas.push(a.label);
      else
        objects.set(pages.label, {
          label: pages.label,
          fileRefs: pages.file ? pages.file.refCount : null,
          registered: pages.registered,
          revoked: pages.revoked,
          areas: [a.label],
        });
    }
  }
  if (kept !== undefined && Array.isArray(kept) && kept.length === objects.size) {
    let i = 0;
    let same = true;
    for (const o of objects.values()) {
      const k = kept[i++]!;
      if (!isRecord(k)) {
        same = false;
        break;
      }
      same =
        Object.is(k.label, o.label) &&
        Object.is(k.fileRefs, o.fileRefs) &&
        Object.is(k.registered, o.registered) &&
        Object.is(k.revoked, o.revoked) &&
        keyCount(k) === 5 &&
        sameStrings(k.areas as readonly string[], o.areas);
      if (!same) break;
    }
    if (same) return kept;
  }
  return [...objects.values()];
}

function sameStrings(kept: readonly string[], now: readonly string[]): boolean {
  if (!Array.isArray(kept) || kept.length !== now.length) return false;
  for (let i = 0; i < now.length; i++) if (kept[i] !== now[i]) return false;
  return true;
}

// --- counters, poisoned frames ---

function countersOf(counters: ReadonlyMap<string, number>, kept: Obj | undefined): Obj {
  if (isRecord(kept)) {
    let same = true;
    if (keyCount(kept) === counters.size) {
      for (const [key, value] of counters)
        if (!Object.prototype.hasOwnProperty.call(kept, key) || !Object.is(kept[key], value)) {
          same = false;
          break;
        }
      if (same) return kept;
    }
  }
  return Object.fromEntries(counters);
}

function poisonedPart(phys: PhysicalMemory, kept: readonly number[] | undefined): readonly number[] {
  // The same set of frames, listed sorted, is the same list: same size, and every frame kept is still poisoned.
  if (
    kept !== undefined &&
    Array.isArray(kept) &&
    kept.length === phys.poisonedCount &&
    kept.every((pfn, i) => phys.isPoisoned(pfn) && (i === 0 || pfn > kept[i - 1]!))
  )
    return kept;
  return phys.poisonedFrames();
}
