/**
 * A map from integer keys (page indices, gfns, IOVA page numbers) to values, kept as sorted, disjoint runs.
 *
 * This is the model's only way of holding per-page state: a 1 TiB guest_memfd with one attribute run costs one
 * run, not 2^28 entries. A codec says how a value changes along a run (a pfn advances by one per page; an
 * attribute stays the same) and when two neighbouring runs may merge, so runs stay as few as the state allows.
 *
 * A map of few runs keeps them in three sorted arrays, where an update splices. One that grows past SMALL_RUNS
 * runs moves to a RunSlab (run-slab.ts): leaves of runs in typed memory, where a lookup costs O(log runs) and a
 * handful of cache lines and an update moves at most one leaf. A 1 TiB guest_memfd converted at random 2 MiB
 * blocks holds 262,144 attribute runs; splicing flat arrays moved about 6 MB per conversion (issue 11).
 */
import { clearPieces, mergePieces, PIECE_ENDS, PIECE_STARTS, PIECE_VALUES, putPiece, RunSlab } from './run-slab.js';
import type { Run, RunCodec } from './run.js';
import { cloneSelf, type Cloner } from './clone.js';

export type { Run, RunCodec };

/** Runs whose value is the same at every key (attributes, object references). */
export const constantCodec: RunCodec<unknown> = {
  shift: (value) => value,
  equals: (a, b) => a === b,
};

/** Runs whose value is a number that advances by one per key (page frame numbers). */
export const linearCodec: RunCodec<number> = {
  shift: (value, delta) => value + delta,
  equals: (a, b) => a === b,
};

/** Runs a map keeps in plain arrays; beyond, it moves to a RunSlab. */
const SMALL_RUNS = 64;
/** Runs per leaf of a RunSlab. */
const LEAF_RUNS = 64;
/** Maps of up to this many runs keep the runs their last snapshot listed (larger ones list them again). */
const SNAPSHOT_LISTED = 4096;

/** What an empty map's arrays are until its first run, so that the many empty maps cost no arrays. */
const NONE: never[] = Object.freeze([]) as unknown as never[];

/** @internal How a RangeMap lays out its runs (tests use tiny sizes to exercise the large form). */
export interface RangeMapLayout {
  smallRuns?: number;
  leafRuns?: number;
}

export class RangeMap<V> {
  // Parallel arrays keep the runs compact and let binary search work on plain numbers.
  private starts: number[] = NONE;
  private ends: number[] = NONE;
  private values: V[] = NONE;
  /** The runs, once there are more than smallRuns of them (the arrays above are then empty). */
  private big: RunSlab<V> | undefined;
  private readonly smallRuns: number;
  private readonly leafRuns: number;
  /** Counts changes, so that a snapshot can reuse the runs it listed last time when nothing changed. */
  private changes = 0;
  private listed: { changes: number; runs: ReadonlyArray<readonly [number, number, V]> } | undefined;

  constructor(
    private readonly codec: RunCodec<V> = constantCodec as RunCodec<V>,
    /** @internal */ layout?: RangeMapLayout,
  ) {
    this.smallRuns = layout?.smallRuns ?? SMALL_RUNS;
    this.leafRuns = Math.max(4, layout?.leafRuns ?? LEAF_RUNS);
  }

  /** @internal Changes so far: equal counts mean the same runs. */
  get changeCount(): number {
    return this.changes;
  }

  /** Number of runs held. */
  get runCount(): number {
    return this.big ? this.big.count : this.starts.length;
  }

  /** Index of the first run whose end is greater than `key`. */
  private firstEndingAfter(key: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! <= key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  get(key: number): V | undefined {
    if (this.big) return this.big.get(key);
    const i = this.firstEndingAfter(key);
    if (i < this.starts.length && this.starts[i]! <= key) {
      return this.codec.shift(this.values[i]!, key - this.starts[i]!);
    }
    return undefined;
  }

  has(key: number): boolean {
    if (this.big) return this.big.has(key);
    const i = this.firstEndingAfter(key);
    return i < this.starts.length && this.starts[i]! <= key;
  }

  /** The runs overlapping [start, end), clipped to it, in key order. */
  overlapping(start: number, end: number): Run<V>[] {
    if (this.big) return this.big.overlapping(start, end);
    const out: Run<V>[] = [];
    for (let i = this.firstEndingAfter(start); i < this.starts.length && this.starts[i]! < end; i++) {
      const s = Math.max(start, this.starts[i]!);
      const e = Math.min(end, this.ends[i]!);
      out.push({ start: s, end: e, value: this.codec.shift(this.values[i]!, s - this.starts[i]!) });
    }
    return out;
  }

  /**
   * overlapping() without the list: `visit(start, end, value)` for each run overlapping [start, end), clipped, in
   * key order. Allocates nothing but the caller's visitor. `visit` must not change this map.
   */
  forEachOverlap(start: number, end: number, visit: (start: number, end: number, value: V) => void): void {
    if (this.big) {
      this.big.forEachOverlap(start, end, visit);
      return;
    }
    const { starts, ends, values, codec } = this;
    for (let i = this.firstEndingAfter(start); i < starts.length && starts[i]! < end; i++) {
      const s = Math.max(start, starts[i]!);
      visit(s, Math.min(end, ends[i]!), codec.shift(values[i]!, s - starts[i]!));
    }
  }

  /** gaps() without the list: `visit(start, end)` for each sub-range of [start, end) that holds no key, in order. */
  forEachGap(start: number, end: number, visit: (start: number, end: number) => void): void {
    if (this.big) {
      this.big.forEachGap(start, end, visit);
      return;
    }
    const { starts, ends } = this;
    let at = start;
    for (let i = this.firstEndingAfter(start); i < starts.length && starts[i]! < end; i++) {
      if (starts[i]! > at) visit(at, starts[i]!);
      at = Math.max(at, ends[i]!);
    }
    if (at < end) visit(at, end);
  }

  /** The first run overlapping [start, end), clipped, or undefined. */
  firstOverlap(start: number, end: number): Run<V> | undefined {
    if (this.big) return this.big.firstOverlap(start, end);
    const i = this.firstEndingAfter(start);
    if (i < this.starts.length && this.starts[i]! < end) {
      const s = Math.max(start, this.starts[i]!);
      return {
        start: s,
        end: Math.min(end, this.ends[i]!),
        value: this.codec.shift(this.values[i]!, s - this.starts[i]!),
      };
    }
    return undefined;
  }

  /** Whether any key in [start, end) is held. */
  intersects(start: number, end: number): boolean {
    if (this.big) return this.big.intersects(start, end);
    const i = this.firstEndingAfter(start);
    return i < this.starts.length && this.starts[i]! < end;
  }

  /** Whether every key in [start, end) is held. */
  covers(start: number, end: number): boolean {
    if (this.big) return this.big.covers(start, end);
    let at = start;
    for (let i = this.firstEndingAfter(start); i < this.starts.length && at < end; i++) {
      if (this.starts[i]! > at) return false;
      at = this.ends[i]!;
    }
    return at >= end;
  }

  /** The sub-ranges of [start, end) that hold no key. */
  gaps(start: number, end: number): Array<{ start: number; end: number }> {
    if (this.big) return this.big.gaps(start, end);
    const out: Array<{ start: number; end: number }> = [];
    let at = start;
    for (let i = this.firstEndingAfter(start); i < this.starts.length && this.starts[i]! < end; i++) {
      if (this.starts[i]! > at) out.push({ start: at, end: this.starts[i]! });
      at = Math.max(at, this.ends[i]!);
    }
    if (at < end) out.push({ start: at, end });
    return out;
  }

  /** Every run, in key order. */
  *[Symbol.iterator](): IterableIterator<Run<V>> {
    if (this.big) {
      yield* this.big.runs();
      return;
    }
    for (let i = 0; i < this.starts.length; i++) {
      yield { start: this.starts[i]!, end: this.ends[i]!, value: this.values[i]! };
    }
  }

  /**
   * Whether every key of [start, end) is held with the value a run beginning at `start` with `value` would give
   * it: set(start, end, value) would change nothing. Allocates nothing.
   */
  holdsRun(start: number, end: number, value: V): boolean {
    if (start >= end) return true;
    if (this.big) return this.big.holdsRun(start, end, value);
    let at = start;
    for (let i = this.firstEndingAfter(start); i < this.starts.length && at < end; i++) {
      const s = this.starts[i]!;
      if (s > at || !this.codec.equals(this.codec.shift(this.values[i]!, at - s), this.codec.shift(value, at - start)))
        return false;
      at = this.ends[i]!;
    }
    return at >= end;
  }

  /** Map [start, end) to runs beginning with `value`, replacing whatever was there. */
  set(start: number, end: number, value: V): void {
    if (start >= end) return;
    // Already so: no change (and the change count, which snapshots go by, stays).
    if (this.holdsRun(start, end, value)) return;
    this.replace(start, end, true, value);
  }

  /** @internal set() for a caller that has just found, with holdsRun(), that the range changes. */
  assign(start: number, end: number, value: V): void {
    if (start < end) this.replace(start, end, true, value);
  }

  /**
   * @internal Fill an empty map with `count` runs given in key order, disjoint: the same runs as `set()` of each
   * in turn would leave (neighbours the codec joins are merged), built in one pass instead of one update each.
   */
  loadRuns(starts: readonly number[], ends: readonly number[], values: readonly V[], count: number): void {
    if (this.runCount > 0) throw new Error('RangeMap.loadRuns: the map is not empty');
    let last = -Infinity;
    for (let i = 0; i < count; i++) {
      if (starts[i]! >= ends[i]!) continue;
      if (starts[i]! < last) throw new Error('RangeMap.loadRuns: runs out of order or overlapping');
      last = ends[i]!;
    }
    if (count <= this.smallRuns) {
      // Few runs stay in the small form: set() each, whose first run takes one-element arrays (no slab to build).
      for (let i = 0; i < count; i++) this.set(starts[i]!, ends[i]!, values[i]!);
      return;
    }
    const codec = this.codec;
    const s: number[] = [];
    const e: number[] = [];
    const v: V[] = [];
    for (let i = 0; i < count; i++) {
      const start = starts[i]!;
      const end = ends[i]!;
      if (start >= end) continue;
      const n = s.length;
      if (n > 0 && e[n - 1] === start && codec.equals(codec.shift(v[n - 1]!, start - s[n - 1]!), values[i]!))
        e[n - 1] = end;
      else {
        s.push(start);
        e.push(end);
        v.push(values[i]!);
      }
    }
    if (s.length === 0) return;
    this.changes++;
    this.starts = s;
    this.ends = e;
    this.values = v;
    if (s.length > this.smallRuns) this.enterSlab();
  }

  /** Remove [start, end); returns the runs that were removed (clipped). */
  delete(start: number, end: number): Run<V>[] {
    if (start >= end) return [];
    const removed = this.overlapping(start, end);
    if (removed.length > 0) this.replace(start, end, false, undefined as V);
    return removed;
  }

  /** Remove [start, end) without listing what was removed; whether anything was. */
  remove(start: number, end: number): boolean {
    if (start >= end || !this.intersects(start, end)) return false;
    this.replace(start, end, false, undefined as V);
    return true;
  }

  clear(): void {
    this.changes++;
    this.starts = NONE;
    this.ends = NONE;
    this.values = NONE;
    this.big = undefined;
  }

  clone(): RangeMap<V> {
    const copy = new RangeMap<V>(this.codec, { smallRuns: this.smallRuns, leafRuns: this.leafRuns });
    if (this.starts !== NONE) {
      copy.starts = this.starts.slice();
      copy.ends = this.ends.slice();
      copy.values = this.values.slice();
    }
    copy.big = this.big?.clone();
    return copy;
  }

  /**
   * @internal Host.fork() (clone.ts): this map exactly, its change count and listed runs too, its values through
   * the fork's cloner (a value may be a model object the copy must share with the rest of the fork). Copying the
   * arrays here rather than as three objects of the graph saves the cloner's per-object work: a map is about a
   * tenth of a world's objects and their arrays most of the rest.
   */
  [cloneSelf](cloner: Cloner): RangeMap<V> {
    // Through the cloner, as any field: the host's codecs are shared with a fork, a frozen one is kept, and a codec
    // that is neither (functions in a plain object) is refused as before.
    const copy = new RangeMap<V>(cloner.clone(this.codec), { smallRuns: this.smallRuns, leafRuns: this.leafRuns });
    cloner.remember(this, copy);
    copy.changes = this.changes;
    // Replaced, never changed in place, and its runs are frozen: the copy may share it.
    copy.listed = this.listed;
    if (this.starts !== NONE) {
      copy.starts = this.starts.slice();
      copy.ends = this.ends.slice();
      const values = this.values.slice();
      for (let i = 0; i < values.length; i++) {
        const value = values[i];
        if (typeof value === 'object' ? value !== null : typeof value === 'function')
          values[i] = cloner.field(this.values, String(i), value) as V;
      }
      copy.values = values;
    }
    if (this.big !== undefined) copy.big = cloner.clone(this.big);
    return copy;
  }

  /**
   * @internal The runs as frozen [start, end, value] triples, for Host.snapshot(): the same array as last time
   * while the map has not changed (maps of up to SNAPSHOT_LISTED runs keep it), so snapshots of a state that
   * did not change share it and compare at a glance.
   */
  snapshotRuns(): ReadonlyArray<readonly [number, number, V]> {
    if (this.listed?.changes === this.changes) return this.listed.runs;
    const runs = Object.freeze(this.toArray().map((r) => Object.freeze([r.start, r.end, r.value] as const)));
    this.listed = this.runCount <= SNAPSHOT_LISTED ? { changes: this.changes, runs } : undefined;
    return runs;
  }

  /** Plain runs, for snapshots and tests. */
  toArray(): Run<V>[] {
    if (this.big) return this.big.runs();
    const out: Run<V>[] = new Array(this.starts.length);
    for (let i = 0; i < this.starts.length; i++)
      out[i] = { start: this.starts[i]!, end: this.ends[i]!, value: this.values[i]! };
    return out;
  }

  /**
   * Replace everything in [start, end) with a run beginning with `value` (when `fill`) or with nothing, keeping
   * the parts of the runs that stick out on either side and merging with neighbours where the codec allows.
   * The small form works in scratch arrays of at most five runs and allocates nothing.
   */
  private replace(start: number, end: number, fill: boolean, value: V): void {
    this.changes++;
    if (this.big) {
      this.big.replace(start, end, fill, value);
      // A map that shrank back to few runs returns to plain arrays.
      if (this.big.count <= this.smallRuns >> 2) this.leaveSlab();
      return;
    }
    if (this.starts === NONE) {
      // The first run of a map (most maps hold one or two: an area's IOPTEs, its revoked pages): arrays of
      // exactly one element, not empty ones that the first push grows to 17 slots. Nothing to merge with.
      if (fill) {
        this.starts = [start];
        this.ends = [end];
        this.values = [value];
        if (this.smallRuns < 1) this.enterSlab();
      }
      return;
    }
    const { starts, ends, values, codec } = this;
    const n = starts.length;
    const first = this.firstEndingAfter(start);
    let last = first; // exclusive index of the last run touching [start, end)
    while (last < n && starts[last]! < end) last++;
    const leftStub = first < last && starts[first]! < start;
    const rightStub = first < last && ends[last - 1]! > end;
    // The pieces in key order: [left neighbour] [left stub] [the new run] [right stub] [right neighbour]; a
    // neighbour joins when it touches the pieces, so that merging can reach it.
    const firstKey = leftStub ? starts[first]! : fill ? start : rightStub ? end : start;
    let lo = first;
    let hi = last;
    let count = 0;
    if (lo > 0 && ends[lo - 1]! === firstKey) {
      lo--;
      count = putPiece(count, starts[lo]!, ends[lo]!, values[lo]);
    }
    if (leftStub) count = putPiece(count, starts[first]!, start, values[first]);
    if (fill) count = putPiece(count, start, end, value);
    if (rightStub)
      count = putPiece(count, end, ends[last - 1]!, codec.shift(values[last - 1]!, end - starts[last - 1]!));
    const lastKey = count > 0 ? PIECE_ENDS[count - 1]! : end;
    if (hi < n && starts[hi]! === lastKey) {
      count = putPiece(count, starts[hi]!, ends[hi]!, values[hi]);
      hi++;
    }
    const m = mergePieces(codec, count);
    // Replace runs [lo, hi) with the m merged runs: overwrite in place, then remove or insert the difference.
    const overwrite = Math.min(hi - lo, m);
    for (let k = 0; k < overwrite; k++) {
      starts[lo + k] = PIECE_STARTS[k]!;
      ends[lo + k] = PIECE_ENDS[k]!;
      values[lo + k] = PIECE_VALUES[k] as V;
    }
    // Moved by hand, not with splice(): splice returns a new array of what it removed, one allocation per
    // update of a map that lives long (ARCHITECTURE.md: refilled arrays of long-lived objects are old garbage).
    if (hi - lo > overwrite) {
      const gone = hi - lo - overwrite;
      for (let k = hi; k < n; k++) {
        starts[k - gone] = starts[k]!;
        ends[k - gone] = ends[k]!;
        values[k - gone] = values[k]!;
      }
      // pop(), not `length =`: setting the length is a runtime call; a removal drops one or two runs.
      for (let k = 0; k < gone; k++) {
        starts.pop();
        ends.pop();
        values.pop();
      }
    } else if (m > overwrite) {
      const added = m - overwrite;
      const at = lo + overwrite;
      // Grow to n + added with push (which keeps each array's element kind), taking each new slot's final
      // value: the tail moved right, or a new piece where it lands at the end; then move the rest of the tail.
      for (let t = n; t < n + added; t++) {
        const src = t - added;
        if (src >= at) {
          starts.push(starts[src]!);
          ends.push(ends[src]!);
          values.push(values[src]!);
        } else {
          starts.push(PIECE_STARTS[t - lo]!);
          ends.push(PIECE_ENDS[t - lo]!);
          values.push(PIECE_VALUES[t - lo] as V);
        }
      }
      for (let t = n - 1; t >= at + added; t--) {
        starts[t] = starts[t - added]!;
        ends[t] = ends[t - added]!;
        values[t] = values[t - added]!;
      }
      for (let k = overwrite; k < m; k++) {
        starts[lo + k] = PIECE_STARTS[k]!;
        ends[lo + k] = PIECE_ENDS[k]!;
        values[lo + k] = PIECE_VALUES[k] as V;
      }
    }
    clearPieces(count);
    if (starts.length > this.smallRuns) this.enterSlab();
  }

  private enterSlab(): void {
    // The slab reads the three arrays as they are (no list of run objects in between).
    this.big = new RunSlab(this.codec, this.leafRuns, { starts: this.starts, ends: this.ends, values: this.values });
    this.starts = NONE;
    this.ends = NONE;
    this.values = NONE;
  }

  private leaveSlab(): void {
    const runs = this.big!.runs();
    this.big = undefined;
    this.starts = runs.map((r) => r.start);
    this.ends = runs.map((r) => r.end);
    this.values = runs.map((r) => r.value);
  }
}
