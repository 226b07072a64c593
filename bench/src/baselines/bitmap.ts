/**
 * Baseline: the per-4K design QEMU and cloud-hypervisor use, on the same work as gmemlab's conversions.
 *
 * As QEMU's RamBlockAttributes (system/ram-block-attributes.c): one bit per 4 KiB page, 1 = shared (populated),
 * 0 = private (discarded); a range already in the target state is a no-op; otherwise the bitmap is updated page
 * by page and the DMA listener is called once per 4 KiB page that changes state, after its bit changed. As VFIO's
 * RamDiscardListener (hw/vfio/listener.c), which maps and unmaps at the minimum granularity, the listener maps
 * (to shared) or unmaps (to private) that page's IOPTE. The IOMMU side is a per-4K table reached through the DMA
 * area holding the page (a binary search over the areas).
 *
 * It does less than gmemlab does: no memslots or stage-2, no backend policy, no invalidation bookkeeping, no
 * argument parsing beyond alignment and bounds. Implemented here only, for the comparison.
 */
import { AreaTable, checkRange, PAGE } from './areas.js';

export class Per4KBitmap {
  /** Bit i of word i >> 5: page i is shared. */
  private readonly bitmap: Uint32Array;
  /** Per 4 KiB page, the pfn its IOPTE maps, or 0. */
  private readonly ioptes: Int32Array;
  private readonly areas: AreaTable;
  mapCalls = 0;
  unmapCalls = 0;

  constructor(
    private readonly npages: number,
    areas: ReadonlyArray<{ first: number; end: number }>,
    isPrivate: (page: number) => boolean,
    private readonly pfnBase = 0x100000,
  ) {
    this.bitmap = new Uint32Array(Math.ceil(npages / 32));
    this.ioptes = new Int32Array(npages);
    this.areas = new AreaTable(areas);
    for (let page = 0; page < npages; page++) {
      if (isPrivate(page)) continue;
      this.bitmap[page >>> 5]! |= 1 << (page & 31);
      if (this.areas.areaOf(page) >= 0) this.ioptes[page] = pfnBase + page;
    }
  }

  /** Whether every page of [first, end) is shared (`shared`) or every page private (!`shared`), word by word. */
  private allIn(first: number, end: number, shared: boolean): boolean {
    let page = first;
    while (page < end) {
      const word = page >>> 5;
      const from = page & 31;
      const to = Math.min(32, from + (end - page));
      const mask = to - from === 32 ? 0xffffffff : ((1 << (to - from)) - 1) << from;
      const bits = this.bitmap[word]! & mask;
      if (shared ? bits >>> 0 !== mask >>> 0 : bits !== 0) return false;
      page += to - from;
    }
    return true;
  }

  convert(offset: number, size: number, toPrivate: boolean): void {
    checkRange(offset, size, this.npages);
    const first = offset / PAGE;
    const end = first + size / PAGE;
    if (this.allIn(first, end, !toPrivate)) return;
    for (let page = first; page < end; page++) {
      const word = page >>> 5;
      const bit = 1 << (page & 31);
      const shared = (this.bitmap[word]! & bit) !== 0;
      if (shared !== toPrivate) continue;
      this.bitmap[word]! ^= bit;
      this.listener(page, !toPrivate);
    }
  }

  private listener(page: number, populate: boolean): void {
    if (this.areas.areaOf(page) < 0) return;
    if (populate) {
      this.ioptes[page] = this.pfnBase + page;
      this.mapCalls++;
    } else {
      this.ioptes[page] = 0;
      this.unmapCalls++;
    }
  }

  /** Pages shared now, for checking that a baseline did the work. */
  sharedPages(): number {
    let n = 0;
    for (let page = 0; page < this.npages; page++) if (this.bitmap[page >>> 5]! & (1 << (page & 31))) n++;
    return n;
  }
}
