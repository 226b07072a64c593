/**
 * The index of a guest_memfd inode's iommufd areas (GmemInode.dmaAreas) and the two questions asked of it: which
 * pages of a range IOPTEs map right now, and whether any does. They read only the inode's index and the areas'
 * IOPTE runs, so they live beside the inode, not in the host: a conversion asks them (the backend's
 * `dmaMapped`, `iommuDomains`), without a walk over every IOAS (kernel-contract §9.1).
 *
 * `DmaArea` is what the index needs of an iommufd area (iommufd/area.ts's IoasArea implements it), so that kvm/
 * does not import iommufd/ for a type.
 */
import type { DmaAreaInfo } from '../arch/backend.js';
import type { IntervalIndex } from '../util/interval-index.js';
import type { RangeMap } from '../util/range-map.js';

/** An iommufd area over pages of one guest_memfd inode, as the inode's DMA index holds it. */
export interface DmaArea {
  /** Creation order of the area's IOAS (the order the host lists IOASes in). */
  readonly ioasOrder: number;
  readonly iova: number;
  readonly npages: number;
  /** The inode page of the area's page 0. */
  readonly source: { readonly firstIndex: number };
  /** Area page -> pfn, where an IOPTE is live. */
  readonly ioptes: RangeMap<number>;
  info(): Readonly<DmaAreaInfo>;
}

/** A byte range of an inode, in pages, that one area's IOPTEs map. */
export interface DmaMapping {
  start: number;
  end: number;
  area: Readonly<DmaAreaInfo>;
}

/** The pages of [start, end) of the inode that IOPTEs map right now, across every IOAS, as runs. */
export function dmaMappingsOf(areas: IntervalIndex<DmaArea>, start: number, end: number): DmaMapping[] {
  const out: DmaMapping[] = [];
  // IOAS by IOAS in creation order, areas in IOVA order: as walking every IOAS's areas would list them.
  const overlapping = areas.overlapping(start, end).sort((a, b) => a.ioasOrder - b.ioasOrder || a.iova - b.iova);
  for (const area of overlapping) {
    const first = area.source.firstIndex;
    for (const run of area.ioptes.overlapping(Math.max(0, start - first), Math.min(area.npages, end - first))) {
      out.push({ start: run.start + first, end: run.end + first, area: area.info() });
    }
  }
  return out;
}

/** Whether any IOPTE maps a page of [start, end) of the inode. */
export function isDmaMapped(areas: IntervalIndex<DmaArea>, start: number, end: number): boolean {
  return areas.some(start, end, (area) => {
    const first = area.source.firstIndex;
    return area.ioptes.intersects(Math.max(0, start - first), Math.min(area.npages, end - first));
  });
}
