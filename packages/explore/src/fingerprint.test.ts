import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { collisionBound, fingerprint, FingerprintSet } from './fingerprint.js';

describe('FingerprintSet', () => {
  it('behaves as a set of 64-bit pairs: add says whether the pair was new, has agrees, through every growth', () => {
    const word = fc.oneof(
      fc.constant(0),
      fc.constant(1),
      fc.constant(0xffffffff),
      fc.integer({ min: 0, max: 0xffffffff }),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), word), { maxLength: 400 }), (ops) => {
        const set = new FingerprintSet(4);
        const model = new Set<string>();
        const seen: Array<[number, number]> = [];
        for (const [pick, w] of ops) {
          // Half the time re-add a pair already seen (or its neighbour), so hits and probes past them are exercised.
          const pair: [number, number] =
            pick < 4 && seen.length > 0 ? seen[w % seen.length]! : [w, pick === 7 ? 0 : w ^ pick];
          const key = `${pair[0]}:${pair[1]}`;
          expect(set.add(pair[0], pair[1])).toBe(!model.has(key));
          model.add(key);
          seen.push(pair);
          expect(set.size).toBe(model.size);
        }
        for (const [hi, lo] of seen) expect(set.has(hi, lo)).toBe(true);
        expect(set.has(0x12345678, 0x9abcdef0)).toBe(model.has(`${0x12345678}:${0x9abcdef0}`));
      }),
      { numRuns: 200 },
    );
  });

  it('holds the all-zero fingerprint, which marks empty slots in the table, by a flag of its own', () => {
    const set = new FingerprintSet();
    expect(set.has(0, 0)).toBe(false);
    expect(set.add(0, 0)).toBe(true);
    expect(set.add(0, 0)).toBe(false);
    expect(set.size).toBe(1);
    for (let i = 1; i <= 100_000; i++) expect(set.add(i, 0)).toBe(true);
    expect(set.has(0, 0)).toBe(true);
    expect(set.size).toBe(100_001);
  });
});

describe('fingerprint', () => {
  it('is a function of the text, and a change of one unit anywhere changes it', () => {
    const a = new Uint32Array(2);
    const b = new Uint32Array(2);
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 600 }),
        fc.nat(),
        fc.integer({ min: 1, max: 0xffff }),
        (text, at, delta) => {
          fingerprint(text, a);
          fingerprint(text, b);
          expect([...a]).toEqual([...b]);
          const i = at % text.length;
          const other =
            text.slice(0, i) + String.fromCharCode((text.charCodeAt(i) + delta) & 0xffff) + text.slice(i + 1);
          fingerprint(other, b);
          expect([...a]).not.toEqual([...b]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('spreads 200,000 near-identical texts over distinct values, in both words', () => {
    const out = new Uint32Array(2);
    const all = new Set<string>();
    const his = new Set<number>();
    const los = new Set<number>();
    for (let i = 0; i < 200_000; i++) {
      fingerprint(`[[2,[0,1],["shared","private"]],${i},[]]`, out);
      all.add(`${out[0]}:${out[1]}`);
      his.add(out[0]!);
      los.add(out[1]!);
    }
    expect(all.size).toBe(200_000);
    // 200,000 values drawn uniformly from 2^32 collide about 4.7 times in each word alone.
    expect(his.size).toBeGreaterThan(199_950);
    expect(los.size).toBeGreaterThan(199_950);
  });

  it('states its birthday bound: n(n-1)/2^65', () => {
    expect(collisionBound(1)).toBe(0);
    expect(collisionBound(10_000_000)).toBeCloseTo(2.71e-6, 8);
  });
});
