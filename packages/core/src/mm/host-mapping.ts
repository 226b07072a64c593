/**
 * A host userspace mapping (an mmap VMA) of a guest_memfd or memfd. Its PTEs are kept as runs (mapping page ->
 * pfn), filled by the file's fault handler on first touch and zapped by unmap_mapping_range on truncation,
 * conversion to private and memory failure. For a guest_memfd the mapping is a registry consumer ('host-mmap').
 */
import type { AccessResult, AccessVerdict } from '../access.js';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  MADV_COLD,
  MADV_COLLAPSE,
  MADV_DODUMP,
  MADV_DOFORK,
  MADV_DONTDUMP,
  MADV_DONTFORK,
  MADV_DONTNEED,
  MADV_DONTNEED_LOCKED,
  MADV_FREE,
  MADV_GUARD_INSTALL,
  MADV_GUARD_REMOVE,
  MADV_HUGEPAGE,
  MADV_KEEPONFORK,
  MADV_MERGEABLE,
  MADV_NOHUGEPAGE,
  MADV_NORMAL,
  MADV_PAGEOUT,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_RANDOM,
  MADV_REMOVE,
  MADV_SEQUENTIAL,
  MADV_UNMERGEABLE,
  MADV_WILLNEED,
  MADV_WIPEONFORK,
  PAGE_SIZE,
  PMD_SIZE,
} from '../constants.js';
import { fail } from '../errors.js';
import type { KernelFile } from '../files.js';
import type { Kernel } from '../kernel.js';
import type { AddressSpace } from './address-space.js';
import type { Invalidation, MappingConsumer, Registration } from '../registry/registry.js';
import {
  fieldsOf,
  parseAccessBytes,
  parseAccessLength,
  parseInt32,
  parseLoff,
  parseSafe,
  parseStruct,
} from '../util/args.js';
import { linearCodec, RangeMap } from '../util/range-map.js';
import type { PageCacheInode } from './inode.js';
import { walkPages } from './page-walk.js';

/** madvise(MADV_HWPOISON): inject a memory failure (needs CAP_SYS_ADMIN; the model's host is root). */
export const MADV_HWPOISON = 100;

/**
 * The advice madvise_behavior_valid() (mm/madvise.c) accepts, less MADV_SOFT_OFFLINE (101): soft_offline_page
 * migrates a page to a new frame and retires the old one, which the model (no page migration) cannot do
 * faithfully, so it stays EINVAL. That is also what Linux 6.18.44 here says for it (and for MADV_HWPOISON): its
 * config has no CONFIG_MEMORY_FAILURE (observed via @gmemlab/linux). Every other value is EINVAL.
 */
const KNOWN_ADVICE = new Set([
  MADV_NORMAL,
  MADV_RANDOM,
  MADV_SEQUENTIAL,
  MADV_WILLNEED,
  MADV_DONTNEED,
  MADV_FREE,
  MADV_REMOVE,
  MADV_DONTFORK,
  MADV_DOFORK,
  MADV_MERGEABLE,
  MADV_UNMERGEABLE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_DONTDUMP,
  MADV_DODUMP,
  MADV_WIPEONFORK,
  MADV_KEEPONFORK,
  MADV_COLD,
  MADV_PAGEOUT,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_DONTNEED_LOCKED,
  MADV_COLLAPSE,
  MADV_HWPOISON,
  MADV_GUARD_INSTALL,
  MADV_GUARD_REMOVE,
]);

const PMD_PAGES = PMD_SIZE / PAGE_SIZE;

/** What a mapping needs from the file it maps. */
export interface MappedFile extends KernelFile {
  readonly inode: PageCacheInode & {
    /** Why a user fault on `index` would fail, without allocating; undefined if it would succeed. */
    userFaultCheck(index: number): Extract<AccessVerdict, { allow: false }> | undefined;
  };
  /** fallocate(PUNCH_HOLE | KEEP_SIZE) on behalf of MADV_REMOVE, through the mapping's own file reference (no EBADF). */
  punchHoleForMapping(offset: number, length: number): void;
  /** Whether madvise(MADV_COLLAPSE) is refused on this file (guest_memfd: EINVAL, case A11). */
  readonly refusesCollapse: boolean;
  /** Memory failure on one page, for MADV_HWPOISON; undefined if the file cannot be poisoned. */
  memoryFailure?(index: number): void;
}

/** mmap(2) of a guest_memfd or memfd: the length (rounded up to pages), MAP_SHARED or not, the file offset. */
export interface MmapArgs {
  length: number | bigint;
  shared: boolean;
  offset?: number | bigint;
}
export const MMAP_FIELDS = fieldsOf<MmapArgs>({ length: true, shared: true, offset: true });

/** An mmap(2) request past the checks every file's mmap shares; `length` rounded up to whole pages. */
export interface MmapRequest {
  length: number;
  offset: number;
  shared: boolean;
}

/**
 * The checks mmap(2) makes before the file's own `f_op->mmap`, in the kernel's order, for every file the model
 * maps (guest_memfd, memfd): the arguments, the offset's alignment (x86 sys_mmap, before the fd is looked up),
 * the fd (`checkOpen`), a zero length, and do_mmap's file_mmap_ok (a negative off_t is, as an unsigned pgoff,
 * beyond MAX_LFS_FILESIZE).
 */
export function parseMmap(op: string, args: MmapArgs, checkOpen: () => void): MmapRequest {
  const a = parseStruct(op, args, MMAP_FIELDS);
  const length = parseSafe(op, 'length', a.length);
  const offset = a.offset === undefined ? 0 : parseLoff(op, 'offset', a.offset);
  if (typeof a.shared !== 'boolean')
    fail('EINVAL', op, 'shared must be true (MAP_SHARED) or false (MAP_PRIVATE)', { argument: 'shared' });
  if (offset % PAGE_SIZE !== 0) fail('EINVAL', op, `offset ${offset} is not page aligned`, { argument: 'offset' });
  checkOpen();
  if (length === 0) fail('EINVAL', op, 'length is 0', { argument: 'length' });
  if (offset < 0) fail('EOVERFLOW', op, `offset ${offset} is negative`, { argument: 'offset' });
  return { length: Math.ceil(length / PAGE_SIZE) * PAGE_SIZE, offset, shared: a.shared };
}

/** A free range of the address space for `length` bytes (get_unmapped_area), or ENOMEM. */
export function reserveAddress(kernel: Kernel, op: string, length: number): number {
  const address = kernel.addressSpace.reserve(length);
  if (address === undefined) fail('ENOMEM', op, 'no room left in the address space');
  return address;
}

/** A host mapping as a registry consumer: an invalidation zaps its PTEs of the range. */
class MmapConsumer implements MappingConsumer {
  readonly kind = 'host-mmap';

  constructor(
    private readonly mapping: HostMapping,
    readonly label: string,
    readonly first: number,
    readonly end: number,
  ) {}

  invalidateBegin(inv: Invalidation): void {
    this.mapping.zapFileRange(inv.start, inv.end, inv.cause);
  }
}

export class HostMapping {
  /** Mapping page -> pfn. */
  private readonly ptes = new RangeMap<number>(linearCodec);
  /** Anonymous copy-on-write pages of a MAP_PRIVATE mapping. */
  private readonly cow = new RangeMap<number>(linearCodec);
  /**
   * Mapping pages holding a guard marker (MADV_GUARD_INSTALL): any access is SIGSEGV. Markers survive
   * MADV_DONTNEED and truncation (zap_nonpresent_ptes drops them only with ZAP_FLAG_DROP_MARKER); munmap and
   * MADV_GUARD_REMOVE clear them.
   */
  private readonly guards = new RangeMap<true>();
  private alive = true;
  private registration: Registration | undefined;
  readonly npages: number;

  /** @internal Made by the model (the call named in the class comment), never by a user: it takes the Kernel. */
  constructor(
    private readonly kernel: Kernel,
    /** @internal */
    readonly file: MappedFile,
    readonly address: number,
    readonly length: number,
    /** Byte offset in the file of the mapping's first page. */
    readonly fileOffset: number,
    readonly shared: boolean,
    registry: { register(consumer: MappingConsumer): Registration } | undefined,
  ) {
    this.npages = length / PAGE_SIZE;
    file.get();
    kernel.addressSpace.insert(this);
    const first = fileOffset / PAGE_SIZE;
    this.registration = registry?.register(
      new MmapConsumer(this, `mmap:0x${address.toString(16)}`, first, first + this.npages),
    );
  }

  get mapped(): boolean {
    return this.alive;
  }

  /** @internal The address space the mapping was made in (so the host it belongs to), mapped or not. */
  get space(): AddressSpace {
    return this.kernel.addressSpace;
  }

  private get label(): string {
    return `mmap:0x${this.address.toString(16)}`;
  }

  /** @internal Zap the PTEs of file pages [start, end). */
  zapFileRange(start: number, end: number, cause: Invalidation['cause']): void {
    const first = this.fileOffset / PAGE_SIZE;
    this.zap(Math.max(0, start - first), Math.min(this.npages, end - first), cause);
  }

  private zap(start: number, end: number, cause: 'munmap' | 'madvise' | Invalidation['cause']): void {
    if (start >= end || !this.ptes.intersects(start, end)) return;
    this.ptes.delete(start, end);
    if (this.kernel.events.active)
      this.kernel.events.emit({ type: 'zap', target: 'host-pte', cause, owner: this.label, start, end });
  }

  /**
   * Mapping pages of [start, end) that hold memory now: the file has a page at that offset, or a MAP_PRIVATE
   * copy-on-write page exists. What the shared side of a memslot costs (page-map.ts `sharedBacking`).
   */
  populatedRuns(start: number, end: number): Array<{ start: number; end: number }> {
    const held = new RangeMap<true>();
    if (!this.alive) return [];
    const first = this.fileOffset / PAGE_SIZE;
    for (const run of this.file.inode.pages.overlapping(first + start, first + end))
      held.set(Math.max(start, run.start - first), Math.min(end, run.end - first), true);
    for (const run of this.cow.overlapping(start, end))
      held.set(Math.max(start, run.start), Math.min(end, run.end), true);
    return held.toArray().map((r) => ({ start: r.start, end: r.end }));
  }

  /** Host PTE runs (mapping page -> pfn), for invariant checks. */
  pteRuns() {
    return this.ptes.toArray();
  }

  /**
   * @internal The pfn for mapping page `page`, faulting it in as a CPU access or get_user_pages would; or the fault.
   * Returns a SIGSEGV verdict once the mapping is gone.
   */
  translate(page: number, write: boolean): number | Extract<AccessVerdict, { allow: false }> {
    if (!this.alive || page >= this.npages)
      return { allow: false, fault: 'sigsegv', fatal: false, logged: false, mechanism: 'no VMA at this address' };
    if (this.guards.has(page))
      return {
        allow: false,
        fault: 'sigsegv',
        fatal: false,
        logged: false,
        mechanism: 'guard region marker (MADV_GUARD_INSTALL)',
      };
    const anon = this.cow.get(page);
    if (anon !== undefined) return anon;
    let pfn = this.ptes.get(page);
    if (pfn === undefined) {
      const index = this.fileOffset / PAGE_SIZE + page;
      const refused = this.file.inode.userFaultCheck(index);
      if (refused) return refused;
      pfn = this.file.inode.getOrAllocate(index);
      this.ptes.set(page, page + 1, pfn);
    }
    if (write && !this.shared) {
      const copy = this.kernel.phys.allocate(1, { kind: 'anonymous', label: this.label })[0]!.pfn;
      this.kernel.phys.copy(pfn, copy);
      this.cow.set(page, page + 1, copy);
      return copy;
    }
    return pfn;
  }

  private access(offset: number, length: number, data: Uint8Array | undefined): AccessResult {
    // The host's own page tables ask no backend: one pass, each page faulted in as the access reaches it.
    return walkPages(
      this.kernel,
      { by: 'host', via: this.label },
      offset,
      length,
      data,
      undefined,
      (_, page, write) => {
        if (page >= this.npages)
          return { allow: false, fault: 'sigsegv', fatal: false, logged: false, mechanism: 'no VMA at this address' };
        const pfn = this.translate(page, write);
        return typeof pfn === 'number' ? { pfn } : pfn;
      },
    );
  }

  /** Read `length` bytes (at most MAX_RW_COUNT) at mapping offset `offset`. */
  read(offset: number | bigint, length: number | bigint): AccessResult {
    const op = 'host read';
    this.kernel.checkAlive(op);
    return this.access(parseSafe(op, 'offset', offset), parseAccessLength(op, 'length', length), undefined);
  }

  /** Write `data` at mapping offset `offset` (a memset/memcpy: page by page, stopping at the first fault). */
  write(offset: number | bigint, data: Uint8Array): AccessResult {
    const op = 'host write';
    this.kernel.checkAlive(op);
    const at = parseSafe(op, 'offset', offset);
    return this.access(at, parseAccessBytes(op, 'data', data).length, data);
  }

  /** munmap(2) of the whole mapping. Unmapping twice is not an error, as in Linux. */
  munmap(): void {
    this.kernel.checkAlive('munmap');
    if (!this.alive) return;
    this.zap(0, this.npages, 'munmap');
    // A COW copy a GUP pin holds (an IOMMU area over this range) outlives the mapping (releaseCopies).
    const first = this.fileOffset / PAGE_SIZE;
    for (const run of this.cow)
      this.file.inode.releaseCopies({ start: first + run.start, end: first + run.end, value: run.value });
    this.cow.clear();
    this.guards.clear();
    this.alive = false;
    this.kernel.addressSpace.remove(this);
    this.registration?.unregister();
    this.registration = undefined;
    if (this.kernel.events.active)
      this.kernel.events.emit({ type: 'call', op: 'munmap', detail: `${this.label} (${this.length} bytes)` });
    this.file.put();
  }

  /**
   * madvise(2) on [offset, offset + length) of the mapping. A call that throws changes nothing, with the two
   * exceptions the kernel has: a range running past the mapping's end gets the advice on its mapped part before
   * the ENOMEM, and MADV_POPULATE_* keeps the pages it faulted in before the page that failed.
   */
  madvise(offset: number | bigint, length: number | bigint, advice: number | bigint): void {
    this.kernel.checkAlive('madvise');
    const op = 'madvise';
    const start = parseSafe(op, 'offset', offset);
    const len = parseSafe(op, 'length', length);
    const adv = parseInt32(op, 'advice', advice);
    if (start % PAGE_SIZE !== 0) fail('EINVAL', op, `start ${start} is not page aligned`, { argument: 'offset' });
    if (!KNOWN_ADVICE.has(adv)) fail('EINVAL', op, `advice ${adv} is not a known MADV_* value`, { argument: 'advice' });
    if (len === 0) return;
    const end = start + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
    // madvise_walk_vmas: the advice applies to the mapped part, and an error from it wins; a hole in the range
    // makes the call ENOMEM afterwards.
    if (!this.alive || start >= this.length)
      fail('ENOMEM', op, `[${start}, ${end}) is not mapped`, { argument: 'length' });
    const first = start / PAGE_SIZE;
    const last = Math.min(end, this.length) / PAGE_SIZE;
    this.advise(op, adv, start, first, last);
    if (end > this.length) fail('ENOMEM', op, `[${start}, ${end}) is not entirely mapped`, { argument: 'length' });
  }

  private advise(op: string, adv: number, start: number, first: number, last: number): void {
    const end = last * PAGE_SIZE;
    switch (adv) {
      case MADV_COLLAPSE:
        this.collapse(op, first, last);
        return;
      case MADV_DONTNEED:
      case MADV_DONTNEED_LOCKED:
        // madvise_dontneed_free: DONTNEED_LOCKED differs only in also accepting VM_LOCKED VMAs (the model has no mlock).
        this.dropPages(first, last);
        return;
      case MADV_FREE:
        // madvise_free_single_vma: "if (!vma_is_anonymous(vma)) return -EINVAL"; every mapping here maps a file.
        fail('EINVAL', op, 'MADV_FREE needs an anonymous mapping; this one maps a file', { argument: 'advice' });
        return;
      case MADV_WIPEONFORK:
        // madvise_vma_behavior: "if (vma->vm_file || vma->vm_flags & VM_SHARED) return -EINVAL".
        fail('EINVAL', op, 'MADV_WIPEONFORK needs a private anonymous mapping; this one maps a file', {
          argument: 'advice',
        });
        return;
      case MADV_POPULATE_READ:
      case MADV_POPULATE_WRITE:
        this.populate(op, first, last, adv === MADV_POPULATE_WRITE);
        return;
      case MADV_GUARD_INSTALL:
        // madvise_guard_install: is_valid_guard_vma accepts file mappings since 6.15 (neither guest_memfd nor shmem
        // VMAs are VM_SPECIAL); it zaps what is mapped, a MAP_PRIVATE mapping's copies included, then installs
        // the markers. Observed on Linux 6.18.44 via @gmemlab/linux, beyond EOF too.
        this.dropPages(first, last);
        this.guards.set(first, last, true);
        return;
      case MADV_GUARD_REMOVE:
        // madvise_guard_remove: clears the markers only; the pages behind them fault in again on access.
        this.guards.delete(first, last);
        return;
      case MADV_REMOVE:
        // madvise_remove: only shared mappings; punches a hole in the file (for guest_memfd, a truncation).
        if (!this.shared) fail('EACCES', op, 'MADV_REMOVE needs a shared mapping', { argument: 'advice' });
        this.file.punchHoleForMapping(this.fileOffset + start, end - start);
        return;
      case MADV_HWPOISON: {
        if (!this.file.memoryFailure)
          fail('EINVAL', op, 'this file cannot be poisoned in the model', { argument: 'advice' });
        // madvise_inject_error takes a reference with get_user_pages first: a page that cannot fault in fails.
        for (let page = first; page < last; page++) {
          const refused = this.guards.has(page)
            ? { mechanism: 'guard region marker' }
            : this.cow.has(page)
              ? undefined
              : this.file.inode.userFaultCheck(this.fileOffset / PAGE_SIZE + page);
          if (refused)
            fail('EFAULT', op, `page at offset ${page * PAGE_SIZE} cannot be faulted in (${refused.mechanism})`, {
              argument: 'offset',
            });
        }
        for (let page = first; page < last; page++) this.file.memoryFailure(this.fileOffset / PAGE_SIZE + page);
        return;
      }
      default:
        // NORMAL, RANDOM, SEQUENTIAL, WILLNEED, HUGEPAGE, NOHUGEPAGE (readahead and THP hints), DONTFORK, DOFORK,
        // KEEPONFORK, DONTDUMP, DODUMP (VMA flags read only by fork and core dumps, which the model has neither of;
        // DOFORK's VM_IO and DODUMP's VM_SPECIAL refusals never apply to guest_memfd or shmem VMAs), MERGEABLE,
        // UNMERGEABLE (ksm_madvise: a no-op on shared VMAs, content-preserving merges on private ones), COLD and
        // PAGEOUT (madvise_cold/madvise_pageout: LRU aging and reclaim that keep the data). Accepted with no
        // observable effect on guest_memfd and memfd mappings, shared and private: observed on Linux 6.18.44 via
        // @gmemlab/linux.
        return;
    }
  }

  /** Zap [first, last) and free the MAP_PRIVATE copies there (zap_page_range_single). */
  private dropPages(first: number, last: number): void {
    this.zap(first, last, 'madvise');
    const index = this.fileOffset / PAGE_SIZE;
    for (const run of this.cow.delete(first, last))
      this.file.inode.releaseCopies({ start: index + run.start, end: index + run.end, value: run.value });
  }

  /**
   * MADV_POPULATE_READ/WRITE (madvise_populate -> faultin_page_range): fault every page in as a user read or
   * write would, in address order, a write breaking copy-on-write in a MAP_PRIVATE mapping. A page whose fault
   * is SIGBUS or SIGSEGV (beyond EOF, no INIT_SHARED, a guard marker) ends the call with EFAULT; the pages before
   * it stay populated. Observed on Linux 6.18.44 via @gmemlab/linux.
   */
  private populate(op: string, first: number, last: number, write: boolean): void {
    for (let page = first; page < last; page++) {
      const pfn = this.translate(page, write);
      if (typeof pfn !== 'number')
        fail('EFAULT', op, `page at offset ${page * PAGE_SIZE} cannot be faulted in (${pfn.mechanism})`, {
          argument: 'offset',
        });
    }
  }

  /**
   * MADV_COLLAPSE (madvise_collapse). guest_memfd refuses it (kernel-contract §3.3, case A11: "collapsing folios
   * must not be supported"). For shmem, thp_vma_allowable_order() needs a shared VMA that can hold a PMD
   * aligned both in address and in file offset (thp_vma_suitable_order); a MAP_PRIVATE memfd mapping is EINVAL
   * however it lies, and so is a PMD of the range with no page in the page cache (its collapse scan fails), while
   * one with some pages collapses (filling the holes) and a range holding no whole PMD succeeds doing nothing:
   * observed on Linux 6.18.44. The model has no huge folios, so a successful collapse changes nothing it shows.
   * Not modelled: transient scan failures (EAGAIN for busy pages).
   */
  private collapse(op: string, first: number, last: number): void {
    if (this.file.refusesCollapse)
      fail('EINVAL', op, 'MADV_COLLAPSE is not supported on guest_memfd mappings', { argument: 'advice' });
    const vmaPage = this.address / PAGE_SIZE;
    const filePage = this.fileOffset / PAGE_SIZE;
    const lastPmd = Math.floor((vmaPage + this.npages - PMD_PAGES) / PMD_PAGES) * PMD_PAGES;
    const suitable = (vmaPage - filePage) % PMD_PAGES === 0 && lastPmd >= vmaPage;
    if (!this.shared || !suitable)
      fail('EINVAL', op, 'this VMA cannot hold a PMD-mapped THP (thp_vma_allowable_order)', { argument: 'advice' });
    for (
      let pmd = Math.ceil((vmaPage + first) / PMD_PAGES) * PMD_PAGES;
      pmd + PMD_PAGES <= vmaPage + last;
      pmd += PMD_PAGES
    ) {
      const index = filePage + pmd - vmaPage;
      if (!this.file.inode.pages.intersects(index, index + PMD_PAGES))
        fail('EINVAL', op, `no page of the PMD at file page ${index} is in the page cache`, { argument: 'offset' });
    }
  }
}
