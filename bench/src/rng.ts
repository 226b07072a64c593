/** mulberry32: a small seeded generator, so that every run replays the same ranges, offsets and boots. */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** `count` integers in [0, bound), bound at most 2^32, from `seed`. */
export function randomIndices(seed: number, count: number, bound: number): Uint32Array {
  if (bound > 2 ** 32) throw new RangeError(`bound ${bound} is above 2^32`);
  const next = seeded(seed);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(next() * bound);
  return out;
}
