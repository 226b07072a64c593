import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CloneError, Cloner } from './clone.js';
import { IntervalIndex, type IntervalHandle } from './interval-index.js';

/** The reference: a list in insertion order, filtered. */
type Entry = { first: number; end: number; id: number };

/** Mostly narrow intervals and a few covering everything, as areas beside KVM and whole-file mappings. */
const tiledOp = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      first: fc.integer({ min: 0, max: 2000 }),
      len: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      first: fc.integer({ min: 0, max: 10 }),
      len: fc.constantFrom(2000, 1000),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('query' as const),
      start: fc.integer({ min: 0, max: 2100 }),
      len: fc.integer({ min: 1, max: 30 }),
    }),
  },
  // Unmap and map again at (about) the same range: the insertion may take the dead slot the removal left.
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('reinsert' as const), shift: fc.integer({ min: -2, max: 2 }) }),
  },
);

const op = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      first: fc.integer({ min: 0, max: 200 }),
      len: fc.integer({ min: 1, max: 80 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('insert' as const), first: fc.constant(0), len: fc.constant(300) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('query' as const),
      start: fc.integer({ min: 0, max: 300 }),
      len: fc.integer({ min: 1, max: 60 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('reinsert' as const), shift: fc.integer({ min: -2, max: 2 }) }),
  },
);

describe('IntervalIndex', () => {
  // Short runs stay in the pending list; long ones merge it into the sorted arrays and leave dead slots there.
  // A walk of one or two slots hands most queries to the tree; the default walks far.
  it('answers overlapping(), overlappingInto(), anyOverlapping(), some(), hits() and items() as a filtered list in insertion order does', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(op, { maxLength: 150 }),
          fc.array(op, { minLength: 300, maxLength: 800 }),
          fc.array(tiledOp, { minLength: 300, maxLength: 800 }),
        ),
        fc.constantFrom(1, 2, undefined),
        (ops, walkSteps) => {
          const index = new IntervalIndex<number>(walkSteps);
          const list: Array<Entry & { handle: IntervalHandle }> = [];
          let id = 0;
          let lastRemoved: Entry | undefined;
          for (const o of ops) {
            if (o.kind === 'insert' || o.kind === 'reinsert') {
              if (o.kind === 'reinsert' && lastRemoved === undefined) continue;
              const first = o.kind === 'insert' ? o.first : Math.max(0, lastRemoved!.first + o.shift);
              const end = o.kind === 'insert' ? o.first + o.len : Math.max(first + 1, lastRemoved!.end + o.shift);
              const handle = index.insert(first, end, id);
              list.push({ first, end, id, handle });
              id++;
            } else if (o.kind === 'remove') {
              if (list.length === 0) continue;
              const [gone] = list.splice(o.pick % list.length, 1);
              lastRemoved = gone;
              expect(index.remove(gone!.handle)).toBe(true);
              expect(index.remove(gone!.handle)).toBe(false);
            } else {
              const end = o.start + o.len;
              const want = list.filter((e) => e.first < end && e.end > o.start).map((e) => e.id);
              expect(index.overlapping(o.start, end)).toEqual(want);
              expect(index.some(o.start, end, (x) => x % 2 === 0)).toBe(want.some((x) => x % 2 === 0));
              const items: number[] = [];
              const seqs: number[] = [];
              const n = index.overlappingInto(o.start, end, items, seqs);
              expect(items.slice(0, n)).toEqual(want);
              // Insertion numbers are the reference's ids (both count every insertion from 0).
              expect(seqs.slice(0, n)).toEqual(want);
              const any = index.anyOverlapping(o.start, end);
              if (want.length === 0) expect(any).toBeUndefined();
              else {
                expect(want).toContain(any!.item);
                expect(any!.seq).toBe(any!.item);
              }
            }
            expect(index.size).toBe(list.length);
          }
          expect(index.items()).toEqual(list.map((e) => e.id));
          expect(index.hits().map((hit) => [hit.seq, hit.item])).toEqual(list.map((e) => [e.id, e.id]));
        },
      ),
      { numRuns: 100 },
    );
  }, 180_000); // alone about 1 s; beside every other package's tests on 2 cores it passed 30 s

  it('finds the few areas a range touches among 10,000, beside one interval covering everything', () => {
    const index = new IntervalIndex<string>();
    index.insert(0, 2 ** 28, 'kvm');
    for (let a = 0; a < 10_000; a++) index.insert(a * 26_843, (a + 1) * 26_843, `area:${a}`);
    expect(index.overlapping(26_843 * 5000 - 1, 26_843 * 5000 + 1)).toEqual(['kvm', 'area:4999', 'area:5000']);
    expect(index.overlapping(2 ** 28, 2 ** 28 + 1)).toEqual([]);
  });

  it('an interval mapped again a little further, in the slot its removal left, is found past its old end', () => {
    const index = new IntervalIndex<number>();
    // The 33rd insertion merges the pending list into the sorted arrays: all 33 are in slots.
    const handles = Array.from({ length: 33 }, (_, i) => index.insert(10 * i, 10 * i + 10, i));
    index.remove(handles[32]!);
    index.insert(322, 332, 33);
    expect(index.overlapping(330, 331)).toEqual([33]);
    index.remove(handles[5]!);
    index.insert(50, 60, 34);
    expect(index.overlapping(55, 56)).toEqual([34]);
    expect(index.items()).toEqual([...Array.from({ length: 32 }, (_, i) => i).filter((i) => i !== 5), 33, 34]);
  });
});

describe('IntervalIndex copied by a Cloner (Host.fork)', () => {
  type Item = { id: number };
  type Op = { kind: 'insert'; first: number; len: number } | { kind: 'remove'; pick: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    // Mostly insertions: enough of them pass the pending list's limit, and the index sorts them into its arrays.
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('insert' as const),
        first: fc.integer({ min: 0, max: 300 }),
        len: fc.integer({ min: 1, max: 40 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  );
  /** An index with its handles and items, as a holder keeps them. */
  const apply = (held: { index: IntervalIndex<Item>; handles: IntervalHandle[]; items: Item[] }, ops: Op[]) => {
    for (const o of ops) {
      if (o.kind === 'insert') {
        const item = { id: held.items.length };
        held.items.push(item);
        held.handles.push(held.index.insert(o.first, o.first + o.len, item));
      } else if (held.handles.length > 0) {
        const [handle] = held.handles.splice(o.pick % held.handles.length, 1);
        held.index.remove(handle!);
      }
    }
  };
  const answers = (index: IntervalIndex<Item>, items: Item[]) =>
    [0, 50, 120, 290].map((at) => index.overlapping(at, at + 30).map((item) => items.indexOf(item)));

  it('answers as the original does, through the handles and items the holder copied with it, and apart from it', () => {
    fc.assert(
      fc.property(
        fc.array(op, { minLength: 40, maxLength: 160 }),
        fc.array(op, { maxLength: 80, size: 'max' }),
        (before, after) => {
          const original = { index: new IntervalIndex<Item>(2), handles: [] as IntervalHandle[], items: [] as Item[] };
          apply(original, before);
          original.index.items();
          const copy = new Cloner().clone(original);
          expect(copy.index).not.toBe(original.index);
          // Every field, its arrays and entries by value (a field a later change leaves out differs here).
          expect(copy.index).toEqual(original.index);
          expect(answers(copy.index, copy.items)).toEqual(answers(original.index, original.items));
          expect(copy.index.items().map((item) => copy.items.indexOf(item))).toEqual(
            original.index.items().map((item) => original.items.indexOf(item)),
          );
          // The same calls on both, each through its own handles: the same answers; neither sees the other's.
          const seen = answers(original.index, original.items);
          const size = original.index.size;
          apply(copy, after);
          expect(answers(original.index, original.items)).toEqual(seen);
          expect(original.index.size).toBe(size);
          apply(original, after);
          expect(answers(copy.index, copy.items)).toEqual(answers(original.index, original.items));
          expect(copy.index.size).toBe(original.index.size);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a dead slot reused on each side after the fork: each side keeps its own fences (the first step of a query)', () => {
    const index = new IntervalIndex<string>();
    const handles: IntervalHandle[] = [];
    // 40 intervals: the 33rd insertion sorts the pending ones into the arrays; the 32nd slot starts a fence block.
    for (let i = 0; i < 40; i++) handles.push(index.insert(10 * i, 10 * i + 5, `i${i}`));
    index.remove(handles[32]!);
    const copy = new Cloner().clone(index);
    copy.insert(321, 322, 'copy');
    index.insert(325, 326, 'original');
    expect(copy.overlapping(321, 323)).toEqual(['copy']);
    expect(index.overlapping(325, 326)).toEqual(['original']);
    expect(index.overlapping(321, 323)).toEqual([]);
  });

  it('an item that holds its index comes back to the copy (a cycle); a function as an item is refused', () => {
    type Holder = { index?: IntervalIndex<Holder> };
    const index = new IntervalIndex<Holder>();
    index.insert(0, 4, { index });
    const copy = new Cloner().clone(index);
    expect(copy.overlapping(0, 1)[0]!.index).toBe(copy);
    const functions = new IntervalIndex<() => number>();
    functions.insert(0, 1, () => 1);
    expect(() => new Cloner().clone(functions)).toThrow(CloneError);
  });
});
