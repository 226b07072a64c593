/**
 * Two like-for-like baselines for benchmark 1's stationary workload (issue 19): they do the TDX path's work on
 * the same sequence, including the same re-maps as gmemlab's workload (a range that goes shared is DMA-mapped
 * again, as QEMU's VFIO listener maps a populated range and as the 'mirror' design restores).
 *
 * - `RangeNotifyBitmap`: one byte per 4 KiB page (1 = shared), scanned a 32-bit word (4 pages) at a time; one
 *   notification per contiguous run of pages that changes state; the listener finds the DMA areas by binary
 *   search over a sorted array, and records per area the range it revoked (to private: the run's pages lose their
 *   DMA mapping and the area's revoked hull grows; to shared: the run is mapped again, and a revoked hull the run
 *   covers is forgotten). This is the shape of QEMU's RamBlockAttributes with a range-granular listener.
 * - `PhysicalFloor`: a word-level "already in that state?" check, one `fill` of the attributes, one binary search,
 *   one `fill` of the DMA state. What is left when nothing is done but storing the new state.
 *
 * Both keep their DMA state as one byte per page (1 = an IOPTE maps the page). Both are implemented here only,
 * for the comparison; neither checks anything gmemlab checks beyond alignment and bounds.
 */
import { AreaTable, checkRange, PAGE } from './areas.js';

/** 0x01 in each byte of a word: four shared pages. */
const ALL_SHARED = 0x01010101;

/** Per page state as bytes, with a 32-bit view over the same memory for word-level scans. */
class PageBytes {
  readonly bytes: Uint8Array;
  readonly words: Uint32Array;
  constructor(npages: number) {
    const buffer = new ArrayBuffer(Math.ceil(npages / 4) * 4);
    this.bytes = new Uint8Array(buffer, 0, npages);
    this.words = new Uint32Array(buffer);
  }

  /** Whether every page of [first, end) holds `value` (0 or 1), word by word where the range allows. */
  allEqual(first: number, end: number, value: number): boolean {
    const bytes = this.bytes;
    let page = first;
    while (page < end && page & 3) if (bytes[page++] !== value) return false;
    const word = value === 1 ? ALL_SHARED : 0;
    const words = this.words;
    for (; page + 4 <= end; page += 4) if (words[page >>> 2] !== word) return false;
    while (page < end) if (bytes[page++] !== value) return false;
    return true;
  }

  /** The first page of [from, end) whose byte is not `value`, or end; a word at a time. */
  firstNot(from: number, end: number, value: number): number {
    const bytes = this.bytes;
    let page = from;
    while (page < end && page & 3) {
      if (bytes[page] !== value) return page;
      page++;
    }
    const word = value === 1 ? ALL_SHARED : 0;
    const words = this.words;
    while (page + 4 <= end && words[page >>> 2] === word) page += 4;
    while (page < end && bytes[page] === value) page++;
    return page;
  }
}

/** The starting state: shared pages are DMA-mapped where an area covers them. `isPrivate` is asked per `granule` pages. */
function initial(
  npages: number,
  areas: AreaTable,
  isPrivate: (page: number) => boolean,
  granule: number,
): { attrs: PageBytes; dma: PageBytes } {
  const attrs = new PageBytes(npages);
  const dma = new PageBytes(npages);
  const covered = areas.count > 0 ? areas.end(areas.count - 1) : 0;
  for (let page = 0; page < npages; page += granule) {
    if (isPrivate(page)) continue;
    const end = Math.min(npages, page + granule);
    attrs.bytes.fill(1, page, end);
    if (page < covered) dma.bytes.fill(1, page, Math.min(end, covered));
  }
  return { attrs, dma };
}

export class RangeNotifyBitmap {
  private readonly attrs: PageBytes;
  private readonly dma: PageBytes;
  private readonly areas: AreaTable;
  /** Per area, the hull [revokedFirst, revokedEnd) of the pages it revoked (empty when first >= end). */
  private readonly revokedFirst: Float64Array;
  private readonly revokedEnd: Float64Array;
  notifications = 0;

  constructor(
    private readonly npages: number,
    areas: ReadonlyArray<{ first: number; end: number }>,
    isPrivate: (page: number) => boolean,
    /** The pages of each granule start in one state (benchmark 1: a 2 MiB block, 512 pages). */
    granule = 1,
  ) {
    this.areas = new AreaTable(areas);
    ({ attrs: this.attrs, dma: this.dma } = initial(npages, this.areas, isPrivate, granule));
    this.revokedFirst = new Float64Array(areas.length);
    this.revokedEnd = new Float64Array(areas.length);
  }

  convert(offset: number, size: number, toPrivate: boolean): void {
    checkRange(offset, size, this.npages);
    const first = offset / PAGE;
    const end = first + size / PAGE;
    const to = toPrivate ? 0 : 1;
    const attrs = this.attrs;
    if (attrs.allEqual(first, end, to)) return;
    const from = toPrivate ? 1 : 0;
    // One notification per contiguous run of pages that changes state.
    let page = attrs.firstNot(first, end, to);
    while (page < end) {
      const runEnd = attrs.firstNot(page, end, from);
      attrs.bytes.fill(to, page, runEnd);
      this.notify(page, runEnd, toPrivate);
      page = runEnd < end ? attrs.firstNot(runEnd, end, to) : end;
    }
  }

  private notify(first: number, end: number, toPrivate: boolean): void {
    this.notifications++;
    const areas = this.areas;
    let area = areas.firstAfter(first) - 1;
    if (area < 0 || areas.end(area) <= first) area++;
    for (; area < areas.count && areas.first(area) < end; area++) {
      const from = Math.max(first, areas.first(area));
      const to = Math.min(end, areas.end(area));
      if (toPrivate) {
        this.dma.bytes.fill(0, from, to);
        if (this.revokedFirst[area]! >= this.revokedEnd[area]!) {
          this.revokedFirst[area] = from;
          this.revokedEnd[area] = to;
        } else {
          if (from < this.revokedFirst[area]!) this.revokedFirst[area] = from;
          if (to > this.revokedEnd[area]!) this.revokedEnd[area] = to;
        }
      } else {
        this.dma.bytes.fill(1, from, to);
        if (from <= this.revokedFirst[area]! && to >= this.revokedEnd[area]!)
          this.revokedEnd[area] = this.revokedFirst[area]!;
      }
    }
  }

  attributeBytes(): Uint8Array {
    return this.attrs.bytes;
  }

  dmaBytes(): Uint8Array {
    return this.dma.bytes;
  }
}

export class PhysicalFloor {
  private readonly attrs: PageBytes;
  private readonly dma: PageBytes;
  private readonly areas: AreaTable;
  private readonly covered: number;

  constructor(
    private readonly npages: number,
    areas: ReadonlyArray<{ first: number; end: number }>,
    isPrivate: (page: number) => boolean,
    /** The pages of each granule start in one state (benchmark 1: a 2 MiB block, 512 pages). */
    granule = 1,
  ) {
    this.areas = new AreaTable(areas);
    ({ attrs: this.attrs, dma: this.dma } = initial(npages, this.areas, isPrivate, granule));
    this.covered = areas.length > 0 ? areas[areas.length - 1]!.end : 0;
  }

  convert(offset: number, size: number, toPrivate: boolean): void {
    checkRange(offset, size, this.npages);
    const first = offset / PAGE;
    const end = first + size / PAGE;
    const to = toPrivate ? 0 : 1;
    if (this.attrs.allEqual(first, end, to)) return;
    this.attrs.bytes.fill(to, first, end);
    // The areas tile [0, covered): one search for the first, one fill of the DMA state over the covered part.
    if (this.areas.areaOf(first) < 0 && this.areas.firstAfter(first) >= this.areas.count) return;
    this.dma.bytes.fill(to, first, Math.min(end, this.covered));
  }

  attributeBytes(): Uint8Array {
    return this.attrs.bytes;
  }

  dmaBytes(): Uint8Array {
    return this.dma.bytes;
  }
}
