/**
 * The large form of a RangeMap: its runs in leaves of at most `leafRuns` runs, all leaves in one slab of typed
 * memory. A leaf's runs sit at slots [leaf * leafRuns, leaf * leafRuns + size) — start and end side by side in
 * `keys`, the value in `values` — and the leaves are listed in key order with the end of each one's last run. A
 * lookup is a binary search over those ends and one inside a leaf, touching a handful of cache lines wherever
 * the key is (no object per leaf to chase); an update moves at most one leaf's runs, and splits or merges a leaf
 * when it overflows or falls below a quarter full. The maple tree keeps guest_memfd attributes in the same
 * spirit: wide nodes of ranges, not a node per page or a flat array per file.
 *
 * Internal to util/range-map.ts, which keeps maps of few runs in plain arrays and moves them here when they grow.
 */
import type { Run, RunCodec } from './run.js';

/** Runs as three parallel arrays in key order (a small RangeMap's layout). */
export interface RunColumns<V> {
  readonly starts: readonly number[];
  readonly ends: readonly number[];
  readonly values: readonly V[];
}

export class RunSlab<V> {
  /** Start and end of every slot: slot s at 2s and 2s + 1. */
  private keys: Float64Array;
  private values: V[];
  /** Runs in each leaf, by leaf id. */
  private sizes: Int32Array;
  /** Leaf ids in key order, [0, leaves). */
  private order: Int32Array;
  /** The end of the last run of the leaf at each position of `order`. */
  private leafEnds: Float64Array;
  private leaves = 0;
  /** Leaf ids allocated in the slab (used or free). */
  private capacity: number;
  private readonly freeIds: number[] = [];
  count = 0;
  /** Where seek() found the first run ending after a key: leaf position, run index inside the leaf. */
  private atLeaf = 0;
  private atRun = 0;
  /**
   * The key atLeaf/atRun were found for, until the runs change (NaN: none): a conversion asks holdsRun and then
   * replaces at the same key, and the second search would find the same place.
   */
  private seekedKey = Number.NaN;
  private readonly minRuns: number;

  constructor(
    private readonly codec: RunCodec<V>,
    private readonly leafRuns: number,
    /** The runs in key order: as objects, or as three parallel arrays (a small RangeMap's own, no copy). */
    runs: readonly Run<V>[] | RunColumns<V>,
  ) {
    this.minRuns = leafRuns >> 2;
    const columns = Array.isArray(runs) ? undefined : (runs as RunColumns<V>);
    const length = columns ? columns.starts.length : (runs as readonly Run<V>[]).length;
    const fill = Math.max(1, Math.floor((leafRuns * 3) / 4));
    const needed = Math.ceil(length / fill);
    this.capacity = needed + Math.max(2, needed >> 3);
    this.keys = new Float64Array(this.capacity * leafRuns * 2);
    this.values = [];
    grow(this.values, this.capacity * leafRuns, undefined as V);
    this.sizes = new Int32Array(this.capacity);
    this.order = new Int32Array(this.capacity);
    this.leafEnds = new Float64Array(this.capacity);
    for (let id = this.capacity - 1; id >= needed; id--) this.freeIds.push(id);
    for (let leaf = 0; leaf < needed; leaf++) {
      const from = Math.floor((leaf * length) / needed);
      const to = Math.floor(((leaf + 1) * length) / needed);
      this.order[leaf] = leaf;
      if (columns) {
        const base = leaf * this.leafRuns;
        for (let k = from; k < to; k++) {
          const slot = base + k - from;
          this.keys[2 * slot] = columns.starts[k]!;
          this.keys[2 * slot + 1] = columns.ends[k]!;
          this.values[slot] = columns.values[k]!;
        }
        this.sizes[leaf] = to - from;
        this.leafEnds[leaf] = to > 0 ? columns.ends[to - 1]! : 0;
      } else {
        const list = runs as readonly Run<V>[];
        this.writeLeaf(leaf, list, from, to);
        this.leafEnds[leaf] = list[to - 1]?.end ?? 0;
      }
    }
    this.leaves = needed;
    this.count = length;
  }

  private writeLeaf(id: number, runs: readonly Run<V>[], from: number, to: number): void {
    const base = id * this.leafRuns;
    for (let k = from; k < to; k++) {
      const slot = base + k - from;
      this.keys[2 * slot] = runs[k]!.start;
      this.keys[2 * slot + 1] = runs[k]!.end;
      this.values[slot] = runs[k]!.value;
    }
    this.sizes[id] = to - from;
  }

  /** Every run, in key order. */
  runs(): Run<V>[] {
    const out: Run<V>[] = new Array(this.count);
    let n = 0;
    for (let p = 0; p < this.leaves; p++) {
      const id = this.order[p]!;
      const base = id * this.leafRuns;
      for (let i = 0; i < this.sizes[id]!; i++)
        out[n++] = {
          start: this.keys[2 * (base + i)]!,
          end: this.keys[2 * (base + i) + 1]!,
          value: this.values[base + i]!,
        };
    }
    return out;
  }

  clone(): RunSlab<V> {
    return new RunSlab(this.codec, this.leafRuns, this.runs());
  }

  /** Point atLeaf/atRun at the first run whose end is greater than `key` (atLeaf = leaves if none). */
  private seek(key: number): void {
    if (key === this.seekedKey) return;
    this.seekedKey = key;
    const leafEnds = this.leafEnds;
    let lo = 0;
    let hi = this.leaves;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (leafEnds[mid]! <= key) lo = mid + 1;
      else hi = mid;
    }
    this.atLeaf = lo;
    if (lo === this.leaves) {
      this.atRun = 0;
      return;
    }
    const id = this.order[lo]!;
    const keys = this.keys;
    const base = id * this.leafRuns;
    let a = 0;
    let b = this.sizes[id]! - 1; // the last run ends after key
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (keys[2 * (base + mid) + 1]! <= key) a = mid + 1;
      else b = mid;
    }
    this.atRun = a;
  }

  /** The slot of the run found by seek(), or -1. */
  private foundSlot(): number {
    return this.atLeaf < this.leaves ? this.order[this.atLeaf]! * this.leafRuns + this.atRun : -1;
  }

  get(key: number): V | undefined {
    this.seek(key);
    const slot = this.foundSlot();
    if (slot >= 0 && this.keys[2 * slot]! <= key)
      return this.codec.shift(this.values[slot]!, key - this.keys[2 * slot]!);
    return undefined;
  }

  has(key: number): boolean {
    this.seek(key);
    const slot = this.foundSlot();
    return slot >= 0 && this.keys[2 * slot]! <= key;
  }

  intersects(start: number, end: number): boolean {
    this.seek(start);
    const slot = this.foundSlot();
    return slot >= 0 && this.keys[2 * slot]! < end;
  }

  firstOverlap(start: number, end: number): Run<V> | undefined {
    this.seek(start);
    const slot = this.foundSlot();
    if (slot < 0 || this.keys[2 * slot]! >= end) return undefined;
    const runStart = this.keys[2 * slot]!;
    const s = Math.max(start, runStart);
    return {
      start: s,
      end: Math.min(end, this.keys[2 * slot + 1]!),
      value: this.codec.shift(this.values[slot]!, s - runStart),
    };
  }

  /**
   * Visit the runs from the first one ending after `start` while `visit` returns true, in key order: the run's
   * start, end and slot. Used by the queries that walk a range.
   */
  private walk(start: number, visit: (runStart: number, runEnd: number, slot: number) => boolean): void {
    this.seek(start);
    let i = this.atRun;
    for (let p = this.atLeaf; p < this.leaves; p++, i = 0) {
      const id = this.order[p]!;
      const base = id * this.leafRuns;
      const size = this.sizes[id]!;
      for (; i < size; i++) {
        const slot = base + i;
        if (!visit(this.keys[2 * slot]!, this.keys[2 * slot + 1]!, slot)) return;
      }
    }
  }

  overlapping(start: number, end: number): Run<V>[] {
    // The walk written out (no closure): KVM asks this of its memslot bindings on every invalidation.
    const out: Run<V>[] = [];
    this.seek(start);
    let i = this.atRun;
    for (let p = this.atLeaf; p < this.leaves; p++, i = 0) {
      const id = this.order[p]!;
      const base = id * this.leafRuns;
      const size = this.sizes[id]!;
      for (; i < size; i++) {
        const slot = base + i;
        const runStart = this.keys[2 * slot]!;
        if (runStart >= end) return out;
        const s = Math.max(start, runStart);
        out.push({
          start: s,
          end: Math.min(end, this.keys[2 * slot + 1]!),
          value: this.codec.shift(this.values[slot]!, s - runStart),
        });
      }
    }
    return out;
  }

  /** overlapping() without the list (RangeMap.forEachOverlap). */
  forEachOverlap(start: number, end: number, visit: (start: number, end: number, value: V) => void): void {
    this.seek(start);
    let i = this.atRun;
    const leaves = this.leaves;
    for (let p = this.atLeaf; p < leaves; p++, i = 0) {
      const id = this.order[p]!;
      const base = id * this.leafRuns;
      const size = this.sizes[id]!;
      for (; i < size; i++) {
        const slot = base + i;
        const runStart = this.keys[2 * slot]!;
        if (runStart >= end) return;
        const s = Math.max(start, runStart);
        visit(s, Math.min(end, this.keys[2 * slot + 1]!), this.codec.shift(this.values[slot]!, s - runStart));
      }
    }
  }

  /** gaps() without the list (RangeMap.forEachGap). */
  forEachGap(start: number, end: number, visit: (start: number, end: number) => void): void {
    this.seek(start);
    let at = start;
    let i = this.atRun;
    const leaves = this.leaves;
    for (let p = this.atLeaf; p < leaves; p++, i = 0) {
      const id = this.order[p]!;
      const base = id * this.leafRuns;
      const size = this.sizes[id]!;
      for (; i < size; i++) {
        const slot = base + i;
        const runStart = this.keys[2 * slot]!;
        if (runStart >= end) {
          if (at < end) visit(at, end);
          return;
        }
        if (runStart > at) visit(at, runStart);
        const runEnd = this.keys[2 * slot + 1]!;
        if (runEnd > at) at = runEnd;
      }
    }
    if (at < end) visit(at, end);
  }

  /** Whether every key of [start, end) is held with the value a run beginning at `start` with `value` would give it. */
  holdsRun(start: number, end: number, value: V): boolean {
    this.seek(start);
    const codec = this.codec;
    let at = start;
    let i = this.atRun;
    for (let p = this.atLeaf; p < this.leaves; p++, i = 0) {
      const id = this.order[p]!;
      const base = id * this.leafRuns;
      const size = this.sizes[id]!;
      for (; i < size; i++) {
        if (at >= end) return true;
        const slot = base + i;
        const runStart = this.keys[2 * slot]!;
        if (
          runStart > at ||
          !codec.equals(codec.shift(this.values[slot]!, at - runStart), codec.shift(value, at - start))
        )
          return false;
        at = this.keys[2 * slot + 1]!;
      }
    }
    return at >= end;
  }

  covers(start: number, end: number): boolean {
    // The walk written out (no closure): a fill asks it of the page cache for every run it maps.
    this.seek(start);
    let at = start;
    let i = this.atRun;
    for (let p = this.atLeaf; p < this.leaves; p++, i = 0) {
      const id = this.order[p]!;
      const base = id * this.leafRuns;
      const size = this.sizes[id]!;
      for (; i < size; i++) {
        if (at >= end) return true;
        const slot = base + i;
        if (this.keys[2 * slot]! > at) return false;
        at = this.keys[2 * slot + 1]!;
      }
    }
    return at >= end;
  }

  gaps(start: number, end: number): Array<{ start: number; end: number }> {
    const out: Array<{ start: number; end: number }> = [];
    let at = start;
    this.walk(start, (runStart, runEnd) => {
      if (runStart >= end) return false;
      if (runStart > at) out.push({ start: at, end: runStart });
      at = Math.max(at, runEnd);
      return true;
    });
    if (at < end) out.push({ start: at, end });
    return out;
  }

  private runAt(p: number, i: number): Run<V> {
    const slot = this.order[p]! * this.leafRuns + i;
    return { start: this.keys[2 * slot]!, end: this.keys[2 * slot + 1]!, value: this.values[slot]! };
  }

  private sizeAt(p: number): number {
    return this.sizes[this.order[p]!]!;
  }

  /**
   * Replace everything in [start, end) with a run beginning with `value` (when `fill`) or with nothing, keeping
   * the parts of the runs that stick out on either side and merging with neighbours where the codec allows.
   * The pieces (at most five) go through scratch arrays: an update that stays inside its leaf allocates nothing.
   */
  replace(start: number, end: number, fill: boolean, value: V): void {
    this.seek(start);
    // The runs change from here: no later search may take this one's answer.
    this.seekedKey = Number.NaN;
    const keys = this.keys;
    const values = this.values;
    const codec = this.codec;
    // [lo, hi): the runs touching [start, end), as (leaf position, run) pairs; hi is the first run starting at
    // or after `end`, or (leaves, 0).
    let loLeaf = this.atLeaf;
    let loRun = this.atRun;
    let hiLeaf = loLeaf;
    let hiRun = loRun;
    while (hiLeaf < this.leaves) {
      const id = this.order[hiLeaf]!;
      const base = id * this.leafRuns;
      const size = this.sizes[id]!;
      if (keys[2 * (base + size - 1)]! < end) {
        hiLeaf++;
        hiRun = 0;
        continue;
      }
      let a = hiRun;
      let b = size;
      while (a < b) {
        const mid = (a + b) >>> 1;
        if (keys[2 * (base + mid)]! < end) a = mid + 1;
        else b = mid;
      }
      hiRun = a;
      break;
    }
    const touching = loLeaf !== hiLeaf || loRun !== hiRun;
    // The first and last runs touching the range, as slots.
    const firstSlot = touching ? this.order[loLeaf]! * this.leafRuns + loRun : -1;
    let lastSlot = -1;
    if (touching) {
      const p = hiRun > 0 ? hiLeaf : hiLeaf - 1;
      lastSlot = this.order[p]! * this.leafRuns + (hiRun > 0 ? hiRun - 1 : this.sizeAt(p) - 1);
    }
    const leftStub = touching && keys[2 * firstSlot]! < start;
    const rightStub = touching && keys[2 * lastSlot + 1]! > end;
    // The pieces in key order: [left neighbour] [left stub] [the new run] [right stub] [right neighbour]; a
    // neighbour joins when it touches the pieces, so that merging can reach it.
    const firstKey = leftStub ? keys[2 * firstSlot]! : fill ? start : rightStub ? end : start;
    let count = 0;
    if (loRun > 0 || loLeaf > 0) {
      const p = loRun > 0 ? loLeaf : loLeaf - 1;
      const i = loRun > 0 ? loRun - 1 : this.sizeAt(p) - 1;
      const slot = this.order[p]! * this.leafRuns + i;
      if (keys[2 * slot + 1]! === firstKey) {
        count = putPiece(count, keys[2 * slot]!, keys[2 * slot + 1]!, values[slot]);
        loLeaf = p;
        loRun = i;
      }
    }
    if (leftStub) count = putPiece(count, keys[2 * firstSlot]!, start, values[firstSlot]);
    if (fill) count = putPiece(count, start, end, value);
    if (rightStub)
      count = putPiece(count, end, keys[2 * lastSlot + 1]!, codec.shift(values[lastSlot]!, end - keys[2 * lastSlot]!));
    const lastKey = count > 0 ? PIECE_ENDS[count - 1]! : end;
    if (hiLeaf < this.leaves) {
      const slot = this.order[hiLeaf]! * this.leafRuns + hiRun;
      if (keys[2 * slot]! === lastKey) {
        count = putPiece(count, keys[2 * slot]!, keys[2 * slot + 1]!, values[slot]);
        hiRun++;
        if (hiRun === this.sizeAt(hiLeaf)) {
          hiLeaf++;
          hiRun = 0;
        }
      }
    }
    const m = mergePieces(codec, count);
    this.spliceRuns(loLeaf, loRun, hiLeaf, hiRun, m);
    clearPieces(count);
  }

  /** Replace the runs from (loLeaf, loRun) up to (hiLeaf, hiRun), exclusive, with the first `n` scratch pieces. */
  private spliceRuns(loLeaf: number, loRun: number, hiLeaf: number, hiRun: number, n: number): void {
    if (this.leaves === 0) {
      if (n === 0) return;
      const id = this.takeId();
      this.sizes[id] = 0;
      this.insertLeafAt(0, id, 0);
    }
    // A position past the last run is the end of the last leaf.
    if (loLeaf === this.leaves) {
      loLeaf = this.leaves - 1;
      loRun = this.sizeAt(loLeaf);
    }
    if (hiLeaf === this.leaves) {
      hiLeaf = this.leaves - 1;
      hiRun = this.sizeAt(hiLeaf);
    }
    if (loLeaf === hiLeaf) {
      this.count += n - (hiRun - loRun);
      this.spliceLeaf(loLeaf, loRun, hiRun - loRun, n);
      this.settle(loLeaf);
      return;
    }
    let removed = this.sizeAt(loLeaf) - loRun + hiRun;
    for (let p = loLeaf + 1; p < hiLeaf; p++) removed += this.sizeAt(p);
    this.count += n - removed;
    // Edit first, settle after, so that no merge moves a leaf this update still has to edit.
    this.spliceLeaf(hiLeaf, 0, hiRun, 0);
    if (hiLeaf - loLeaf > 1) this.removeLeaves(loLeaf + 1, hiLeaf - loLeaf - 1);
    const added = this.spliceLeaf(loLeaf, loRun, this.sizeAt(loLeaf) - loRun, n);
    this.settle(loLeaf + 1 + added);
    this.settle(loLeaf);
  }

  /**
   * Replace `remove` runs at `at` of the leaf at position `p` with the first `n` scratch pieces; a leaf that
   * would overflow spreads over new leaves after it. Returns how many leaves were added. The caller settles the
   * leaf afterwards.
   */
  private spliceLeaf(p: number, at: number, remove: number, n: number): number {
    const id = this.order[p]!;
    const size = this.sizes[id]!;
    const next = size - remove + n;
    if (next > this.leafRuns) {
      const all: Run<V>[] = [];
      for (let i = 0; i < at; i++) all.push(this.runAt(p, i));
      for (let k = 0; k < n; k++)
        all.push({ start: PIECE_STARTS[k]!, end: PIECE_ENDS[k]!, value: PIECE_VALUES[k] as V });
      for (let i = at + remove; i < size; i++) all.push(this.runAt(p, i));
      // Runs added at the end of the map (a file filled in order) pack the leaves full rather than half full.
      const appending = p === this.leaves - 1 && at + remove === size;
      return this.spread(p, all, appending) - 1;
    }
    const base = id * this.leafRuns;
    const keys = this.keys;
    const values = this.values;
    const shift = n - remove;
    if (shift !== 0 && at + remove < size) {
      keys.copyWithin(2 * (base + at + n), 2 * (base + at + remove), 2 * (base + size));
      move(values, base + at + n, base + at + remove, base + size);
    }
    for (let k = 0; k < n; k++) {
      const slot = base + at + k;
      keys[2 * slot] = PIECE_STARTS[k]!;
      keys[2 * slot + 1] = PIECE_ENDS[k]!;
      values[slot] = PIECE_VALUES[k] as V;
    }
    // Drop references the leaf no longer holds, so that values can be collected.
    for (let i = next; i < size; i++) values[base + i] = undefined as V;
    this.sizes[id] = next;
    if (next > 0) this.leafEnds[p] = keys[2 * (base + next - 1) + 1]!;
    return 0;
  }

  /**
   * Keep the leaf at `p` at least a quarter full (but for the last leaf, which appends fill from the left) and
   * its end up to date.
   */
  private settle(p: number): void {
    if (p >= this.leaves) return;
    const size = this.sizeAt(p);
    if (size === 0) {
      this.removeLeaves(p, 1);
      return;
    }
    if (size < this.minRuns && p < this.leaves - 1) {
      const left = p;
      const all: Run<V>[] = [];
      for (let i = 0; i < this.sizeAt(left); i++) all.push(this.runAt(left, i));
      for (let i = 0; i < this.sizeAt(left + 1); i++) all.push(this.runAt(left + 1, i));
      this.removeLeaves(left + 1, 1);
      this.spread(left, all);
      return;
    }
    const id = this.order[p]!;
    this.leafEnds[p] = this.keys[2 * (id * this.leafRuns + size - 1) + 1]!;
  }

  /**
   * Write `runs` into the leaf at `p` and as many new leaves after it as it takes: evenly, each at most three
   * quarters full, or with `pack` full leaves and the rest in the last; returns the number of leaves written.
   */
  private spread(p: number, runs: readonly Run<V>[], pack = false): number {
    const per = pack ? this.leafRuns : Math.max(1, Math.floor((this.leafRuns * 3) / 4));
    const parts = Math.max(1, Math.ceil(runs.length / per));
    for (let part = 0; part < parts; part++) {
      const from = pack ? part * per : Math.floor((part * runs.length) / parts);
      const to = pack ? Math.min(runs.length, from + per) : Math.floor(((part + 1) * runs.length) / parts);
      let id: number;
      if (part === 0) {
        id = this.order[p]!;
        const old = this.sizes[id]!;
        for (let i = to - from; i < old; i++) this.values[id * this.leafRuns + i] = undefined as V;
      } else {
        id = this.takeId();
        this.insertLeafAt(p + part, id, 0);
      }
      this.writeLeaf(id, runs, from, to);
      this.leafEnds[p + part] = runs[to - 1]!.end;
    }
    return parts;
  }

  /** A free leaf id, growing the slab when there is none. */
  private takeId(): number {
    if (this.freeIds.length === 0) {
      // Grow by a quarter: the slab is most of a large map's memory.
      const grown = this.capacity + Math.max(4, this.capacity >> 2);
      this.keys = widen(this.keys, new Float64Array(grown * this.leafRuns * 2));
      grow(this.values, grown * this.leafRuns, undefined as V);
      this.sizes = widen(this.sizes, new Int32Array(grown));
      this.order = widen(this.order, new Int32Array(grown));
      this.leafEnds = widen(this.leafEnds, new Float64Array(grown));
      for (let id = grown - 1; id >= this.capacity; id--) this.freeIds.push(id);
      this.capacity = grown;
    }
    return this.freeIds.pop()!;
  }

  /** Insert leaf `id` at position `p` of the order. */
  private insertLeafAt(p: number, id: number, end: number): void {
    this.order.copyWithin(p + 1, p, this.leaves);
    this.leafEnds.copyWithin(p + 1, p, this.leaves);
    this.order[p] = id;
    this.leafEnds[p] = end;
    this.leaves++;
  }

  /** Remove `n` leaves from position `p` of the order and free their ids. */
  private removeLeaves(p: number, n: number): void {
    for (let q = p; q < p + n; q++) {
      const id = this.order[q]!;
      const base = id * this.leafRuns;
      for (let i = 0; i < this.sizes[id]!; i++) this.values[base + i] = undefined as V;
      this.sizes[id] = 0;
      this.freeIds.push(id);
    }
    this.order.copyWithin(p, p + n, this.leaves);
    this.leafEnds.copyWithin(p, p + n, this.leaves);
    this.leaves -= n;
  }
}

/**
 * Scratch for an update's pieces, RunSlab.replace's and RangeMap's small form's (at most five; codecs are plain
 * functions and never re-enter a map, so one update at a time uses them).
 */
export const PIECE_STARTS: number[] = [0, 0, 0, 0, 0];
export const PIECE_ENDS: number[] = [0, 0, 0, 0, 0];
export const PIECE_VALUES: unknown[] = [undefined, undefined, undefined, undefined, undefined];

/** Write piece `at` of the scratch; returns the count after it. */
export function putPiece(at: number, start: number, end: number, value: unknown): number {
  PIECE_STARTS[at] = start;
  PIECE_ENDS[at] = end;
  PIECE_VALUES[at] = value;
  return at + 1;
}

/**
 * Merge the first `count` scratch pieces where they touch and the codec lets their values continue, in place
 * (merged runs never overtake the pieces still to read); returns how many runs remain.
 */
export function mergePieces<V>(codec: RunCodec<V>, count: number): number {
  let m = 0;
  for (let i = 0; i < count; i++) {
    const s = PIECE_STARTS[i]!;
    if (
      m > 0 &&
      PIECE_ENDS[m - 1] === s &&
      codec.equals(
        codec.shift(PIECE_VALUES[m - 1] as V, PIECE_ENDS[m - 1]! - PIECE_STARTS[m - 1]!),
        PIECE_VALUES[i] as V,
      )
    ) {
      PIECE_ENDS[m - 1] = PIECE_ENDS[i]!;
    } else {
      PIECE_STARTS[m] = s;
      PIECE_ENDS[m] = PIECE_ENDS[i]!;
      PIECE_VALUES[m++] = PIECE_VALUES[i];
    }
  }
  return m;
}

/** Drop the values of the first `count` scratch pieces, so that the scratch keeps nothing alive. */
export function clearPieces(count: number): void {
  for (let k = 0; k < count; k++) PIECE_VALUES[k] = undefined;
}

/** `to`, holding `from` at its start. */
function widen<A extends Float64Array | Int32Array>(from: A, to: A): A {
  to.set(from);
  return to;
}

/** array.copyWithin(to, from, end) for a plain array, as a loop (the generic built-in is slow on arrays). */
function move<T>(array: T[], to: number, from: number, end: number): void {
  if (to < from) for (let i = from; i < end; i++) array[to + i - from] = array[i]!;
  else for (let i = end - 1; i >= from; i--) array[to + i - from] = array[i]!;
}

/** Extend `array` to `length` with `value`, keeping it packed. */
function grow<T>(array: T[], length: number, value: T): void {
  while (array.length < length) array.push(value);
}
