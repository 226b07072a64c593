/**
 * Host.snapshot(): a plain-data picture of everything a later call can observe, built so that the parts of the
 * state that did not change since the previous snapshot of the same host are the same objects as in it. The
 * property tests take a snapshot before every call and compare two after every failed one; with shared parts,
 * the comparison costs what changed rather than the whole state (equal parts compare at a glance).
 *
 * Nothing here relies on being told of a change. Each part kept from the previous snapshot is checked against
 * the model on every snapshot before it is used again: every value it was built from is read again and compared
 * with the value the part holds (Object.is, so 0 and -0 differ, as they do for deep equality), lists of runs
 * (which RangeMap keeps as the same frozen array while the map does not change) by identity, and every list's
 * length. A few values are compared with a copy kept beside the part rather than with the part itself, where
 * that saves building them again: the consumers' names of a guest_memfd inode (their kind, label and range), the
 * pages object and label of each area, the counters' order. A part that fails the check is built again. So a
 * snapshot is always deep-equal to the one a build from nothing would give; only the sharing differs.
 *
 * Every object and array a snapshot builds is frozen (Object.freeze), so no caller can change a part that later
 * snapshots share; the check above need not look for such changes. (The crash record, `crashed`, is the host's
 * own object, not a copy.) An unchanged state walks the model without allocating: the check runs after every
 * call of the property tests.
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
/** Whether the snapshot being taken freezes what it builds (SnapshotParts.frozen, set for the length of take). */
let freezing = true;
const freeze = <T>(value: T): T => (freezing ? Object.freeze(value) : value);

/**
 * The parts of a list of model objects, position by position: the kept part when it shows the same object and
 * `matches` finds it still true, otherwise a new one. The list itself is the previous one when every part is.
 * A part may keep private values beside it (`shadows`, e.g. a guest_memfd inode's consumers, compared value by
 * value instead of rebuilding their names); `matches` and `build` get the position to read and set them.
 */
class KeptList<S> {
  readonly sources: S[] = [];
  readonly parts: Obj[] = [];
  readonly shadows: unknown[] = [];
  list: readonly Obj[] = EMPTY;
  private n = 0;
  private changed = false;

  begin(): void {
    this.n = 0;
    this.changed = false;
  }

  next(
    source: S,
    matches: (source: S, part: Obj, kept: KeptList<S>, i: number) => boolean,
    build: (source: S, kept: KeptList<S>, i: number, previous: Obj | undefined) => Obj,
  ): void {
    const i = this.n;
    const kept = this.peek(source);
    if (kept !== undefined && matches(source, kept, this, i)) this.accept();
    else this.put(source, build(source, this, i, kept));
  }

  /** The part kept at the next position, when it was built from `source`. */
  peek(source: S): Obj | undefined {
    const i = this.n;
    return i < this.parts.length && this.sources[i] === source ? this.parts[i] : undefined;
  }

  /** The part peek() gave is still true: keep it. */
  accept(): void {
    this.n++;
  }

  /** A new part at the next position. */
  put(source: S, part: Obj): void {
    const i = this.n++;
    this.sources[i] = source;
    this.parts[i] = part;
    this.changed = true;
  }

  end(): readonly Obj[] {
    const n = this.n;
    if (!this.changed && n === this.list.length) return this.list;
    this.sources.length = this.parts.length = this.shadows.length = n;
    this.list = freeze(this.parts.slice());
    return this.list;
  }
}

/** The previous snapshot's parts, for one host. */
export class SnapshotParts {
  private last: Obj | undefined;
  private readonly inodes = new KeptList<GmemInode>();
  private readonly vms = new KeptList<Vm>();
  private readonly areas = new KeptList<IoasArea>();
  /** An IOAS's part holds its areas' parts: its shadow is where they start in the list of all areas. */
  private readonly ioases = new KeptList<Ioas>();
  private fds: FdPart = EMPTY;
  private fileRefs: FdPart = EMPTY;
  private mappings: MappingsPart = EMPTY;
  /** The memfd (shmem) inodes listed, by ino, and a scratch mark per inode for the check that no other is reached. */
  private shmem: Shmem[] = [];
  private shmemSeen: boolean[] = [];
  private shmemReached = 0;
  private shmemSame = true;
  private memfdInodes: readonly MemfdInodePart[] = EMPTY;
  private pagesObjects: readonly PagesPart[] = EMPTY;
  /** The pages object and label of each area, in area order, and the pages object of each part of pagesObjects. */
  private readonly pagesOfArea: unknown[] = [];
  private readonly labelOfArea: string[] = [];
  private readonly pagesSources: Array<IoasArea['pages']> = [];
  private counters: Obj = freeze({});
  /** The counters' names and values in the order the Map held them when `counters` was built. */
  private counterKeys: string[] = [];
  private counterValues: number[] = [];
  private poisoned: readonly number[] = EMPTY;

  /** A fork starts with nothing kept: its first snapshot is built from nothing (and the fork copies less). */
  [cloneSelf](): SnapshotParts {
    const fresh = new SnapshotParts();
    fresh.frozen = this.frozen;
    return fresh;
  }

  /**
   * Whether parts are frozen. Off only for a host whose snapshots no caller changes (the explorer's: Object.freeze
   * was a fifth of its search time); a host never mixes the two, since the flag is set before its first snapshot.
   */
  frozen = true;

  /** Whether a snapshot was taken. */
  get taken(): boolean {
    return this.last !== undefined;
  }

  take(k: SnapshotSource, counters: ReadonlyMap<string, number>): unknown {
    const outer = freezing;
    freezing = this.frozen;
    try {
      return this.build(k, counters);
    } finally {
      freezing = outer;
    }
  }

  private build(k: SnapshotSource, counters: ReadonlyMap<string, number>): unknown {
    const last = this.last;
    this.beginShmem();
    this.fdParts(k);
    const fds = this.fds;
    const fileRefs = this.fileRefs;
    const inodeList = this.inodes;
    inodeList.begin();
    for (const inode of k.gmemInodes) inodeList.next(inode, inodeMatches, inodePart);
    const inodes = inodeList.end();
    const vmList = this.vms;
    vmList.begin();
    for (const vm of k.vms) vmList.next(vm, vmMatches, vmPart);
    const vms = vmList.end();
    const mappingList = k.addressSpace.liveList();
    const mappings = (this.mappings = mappingsPart(mappingList, this.mappings));
    // The areas of every IOAS, in IOAS order, then the IOASes, each holding the parts of its own areas.
    const areaList = this.areas;
    areaList.begin();
    for (const ioas of k.ioases) for (const area of ioas.areasInOrder()) areaList.next(area, areaMatches, areaPart);
    const areaParts = areaList.end();
    const ioasList = this.ioases;
    ioasList.begin();
    let at = 0;
    for (const ioas of k.ioases) {
      const count = ioas.areasInOrder().length;
      const kept = ioasList.peek(ioas);
      if (kept !== undefined && ioasMatches(ioas, kept, areaParts, at, count)) ioasList.accept();
      else
        ioasList.put(
          ioas,
          freeze({ id: ioas.id, domain: ioas.hasDomain, areas: freeze(areaParts.slice(at, at + count)) }),
        );
      at += count;
    }
    const ioases = ioasList.end();
    const memfdInodes = this.memfdInodesPart(k, mappingList);
    const pagesObjects = this.pagesObjectsPart(areaList.sources);
    const countersPart = this.countersPart(counters);
    const poisoned = (this.poisoned = poisonedPart(k.phys, this.poisoned));
    const frames = k.phys.snapshotFrames();
    const frameHolders = k.phys.snapshotHolders();
    const freeFrames = k.phys.snapshotFree();
    const liveFrames = k.phys.liveFrames;
    const crashed = k.crashed ?? null;
    if (
      last !== undefined &&
      last.fds === fds &&
      last.fileRefs === fileRefs &&
      Object.is(last.liveFrames, liveFrames) &&
      last.frames === frames &&
      last.inodes === inodes &&
      last.vms === vms &&
      last.mappings === mappings &&
      last.memfdInodes === memfdInodes &&
      last.ioases === ioases &&
      last.pagesObjects === pagesObjects &&
      last.counters === countersPart &&
      last.frameHolders === frameHolders &&
      last.freeFrames === freeFrames &&
      last.poisoned === poisoned &&
      last.crashed === crashed
    )
      return last;
    const picture = freeze({
      fds,
      fileRefs,
      liveFrames,
      frames,
      inodes,
      vms,
      mappings,
      // Pins on memfd inodes (GUP and memfd_pin_folios pins of areas, long-term pins): a leaked pin shows here.
      memfdInodes,
      ioases,
      pagesObjects,
      counters: countersPart,
      frameHolders,
      freeFrames,
      poisoned,
      crashed,
    });
    this.last = picture;
    return picture;
  }

  /**
   * [fd, kind] and [fd, reference count] for every open fd (an fd, a pages object, a mapping each hold one); the
   * memfd inodes the fds reach are marked on the way (reach()).
   */
  private fdParts(k: SnapshotSource): void {
    const fdList = k.files.fds();
    const kinds = this.fds;
    const refs = this.fileRefs;
    let sameKinds = kinds.length === fdList.length;
    let sameRefs = refs.length === fdList.length;
    for (let i = 0; i < fdList.length; i++) {
      const fd = fdList[i]!;
      const file = k.files.lookup(fd)!;
      if (sameKinds) sameKinds = kinds[i]![0] === fd && Object.is(kinds[i]![1], file.kind);
      if (sameRefs) sameRefs = refs[i]![0] === fd && Object.is(refs[i]![1], file.refCount);
      if (file instanceof Memfd) this.reach(file.inode as unknown as Shmem);
    }
    if (!sameKinds) this.fds = freeze(fdList.map((fd) => freeze([fd, k.files.lookup(fd)!.kind] as const)));
    if (!sameRefs) this.fileRefs = freeze(fdList.map((fd) => freeze([fd, k.files.lookup(fd)!.refCount] as const)));
  }

  /** Before the model is walked: no kept memfd inode is reached yet. */
  private beginShmem(): void {
    const seen = this.shmemSeen;
    for (let i = 0; i < seen.length; i++) seen[i] = false;
    this.shmemReached = 0;
    this.shmemSame = true;
  }

  /** An inode an fd, a mapping or an area reaches: a memfd one must be one of the kept list's. */
  private reach(inode: Shmem | undefined): void {
    if (!this.shmemSame || inode === undefined || inode.kind !== 'shmem') return;
    const i = findByIno(this.shmem, inode.ino);
    if (i < 0 || this.shmem[i] !== inode) this.shmemSame = false;
    else if (!this.shmemSeen[i]) {
      this.shmemSeen[i] = true;
      this.shmemReached++;
    }
  }

  /**
   * The memfd (shmem) inodes reachable from an fd, a mapping or an area, listed by ino, each with its pins: the
   * kept list when the same inodes are reached (each reached one is in it, and every one in it is reached) and
   * their pins did not change.
   */
  private memfdInodesPart(k: SnapshotSource, mappingList: readonly HostMapping[]): readonly MemfdInodePart[] {
    const areas = this.areas.sources;
    for (let i = 0; i < mappingList.length; i++) this.reach(mappingList[i]!.file.inode as unknown as Shmem);
    for (let i = 0; i < areas.length; i++) this.reach(areas[i]!.inode as unknown as Shmem | undefined);
    const kept = this.shmem;
    if (this.shmemSame && this.shmemReached === kept.length) {
      const parts = this.memfdInodes;
      let i = 0;
      while (i < kept.length && Object.is(parts[i]!.ino, kept[i]!.ino) && samePins(kept[i]!.pins, parts[i]!.pins)) i++;
      if (i === kept.length) return parts;
    }
    // Built from nothing: every reachable shmem inode, by ino (for an ino met twice, the last one met, as a Map
    // keyed by ino keeps it).
    const byIno = new Map<number, Shmem>();
    const add = (inode: Shmem | undefined) => {
      if (inode?.kind === 'shmem') byIno.set(inode.ino, inode);
    };
    for (const fd of k.files.fds()) {
      const file = k.files.lookup(fd)!;
      if (file instanceof Memfd) add(file.inode as unknown as Shmem);
    }
    for (const m of mappingList) add(m.file.inode as unknown as Shmem);
    for (const a of areas) add(a.inode as unknown as Shmem | undefined);
    this.shmem = [...byIno.values()].sort((a, b) => a.ino - b.ino);
    this.shmemSeen = this.shmem.map(() => false);
    this.memfdInodes = freeze(this.shmem.map((inode) => freeze({ ino: inode.ino, pins: pinsPart(inode.pins) })));
    return this.memfdInodes;
  }

  /**
   * The pages objects the areas share, by label in area order: who holds them, their file's reference count.
   * The kept list when every area has the same pages object and label as when it was built (so the grouping is
   * the same) and each pages object's fields are unchanged.
   */
  private pagesObjectsPart(areas: readonly IoasArea[]): readonly PagesPart[] {
    const pagesOfArea = this.pagesOfArea;
    const labelOfArea = this.labelOfArea;
    let same = areas.length === pagesOfArea.length;
    for (let i = 0; i < areas.length && same; i++)
      same = areas[i]!.pages === pagesOfArea[i] && areas[i]!.label === labelOfArea[i];
    const sources = this.pagesSources;
    const kept = this.pagesObjects;
    for (let i = 0; i < sources.length && same; i++) {
      const pages = sources[i]!;
      const part = kept[i]!;
      same =
        Object.is(part.label, pages.label) &&
        Object.is(part.fileRefs, pages.file ? pages.file.refCount : null) &&
        Object.is(part.registered, pages.registered) &&
        Object.is(part.revoked, pages.revoked);
    }
    if (same) return kept;
    // One entry per pages object, in the order of their first areas. Keyed by the object, not by its label: IOAS and
    // area ids are per iommufd, so two iommufds each have an 'iopt_pages@ioas:1/area:1' (two entries, told apart by
    // their place and fields).
    const objects = new Map<
      IoasArea['pages'],
      { label: string; fileRefs: number | null; registered: boolean; revoked: boolean; areas: string[] }
    >();
    for (const a of areas) {
      const pages = a.pages;
      const seen = objects.get(pages);
      if (seen) seen.areas.push(a.label);
      else {
        objects.set(pages, {
          label: pages.label,
          fileRefs: pages.file ? pages.file.refCount : null,
          registered: pages.registered,
          revoked: pages.revoked,
          areas: [a.label],
        });
      }
    }
    pagesOfArea.length = labelOfArea.length = 0;
    for (const a of areas) {
      pagesOfArea.push(a.pages);
      labelOfArea.push(a.label);
    }
    sources.length = 0;
    for (const pages of objects.keys()) sources.push(pages);
    this.pagesObjects = freeze([...objects.values()].map((o) => freeze({ ...o, areas: freeze(o.areas) })));
    return this.pagesObjects;
  }

  /** The pipeline counters as an object, the kept one when the Map holds the same names and values in the same order. */
  private countersPart(counters: ReadonlyMap<string, number>): Obj {
    const keys = this.counterKeys;
    const values = this.counterValues;
    if (counters.size === keys.length) {
      let i = 0;
      let same = true;
      for (const [key, value] of counters) {
        if (key !== keys[i] || !Object.is(value, values[i])) {
          same = false;
          break;
        }
        i++;
      }
      if (same) return this.counters;
    }
    this.counterKeys = [...counters.keys()];
    this.counterValues = [...counters.values()];
    this.counters = freeze(Object.fromEntries(counters));
    return this.counters;
  }
}

/** The position of the inode with `ino` in a list sorted by ino, or -1. */
function findByIno(list: readonly Shmem[], ino: number): number {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const at = list[mid]!.ino;
    if (at === ino) return mid;
    if (at < ino) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
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

// --- pins ---

function pinsPart(pins: readonly PinRecord[]): readonly PinPart[] {
  if (pins.length === 0) return EMPTY;
  return freeze(
    pins.map((p) =>
      freeze([
        p.start,
        p.end,
        p.holder,
        freeze((p.frames ?? []).map((r) => freeze([r.start, r.end, r.value] as const))),
      ] as const),
    ),
  );
}

function samePins(pins: readonly PinRecord[], kept: readonly PinPart[]): boolean {
  if (pins.length !== kept.length) return false;
  for (let i = 0; i < pins.length; i++) {
    const p = pins[i]!;
    const k = kept[i]!;
    if (!Object.is(p.start, k[0]) || !Object.is(p.end, k[1]) || !Object.is(p.holder, k[2])) return false;
    const frames = p.frames ?? EMPTY;
    const keptFrames = k[3];
    if (frames.length !== keptFrames.length) return false;
    for (let j = 0; j < frames.length; j++) {
      const r = frames[j]!;
      const kr = keptFrames[j]!;
      if (!Object.is(r.start, kr[0]) || !Object.is(r.end, kr[1]) || !Object.is(r.value, kr[2])) return false;
    }
  }
  return true;
}

// --- guest_memfd inodes ---

/**
 * An inode's part. Its consumers are listed by name (`kind:label:first-end`); the values each name was built
 * from are kept beside the part (its shadow), so that the check compares values and builds no string. The
 * consumers' and the pins' lists of the inode's previous part are kept when they still show them.
 */
function inodePart(inode: GmemInode, kept: KeptList<GmemInode>, i: number, previous: Obj | undefined): Obj {
  let consumers = previous !== undefined && sameConsumers(inode, kept, i) ? previous.consumers : undefined;
  if (consumers === undefined) {
    const shadow: unknown[] = [];
    const names: string[] = [];
    // As registered (registry.names): a consumer's own getters are not read again here.
    for (const c of inode.registry.names()) {
      shadow.push(c.kind, c.label, c.first, c.end);
      names.push(`${c.kind}:${c.label}:${c.first}-${c.end}`);
    }
    kept.shadows[i] = shadow;
    consumers = freeze(names);
  }
  const pins =
    previous !== undefined && samePins(inode.pins, previous.pins as readonly PinPart[])
      ? previous.pins
      : pinsPart(inode.pins);
  return freeze({
    ino: inode.ino,
    size: inode.size,
    attributes: runs(inode.attributes),
    pages: runs(inode.pages),
    // The frames each pin holds (index runs -> pfn): a page that refaults at a pinned index is a new folio.
    pins,
    hardware: runs(inode.hardware),
    hwpoison: runs(inode.hwpoison),
    // Pages the guest shared back (RemovalContext.sharedBack); listed only when there are some.
    ...(inode.sharedBack.runCount > 0 ? { sharedBack: runs(inode.sharedBack) } : {}),
    consumers,
  });
}

/** Whether the consumers' names kept at position i (their shadow) still show the inode's consumers. */
function sameConsumers(inode: GmemInode, kept: KeptList<GmemInode>, i: number): boolean {
  const consumers = inode.registry.names();
  const shadow = kept.shadows[i] as readonly unknown[];
  if (shadow.length !== 4 * consumers.length) return false;
  for (let c = 0, at = 0; c < consumers.length; c++, at += 4) {
    const consumer = consumers[c]!;
    if (
      !Object.is(consumer.kind, shadow[at]) ||
      !Object.is(consumer.label, shadow[at + 1]) ||
      !Object.is(consumer.first, shadow[at + 2]) ||
      !Object.is(consumer.end, shadow[at + 3])
    )
      return false;
  }
  return true;
}

function inodeMatches(inode: GmemInode, part: Obj, kept: KeptList<GmemInode>, i: number): boolean {
  return (
    Object.is(part.ino, inode.ino) &&
    Object.is(part.size, inode.size) &&
    part.attributes === runs(inode.attributes) &&
    part.pages === runs(inode.pages) &&
    part.hardware === runs(inode.hardware) &&
    part.hwpoison === runs(inode.hwpoison) &&
    part.sharedBack === (inode.sharedBack.runCount > 0 ? runs(inode.sharedBack) : undefined) &&
    samePins(inode.pins, part.pins as readonly PinPart[]) &&
    sameConsumers(inode, kept, i)
  );
}

// --- VMs ---

function slotPart(s: Memslot): Obj {
  return freeze({ ...s, gmem: s.gmem ? freeze({ fd: s.gmem.file?.fd ?? null, pgoff: s.gmem.pgoff }) : null });
}

/**
 * Whether a memslot's part still shows it: every own enumerable field the spread in slotPart copied, with gmem
 * shown by its fd and offset. (A memslot is an object literal made by Vm.setMemoryRegion, a plain object with
 * string keys only; its part is frozen, so its keys are the ones the memslot had when it was built.)
 */
function sameSlot(s: Memslot, part: Obj, keys: number): boolean {
  let now = 0;
  for (const key in s) {
    now++;
    if (key === 'gmem') continue;
    if (!Object.prototype.hasOwnProperty.call(part, key) || !Object.is(part[key], (s as unknown as Obj)[key]))
      return false;
  }
  if (now !== keys) return false;
  const gmem = part.gmem as Obj | null;
  if (s.gmem === null || gmem === null) return s.gmem === gmem;
  return Object.is(gmem.fd, s.gmem.file?.fd ?? null) && Object.is(gmem.pgoff, s.gmem.pgoff);
}

/**
 * A VM's part; its shadow is the number of fields of each memslot's part. The memslots' list of the VM's
 * previous part is kept when it still shows them (an invalidation changes the mmu fields, not the memslots).
 */
function vmPart(vm: Vm, kept: KeptList<Vm>, i: number, previous: Obj | undefined): Obj {
  let slots =
    previous !== undefined && sameSlots(vm, previous, kept, i) ? (previous.slots as readonly Obj[]) : undefined;
  if (slots === undefined) {
    const built = vm.memslotList().map(slotPart);
    kept.shadows[i] = built.map((slot) => Object.keys(slot).length);
    slots = freeze(built);
  }
  return freeze({
    fd: vm.fd,
    dead: vm.dead ?? null,
    mmu: freeze(vm.mmuSnapshot()),
    slots,
    shared: runs(vm.stage2.shared),
    private: runs(vm.stage2.private),
    // The per-VM attributes (today's path, §4.4): the gfns KVM holds as private; listed only when there are some.
    ...(vm.memoryAttributes.private.runCount > 0 ? { memoryAttributes: runs(vm.memoryAttributes.private) } : {}),
  });
}

function vmMatches(vm: Vm, part: Obj, kept: KeptList<Vm>, i: number): boolean {
  return (
    Object.is(part.fd, vm.fd) &&
    Object.is(part.dead, vm.dead ?? null) &&
    part.shared === runs(vm.stage2.shared) &&
    part.private === runs(vm.stage2.private) &&
    part.memoryAttributes ===
      (vm.memoryAttributes.private.runCount > 0 ? runs(vm.memoryAttributes.private) : undefined) &&
    vm.mmuIs(part.mmu as { seq: number; inProgress: number; rangeStart: number; rangeEnd: number }) &&
    sameSlots(vm, part, kept, i)
  );
}

/** Whether the memslots' list of a VM's part still shows the VM's memslots. */
function sameSlots(vm: Vm, part: Obj, kept: KeptList<Vm>, i: number): boolean {
  const slots = vm.memslotList();
  const keptSlots = part.slots as readonly Obj[];
  const keys = kept.shadows[i] as readonly number[];
  if (slots.length !== keptSlots.length) return false;
  for (let s = 0; s < slots.length; s++) if (!sameSlot(slots[s]!, keptSlots[s]!, keys[s]!)) return false;
  return true;
}

// --- host mappings ---

function mappingsPart(list: readonly HostMapping[], kept: MappingsPart): MappingsPart {
  if (kept.length === list.length) {
    let same = true;
    for (let i = 0; i < list.length && same; i++) {
      const m = list[i]!;
      const k = kept[i]!;
      same =
        Object.is(k[0], m.address) &&
        Object.is(k[1], m.length) &&
        Object.is(k[2], m.fileOffset) &&
        Object.is(k[3], m.shared);
    }
    if (same) return kept;
  }
  return freeze(list.map((m) => freeze([m.address, m.length, m.fileOffset, m.shared] as const)));
}

// --- IOASes and their areas ---

function areaPart(a: IoasArea): Obj {
  return freeze({
    id: a.id,
    pagesId: a.pages.label,
    iova: a.iova,
    length: a.length,
    registered: a.registered,
    revoked: runs(a.revoked),
    unmappedPrivate: runs(a.unmappedPrivate),
    split4K: runs(a.split4K),
    ioptes: runs(a.ioptes),
  });
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
    part.ioptes === runs(a.ioptes)
  );
}

/** An IOAS's part: its id, domain and the parts of its areas, areaParts[at, at + count). */
function ioasMatches(ioas: Ioas, part: Obj, areaParts: readonly Obj[], at: number, count: number): boolean {
  if (!Object.is(part.id, ioas.id) || !Object.is(part.domain, ioas.hasDomain)) return false;
  const areas = part.areas as readonly Obj[];
  if (areas.length !== count) return false;
  for (let j = 0; j < count; j++) if (areas[j] !== areaParts[at + j]) return false;
  return true;
}

// --- poisoned frames ---

function poisonedPart(phys: PhysicalMemory, kept: readonly number[]): readonly number[] {
  // The same set of frames, listed sorted, is the same list: same size, and every frame kept is still poisoned.
  if (kept.length === phys.poisonedCount) {
    let same = true;
    for (let i = 0; i < kept.length && same; i++) same = phys.isPoisoned(kept[i]!);
    if (same) return kept;
  }
  return freeze(phys.poisonedFrames());
}
