/**
 * An iopt_pages: the source of one IOMMU_IOAS_MAP or IOMMU_IOAS_MAP_FILE (a file range or a user address range),
 * shared by every area made from it — the first area, the areas IOMMU_IOAS_COPY makes from a slice of it (in
 * this IOAS or another) and the two halves of an area the VFIO-compatible unmap cuts (kernel-contract §5.1,
 * §5.3). `io_pagetable.c` `iopt_get_pages` and `iopt_area_split` hand the same `struct iopt_pages` to the new
 * areas with a kref, never a new one (IOPT).
 *
 * It is what a registry of guest_memfd consumers registers (kernel-contract §9.1): the kernel's one revocation
 * precedent, dma-buf revoke (DMABUF-REVOKE), keeps its (domain, area) list on the pages object and
 * `iopt_revoke_notify` unmaps every area that uses the pages, copies included, then marks the pages revoked so
 * that `iopt_area_fill_domain` maps nothing for them later. A registry that recorded areas at MAP_FILE time
 * would miss the copies; the pages object cannot be bypassed. The precedent has no halves: its
 * `iopt_area_split` refuses dma-buf pages (EOPNOTSUPP), and `Ioas.cutAt` refuses registered pages the same way
 * (kernel-contract §5.5); unregistered pages ('vmm-driven') are cut, and both halves share this object.
 */
import type { ConsumerResponse } from '../arch/backend.js';
import type { KernelFile } from '../files.js';
import type { GmemInode } from '../kvm/gmem-inode.js';
import type { PageCacheInode } from '../mm/inode.js';
import {
  ANSWERS_BY_POLICY,
  type ConversionRequest,
  type Invalidation,
  type MappingConsumer,
  type Registration,
} from '../registry/registry.js';
import type { IoasArea } from './area.js';

const ORDER: Record<ConsumerResponse, number> = { tolerate: 0, split: 1, revoke: 2, refuse: 3 };

export class IoptPages implements MappingConsumer {
  readonly kind = 'iommufd-pages' as const;
  /**
   * Its conversionResponse is the backend's policy for its areas, and nothing else (registry.ts). A getter, on the
   * prototype: a fork copies an object's own fields, and refuses symbol-keyed ones.
   */
  get [ANSWERS_BY_POLICY](): true {
    return true;
  }
  /**
   * e.g. 'iopt_pages@ioas:1/area:2': named after the area that made it (a MAP or MAP_FILE). Made when asked (for
   * messages), from the two numbers, rather than kept as a string per pages object.
   */
  get label(): string {
    return `iopt_pages@ioas:${this.ioasId}/area:${this.areaId}`;
  }
  /** The page-index range [first, end) of the file (or of the mapping's file) the pages cover. */
  readonly first: number;
  readonly end: number;
  /**
   * The areas that use the pages, in creation order. Not readonly: the first area gets an array of one element
   * (attach), not the 17 slots a push onto an empty array reserves; nearly every pages object has one area.
   */
  areas: IoasArea[] = [];
  /**
   * Truncation or release of the guest_memfd revoked the pages, as `iopt_revoke_notify` does for a dma-buf
   * (`pages->dmabuf.phys.len = 0`): every area over them lost its IOPTEs, and an area made or filled later
   * (a COPY, a domain attached afterwards) maps nothing (`iopt_area_fill_domain` returns early).
   */
  revoked = false;
  private registration: Registration | undefined;
  /**
   * The answers of the areas asked by the last conversionResponse, for the invalidation that follows it: the
   * request's range and direction, and [0, askedCount) of the two scratch arrays. Kept in fields and reused
   * arrays, so that a conversion allocates nothing here (a long-lived object's refilled arrays are old-generation
   * garbage, ARCHITECTURE.md).
   */
  private askedValid = false;
  private askedStart = 0;
  private askedEnd = 0;
  private askedToPrivate = false;
  private askedCount = 0;
  // One slot each to begin with (a pages object has one area, as a rule): a first write into an empty array
  // would reserve 17.
  private readonly askedAreas: Array<IoasArea | undefined> = [undefined];
  private readonly askedAnswers: ConsumerResponse[] = ['tolerate'];

  constructor(
    /** The IOAS and the id of the area that made the pages (its name). */
    private readonly ioasId: number,
    private readonly areaId: number,
    /** MAP_FILE: the file, held from here until the last area goes (`iopt_alloc_file_pages`: get_file). */
    readonly file: KernelFile | undefined,
    /** The page cache the pages come from; undefined for a file that has none (pinning it will fail). */
    readonly inode: PageCacheInode | undefined,
    first: number,
    npages: number,
    /** `iopt_alloc_pages(..., writable)`: WRITEABLE was asked when the pages were made. */
    readonly writable: boolean,
  ) {
    this.first = first;
    this.end = first + npages;
    file?.get();
  }

  get registered(): boolean {
    return this.registration !== undefined;
  }

  /** Register with the guest_memfd's registry, for the pages' whole range (kernel-contract §9.1). */
  register(): void {
    if (!this.registration) this.registration = (this.inode as GmemInode).registry.register(this);
  }

  /** @internal An area starts using the pages (MAP, MAP_FILE, COPY, split). */
  attach(area: IoasArea): void {
    if (this.areas.length === 0) this.areas = [area];
    else this.areas.push(area);
  }

  /** @internal An area is gone; the last one releases the pages (`iopt_release_pages`: unregister, fput). */
  detach(area: IoasArea): void {
    const i = this.areas.indexOf(area);
    if (i >= 0) this.areas.splice(i, 1);
    if (this.areas.length > 0) return;
    this.registration?.unregister();
    this.registration = undefined;
    this.file?.put();
  }

  /**
   * Each area over the converting range is asked for its own answer (the backend's conversionPolicy sees that
   * area); the pages answer the strongest of them (refuse over revoke over split over tolerate), and remember
   * each area's answer other than 'tolerate' for the invalidation that follows (only those are acted on).
   */
  conversionResponse(request: ConversionRequest): ConsumerResponse {
    this.forget();
    const areas = this.askedAreas;
    const answers = this.askedAnswers;
    let n = 0;
    let strongest: ConsumerResponse = 'tolerate';
    let rank = 0;
    const mine = this.areas;
    for (let i = 0; i < mine.length; i++) {
      const area = mine[i]!;
      if (area.end <= request.start || area.first >= request.end) continue;
      const answer = area.conversionResponse(request);
      // Only 'revoke' and 'split' answers are acted on later (invalidateBegin, split, cutRefusal): a 'tolerate'
      // is not kept, so that a conversion every area tolerates touches none of the kept arrays.
      const order = ORDER[answer];
      if (order === 0) continue;
      areas[n] = area;
      answers[n] = answer;
      n++;
      if (order > rank) {
        rank = order;
        strongest = answer;
      }
    }
    this.askedCount = n;
    this.askedStart = request.start;
    this.askedEnd = request.end;
    this.askedToPrivate = request.to === 'private';
    this.askedValid = true;
    return strongest;
  }

  /** Drop the answers kept by conversionResponse (and the references to their areas). */
  private forget(): void {
    const count = this.askedCount;
    if (count > 0) {
      for (let i = 0; i < count; i++) this.askedAreas[i] = undefined;
      this.askedCount = 0;
    }
    this.askedValid = false;
  }

  /**
   * HostOptions.hugeIopteCut 'refuse': the lowest file page index where an area that answered 'revoke' to the
   * conversion being asked would have to cut a huge IOPTE, or undefined (`IoasArea.cutRefusal`).
   */
  cutRefusal(start: number, end: number): number | undefined {
    if (!this.askedValid || this.askedStart !== start || this.askedEnd !== end) return undefined;
    let lowest: number | undefined;
    for (let i = 0; i < this.askedCount; i++) {
      if (this.askedAnswers[i] !== 'revoke') continue;
      const at = this.askedAreas[i]!.cutRefusal(start, end);
      if (at !== undefined && (lowest === undefined || at < lowest)) lowest = at;
    }
    return lowest;
  }

  /** Whether the answers kept are those for the conversion `inv` is running (not a conversion, or not asked: no). */
  private answersFor(inv: Invalidation): boolean {
    if (!this.askedValid || this.askedStart !== inv.start || this.askedEnd !== inv.end) return false;
    return (inv.cause === 'to-private') === this.askedToPrivate;
  }

  invalidateBegin(inv: Invalidation): void {
    if (inv.cause === 'truncate' || inv.cause === 'release') {
      // iopt_revoke_notify: every (domain, area) pair on the pages is unmapped, whatever part of the pages the
      // invalidation covers, and the pages stay revoked. "it can just revoke the whole area" (RFC-J1).
      this.revoked = true;
      for (const area of [...this.areas]) area.revokeWhole(inv.cause);
      return;
    }
    if (!this.answersFor(inv)) {
      for (const area of [...this.areas]) area.invalidateBegin(inv);
      return;
    }
    for (let i = 0; i < this.askedCount; i++) {
      const answer = this.askedAnswers[i];
      if (answer === 'revoke') this.askedAreas[i]!.invalidateBegin(inv);
      else if (answer === 'split') this.askedAreas[i]!.split(inv);
    }
  }

  invalidateEnd(inv: Invalidation): void {
    if (this.answersFor(inv)) this.forget();
  }

  split(inv: Invalidation): void {
    if (this.answersFor(inv)) {
      for (let i = 0; i < this.askedCount; i++) if (this.askedAnswers[i] === 'split') this.askedAreas[i]!.split(inv);
    }
    this.forget();
  }

  restore(inv: Invalidation): void {
    // No copy of the list: a restore only writes IOPTEs, it makes or removes no area.
    const areas = this.areas;
    for (let i = 0; i < areas.length; i++) areas[i]!.restore(inv);
  }
}
