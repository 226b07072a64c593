/**
 * Baseline: the naive per-page design (cloud-hypervisor's DmaMappingTracker keeps a bool per page): a Map from
 * page to attribute for every page of the file, and a Map from page to pfn for every DMA-mapped page. A
 * conversion walks its pages one by one; each page that changes state is mapped or unmapped on its own.
 * Implemented here only, for the comparison.
 */
import { AreaTable, checkRange, PAGE } from './areas.js';

export class PerPageMap {
  private readonly attributes = new Map<number, 'shared' | 'private'>();
  private readonly ioptes = new Map<number, number>();
  private readonly areas: AreaTable;

  constructor(
    private readonly npages: number,
    areas: ReadonlyArray<{ first: number; end: number }>,
    isPrivate: (page: number) => boolean,
    private readonly pfnBase = 0x100000,
  ) {
    this.areas = new AreaTable(areas);
    for (let page = 0; page < npages; page++) {
      const attribute = isPrivate(page) ? 'private' : 'shared';
      this.attributes.set(page, attribute);
      if (attribute === 'shared' && this.areas.areaOf(page) >= 0) this.ioptes.set(page, pfnBase + page);
    }
  }

  convert(offset: number, size: number, toPrivate: boolean): void {
    checkRange(offset, size, this.npages);
    const to = toPrivate ? 'private' : 'shared';
    const first = offset / PAGE;
    const end = first + size / PAGE;
    for (let page = first; page < end; page++) {
      if (this.attributes.get(page) === to) continue;
      this.attributes.set(page, to);
      if (this.areas.areaOf(page) < 0) continue;
      if (toPrivate) this.ioptes.delete(page);
      else this.ioptes.set(page, this.pfnBase + page);
    }
  }

  sharedPages(): number {
    let n = 0;
    for (const attribute of this.attributes.values()) if (attribute === 'shared') n++;
    return n;
  }
}
