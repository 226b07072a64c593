/**
 * A visited set of 64-bit fingerprints, as TLC keeps one: a large search remembers each state as two 32-bit words
 * in an open-addressed table of typed arrays (8 bytes a slot, at most 70% full) instead of its canonical form as a
 * string (about 550 characters, 1 KB a state with the map's overhead). A world of 10 million states then needs
 * a table of 2^24 slots, 134 MB, instead of 10 GB.
 *
 * The price is a probability: two distinct states with the same fingerprint are taken for one, and the second is
 * never expanded. With n states and fingerprints spread uniformly over 2^64 values, the chance that any two of them
 * collide is at most n(n-1)/2^65 (the birthday bound): 2.7e-6 for 10 million states. The search reports that bound
 * (`SearchResult.fingerprints`); a run that must be exact keeps the canonical forms (`visited: 'exact'`).
 */

/**
 * Two 32-bit hashes of a string in one pass (the two lanes of cyrb53, by bryc, public domain, used whole instead of
 * folded into 53 bits): each lane multiplies in every UTF-16 unit with its own odd constant, then the two are
 * mixed into each other. Written to `out[0]` (high word) and `out[1]` (low word).
 */
export function fingerprint(text: string, out: Uint32Array): void {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  out[0] = h1 >>> 0;
  out[1] = h2 >>> 0;
}

/** The birthday bound on any collision among `n` uniformly spread 64-bit fingerprints: n(n-1)/2^65. */
export const collisionBound = (n: number): number => (n * (n - 1)) / 2 ** 65;

/**
 * A set of 64-bit fingerprints. The all-zero fingerprint marks an empty slot, so it is stored as a flag of its own.
 * Linear probing; the table doubles when it is 70% full.
 */
export class FingerprintSet {
  private table: Uint32Array;
  private mask: number;
  private count = 0;
  private hasZero = false;

  constructor(capacity = 1 << 16) {
    let slots = 1 << 4;
    while (slots < capacity / 0.7) slots *= 2;
    this.table = new Uint32Array(slots * 2);
    this.mask = slots - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Add a fingerprint; false when it was already there. */
  add(hi: number, lo: number): boolean {
    if (hi === 0 && lo === 0) {
      if (this.hasZero) return false;
      this.hasZero = true;
      this.count++;
      return true;
    }
    if ((this.count + 1) / (this.mask + 1) > 0.7) this.grow();
    return this.insert(hi >>> 0, lo >>> 0);
  }

  has(hi: number, lo: number): boolean {
    hi >>>= 0;
    lo >>>= 0;
    if (hi === 0 && lo === 0) return this.hasZero;
    const table = this.table;
    for (let slot = (lo ^ Math.imul(hi, 0x9e3779b1)) & this.mask; ; slot = (slot + 1) & this.mask) {
      const h = table[slot * 2]!;
      const l = table[slot * 2 + 1]!;
      if (h === 0 && l === 0) return false;
      if (h === hi && l === lo) return true;
    }
  }

  private insert(hi: number, lo: number): boolean {
    const table = this.table;
    for (let slot = (lo ^ Math.imul(hi, 0x9e3779b1)) & this.mask; ; slot = (slot + 1) & this.mask) {
      const h = table[slot * 2]!;
      const l = table[slot * 2 + 1]!;
      if (h === 0 && l === 0) {
        table[slot * 2] = hi;
        table[slot * 2 + 1] = lo;
        this.count++;
        return true;
      }
      if (h === hi && l === lo) return false;
    }
  }

  private grow(): void {
    const old = this.table;
    this.table = new Uint32Array(old.length * 2);
    this.mask = this.mask * 2 + 1;
    const zero = this.hasZero;
    this.count = zero ? 1 : 0;
    for (let i = 0; i < old.length; i += 2) if (old[i] !== 0 || old[i + 1] !== 0) this.insert(old[i]!, old[i + 1]!);
  }
}
