/**
 * A run of keys with one value, and how a value changes along a run: the two shapes RangeMap (range-map.ts) and
 * its large form RunSlab (run-slab.ts) share. A leaf module, so that neither of the two imports the other for a type.
 */

export interface RunCodec<V> {
  /** The value `delta` keys further along a run that starts with `value`. */
  shift(value: V, delta: number): V;
  /** Whether two values are equal (after shifting), so their runs may merge. */
  equals(a: V, b: V): boolean;
}

export interface Run<V> {
  start: number;
  /** Exclusive. */
  end: number;
  value: V;
}
