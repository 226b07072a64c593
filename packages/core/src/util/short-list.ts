/**
 * A few items in insertion order, in an array that is never shortened. For bookkeeping that fills and empties on
 * every operation (the invalidations in progress): a Set or an array emptied and refilled there gets a new table
 * or backing store every few operations, and in a long-lived object V8 allocates those in the old generation,
 * where they pile up as garbage until a full collection.
 */
export class ShortList<T> {
  private readonly items: Array<T | undefined> = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(item: T): void {
    this.items[this.count++] = item;
  }

  /** Remove the first occurrence of `item`, keeping the order of the rest; false if it is not there. */
  delete(item: T): boolean {
    const items = this.items;
    for (let i = 0; i < this.count; i++) {
      if (items[i] !== item) continue;
      for (let j = i + 1; j < this.count; j++) items[j - 1] = items[j];
      items[--this.count] = undefined;
      return true;
    }
    return false;
  }

  /** The first item, in insertion order, that satisfies `test`. */
  find(test: (item: T) => boolean): T | undefined {
    for (let i = 0; i < this.count; i++) if (test(this.items[i]!)) return this.items[i];
    return undefined;
  }
}
