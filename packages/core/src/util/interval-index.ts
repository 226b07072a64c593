/**
 * Intervals [first, end) of integer keys with an item each, answering "which intervals overlap [start, end)" in
 * O(log n + k) instead of a filter over all n — an interval tree, as the kernel keeps iommufd areas and a file's
 * mappings in one. Answers come in insertion order, as a list scanned in order would give them.
 *
 * Laid out for cache lines rather than nodes: the intervals sorted by start in arrays of numbers, with a tree of
 * maxima of their ends over them (an implicit segment tree), so a query reads a few contiguous arrays; a
 * removal marks its slot dead, and an insertion that fits a dead slot in the sorted order takes it; other insertions wait in a short unsorted list that every query also scans, and are
 * merged in (one pass over the sorted arrays) when it grows past about the square root of the size.
 * A query finds the last interval starting before its end (fences, then a binary search inside one block) and
 * walks down while the prefix maxima of the ends say an earlier one may still reach it: for disjoint intervals,
 * such as areas tiling a file, one or two steps and a handful of cache lines; a walk that runs long hands the
 * rest to the tree.
 */

import { cloneSelf, type Cloner } from './clone.js';

interface Entry<T> {
  readonly first: number;
  readonly end: number;
  /** Insertion number: ties in `first` and the order of answers. */
  readonly seq: number;
  readonly item: T;
  /** Slot in the sorted arrays, or -1 while pending; -2 once removed. */
  slot: number;
}

const PENDING = -1;
const REMOVED = -2;
/** In the `wide` list. */
const WIDE = -3;
/** An interval is wide when longer than this fraction of the span of all of them... */
const WIDE_FRACTION = 32;
/** ...and there are at most this many such. */
const MAX_WIDE = 16;

/** An interval's item with its insertion number (IntervalIndex.firstOverlapping). */
export interface IntervalHit<T> {
  readonly seq: number;
  readonly item: T;
}

/** What insert() returns: give it back to remove(). */
export interface IntervalHandle {
  readonly first: number;
  readonly seq: number;
}

const NO_END = -Infinity;
/** A test that accepts anything (anyOverlapping). */
const always = (): boolean => true;
/** Slots per fence. */
const FENCE = 32;
/** Slots a query walks down before it hands the rest to the tree. */
const WALK_STEPS = 64;

export class IntervalIndex<T> {
  // Plain arrays of numbers rather than typed arrays: they are rebuilt often, and the collected heap takes that
  // without leaving malloc fragments in resident memory.
  private firsts: number[] = [];
  private ends: number[] = [];
  private entries: Array<Entry<T> | undefined> = [];
  /** Slots in the sorted arrays (dead ones included). */
  private sorted = 0;
  private dead = 0;
  /** The largest end among slots [0, i] (dead slots count: an overestimate only makes a walk go further). */
  private prefixMaxEnd: number[] = [];
  /** firsts[FENCE * j], for a first step of the binary search that stays in a few cache lines. */
  private fences: number[] = [];
  /** Max-of-ends tree: node 1 is the root, node n's children are 2n and 2n + 1, leaf i is node leaves + i. */
  private maxEnd: number[] = [NO_END, NO_END];
  private leaves = 1;
  private pending: Entry<T>[] = [];
  /** Intervals much wider than the others, scanned by every query (see rebuild()). */
  private wide: Entry<T>[] = [];
  private nextSeq = 0;
  private count = 0;
  /** An interval longer than this goes to `wide` at the next rebuild (set by rebuild()). */
  private wideThreshold = Infinity;
  /** items(), until the next insertion or removal. */
  private ordered: T[] | undefined;
  /**
   * Scratch for a query's answers, [0, foundCount). Never shortened: an array emptied and refilled gets a new
   * backing store each time, which in a long-lived object is garbage for the old generation.
   */
  private readonly found: Array<Entry<T> | undefined> = [];
  private foundCount = 0;
  /** The entry a test of collect() accepted, until anyOverlapping() or some() takes it. */
  private hit: Entry<T> | undefined;
  private readonly stack: number[] = [];

  /** @param walkSteps slots a query walks down before the tree takes over (tests make it tiny). */
  constructor(private readonly walkSteps = WALK_STEPS) {}

  get size(): number {
    return this.count;
  }

  /**
   * @internal Host.fork() (clone.ts): this index exactly, its arrays of numbers sliced here rather than copied as
   * objects of the graph (ten arrays per index: most of what a fork copies besides the range maps). Entries go
   * through the cloner (insert() handed them out as handles, which the fork's holders must find again), and so
   * does items()' list (handed out too).
   */
  [cloneSelf](cloner: Cloner): IntervalIndex<T> {
    const copy = new IntervalIndex<T>(this.walkSteps);
    cloner.remember(this, copy);
    const entry = (e: Entry<T> | undefined): Entry<T> | undefined => (e === undefined ? e : cloner.clone(e));
    copy.firsts = this.firsts.slice();
    copy.ends = this.ends.slice();
    copy.entries = this.entries.map(entry);
    copy.sorted = this.sorted;
    copy.dead = this.dead;
    copy.prefixMaxEnd = this.prefixMaxEnd.slice();
    copy.fences = this.fences.slice();
    copy.maxEnd = this.maxEnd.slice();
    copy.leaves = this.leaves;
    copy.pending = this.pending.map((e) => cloner.clone(e));
    copy.wide = this.wide.map((e) => cloner.clone(e));
    copy.nextSeq = this.nextSeq;
    copy.count = this.count;
    copy.wideThreshold = this.wideThreshold;
    copy.ordered = cloner.clone(this.ordered);
    for (const e of this.found) copy.found.push(entry(e));
    copy.foundCount = this.foundCount;
    copy.hit = entry(this.hit);
    copy.stack.push(...this.stack);
    return copy;
  }

  /**
   * @param seq the insertion number, for an owner that keeps one order over several indexes (registry.ts); it
   *   must be larger than every number given before. By default the index numbers its insertions itself.
   */
  insert(first: number, end: number, item: T, seq: number = this.nextSeq++): IntervalHandle {
    const entry: Entry<T> = { first, end, seq, item, slot: PENDING };
    this.count++;
    this.ordered = undefined;
    if (this.dead > 0 && end - first <= this.wideThreshold && this.reuseDeadSlot(entry)) return entry;
    this.pending.push(entry);
    if (this.pending.length > Math.max(32, Math.sqrt(this.sorted) | 0)) this.rebuild();
    return entry;
  }

  /**
   * Put `entry` straight into a dead slot where the sorted order allows it: the slot just before the first one
   * starting after it (every slot before starts at or before it, and holds an earlier insertion on a tie). An
   * area unmapped and mapped again at the same range — what a VMM does to get DMA back after a revoke — lands
   * in the slot it left, without a rebuild. Updates the tree, the prefix maxima and the fence of that slot.
   */
  private reuseDeadSlot(entry: Entry<T>): boolean {
    const firsts = this.firsts;
    const first = entry.first;
    // Upper bound: the first slot starting after `first`, through the fences, then inside one block.
    const fences = this.fences;
    let lo = 0;
    let hi = fences.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (fences[mid]! <= first) lo = mid + 1;
      else hi = mid;
    }
    hi = Math.min(this.sorted, lo * FENCE);
    lo = lo > 0 ? (lo - 1) * FENCE : 0;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (firsts[mid]! <= first) lo = mid + 1;
      else hi = mid;
    }
    const slot = lo - 1;
    if (slot < 0 || this.entries[slot] !== undefined) return false;
    entry.slot = slot;
    this.entries[slot] = entry;
    firsts[slot] = first;
    this.ends[slot] = entry.end;
    if (slot % FENCE === 0) fences[slot / FENCE] = first;
    const tree = this.maxEnd;
    tree[this.leaves + slot] = entry.end;
    for (let node = (this.leaves + slot) >> 1; node >= 1; node >>= 1)
      tree[node] = Math.max(tree[2 * node]!, tree[2 * node + 1]!);
    const prefixMaxEnd = this.prefixMaxEnd;
    for (let i = slot; i < this.sorted && prefixMaxEnd[i]! < entry.end; i++) prefixMaxEnd[i] = entry.end;
    this.dead--;
    return true;
  }

  /** Remove what insert() returned; false if it was removed already. */
  remove(handle: IntervalHandle): boolean {
    const entry = handle as Entry<T>;
    if (entry.slot === REMOVED) return false;
    this.count--;
    this.ordered = undefined;
    if (entry.slot === PENDING || entry.slot === WIDE) {
      const list = entry.slot === PENDING ? this.pending : this.wide;
      list.splice(list.indexOf(entry), 1);
      entry.slot = REMOVED;
      return true;
    }
    const slot = entry.slot;
    this.entries[slot] = undefined;
    this.ends[slot] = NO_END;
    entry.slot = REMOVED;
    const tree = this.maxEnd;
    tree[this.leaves + slot] = NO_END;
    for (let node = (this.leaves + slot) >> 1; node >= 1; node >>= 1)
      tree[node] = Math.max(tree[2 * node]!, tree[2 * node + 1]!);
    if (++this.dead > this.sorted >> 1) this.rebuild();
    return true;
  }

  /**
   * Merge the pending entries into the sorted arrays, dropping dead slots, and rebuild the tree. A few intervals
   * far wider than the rest (KVM's, a mapping of the whole file) go to the `wide` list instead: in the tree
   * they would lift the maxima of every node above them and make each query walk down to them.
   */
  private rebuild(): void {
    const cmp = (a: Entry<T>, b: Entry<T>) => a.first - b.first || a.seq - b.seq;
    const extra = this.pending.concat(this.wide).sort(cmp);
    const all: Entry<T>[] = [];
    let i = 0;
    let p = 0;
    while (i < this.sorted || p < extra.length) {
      const old = i < this.sorted ? this.entries[i] : undefined;
      if (i < this.sorted && old === undefined) {
        i++;
        continue;
      }
      const next = extra[p];
      if (old !== undefined && (next === undefined || cmp(old, next) < 0)) {
        all.push(old);
        i++;
      } else {
        all.push(next!);
        p++;
      }
    }
    let maxEnd = NO_END;
    for (const entry of all) if (entry.end > maxEnd) maxEnd = entry.end;
    const threshold = all.length > 0 ? (maxEnd - all[0]!.first) / WIDE_FRACTION : Infinity;
    this.wideThreshold = threshold;
    let wide = all.filter((entry) => entry.end - entry.first > threshold);
    if (wide.length > MAX_WIDE || wide.length === all.length) wide = [];
    for (const entry of all) entry.slot = PENDING;
    for (const entry of wide) entry.slot = WIDE;
    const firsts: number[] = [];
    const ends: number[] = [];
    const entries: Array<Entry<T> | undefined> = [];
    for (const entry of all) {
      if (entry.slot === WIDE) continue;
      entry.slot = entries.length;
      firsts.push(entry.first);
      ends.push(entry.end);
      entries.push(entry);
    }
    const n = entries.length;
    const prefixMaxEnd: number[] = [];
    let running = NO_END;
    for (let slot = 0; slot < n; slot++) prefixMaxEnd.push((running = Math.max(running, ends[slot]!)));
    const fences: number[] = [];
    for (let slot = 0; slot < n; slot += FENCE) fences.push(firsts[slot]!);
    this.prefixMaxEnd = prefixMaxEnd;
    this.fences = fences;
    this.firsts = firsts;
    this.ends = ends;
    this.entries = entries;
    this.sorted = n;
    this.dead = 0;
    this.pending = [];
    this.wide = wide;
    let leaves = 1;
    while (leaves < n) leaves *= 2;
    this.leaves = leaves;
    const tree: number[] = [];
    for (let node = 0; node < 2 * leaves; node++) tree.push(NO_END);
    for (let slot = 0; slot < n; slot++) tree[leaves + slot] = ends[slot]!;
    for (let node = leaves - 1; node >= 1; node--) tree[node] = Math.max(tree[2 * node]!, tree[2 * node + 1]!);
    this.maxEnd = tree;
  }

  /** Push into `found` the live entries overlapping [start, end), in no particular order; stop early if `test` says so. */
  private collect(start: number, end: number, test?: (item: T) => boolean): boolean {
    const found = this.found;
    this.foundCount = 0;
    // Slots [0, limit) start before `end`: the fences find the block, a binary search the slot in it.
    const fences = this.fences;
    let lo = 0;
    let hi = fences.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (fences[mid]! < end) lo = mid + 1;
      else hi = mid;
    }
    hi = Math.min(this.sorted, lo * FENCE);
    lo = lo > 0 ? (lo - 1) * FENCE : 0;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.firsts[mid]! < end) lo = mid + 1;
      else hi = mid;
    }
    let limit = lo;
    // Walk down from the last slot starting before `end` while some slot at or below may still end after
    // `start` (the prefix maxima say so). Disjoint intervals — areas tiling a file — stop after a step or two;
    // when the walk runs long, the tree takes the slots it has not reached.
    const prefixMaxEnd = this.prefixMaxEnd;
    let slot = limit - 1;
    for (let steps = 0; slot >= 0 && prefixMaxEnd[slot]! > start && steps < this.walkSteps; slot--, steps++) {
      const entry = this.entries[slot];
      if (entry === undefined || this.ends[slot]! <= start) continue;
      if (test !== undefined && test(entry.item)) return this.stopAt(entry);
      found[this.foundCount++] = entry;
    }
    limit = slot >= 0 && prefixMaxEnd[slot]! > start ? slot + 1 : 0;
    if (limit > 0 && this.maxEnd[1]! > start) {
      const tree = this.maxEnd;
      const leaves = this.leaves;
      const stack = this.stack;
      // Depth-first over the tree, pruning subtrees whose ends are all <= start or whose slots are all >= limit.
      let top = 0;
      stack[top++] = 1;
      stack[top++] = 0; // the first slot under the node
      while (top > 0) {
        const first = stack[--top]!;
        const node = stack[--top]!;
        if (first >= limit || tree[node]! <= start) continue;
        if (node >= leaves) {
          const entry = this.entries[first]!;
          if (test !== undefined && test(entry.item)) return this.stopAt(entry);
          found[this.foundCount++] = entry;
          continue;
        }
        const span = leaves / (1 << (31 - Math.clz32(node)));
        stack[top++] = 2 * node + 1;
        stack[top++] = first + span / 2;
        stack[top++] = 2 * node;
        stack[top++] = first;
      }
    }
    for (const entry of this.pending) {
      if (entry.first < end && entry.end > start) {
        if (test !== undefined && test(entry.item)) return this.stopAt(entry);
        found[this.foundCount++] = entry;
      }
    }
    for (const entry of this.wide) {
      if (entry.first < end && entry.end > start) {
        if (test !== undefined && test(entry.item)) return this.stopAt(entry);
        found[this.foundCount++] = entry;
      }
    }
    return false;
  }

  /** The items whose interval overlaps [start, end), in insertion order. */
  overlapping(start: number, end: number): T[] {
    const found = this.found;
    this.collect(start, end);
    const n = this.foundCount;
    this.sortFound();
    const out = new Array<T>(n);
    for (let i = 0; i < n; i++) {
      out[i] = found[i]!.item;
      found[i] = undefined;
    }
    return out;
  }

  /**
   * overlapping(start, end) written into the caller's arrays instead of a new one: items[i] and its insertion
   * number seqs[i] for i in [0, the count returned), in insertion order. Nothing is allocated once the arrays
   * have grown.
   */
  overlappingInto(start: number, end: number, items: T[], seqs: number[]): number {
    const found = this.found;
    this.collect(start, end);
    const n = this.foundCount;
    this.sortFound();
    for (let i = 0; i < n; i++) {
      const entry = found[i]!;
      items[i] = entry.item;
      seqs[i] = entry.seq;
      found[i] = undefined;
    }
    return n;
  }

  /**
   * One of the intervals overlapping [start, end), with its insertion number, or undefined: the first the query
   * meets (for disjoint intervals, the one starting last), not the first inserted. Stops there.
   */
  anyOverlapping(start: number, end: number): IntervalHit<T> | undefined {
    if (!this.collect(start, end, always)) return undefined;
    const hit = this.hit;
    this.hit = undefined;
    return hit;
  }

  /** collect() stops at `entry`, which its test accepted. */
  private stopAt(entry: Entry<T>): true {
    this.hit = entry;
    return true;
  }

  /** Order found[0, foundCount) by insertion number. */
  private sortFound(): void {
    const found = this.found;
    const n = this.foundCount;
    // The walk finds slots from the last one down: reversed, they are in start order, which is insertion order
    // for areas mapped in order (the sort below is then one pass instead of n^2/2 moves). The sort decides the
    // order either way.
    for (let i = 0, j = n - 1; i < j; i++, j--) {
      const t = found[i]!;
      found[i] = found[j]!;
      found[j] = t;
    }
    // Few answers: an insertion sort by insertion number.
    for (let i = 1; i < n; i++) {
      const entry = found[i]!;
      let j = i - 1;
      while (j >= 0 && found[j]!.seq > entry.seq) {
        found[j + 1] = found[j]!;
        j--;
      }
      found[j + 1] = entry;
    }
  }

  /** Whether some item whose interval overlaps [start, end) satisfies `test` (asked in no particular order). */
  some(start: number, end: number, test: (item: T) => boolean): boolean {
    const yes = this.collect(start, end, test);
    this.hit = undefined;
    for (let i = 0; i < this.foundCount; i++) this.found[i] = undefined;
    return yes;
  }

  /** Every item with its insertion number, in insertion order (a new array). */
  hits(): Array<IntervalHit<T>> {
    const all: Entry<T>[] = [...this.pending, ...this.wide];
    for (let slot = 0; slot < this.sorted; slot++) {
      const entry = this.entries[slot];
      if (entry !== undefined) all.push(entry);
    }
    return all.sort((a, b) => a.seq - b.seq);
  }

  /** Every item, in insertion order. */
  items(): readonly T[] {
    if (this.ordered === undefined) {
      const all: Entry<T>[] = [...this.pending, ...this.wide];
      for (let slot = 0; slot < this.sorted; slot++) {
        const entry = this.entries[slot];
        if (entry !== undefined) all.push(entry);
      }
      all.sort((a, b) => a.seq - b.seq);
      this.ordered = all.map((entry) => entry.item);
    }
    return this.ordered;
  }
}
