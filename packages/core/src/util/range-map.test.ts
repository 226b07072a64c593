import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { linearCodec, RangeMap } from './range-map.js';

/** A per-key reference model: fine for small key spaces. */
function reference(ops: Array<{ kind: 'set' | 'delete'; start: number; end: number; value: number }>, linear: boolean) {
  const keys = new Map<number, number>();
  for (const op of ops) {
    for (let k = op.start; k < op.end; k++) {
      if (op.kind === 'set') keys.set(k, linear ? op.value + (k - op.start) : op.value);
      else keys.delete(k);
    }
  }
  return keys;
}

const opArb = fc.record({
  kind: fc.constantFrom('set' as const, 'delete' as const),
  start: fc.integer({ min: 0, max: 60 }),
  len: fc.integer({ min: 0, max: 20 }),
  value: fc.integer({ min: 0, max: 3 }),
}).map((o) => ({ kind: o.kind, start: o.start, end: o.start + o.len, value: o.value }));

describe('RangeMap', () => {
  for (const linear of [false, true]) {
    it(`matches a per-key map and keeps runs maximal (${linear ? 'linear' : 'constant'} codec)`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 30 }), (ops) => {
          const map = linear ? new RangeMap<number>(linearCodec) : new RangeMap<number>();
          for (const op of ops) {
            if (op.kind === 'set') map.set(op.start, op.end, op.value);
            else map.delete(op.start, op.end);
          }
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
  }

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
});
