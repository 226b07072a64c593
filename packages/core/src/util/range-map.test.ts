import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CloneError, Cloner } from './clone.js';
import { constantCodec, linearCodec, RangeMap, type RangeMapLayout } from './range-map.js';

type Op = { kind: 'set' | 'delete'; start: number; end: number; value: number };

/** A per-key reference model: fine for small key spaces. */
function reference(ops: Op[], linear: boolean) {
  const keys = new Map<number, number>();
  for (const op of ops) {
    for (let k = op.start; k < op.end; k++) {
      if (op.kind === 'set') keys.set(k, linear ? op.value + (k - op.start) : op.value);
      else keys.delete(k);
    }
  }
  return keys;
}

const opArb = (maxKey: number, maxLen: number) =>
  fc
    .record({
      kind: fc.constantFrom('set' as const, 'set' as const, 'delete' as const),
      start: fc.integer({ min: 0, max: maxKey }),
      len: fc.integer({ min: 0, max: maxLen }),
      value: fc.integer({ min: 0, max: 3 }),
    })
    .map((o) => ({ kind: o.kind, start: o.start, end: o.start + o.len, value: o.value }));

function build(ops: Op[], linear: boolean, layout?: RangeMapLayout): RangeMap<number> {
  const map = linear ? new RangeMap<number>(linearCodec, layout) : new RangeMap<number>(undefined, layout);
  for (const op of ops) {
    if (op.kind === 'set') map.set(op.start, op.end, op.value);
    else map.delete(op.start, op.end);
  }
  return map;
}

/**
 * The layout keeps what RangeMap promises: few runs in plain arrays; many in leaves, each non-empty, at most
 * full, at least a quarter full but for the last, with its end right; the count right.
 */
function checkStructure(map: RangeMap<unknown>, layout: Required<RangeMapLayout>): void {
  const inner = map as unknown as {
    starts: number[];
    big?: {
      keys: Float64Array;
      sizes: Int32Array;
      order: Int32Array;
      leafEnds: Float64Array;
      leaves: number;
      count: number;
    };
  };
  const big = inner.big;
  if (!big) {
    expect(inner.starts.length).toBeLessThanOrEqual(layout.smallRuns);
    expect(map.runCount).toBe(inner.starts.length);
    return;
  }
  const leafRuns = Math.max(4, layout.leafRuns);
  let runs = 0;
  const ids = new Set<number>();
  for (let p = 0; p < big.leaves; p++) {
    const id = big.order[p]!;
    expect(ids.has(id)).toBe(false);
    ids.add(id);
    const size = big.sizes[id]!;
    expect(size).toBeGreaterThan(0);
    expect(size).toBeLessThanOrEqual(leafRuns);
    if (p < big.leaves - 1) expect(size).toBeGreaterThanOrEqual(leafRuns >> 2);
    expect(big.leafEnds[p]).toBe(big.keys[2 * (id * leafRuns + size - 1) + 1]);
    runs += size;
  }
  expect(big.count).toBe(runs);
  expect(map.runCount).toBe(runs);
}

const layouts = fc.constantFrom<Required<RangeMapLayout>>(
  { smallRuns: 0, leafRuns: 4 },
  { smallRuns: 2, leafRuns: 4 },
  { smallRuns: 4, leafRuns: 5 },
  { smallRuns: 8, leafRuns: 8 },
  { smallRuns: 64, leafRuns: 64 },
);

describe('RangeMap', () => {
  for (const linear of [false, true]) {
    it(`matches a per-key map and keeps runs maximal (${linear ? 'linear' : 'constant'} codec)`, () => {
      fc.assert(
        fc.property(fc.array(opArb(60, 20), { maxLength: 30 }), (ops) => {
          const map = build(ops, linear);
          const expected = reference(ops, linear);
          for (let k = 0; k < 90; k++) expect(map.get(k)).toBe(expected.get(k));
          const runs = map.toArray();
          for (let i = 1; i < runs.length; i++) {
            const a = runs[i - 1]!;
            const b = runs[i]!;
            expect(a.end).toBeLessThanOrEqual(b.start);
            // Neighbouring runs that could merge must have been merged.
            const continues = linear ? a.value + (a.end - a.start) === b.value : a.value === b.value;
            expect(a.end === b.start && continues).toBe(false);
          }
        }),
      );
    });

    // Tiny leaves make every update split, merge or drop leaves, and maps move between their two forms.
    it(`answers every query as a per-key map does, whatever the layout (${linear ? 'linear' : 'constant'} codec)`, () => {
      fc.assert(
        fc.property(
          fc.array(opArb(400, 40), { maxLength: 120 }),
          layouts,
          fc.array(fc.tuple(fc.integer({ min: 0, max: 460 }), fc.integer({ min: 1, max: 60 })), {
            minLength: 1,
            maxLength: 12,
          }),
          (ops, layout, queries) => {
            const map = build(ops, linear, layout);
            checkStructure(map, layout);
            const expected = reference(ops, linear);
            // The same runs as the per-key model, maximal (a run per maximal stretch of continuing values).
            const want: Array<{ start: number; end: number; value: number }> = [];
            for (let k = 0; k < 460; k++) {
              const v = expected.get(k);
              if (v === undefined) continue;
              const last = want[want.length - 1];
              if (last && last.end === k && (linear ? last.value + (last.end - last.start) === v : last.value === v))
                last.end = k + 1;
              else want.push({ start: k, end: k + 1, value: v });
            }
            expect(map.toArray()).toEqual(want);
            expect(map.runCount).toBe(want.length);
            for (const [start, len] of queries) {
              const end = start + len;
              const keys = Array.from({ length: len }, (_, i) => start + i);
              const held = keys.filter((k) => expected.has(k));
              expect(map.intersects(start, end)).toBe(held.length > 0);
              expect(map.covers(start, end)).toBe(held.length === len);
              expect(map.has(start)).toBe(expected.has(start));
              // overlapping: the held keys of [start, end) as clipped runs, each value shifted to its clipped start.
              const runs = map.overlapping(start, end);
              const fromRuns = new Map<number, number>();
              for (const r of runs)
                for (let k = r.start; k < r.end; k++) fromRuns.set(k, linear ? r.value + (k - r.start) : r.value);
              expect([...fromRuns.keys()]).toEqual(held);
              for (const k of held) expect(fromRuns.get(k)).toBe(expected.get(k));
              expect(map.firstOverlap(start, end)).toEqual(runs[0]);
              // gaps: exactly the keys not held.
              const gapKeys = map
                .gaps(start, end)
                .flatMap((g) => Array.from({ length: g.end - g.start }, (_, i) => g.start + i));
              expect(gapKeys).toEqual(keys.filter((k) => !expected.has(k)));
              // holdsRun: every key held with the value a run of `value` from `start` gives it.
              for (const value of [0, 1, expected.get(start) ?? 0]) {
                const holds = keys.every((k) => expected.get(k) === (linear ? value + (k - start) : value));
                expect(map.holdsRun(start, end, value)).toBe(holds);
              }
            }
            // A set that changes nothing keeps the change count (snapshots go by it); remove() is delete().
            for (const [start, len] of queries) {
              const before = map.changeCount;
              const value = map.get(start);
              if (value !== undefined && map.holdsRun(start, start + len, value)) {
                map.set(start, start + len, value);
                expect(map.changeCount).toBe(before);
              }
              const other = map.clone();
              expect(other.remove(start, start + len)).toBe(map.intersects(start, start + len));
              const same = map.clone();
              same.delete(start, start + len);
              expect(other.toArray()).toEqual(same.toArray());
              checkStructure(other, layout);
            }
            // A clone is equal and independent.
            const copy = map.clone();
            expect(copy.toArray()).toEqual(want);
            copy.set(0, 460, 9);
            expect(map.toArray()).toEqual(want);
            checkStructure(copy, layout);
          },
        ),
        { numRuns: 300 },
      );
    }, 180_000); // alone about 1 s; beside every other package's tests on 2 cores it passed 30 s
  }

  // loadRuns (a fresh area's IOPTEs, built in one pass) must leave exactly what set() of each run in turn leaves:
  // the same merged runs, the same queries, in every layout; visitors list what overlapping() and gaps() list.
  for (const linear of [false, true]) {
    it(`loadRuns equals one set() per run, and the visitors equal the lists (${linear ? 'linear' : 'constant'} codec)`, () => {
      fc.assert(
        fc.property(
          fc.array(
            fc.record({
              gap: fc.integer({ min: 0, max: 3 }),
              len: fc.integer({ min: 0, max: 6 }),
              value: fc.integer({ min: 0, max: 3 }),
            }),
            { maxLength: 120 },
          ),
          layouts,
          fc.integer({ min: 0, max: 400 }),
          fc.integer({ min: 0, max: 80 }),
          (pieces, layout, qStart, qLen) => {
            const starts: number[] = [];
            const ends: number[] = [];
            const values: number[] = [];
            let at = 0;
            for (const p of pieces) {
              at += p.gap;
              starts.push(at);
              ends.push(at + p.len);
              // Linear runs often continue their neighbour (value = the previous run's value shifted), so merges happen.
              values.push(
                linear && values.length > 0 && p.value === 0
                  ? values[values.length - 1]! + (at - starts[starts.length - 2]!)
                  : p.value,
              );
              at += p.len;
            }
            const codec = linear ? linearCodec : undefined;
            const bySet = new RangeMap<number>(codec, layout);
            for (let i = 0; i < starts.length; i++) bySet.set(starts[i]!, ends[i]!, values[i]!);
            const loaded = new RangeMap<number>(codec, layout);
            loaded.loadRuns(starts, ends, values, starts.length);
            expect(loaded.toArray()).toEqual(bySet.toArray());
            checkStructure(loaded, layout);
            // Updates after a load behave as after the sets.
            bySet.set(qStart, qStart + qLen, 2);
            loaded.set(qStart, qStart + qLen, 2);
            expect(loaded.toArray()).toEqual(bySet.toArray());
            const seen: Array<[number, number, number]> = [];
            loaded.forEachOverlap(qStart, qStart + 2 * qLen + 1, (s, e, v) => seen.push([s, e, v]));
            expect(seen).toEqual(
              loaded.overlapping(qStart, qStart + 2 * qLen + 1).map((r) => [r.start, r.end, r.value]),
            );
            const holes: Array<[number, number]> = [];
            loaded.forEachGap(qStart, qStart + 2 * qLen + 1, (s, e) => holes.push([s, e]));
            expect(holes).toEqual(loaded.gaps(qStart, qStart + 2 * qLen + 1).map((g) => [g.start, g.end]));
            expect(loaded.covers(qStart, qStart + qLen + 1)).toBe(
              holes.length === 0 || holes.every((h) => h[0] >= qStart + qLen + 1),
            );
          },
        ),
        { numRuns: 300 },
      );
    }, 60_000);
  }

  it('loadRuns refuses a map that holds runs, and runs out of order', () => {
    const map = new RangeMap<number>();
    expect(() => map.loadRuns([5, 1], [6, 2], [0, 0], 2)).toThrow(/out of order/);
    map.set(0, 1, 1);
    expect(() => map.loadRuns([5], [6], [0], 1)).toThrow(/not empty/);
  });

  it('answers covers, gaps and intersects over runs', () => {
    const map = new RangeMap<string>();
    map.set(10, 20, 'a');
    map.set(20, 30, 'b');
    map.set(40, 50, 'a');
    expect(map.covers(10, 30)).toBe(true);
    expect(map.covers(10, 31)).toBe(false);
    expect(map.gaps(0, 60)).toEqual([
      { start: 0, end: 10 },
      { start: 30, end: 40 },
      { start: 50, end: 60 },
    ]);
    expect(map.intersects(30, 40)).toBe(false);
    expect(map.intersects(29, 40)).toBe(true);
  });

  it('holds a 1 TiB file worth of pages as one run', () => {
    const map = new RangeMap<number>(linearCodec);
    map.set(0, 2 ** 28, 0x100000);
    expect(map.runCount).toBe(1);
    for (let i = 0; i < 1000; i++) map.set(i * 1024, i * 1024 + 512, 5); // split it in 1000 places
    expect(map.runCount).toBe(2000);
    expect(map.get(2 ** 28 - 1)).toBe(0x100000 + 2 ** 28 - 1);
  });

  it('removes a range spanning many leaves in one update, and clear() empties it', () => {
    const layout = { smallRuns: 8, leafRuns: 4 };
    const map = new RangeMap<number>(undefined, layout);
    for (let i = 0; i < 1000; i++) map.set(2 * i, 2 * i + 1, i % 3);
    expect(map.runCount).toBe(1000);
    expect(map.delete(3, 1995)).toHaveLength(996);
    expect(map.toArray()).toEqual([
      { start: 0, end: 1, value: 0 },
      { start: 2, end: 3, value: 1 },
      { start: 1996, end: 1997, value: 2 },
      { start: 1998, end: 1999, value: 0 },
    ]);
    checkStructure(map, layout);
    map.set(1, 1998, 7);
    expect(map.toArray().map((r) => [r.start, r.end, r.value])).toEqual([
      [0, 1, 0],
      [1, 1998, 7],
      [1998, 1999, 0],
    ]);
    map.clear();
    expect(map.runCount).toBe(0);
    expect(map.get(0)).toBeUndefined();
    map.set(5, 6, 1);
    expect(map.toArray()).toEqual([{ start: 5, end: 6, value: 1 }]);
  });

  it('holds 131,072 runs in leaves of at most 64, so an update touches one leaf, not every run', () => {
    const map = new RangeMap<string>();
    map.set(0, 2 ** 26, 'shared');
    for (let b = 0; b < 2 ** 17; b += 2) map.set(b * 512, (b + 1) * 512, 'private');
    expect(map.runCount).toBe(2 ** 17);
    for (let i = 0; i < 10_000; i++) {
      const b = (i * 7919) % 2 ** 17;
      map.set(b * 512, (b + 1) * 512, i % 2 ? 'shared' : 'private');
    }
    checkStructure(map, { smallRuns: 64, leafRuns: 64 });
    expect(map.get(7919 * 512)).toBe('shared');
    // 65,536 + 10,000 updates and a full structure check: under a second alone, more on a busy machine (issue 17).
  }, 60_000);
});

/** A Cloner as Host.fork() makes one: the codecs shared (they are stateless). */
const forker = () => new Cloner([constantCodec, linearCodec]);

describe('RangeMap copied by a Cloner (Host.fork)', () => {
  type Owner = { name: string; map?: RangeMap<Owner> };
  for (const layout of [undefined, { smallRuns: 2, leafRuns: 4 }]) {
    it(`the same runs, change count and listed runs; object values are the fork's copies; the two maps are independent (${layout ? 'a RunSlab' : 'plain arrays'})`, () => {
      const a: Owner = { name: 'a' };
      const map = new RangeMap<Owner>(undefined, layout);
      map.set(0, 4, a);
      map.set(8, 12, { name: 'b' });
      map.set(16, 20, a);
      const listed = map.snapshotRuns();
      const original = { map, a };
      const copy = forker().clone(original);
      expect(copy.map).not.toBe(map);
      // Every field by value (a field a later change leaves out differs here).
      expect(copy.map).toEqual(map);
      expect(copy.map.toArray()).toEqual(map.toArray());
      expect(copy.map.changeCount).toBe(map.changeCount);
      // Nothing changed since the listing: the copy lists the same frozen runs (snapshots compare at a glance).
      expect(copy.map.snapshotRuns()).toBe(listed);
      // One object reached twice is one copy, the same one the holder's field reaches.
      expect(copy.a).not.toBe(a);
      expect(copy.map.get(0)).toBe(copy.a);
      expect(copy.map.get(16)).toBe(copy.a);
      expect(copy.map.get(8)).not.toBe(map.get(8));
      copy.map.set(4, 8, copy.a);
      copy.a.name = 'changed';
      expect(map.get(5)).toBeUndefined();
      expect(map.runCount).toBe(3);
      expect(a.name).toBe('a');
      map.delete(0, 20);
      expect(copy.map.runCount).toBeGreaterThan(0);
    });
  }

  it('a value that holds the map comes back to the copy (a cycle), and an empty map stays empty', () => {
    const map = new RangeMap<Owner>();
    const owner: Owner = { name: 'o', map };
    map.set(0, 1, owner);
    const copy = forker().clone({ map, empty: new RangeMap<number>(linearCodec) });
    expect(copy.map.get(0)!.map).toBe(copy.map);
    expect(copy.empty.runCount).toBe(0);
    copy.empty.set(0, 2, 7);
    expect(copy.empty.get(1)).toBe(8);
  });

  it('refuses a codec that is neither frozen nor shared with the fork (functions in a plain object), as any field', () => {
    const codec = { equals: (a: number, b: number) => a === b, shift: (v: number) => v };
    const map = new RangeMap<number>(codec);
    map.set(0, 1, 1);
    expect(() => new Cloner().clone(map)).toThrow(/holds a function in "equals"/);
    expect(new Cloner([codec]).clone(map).get(0)).toBe(1);
  });

  it('refuses a function held as a value, leaving nothing half copied in the original', () => {
    const map = new RangeMap<unknown>();
    map.set(0, 1, () => 1);
    expect(() => forker().clone(map)).toThrow(CloneError);
    expect(map.runCount).toBe(1);
  });
});
