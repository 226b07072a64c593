/** The DMA areas a baseline's listener looks pages up in: disjoint page ranges sorted by first page. */
export class AreaTable {
  private readonly firsts: Float64Array;
  private readonly ends: Float64Array;

  constructor(areas: ReadonlyArray<{ first: number; end: number }>) {
    this.firsts = Float64Array.from(areas, (a) => a.first);
    this.ends = Float64Array.from(areas, (a) => a.end);
  }

  /** The index of the area holding `page`, or -1 (binary search: what an interval lookup costs at best). */
  areaOf(page: number): number {
    const i = this.firstAfter(page) - 1;
    return i >= 0 && page < this.ends[i]! ? i : -1;
  }

  /** The index of the first area starting after `page` (count if none). */
  firstAfter(page: number): number {
    let lo = 0;
    let hi = this.firsts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.firsts[mid]! <= page) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  get count(): number {
    return this.firsts.length;
  }

  first(i: number): number {
    return this.firsts[i]!;
  }

  end(i: number): number {
    return this.ends[i]!;
  }
}

export const PAGE = 4096;

/** The argument checks both baselines make, as ram_block_attributes_state_change does (-EINVAL otherwise). */
export function checkRange(offset: number, size: number, npages: number): void {
  if (offset % PAGE !== 0 || size % PAGE !== 0 || size === 0 || offset + size > npages * PAGE)
    throw new RangeError(`bad range [${offset}, +${size})`);
}
