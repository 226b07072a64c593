/**
 * An iopt_area: one IOVA range of an IOAS over a slice of an iopt_pages (kernel-contract §5.1), made by
 * IOMMU_IOAS_MAP or IOMMU_IOAS_MAP_FILE, by IOMMU_IOAS_COPY, or by the VFIO-compatible unmap cutting an area in two
 * (§5.3). Its IOPTEs exist only while a domain is attached (pinning is lazy, §5.1); they are kept as runs (area
 * page -> pfn).
 *
 * Over guest_memfd pages in 'gmem-registry' mode, the registry consumer is the area's pages object (`pages.ts`,
 * §9.1), which passes each invalidation on to every area over it: truncation revokes the whole area, keeping its
 * IOVA reserved until the user unmaps it (DMA-BUF revoke semantics, §5.5, RFC-J1); a conversion does what the
 * architecture's policy answered for this area. In 'vmm-driven' mode (the RFC as posted) nothing registers.
 * In 'mirror' mode (RFC-J5, RFC-J6) the pages register as in 'gmem-registry' and truncation revokes the same way,
 * but a conversion to private only unmaps the pages a 'revoke' answer covers (`unmappedPrivate`), and `restore`
 * maps them again once a conversion to shared has completed.
 */
import * as door from '../arch/door.js';
import type { ConsumerResponse, DmaAreaInfo } from '../arch/backend.js';
import { PAGE_SIZE, PMD_SIZE, PUD_SIZE } from '../constants.js';
import type { InvalidationCause } from '../events.js';
import type { Kernel } from '../kernel.js';
import { registersWithGmem } from '../contract.js';
import type { GmemInode } from '../kvm/gmem-inode.js';
import { conversionShortcuts } from '../kvm/conversion-shortcuts.js';
import type { HostMapping } from '../mm/host-mapping.js';
import type { PageCacheInode, PinRecord } from '../mm/inode.js';
import type { KernelFile } from '../files.js';
import { kindName } from '../files.js';
import type { ConversionRequest, Invalidation } from '../registry/registry.js';
import type { IntervalHandle } from '../util/interval-index.js';
import { linearCodec, RangeMap } from '../util/range-map.js';

export type AreaSource =
  | { kind: 'file'; file: KernelFile & { inode: PageCacheInode }; inode: PageCacheInode; firstIndex: number }
  | { kind: 'user'; mapping: HostMapping; firstPage: number; inode: PageCacheInode; firstIndex: number };

/** Why filling an area's IOPTEs would fail: the errno the attach or map returns, and the reason. */
export interface FillProblem {
  errno: 'EFAULT' | 'EINVAL';
  message: string;
}

/** The pipeline step a 'split' answer counts, one per huge IOPTE split into 4K IOPTEs. */
export const IOPTE_SPLIT_STEP = 'IOMMU: split a huge IOPTE into 4K IOPTEs (+ IOTLB flush)';
/**
 * The step a partial unmap of a huge IOPTE counts under HostOptions.hugeIopteCut 'unmap-whole', one per huge
 * IOPTE the range cuts: the whole IOPTE goes, including pages outside the range.
 */
export const IOPTE_UNMAP_WHOLE_STEP = 'IOMMU: unmap a whole huge IOPTE for part of it (+ IOTLB flush)';

/** An empty storage domain, never written (writeIoptes only reads it). */
const NO_FRAMES = new RangeMap<number>(linearCodec);

/**
 * What an area's revoked, unmappedPrivate and split4K maps read as until their first run: one empty map for all
 * areas (most of 10,000 areas never need two of the three; a RangeMap costs about 100 bytes before any run).
 * Frozen, with its snapshot list made first, so that a write to it throws instead of reaching every area.
 */
const NO_RUNS = new RangeMap<true>();
NO_RUNS.snapshotRuns();
Object.freeze(NO_RUNS);

/** The owner of an area made without an IOAS (tests): never a domain. */
const NO_DOMAIN = Object.freeze({ hasDomain: false, largePages: true });

/**
 * The iopt_pages an area takes a slice of, as the area and the host read it. iommufd/pages.ts's IoptPages
 * implements it; the area names no IoptPages type, so that iommufd/ has no import circle (the pages hold their
 * areas, and revoke them).
 */
export interface AreaPages {
  readonly label: string;
  /** MAP_FILE: the file the pages hold a reference on. */
  readonly file: KernelFile | undefined;
  readonly inode: PageCacheInode | undefined;
  readonly writable: boolean;
  /** Whether guest_memfd's registry knows the pages (kernel-contract §9.1). */
  readonly registered: boolean;
  readonly revoked: boolean;
  /** The areas that use the pages, in creation order. */
  readonly areas: readonly IoasArea[];
  attach(area: IoasArea): void;
  detach(area: IoasArea): void;
}

/**
 * The area answers for itself when its pages object (the registry consumer, `pages.ts`) passes an invalidation
 * on: its own IOPTEs, revoked pages and pins.
 */
export class IoasArea {
  /** What the area is, for messages and snapshots (it is no registry consumer itself: its pages object is). */
  readonly kind = 'iommufd-area' as const;
  /** e.g. 'ioas:1/area:2': made when asked (messages, events, a pin's holder), not kept as a string per area. */
  get label(): string {
    return `ioas:${this.ioasId}/area:${this.id}`;
  }
  /** The page-index range [first, end) of the file the area maps. */
  readonly first: number;
  readonly end: number;
  /** Area page -> pfn, while a domain is attached. */
  readonly ioptes = new RangeMap<number>(linearCodec);
  // The three maps below are made at their first run (until then they read as NO_RUNS); written only through
  // revokedMap(), unmappedPrivateMap() and split4KMap().
  private revokedRuns: RangeMap<true> | undefined;
  private unmappedPrivateRuns: RangeMap<true> | undefined;
  private split4KRuns: RangeMap<true> | undefined;
  readonly npages: number;
  /**
   * The IOPTE page size: the largest of 1G/2M/4K that the IOVA, the file offset and the length allow, or 4K in
   * an IOAS whose large pages are disabled (`batch_iommu_map_small`, IOPT).
   */
  iopteSize: number;
  /**
   * Whether `ioptes` holds any run, kept in step with every change of it below: asking the backend about an area
   * reads this from the area itself instead of the run map, a cache line that is cold on a conversion.
   */
  private mapped = false;
  /** Whether `revoked` covers the whole area (it never shrinks). */
  private revokedAll = false;
  private infoWithIoptes: Readonly<DmaAreaInfo> | undefined;
  private infoWithout: Readonly<DmaAreaInfo> | undefined;
  private pin: PinRecord | undefined;
  private dmaEntry: IntervalHandle | undefined;

  /** Area pages whose IOPTEs guest_memfd revoked; they stay unmapped until the whole area is unmapped. */
  get revoked(): RangeMap<true> {
    return this.revokedRuns ?? NO_RUNS;
  }

  /**
   * 'mirror' mode: area pages whose IOPTEs a conversion to private removed (a 'revoke' answer) and that stay
   * unmapped while they are private; a completed conversion to shared maps them again (`restore`).
   */
  get unmappedPrivate(): RangeMap<true> {
    return this.unmappedPrivateRuns ?? NO_RUNS;
  }

  /** Area pages whose huge IOPTE was split to 4K after a 'split' answer (SEV-TIO: IOPTEs follow the RMP). */
  get split4K(): RangeMap<true> {
    return this.split4KRuns ?? NO_RUNS;
  }

  private revokedMap(): RangeMap<true> {
    return (this.revokedRuns ??= new RangeMap<true>());
  }

  private unmappedPrivateMap(): RangeMap<true> {
    return (this.unmappedPrivateRuns ??= new RangeMap<true>());
  }

  private split4KMap(): RangeMap<true> {
    return (this.split4KRuns ??= new RangeMap<true>());
  }

  constructor(
    private readonly kernel: Kernel,
    readonly ioasId: number,
    readonly id: number,
    readonly iova: number,
    readonly length: number,
    readonly readable: boolean,
    readonly writable: boolean,
    readonly source: AreaSource,
    /** The iopt_pages the area takes a slice of (shared with every copy and half of it). */
    readonly pages: AreaPages,
    /** The IOAS's creation order on the host, for listing areas IOAS by IOAS. */
    readonly ioasOrder: number,
    /** The area's IOAS: whether it has a domain attached now (its IOPTEs exist only then), and huge IOPTEs. */
    private readonly owner: { readonly hasDomain: boolean; readonly largePages: boolean } = NO_DOMAIN,
  ) {
    this.npages = length / PAGE_SIZE;
    this.first = source.firstIndex;
    this.end = source.firstIndex + this.npages;
    const offset = source.firstIndex * PAGE_SIZE;
    // The IOMMU page sizes the host's driver offers (its pgsize_bitmap): all of 4K/2M/1G unless the
    // architecture's host restricts them (SEV-SNP today: amd_iommu=nohugepages, [T2]), or the IOAS disabled them.
    const sizes = kernel.backend.iommuPageSizes;
    this.iopteSize = owner.largePages
      ? [PUD_SIZE, PMD_SIZE, PAGE_SIZE].find(
          (size) =>
            (size === PAGE_SIZE || !sizes || sizes.includes(size)) &&
            iova % size === 0 &&
            offset % size === 0 &&
            length % size === 0,
        )!
      : PAGE_SIZE;
    // Revoked pages fill nothing, whenever the area was made (iopt_area_fill_domain returns early, DMABUF-REVOKE).
    if (pages.revoked) {
      this.revokedMap().set(0, this.npages, true);
      this.revokedAll = true;
    }
    pages.attach(this);
  }

  /** IOMMU_OPTION_HUGE_PAGES = 0 on an IOAS without IOPTEs: from now on the area maps with 4K IOPTEs. */
  useSmallPages(): void {
    this.iopteSize = PAGE_SIZE;
    this.infoWithIoptes = this.infoWithout = undefined;
  }

  /**
   * iopt_area_split: this new area takes area pages [from, from + this.npages) of `old` — its IOPTEs, revoked
   * and privately unmapped pages, 4K splits and pin — with no change to any domain ("the pages hasn't been
   * changed", IOPT). The pin is taken before the old one goes, so no page is unpinned in between.
   */
  takeSliceOf(old: IoasArea, from: number): void {
    const end = from + this.npages;
    // `dst` is asked for only when there is a run to copy (a lazily made map stays unmade otherwise).
    const copy = <T>(src: RangeMap<T>, dst: () => RangeMap<T>) => {
      for (const run of src.overlapping(from, end))
        dst().set(Math.max(run.start, from) - from, Math.min(run.end, end) - from, src.get(Math.max(run.start, from))!);
    };
    copy(old.ioptes, () => this.ioptes);
    copy(old.revoked, () => this.revokedMap());
    copy(old.unmappedPrivate, () => this.unmappedPrivateMap());
    copy(old.split4K, () => this.split4KMap());
    this.mapped = this.ioptes.runCount > 0;
    this.revokedAll = this.revoked.covers(0, this.npages);
    if (old.pin) {
      // The new half holds the frames the old pin held over its slice (a page punched under the pin included).
      const frames = (old.pin.frames ?? []).flatMap((run) => {
        const start = Math.max(run.start, this.first);
        const end = Math.min(run.end, this.end);
        return start < end ? [{ start, end, value: run.value + (start - run.start) }] : [];
      });
      this.pin = { start: this.first, end: this.end, holder: this.label, frames };
      this.source.inode.addPin(this.pin);
    }
  }

  get inode(): PageCacheInode {
    return this.source.inode;
  }

  get isGmem(): boolean {
    // A MAP_FILE of a file with no page cache has no inode (its area never gets IOPTEs).
    return (this.source.inode as GmemInode | undefined)?.kind === 'guest_memfd';
  }

  get filled(): boolean {
    return this.mapped || this.pin !== undefined;
  }

  /**
   * What a backend is told about the area. Frozen and kept (one per value of hasIoptes, the only field that
   * changes), since it is handed to the backend once per area a conversion touches.
   */
  info(): Readonly<DmaAreaInfo> {
    const hasIoptes = this.mapped;
    const cached = hasIoptes ? this.infoWithIoptes : this.infoWithout;
    if (cached) return cached;
    const info: Readonly<DmaAreaInfo> = Object.freeze({
      ioas: this.ioasId,
      area: this.id,
      iova: this.iova,
      length: this.length,
      fileOffset: this.source.firstIndex * PAGE_SIZE,
      iopteSize: this.iopteSize,
      hasIoptes,
      source: this.source.kind,
    });
    if (hasIoptes) this.infoWithIoptes = info;
    else this.infoWithout = info;
    return info;
  }

  /** Enter the guest_memfd's index of DMA areas (for dmaMappingsOf / isDmaMapped), once the area exists. */
  track(): void {
    if (!this.isGmem || this.dmaEntry) return;
    const first = this.source.firstIndex;
    this.dmaEntry = (this.source.inode as GmemInode).dmaAreas.insert(first, first + this.npages, this);
  }

  /** Whether guest_memfd's registry knows the area, through its pages object (kernel-contract §9.1). */
  get registered(): boolean {
    return this.pages.registered;
  }

  /**
   * The registry asks before a conversion: the backend's conversionPolicy for this area (or the answer of an area
   * with the same declared inputs in this conversion, door.conversionPolicyForArea).
   */
  conversionResponse(request: ConversionRequest): ConsumerResponse {
    // this.first and this.end are the source's range, read from the area itself (one cache line fewer).
    const start = Math.max(request.start, this.first);
    const end = Math.min(request.end, this.end);
    return door.conversionPolicyForArea(this.kernel, 'KVM_SET_MEMORY_ATTRIBUTES2', request, this.info(), start, end);
  }

  /**
   * A 'split' answer: the huge IOPTEs that the converting range cuts become 4K IOPTEs (same pfns, finer
   * entries), so no IOPTE spans a page whose RMP state differs from its neighbours' [T2]. Each huge IOPTE split
   * is one counted step; an area without IOPTEs yet only remembers the layout for when it is filled.
   */
  split(inv: Invalidation): void {
    if (this.iopteSize <= PAGE_SIZE) return;
    const block = this.iopteSize / PAGE_SIZE;
    const first = this.first;
    const start = Math.max(0, inv.start - first);
    const end = Math.min(this.npages, inv.end - first);
    if (start >= end) return;
    let splits = 0;
    for (const edge of [start, end]) {
      if (edge % block === 0) continue;
      const from = edge - (edge % block);
      if (this.split4K.has(from)) continue;
      this.split4KMap().set(from, from + block, true);
      if (this.ioptes.intersects(from, from + block)) splits++;
    }
    if (splits > 0) this.kernel.recordPipeline([{ step: IOPTE_SPLIT_STEP, count: splits }]);
  }

  /**
   * The huge IOPTE blocks (area page ranges) that [inv.start, inv.end) starts or ends inside of, and that hold
   * IOPTEs now: what a partial unmap has to cut.
   */
  private cutBlocks(invStart: number, invEnd: number): Array<{ from: number; to: number }> {
    if (this.iopteSize <= PAGE_SIZE || !this.mapped) return [];
    const block = this.iopteSize / PAGE_SIZE;
    const start = Math.max(0, invStart - this.first);
    const end = Math.min(this.npages, invEnd - this.first);
    if (start >= end) return [];
    const blocks: Array<{ from: number; to: number }> = [];
    for (const edge of [start, end]) {
      if (edge % block === 0) continue;
      const from = edge - (edge % block);
      if (this.split4K.has(from) || blocks.some((b) => b.from === from)) continue;
      if (this.ioptes.intersects(from, from + block)) blocks.push({ from, to: from + block });
    }
    return blocks;
  }

  /**
   * HostOptions.hugeIopteCut 'refuse': the lowest file page index of a huge IOPTE that revoking [start, end)
   * would cut, or undefined. The IOMMU driver would unmap nothing there, so the registry refuses the conversion
   * before its point of no return.
   */
  cutRefusal(start: number, end: number): number | undefined {
    if (this.kernel.hugeIopteCut !== 'refuse') return undefined;
    const blocks = this.cutBlocks(start, end);
    return blocks.length === 0 ? undefined : this.first + Math.max(blocks[0]!.from, Math.max(0, start - this.first));
  }

  /**
   * A revoke over [inv.start, inv.end) that cuts a huge IOPTE, as the host's IOMMU driver does it
   * (HostOptions.hugeIopteCut): 'split' first splits it to 4K (counted, as for a 'split' answer); 'unmap-whole'
   * removes the whole IOPTE, the pages outside the range too (counted; those pages keep no IOPTE until the area
   * is filled again, and iommufd does not know: a device touching them takes an IOMMU fault). 'refuse' never
   * gets here: the conversion was refused (cutRefusal).
   */
  private cut(inv: Invalidation): void {
    // 4K IOPTEs (or none): nothing a partial unmap could cut, and no 4K layout to remember.
    if (this.iopteSize <= PAGE_SIZE) return;
    if (this.kernel.hugeIopteCut === 'split') {
      this.split(inv);
      return;
    }
    const blocks = this.cutBlocks(inv.start, inv.end);
    if (blocks.length === 0) return;
    for (const { from, to } of blocks) this.ioptes.remove(from, to);
    this.mapped = this.ioptes.runCount > 0;
    this.kernel.recordPipeline([{ step: IOPTE_UNMAP_WHOLE_STEP, count: blocks.length }]);
    if (this.kernel.events.active)
      for (const { from, to } of blocks)
        this.kernel.events.emit({
          type: 'zap',
          target: 'iopte',
          cause: inv.cause,
          owner: this.label,
          start: from,
          end: to,
        });
  }

  /** guest_memfd invalidates pages this area maps. */
  invalidateBegin(inv: Invalidation): void {
    const first = this.first;
    if (inv.cause === 'truncate' || inv.cause === 'release') {
      // "it can just revoke the whole area" (RFC-J1): the user made a mistake, the kernel stays safe.
      this.revoke(0, this.npages, inv.cause);
      return;
    }
    // A conversion that cuts a huge IOPTE: what the IOMMU driver does with a partial unmap (hugeIopteCut).
    this.cut(inv);
    const start = Math.max(0, inv.start - first);
    const end = Math.min(this.npages, inv.end - first);
    if (this.kernel.contract === 'mirror' && (inv.cause === 'to-private' || inv.cause === 'to-shared')) {
      // RFC-J5, RFC-J6: "wipe IOPTEs before a conversion" — but only until it completes, not for good.
      this.unmapForConversion(start, end, inv.cause);
    } else {
      this.revoke(start, end, inv.cause);
    }
  }

  /** Truncation or release revoked the pages object: the whole area goes (iopt_revoke_notify, DMABUF-REVOKE). */
  revokeWhole(cause: InvalidationCause): void {
    this.revoke(0, this.npages, cause);
  }

  /** Unmap area pages [start, end) from every domain and mark them revoked. */
  revoke(start: number, end: number, cause: InvalidationCause): void {
    if (start >= end) return;
    // Revocation only grows (pages stay revoked until the area is unmapped): once it covers the area, there is
    // nothing left to record, and no IOPTE left to remove.
    if (!this.revokedAll) {
      this.revokedMap().set(start, end, true);
      this.revokedAll = this.revoked.covers(0, this.npages);
    }
    const hadIoptes = this.mapped && this.ioptes.remove(start, end);
    if (hadIoptes) this.mapped = this.ioptes.runCount > 0;
    if (start === 0 && end === this.npages) this.dropPin();
    if (this.kernel.events.active) {
      if (hadIoptes) this.kernel.events.emit({ type: 'zap', target: 'iopte', cause, owner: this.label, start, end });
      this.kernel.events.emit({
        type: 'revoke',
        cause,
        ioas: this.ioasId,
        area: this.id,
        iova: this.iova + start * PAGE_SIZE,
        length: (end - start) * PAGE_SIZE,
      });
    }
  }

  /** 'mirror' mode: unmap area pages [start, end) from every domain for a conversion, remembering them. */
  private unmapForConversion(start: number, end: number, cause: InvalidationCause): void {
    if (start >= end) return;
    this.unmappedPrivateMap().set(start, end, true);
    const hadIoptes = this.mapped && this.ioptes.remove(start, end);
    if (hadIoptes) this.mapped = this.ioptes.runCount > 0;
    if (hadIoptes && this.kernel.events.active)
      this.kernel.events.emit({ type: 'zap', target: 'iopte', cause, owner: this.label, start, end });
  }

  /**
   * 'mirror' mode, after a conversion to shared has stored the attributes and ended its invalidation ("restore
   * the right ones after", RFC-J5, RFC-J6): the area's pages in the range map again, IOPTEs to the pages' current
   * pfns, when a domain is attached; pages truncation revoked stay revoked (kernel-contract §9.3).
   */
  restore(inv: Invalidation): void {
    if (this.kernel.contract !== 'mirror' || inv.cause !== 'to-shared') return;
    const first = this.first;
    const start = Math.max(0, inv.start - first);
    const end = Math.min(this.npages, inv.end - first);
    if (start >= end) return;
    // Pages a conversion to private unmapped here have no IOPTE: then a fill writes some, without a look first.
    const unmapped = this.unmappedPrivate.runCount > 0 && this.unmappedPrivate.remove(start, end);
    if (!this.owner.hasDomain || (!unmapped && this.restoresNothing(start, end))) return;
    // The pages mapped before are counted only for a listener (the count is the event's condition, nothing else).
    const listened = this.kernel.events.active;
    const before = listened ? countPages(this.ioptes, start, end) : 0;
    this.fillRange(start, end);
    if (listened && countPages(this.ioptes, start, end) > before) {
      this.kernel.events.emit({ type: 'remap', cause: 'to-shared', owner: this.label, start, end });
    }
  }

  /**
   * Whether filling area pages [start, end) again would change nothing: a guest_memfd source, no sibling whose
   * storage domain a fill would read (storedFrames), and the page cache holding the range as one run of frames
   * that the IOPTEs already map, page for page. A fill then allocates no page (every page is present) and sets
   * each IOPTE it writes, a subset of these, to the frame it holds already (RangeMap.set of what is held changes
   * nothing), so nothing changes and no 'remap' is emitted. What a restore finds where the policy tolerated the
   * conversion to private (the IOPTEs stayed).
   */
  private restoresNothing(start: number, end: number): boolean {
    if (!conversionShortcuts.enabled) return false;
    if (!this.mapped || !this.isGmem || this.source.kind !== 'file' || this.siblingMapped()) return false;
    const firstIndex = this.source.firstIndex;
    const frames = this.source.inode.pages.firstOverlap(firstIndex + start, firstIndex + end);
    return (
      frames !== undefined &&
      frames.start === firstIndex + start &&
      frames.end === firstIndex + end &&
      this.ioptes.holdsRun(start, end, frames.value)
    );
  }

  /**
   * Why filling this area's IOPTEs would fail, without changing anything: GUP of a user range (EFAULT), or a
   * file memfd_pin_folios refuses because it is neither shmem nor hugetlbfs (EINVAL, MEMFDPIN; the model's
   * guest_memfd is pinned the RFC's way, kernel-contract §6). Revoked pages fill nothing, so they cannot fail.
   */
  fillProblem(): FillProblem | undefined {
    if (this.revokedAll) return undefined;
    if (this.source.kind === 'file') {
      if (this.pages.inode) return undefined;
      return {
        errno: 'EINVAL',
        message: `memfd_pin_folios: fd ${(this.source.file as KernelFile & { fd?: number }).fd ?? '?'} is ${kindName(this.source.file.kind)}, neither shmem nor hugetlbfs (EINVAL)`,
      };
    }
    const { mapping, firstPage } = this.source;
    const inode = this.source.inode as PageCacheInode & {
      userFaultCheck?(i: number): { mechanism: string } | undefined;
    };
    // Only the pages no sibling area's domain holds are pinned through the user range (pfn_reader_fill_span).
    const stored = this.storedFrames(0, this.npages);
    for (const gap of this.revoked.gaps(0, this.npages)) {
      for (const need of stored.gaps(gap.start, gap.end)) {
        if (!mapping.mapped || firstPage + need.end > mapping.npages)
          return { errno: 'EFAULT', message: 'the user address range is not mapped (GUP: EFAULT)' };
        for (let page = need.start; page < need.end; page++) {
          const refused = inode.userFaultCheck?.(this.source.firstIndex + page);
          if (refused)
            return {
              errno: 'EFAULT',
              message: `GUP of the page at IOVA 0x${(this.iova + page * PAGE_SIZE).toString(16)} fails: ${refused.mechanism} (EFAULT)`,
            };
        }
      }
    }
    return undefined;
  }

  /** iopt_area_fill_domains: pin/allocate the pages and write the IOPTEs. Call fillProblem() first. */
  fill(): void {
    this.fillRange(0, this.npages, true);
    if (this.revokedAll || this.pin) return;
    const source = this.source;
    // pfn_reader_user_pin (PAGES-FILE): a user range is pinned with pin_user_pages (FOLL_LONGTERM), a memfd with
    // memfd_pin_folios (FOLL_PIN); batch_unpin releases them only when the area leaves its last domain or is
    // unmapped. The refcounts go up (kernel-contract §4.2: "pinned in IOMMU page tables"), and a page punched
    // out of the memfd lives on, held by the pin, until then. A guest_memfd is read the RFC's way:
    // pin_guest_memfd_pages takes no pin and batch_unpin skips it ("no additional reference", §6, §9.2).
    if (source.kind === 'user' || source.inode.kind === 'shmem') {
      // GUP pins the frames it maps, and only those: revoked pages are neither mapped nor pinned.
      const frames = this.ioptes
        .toArray()
        .map((run) => ({ start: run.start + source.firstIndex, end: run.end + source.firstIndex, value: run.value }));
      this.pin = { start: source.firstIndex, end: source.firstIndex + this.npages, holder: this.label, frames };
      source.inode.addPin(this.pin);
    }
  }

  /** Write the IOPTEs of area pages [start, end) that may be mapped (not revoked, not unmapped for privacy). */
  private fillRange(start: number, end: number, whole = false): void {
    this.writeIoptes(start, end, whole);
    this.mapped = this.ioptes.runCount > 0;
  }

  /**
   * The frames sibling areas of the same pages object hold in their domains over area pages [start, end), as
   * area page -> pfn. `pfn_reader_fill_span` (PAGES) reads an index some area's domain already holds
   * (`span->is_used`) from that area's `storage_domain`, not from the mm or the file: a COPY or a cut half
   * takes the frames the original maps, even after the user range was unmapped or a pinned memfd page punched.
   * The earliest sibling wins where several hold an index (any of them holds the same frame).
   */
  private storedFrames(start: number, end: number): RangeMap<number> {
    const stored = new RangeMap<number>(linearCodec);
    this.addStoredFrames(stored, start, end);
    return stored;
  }

  /** Whether a sibling area of the same pages object holds IOPTEs (without one, storedFrames is empty). */
  private siblingMapped(): boolean {
    for (const sibling of this.pages.areas) if (sibling !== this && sibling.mapped) return true;
    return false;
  }

  private addStoredFrames(stored: RangeMap<number>, start: number, end: number): void {
    const siblings = this.pages.areas;
    for (let i = siblings.length - 1; i >= 0; i--) {
      const sibling = siblings[i]!;
      if (sibling === this || !sibling.mapped) continue;
      const shift = sibling.first - this.first; // area page here = sibling page + shift
      for (const run of sibling.ioptes.overlapping(start - shift, end - shift)) {
        const from = Math.max(run.start + shift, start);
        const to = Math.min(run.end + shift, end);
        if (from < to) stored.set(from, to, sibling.ioptes.get(from - shift)!);
      }
    }
  }

  private writeIoptes(start: number, end: number, whole = false): void {
    const source = this.source;
    // No sibling holds IOPTEs (one area per pages object, the usual case): nothing to read from a storage domain.
    const stored = this.siblingMapped() ? this.storedFrames(start, end) : NO_FRAMES;
    const open = (from: number, to: number) => {
      const ranges: Array<{ start: number; end: number }> = [];
      for (const gap of this.revoked.gaps(from, to))
        for (const o of this.unmappedPrivate.runCount > 0 ? this.unmappedPrivate.gaps(gap.start, gap.end) : [gap])
          ranges.push(o);
      return ranges;
    };
    // The storage domain first (pfn_reader_fill_span), for the pages that may be mapped.
    if (stored.runCount > 0) {
      for (const o of open(start, end)) {
        for (const run of stored.overlapping(o.start, o.end)) {
          const from = Math.max(run.start, o.start);
          const to = Math.min(run.end, o.end);
          this.ioptes.set(from, to, stored.get(from)!);
        }
      }
    }
    if (source.kind === 'user') {
      for (const gap of this.revoked.gaps(start, end)) {
        for (const need of stored.gaps(gap.start, gap.end)) {
          for (let page = need.start; page < need.end; page++) {
            if (this.unmappedPrivate.has(page)) continue;
            const pfn = source.mapping.translate(source.firstPage + page, this.writable);
            if (typeof pfn === 'number') this.ioptes.set(page, page + 1, pfn);
          }
        }
      }
      return;
    }
    const gmem = this.isGmem ? (source.inode as GmemInode) : undefined;
    // mapsPrivatePages describes the registry design ('gmem-registry' and 'mirror'). The RFC as posted
    // ('vmm-driven') maps every page in range whatever its attribute: kvm_gmemfd_get_pfn takes the folio with no
    // attribute check (§6).
    const skipPrivate =
      gmem !== undefined &&
      gmem.vmType === 'coco' &&
      registersWithGmem(this.kernel.contract) &&
      !this.kernel.backend.mapsPrivatePages;
    const skipSharedBack = skipPrivate && this.kernel.backend.mapsSharedBackPages === false;
    if (stored.runCount === 0) {
      // The usual case (no storage domain to read): the same walk as below, in the same order, through the
      // module's visitors instead of lists of runs, so that a restore allocates one small object, no lists.
      // A whole-area fill of an area with no IOPTE yet (a MAP_FILE, a domain attached; not a restore, which the
      // same area sees every few conversions) collects its runs, in key order, and builds its map in one pass:
      // the same runs as one set() each, without an update per run.
      const bulk =
        whole && this.ioptes.runCount === 0
          ? { starts: [] as number[], ends: [] as number[], pfns: [] as number[] }
          : undefined;
      const outer = fillWalk;
      fillWalk = { area: this, gmem, firstIndex: source.firstIndex, skipPrivate, skipSharedBack, bulk };
      try {
        this.revoked.forEachGap(start, end, mapUnrevoked);
      } finally {
        fillWalk = outer;
      }
      if (bulk) this.ioptes.loadRuns(bulk.starts, bulk.ends, bulk.pfns, bulk.starts.length);
      return;
    }
    for (const o of open(start, end)) {
      for (const need of stored.runCount > 0 ? stored.gaps(o.start, o.end) : [o]) {
        let runs = skipPrivate
          ? gmem.attributes
              .overlapping(source.firstIndex + need.start, source.firstIndex + need.end)
              .filter((r) => r.value === 'shared')
          : [{ start: source.firstIndex + need.start, end: source.firstIndex + need.end }];
        // A page the guest shared back is only borrowed by the host; a hypervisor IOMMU that maps only host-owned
        // pages leaves it out (ArchBackend.mapsSharedBackPages; Android pKVM's __pkvm_use_dma, [P-d]).
        if (skipSharedBack && gmem.sharedBack.runCount > 0)
          runs = runs.flatMap((run) => gmem.sharedBack.gaps(run.start, run.end));
        for (const run of runs) {
          source.inode.populate(run.start, run.end);
          for (const present of source.inode.pages.overlapping(run.start, run.end)) {
            this.ioptes.set(present.start - source.firstIndex, present.end - source.firstIndex, present.value);
          }
        }
      }
    }
  }

  /** Detach of the last domain: IOPTEs go, pins are dropped. */
  unfill(): void {
    this.ioptes.clear();
    this.mapped = false;
    this.dropPin();
  }

  private dropPin(): void {
    if (this.pin) this.source.inode.removePin(this.pin);
    this.pin = undefined;
  }

  /**
   * IOMMU_IOAS_UNMAP of the area: unmap, unpin, leave the pages object (the last area out unregisters it and
   * drops the file reference, iopt_release_pages).
   */
  destroy(): void {
    this.unfill();
    this.untrack();
    this.pages.detach(this);
  }

  /** Leave the guest_memfd's index of DMA areas. */
  untrack(): void {
    if (this.dmaEntry) (this.source.inode as GmemInode).dmaAreas.remove(this.dmaEntry);
    this.dmaEntry = undefined;
  }

  /** Whether area page `page`'s IOPTE still points at the page its source holds there now. */
  isLive(page: number, pfn: number): boolean {
    if (this.source.kind === 'user' && !this.source.mapping.shared) return true; // an anonymous COW page pinned by GUP
    return !this.source.inode.evicted && this.source.inode.lookup(this.source.firstIndex + page) === pfn;
  }
}

function countPages(map: RangeMap<number>, start: number, end: number): number {
  let pages = 0;
  for (const run of map.overlapping(start, end)) pages += Math.min(run.end, end) - Math.max(run.start, start);
  return pages;
}

/**
 * The state of the fill walk in progress (IoasArea.writeIoptes without a storage domain), read by the visitors
 * below, which are made once for the module instead of as closures per fill. A fill starts no other fill (it
 * populates the page cache and writes this area's IOPTEs only), and the field is restored after it anyway.
 */
let fillWalk:
  | {
      area: IoasArea;
      gmem: GmemInode | undefined;
      firstIndex: number;
      skipPrivate: boolean;
      skipSharedBack: boolean;
      /** The runs to write, when the area had none: written at the end in one pass (RangeMap.loadRuns). */
      bulk: { starts: number[]; ends: number[]; pfns: number[] } | undefined;
    }
  | undefined;

/** Area pages [from, to) that no revoke covers: the pages no conversion to private unmapped. */
function mapUnrevoked(from: number, to: number): void {
  const unmapped = fillWalk!.area.unmappedPrivate;
  if (unmapped.runCount > 0) unmapped.forEachGap(from, to, mapOpen);
  else mapOpen(from, to);
}

/** Area pages [from, to) that may be mapped: their shared runs (or all of them), as file pages. */
function mapOpen(from: number, to: number): void {
  const walk = fillWalk!;
  if (walk.skipPrivate) walk.gmem!.attributes.forEachOverlap(walk.firstIndex + from, walk.firstIndex + to, mapShared);
  else mapRun(walk.firstIndex + from, walk.firstIndex + to);
}

/** A run of the attributes: a shared one is mapped, without the pages shared back where the backend says so. */
function mapShared(from: number, to: number, value: string): void {
  if (value !== 'shared') return;
  const walk = fillWalk!;
  if (walk.skipSharedBack && walk.gmem!.sharedBack.runCount > 0) walk.gmem!.sharedBack.forEachGap(from, to, mapRun);
  else mapRun(from, to);
}

/** File pages [from, to): allocated where absent, then each present run written as IOPTEs. */
function mapRun(from: number, to: number): void {
  const inode = fillWalk!.area.source.inode;
  if (!inode.pages.covers(from, to)) inode.populate(from, to);
  inode.pages.forEachOverlap(from, to, mapPresent);
}

function mapPresent(from: number, to: number, pfn: number): void {
  const walk = fillWalk!;
  if (walk.bulk) {
    walk.bulk.starts.push(from - walk.firstIndex);
    walk.bulk.ends.push(to - walk.firstIndex);
    walk.bulk.pfns.push(pfn);
  } else walk.area.ioptes.set(from - walk.firstIndex, to - walk.firstIndex, pfn);
}
