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
    // Words are taken as uint32, as the table stores them: 2^32 is 0, -1 is 0xffffffff.
    expect(set.add(2 ** 32, 0)).toBe(false);
    expect(set.add(-1, 5)).toBe(true);
    expect(set.has(0xffffffff, 5)).toBe(true);
    expect(set.size).toBe(100_002);
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

  it('has no bits tied to a parity of the text: the two words agree in their low bits as often as chance says', () => {
    // A multiply-and-xor lane without rotations keeps in its low bits the xor of the units' low bits, the same in
    // both lanes; those fingerprints could take at most 2^62 values. Here each low bit pattern of one word meets
    // the other word's as often as independent words would (1/4 for two bits), and within a word (1/2 for bit 0).
    const out = new Uint32Array(2);
    let agree = 0;
    let odd = 0;
    const n = 40_000;
    let seed = 7;
    for (let i = 0; i < n; i++) {
      let text = '';
      for (let j = 0; j < 40; j++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        text += String.fromCharCode(48 + (seed >>> 27));
      }
      fingerprint(text, out);
      if ((out[0]! & 3) === (out[1]! & 3)) agree++;
      if (out[0]! & 1) odd++;
    }
    // Binomial standard deviations: sqrt(n/4 * 3/4) = 87 and sqrt(n/4) = 100; six of them either side.
    expect(Math.abs(agree - n / 4)).toBeLessThan(6 * 87);
    expect(Math.abs(odd - n / 2)).toBeLessThan(6 * 100);
  });

  it('states its birthday estimate: n(n-1)/2^65', () => {
    expect(collisionBound(1)).toBe(0);
    expect(collisionBound(10_000_000)).toBeCloseTo(2.71e-6, 8);
  });
});
