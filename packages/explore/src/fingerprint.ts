/**
 * A visited set of 64-bit fingerprints, as model checkers such as TLC keep one: a large search remembers each state
 * as two 32-bit words in an open-addressed table of typed arrays (8 bytes a slot, the table at most 70% full, so
 * 11-23 bytes a state) instead of its canonical form as a string (300-550 characters, about 0.5 KB a state with the
 * map's overhead). Ten million states take a table of 2^24 slots, 134 MB, instead of about 5 GB.
 *
 * The price is a risk: two distinct states with the same fingerprint are taken for one, and the second is never
 * expanded. If fingerprints were spread uniformly over 2^64 values, the chance that any two of n collide would be
 * n(n-1)/2^65 (the birthday estimate): 2.7e-6 for 10 million states. The search reports that estimate
 * (`SearchResult.fingerprints`); a run that must be exact keeps the canonical forms (`visited: 'exact'`).
 */

/** One MurmurHash3 (Austin Appleby, public domain) round of a 16-bit unit into the state `h`. */
function round(h: number, unit: number, c1: number, c2: number): number {
  let k = Math.imul(unit, c1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, c2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3's finalizer: every input bit reaches every output bit. */
function fmix(h: number, length: number): number {
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A 64-bit fingerprint of a string in one pass: two MurmurHash3-style lanes over its UTF-16 units, each with its
 * own seed and multipliers, each finished by MurmurHash3's finalizer. The rotations carry high bits into low ones
 * at every unit, so neither lane's low bits are a plain parity of the input's (which a multiply-and-xor lane
 * without rotation has, and which would tie the two lanes together). Written to `out[0]` (high word) and `out[1]`
 * (low word). Not a cryptographic hash: texts made to collide could; canonical forms are not made that way.
 */
export function fingerprint(text: string, out: Uint32Array): void {
  let h1 = 0x9747b28c;
  let h2 = 0x2f0b3c5d;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = round(h1, c, 0xcc9e2d51, 0x1b873593);
    h2 = round(h2, c, 0x85ebca77, 0xc2b2ae3d);
  }
  out[0] = fmix(h1, text.length);
  out[1] = fmix(h2 ^ h1, text.length);
}

/**
 * The chance that any two of `n` fingerprints collide if fingerprints were spread uniformly over 2^64 values (the
 * birthday estimate n(n-1)/2^65). An estimate, not a bound: the hash is fixed, not drawn at random, and no hash is
 * exactly uniform; it says how small the risk is, as the figure TLC prints after a run does.
 */
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
    hi >>>= 0;
    lo >>>= 0;
    if (hi === 0 && lo === 0) {
      if (this.hasZero) return false;
      this.hasZero = true;
      this.count++;
      return true;
    }
    if ((this.count + 1) / (this.mask + 1) > 0.7) this.grow();
    return this.insert(hi, lo);
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

  /** Every fingerprint held, as (hi, lo) word pairs (a checkpoint's visited set; `add` each to rebuild it). */
  pairs(): Uint32Array {
    const out = new Uint32Array(this.count * 2);
    let j = this.hasZero ? 2 : 0;
    const table = this.table;
    for (let i = 0; i < table.length; i += 2) {
      if (table[i] === 0 && table[i + 1] === 0) continue;
      out[j++] = table[i]!;
      out[j++] = table[i + 1]!;
    }
    return out;
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
