/**
 * Baseline: the per-4K design QEMU and cloud-hypervisor use, on the same work as gmemlab's conversions.
 *
 * As QEMU's RamBlockAttributes (system/ram-block-attributes.c, qemu/qemu 5d6483edaa92, "ram-block-attributes:
 * Introduce RamBlockAttributes to manage RAMBlock with guest_memfd"; the block size is the host page size, as a
 * later fix of that commit for hugetlbfs backends made it): one bit
 * per 4 KiB page, 1 = shared (populated), 0 = private (discarded), and a range already wholly in the target state
 * is a no-op. Three ways to notify the DMA listener, `mode`:
 *
 * - 'per-page' (issue 11's baseline, the default): the listener is called once per 4 KiB page that changes
 *   state, after its bit changed, and maps (to shared) or unmaps (to private) that page's IOPTE.
 * - 'qemu' (what ram_block_attributes_state_change does): a range wholly in the other state flips its bits at
 *   once and notifies once for the whole range; each DMA area overlapping it then unmaps its part at once (VFIO's
 *   vfio_ram_discard_notify_discard, one IOMMU_IOAS_UNMAP) or maps it 4 KiB by 4 KiB
 *   (vfio_ram_discard_notify_populate maps at the listener's granularity, the host page size); a mixed range
 *   goes page by page as 'per-page' does.
 * - 'empty-listener': 'per-page' with a listener that does nothing: the bitmap's own cost, without the DMA side.
 *
 * Cheaper than QEMU in two ways, both in the baseline's favour: a listener is found by a binary search over the
 * areas, where QEMU walks its list of RamDiscardListeners for every notification, and a map or unmap is a store
 * in a per-4K table, where QEMU makes an ioctl (and the kernel pins, writes IOPTEs and flushes the IOTLB).
 * It also does less than gmemlab does: no memslots or stage-2, no backend policy, no invalidation bookkeeping,
 * no argument parsing beyond alignment and bounds. Implemented here only, for the comparison.
 */
import { AreaTable, checkRange, PAGE } from './areas.js';

export type BitmapMode = 'per-page' | 'qemu' | 'empty-listener';

export class Per4KBitmap {
  /** Bit i of word i >> 5: page i is shared. */
  private readonly bitmap: Uint32Array;
  /** Per 4 KiB page, the pfn its IOPTE maps, or 0. */
  private readonly ioptes: Int32Array;
  private readonly areas: AreaTable;
  mapCalls = 0;
  unmapCalls = 0;
  /** Notifications of a whole range ('qemu' mode). */
  rangeCalls = 0;

  constructor(
    private readonly npages: number,
    areas: ReadonlyArray<{ first: number; end: number }>,
    isPrivate: (page: number) => boolean,
    private readonly mode: BitmapMode = 'per-page',
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
    if (this.mode === 'qemu' && this.allIn(first, end, toPrivate)) {
      // bitmap_set / bitmap_clear, then one notification of the whole range.
      for (let page = first; page < end; page++) this.bitmap[page >>> 5]! ^= 1 << (page & 31);
      this.notifyRange(first, end, !toPrivate);
      return;
    }
    for (let page = first; page < end; page++) {
      const word = page >>> 5;
      const bit = 1 << (page & 31);
      const shared = (this.bitmap[word]! & bit) !== 0;
      if (shared !== toPrivate) continue;
      this.bitmap[word]! ^= bit;
      if (this.mode !== 'empty-listener') this.listener(page, !toPrivate);
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

  /** One notification of [first, end): every area overlapping it unmaps its part at once, or maps it per 4 KiB. */
  private notifyRange(first: number, end: number, populate: boolean): void {
    this.rangeCalls++;
    let area = this.areas.areaOf(first);
    if (area < 0) area = this.areas.firstAfter(first);
    for (; area >= 0 && area < this.areas.count && this.areas.first(area) < end; area++) {
      const from = Math.max(first, this.areas.first(area));
      const to = Math.min(end, this.areas.end(area));
      if (populate) {
        for (let page = from; page < to; page++) {
          this.ioptes[page] = this.pfnBase + page;
          this.mapCalls++;
        }
      } else {
        this.ioptes.fill(0, from, to);
        this.unmapCalls++;
      }
    }
  }

  /** Pages of [0, limit) shared now, for checking that a baseline did the work. */
  sharedPages(limit = this.npages): number {
    let n = 0;
    for (let page = 0; page < limit; page++) if (this.bitmap[page >>> 5]! & (1 << (page & 31))) n++;
    return n;
  }

  /** Pages whose IOPTE maps them now, for checking the DMA side too. */
  mappedPages(): number {
    let n = 0;
    for (let page = 0; page < this.npages; page++) if (this.ioptes[page] !== 0) n++;
    return n;
  }
}
