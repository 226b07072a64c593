/**
 * The guest_memfd inode: "physical storage", whose lifetime is the inode's, not a file's (kernel-contract §2).
 * It holds the page cache, the shared/private attribute of every page (the per-gmem attributes of the in-place
 * conversion series, §2 and §4), hardware-poisoned pages, and the mapping registry. Truncation (§3.5),
 * conversion (§4.2), memory failure (§3.11) and eviction are implemented here because they act on every
 * consumer of the inode.
 */
import type { AccessVerdict } from '../access.js';
import type { PageAttribute } from '../arch/backend.js';
import { PAGE_SIZE, PUD_SIZE } from '../constants.js';
import { fail } from '../errors.js';
import type { InvalidationCause } from '../events.js';
import type { Kernel } from '../kernel.js';
import { PageCacheInode } from '../mm/inode.js';
import { MappingRegistry, type Invalidation, type MappingConsumer } from '../registry/registry.js';
import { RangeMap } from '../util/range-map.js';

export class GmemInode extends PageCacheInode {
  readonly kind = 'guest_memfd' as const;
  /** Maple-tree equivalent: every index in [0, npages) has an attribute, equal neighbours merged (§2). */
  readonly attributes = new RangeMap<PageAttribute>();
  /** Folios marked hwpoison by memory failure (§3.11). */
  readonly hwpoison = new RangeMap<true>();
  readonly registry = new MappingRegistry();

  constructor(
    readonly kernel: Kernel,
    ino: number,
    size: number,
    readonly flags: number,
    readonly vmType: 'default' | 'coco',
    /** vCPUs of the VM that created the inode, for the IPI counts of removal pipelines. */
    readonly vcpus = 1,
  ) {
    super(kernel.phys, ino, size);
    // §2: initial value INIT_SHARED ? shared : PRIVATE.
    this.attributes.set(0, this.npages, flags & 2 ? 'shared' : 'private');
  }

  attributeOf(index: number): PageAttribute {
    return this.attributes.get(index) ?? 'private';
  }

  /** Whether the VM sees this page as private (kvm_mem_is_private): only VMs with private memory do. */
  isPrivateToGuest(index: number): boolean {
    return this.vmType === 'coco' && this.attributeOf(index) === 'private';
  }

  /**
   * The host user-mapping fault handler (kvm_gmem_fault_user_mapping, §3.3): beyond EOF or a private page is
   * SIGBUS; otherwise the caller allocates the page (zeroed before first use).
   */
  userFaultCheck(index: number): Extract<AccessVerdict, { allow: false }> | undefined {
    if (index * PAGE_SIZE >= this.size) return sigbus('kvm_gmem_fault_user_mapping: offset at or beyond i_size');
    if (this.attributeOf(index) === 'private') return sigbus('kvm_gmem_fault_user_mapping: page is private');
    if (this.hwpoison.has(index)) return sigbus('memory failure: page is hwpoisoned (BUS_MCEERR_AR)');
    return undefined;
  }

  private emitInvalidation(type: 'invalidate-begin' | 'invalidate-end', inv: Invalidation): void {
    if (!this.kernel.events.active) return;
    this.kernel.events.emit({
      type,
      cause: inv.cause,
      ino: this.ino,
      offset: inv.start * PAGE_SIZE,
      length: (inv.end - inv.start) * PAGE_SIZE,
      id: inv.id,
    });
  }

  private begin(cause: InvalidationCause, start: number, end: number, consumers: MappingConsumer[]): Invalidation {
    const inv: Invalidation = { id: this.kernel.nextInvalidationId(), cause, start, end };
    this.emitInvalidation('invalidate-begin', inv);
    for (const consumer of consumers) consumer.invalidateBegin(inv);
    return inv;
  }

  private end(inv: Invalidation, consumers: MappingConsumer[]): void {
    for (const consumer of consumers) consumer.invalidateEnd?.(inv);
    this.emitInvalidation('invalidate-end', inv);
  }

  /** unmap_mapping_range: zap host user PTEs of every mapping of [start, end) in every process. */
  private unmapMappingRange(start: number, end: number, cause: InvalidationCause): void {
    const inv: Invalidation = { id: 0, cause, start, end };
    for (const consumer of this.registry.overlapping(start, end, 'host-mmap')) consumer.invalidateBegin(inv);
  }

  /** Everything but host mmaps, which are zapped by unmap_mapping_range at their own point in each path. */
  private invalidationTargets(start: number, end: number): MappingConsumer[] {
    return this.registry.overlapping(start, end).filter((c) => c.kind !== 'host-mmap');
  }

  private countPrivate(start: number, end: number): { pages: number; ranges: Array<{ offset: number; length: number }> } {
    let pages = 0;
    const ranges: Array<{ offset: number; length: number }> = [];
    for (const run of this.attributes.overlapping(start, end)) {
      if (run.value !== 'private') continue;
      for (const present of this.pages.overlapping(run.start, run.end)) {
        pages += present.end - present.start;
        ranges.push({ offset: present.start * PAGE_SIZE, length: (present.end - present.start) * PAGE_SIZE });
      }
    }
    return { pages, ranges };
  }

  /** Count the pages (present in the page cache) of `runs` that are private. */
  private countPrivateIn(runs: ReadonlyArray<{ start: number; end: number }>): { pages: number; ranges: Array<{ offset: number; length: number }> } {
    let pages = 0;
    const ranges: Array<{ offset: number; length: number }> = [];
    for (const span of runs) {
      const counted = this.countPrivate(span.start, span.end);
      pages += counted.pages;
      ranges.push(...counted.ranges);
    }
    return { pages, ranges };
  }

  /**
   * Ask the backend for the named steps of a removal (or, for 'to-private', an addition) and count them. Call it
   * before the attributes change: `privateBefore` describes the private pages around the change (within the
   * 1 GiB-aligned region, enough to tell whether a 2M or 1G tracking entry is split).
   */
  private runPipeline(cause: 'truncate' | 'release' | 'to-shared' | 'to-private', counted: { pages: number; ranges: Array<{ offset: number; length: number }> }, start: number, end: number): void {
    if (this.vmType !== 'coco' || counted.pages === 0 || !this.kernel.backend.removalPipeline) return;
    const giant = PUD_SIZE / PAGE_SIZE;
    const steps = this.kernel.backend.removalPipeline({
      cause,
      pages: counted.pages,
      ranges: counted.ranges,
      vcpus: this.vcpus,
      iommuDomains: this.kernel.dmaMappingsOf(this, start, end).length > 0 ? 1 : 0,
      privateBefore: this.countPrivate(Math.floor(start / giant) * giant, Math.min(this.npages, Math.ceil(end / giant) * giant)).ranges,
    });
    this.kernel.recordPipeline(steps);
  }

  /**
   * PUNCH_HOLE (§3.5): under the invalidate lock, invalidate_begin (KVM zaps stage-2; the registry revokes every
   * overlapping iommufd area — the natural hook between begin and truncate_inode_pages_range), then truncation
   * zaps host PTEs and frees the pages, then invalidate_end. Truncation never fails because of mappings, and it
   * does not change attributes (CONV8 36/46).
   */
  punchHole(start: number, end: number): void {
    const targets = this.invalidationTargets(start, end);
    const inv = this.begin('truncate', start, end, targets);
    const last = Math.min(end, this.npages);
    if (start < last) {
      this.unmapMappingRange(start, last, 'truncate');
      this.runPipeline('truncate', this.countPrivate(start, last), start, last);
      this.removePages(start, last);
      this.hwpoison.delete(start, last);
    }
    this.end(inv, targets);
  }

  /**
   * KVM_SET_MEMORY_ATTRIBUTES2 after validation (§4.2 steps 9-14). Throws EAGAIN with errorOffset, changing
   * nothing, when a page is pinned, a registered consumer refuses, or the hypervisor refuses.
   */
  convert(op: string, start: number, end: number, to: PageAttribute): void {
    // Step 9: a range already in the target state is a no-op with no invalidation at all.
    const runs = this.attributes.overlapping(start, end);
    if (runs.every((run) => run.value === to)) return;

    // Step 11: to private, host user PTEs go first, in every process (case C8); a zapped PTE refaults
    // transparently, so this is not a change even if the conversion then fails.
    if (to === 'private') this.unmapMappingRange(start, end, 'to-private');

    let blocked: number | undefined;
    let blocker = '';
    const block = (index: number, who: string) => {
      if (blocked === undefined || index < blocked) {
        blocked = index;
        blocker = who;
      }
    };
    // Step 11: the refcount check. Only to-private checks (a private->shared conversion does no refcount check).
    if (to === 'private') {
      const pinned = this.firstPinned(start, end);
      if (pinned !== undefined) block(pinned, 'a page has an elevated refcount (a long-term pin)');
    }
    const request = { to, start, end };
    const revokers: MappingConsumer[] = [];
    for (const consumer of this.invalidationTargets(start, end)) {
      const response = consumer.conversionResponse ? consumer.conversionResponse(request) : 'revoke';
      if (response === 'refuse') block(Math.max(start, consumer.first), `${consumer.label} refuses the conversion`);
      else if (response === 'revoke') revokers.push(consumer);
    }
    const refusal = this.kernel.backend.hypervisorRefusal?.({
      to,
      offset: start * PAGE_SIZE,
      length: (end - start) * PAGE_SIZE,
      contract: this.kernel.contract,
      dmaMapped: this.kernel.dmaMappingsOf(this, start, end).map((m) => ({
        offset: m.start * PAGE_SIZE,
        length: (m.end - m.start) * PAGE_SIZE,
        area: m.area,
      })),
    });
    if (refusal !== undefined) block(Math.floor(refusal / PAGE_SIZE), `the ${this.kernel.backend.name} hypervisor refuses the conversion`);
    if (blocked !== undefined) {
      fail('EAGAIN', op, `${blocker} at offset ${blocked * PAGE_SIZE}; nothing was converted`, {
        errorOffset: blocked * PAGE_SIZE,
        hint: 'drop the pin or DMA mapping of that page (IOMMU_IOAS_UNMAP) and retry',
      });
    }

    // Step 12: the point of no return.
    const inv = this.begin(to === 'private' ? 'to-private' : 'to-shared', start, end, revokers);
    // Step 13: the architecture's hook on the pages that actually change.
    const changing = runs.filter((run) => run.value !== to);
    if (this.kernel.backend.contentsOnConversion({ to }) === 'zero') {
      for (const run of changing) {
        for (const present of this.pages.overlapping(run.start, run.end)) {
          this.phys.forgetContents(present.value, present.end - present.start);
        }
      }
    }
    // Pages entering or leaving the private state: only those whose attribute changes, present in the cache.
    if (to === 'shared') this.runPipeline('to-shared', this.countPrivateIn(changing), start, end);
    else this.runPipeline('to-private', countPresent(this, changing), start, end);
    // Step 14: store, then invalidate_end.
    this.attributes.set(start, end, to);
    this.end(inv, revokers);
  }

  /** Memory failure on one page (§3.11): invalidate without truncation, mark hwpoison. */
  memoryFailure(index: number): void {
    this.unmapMappingRange(index, index + 1, 'memory-failure');
    const targets = this.invalidationTargets(index, index + 1);
    const inv = this.begin('memory-failure', index, index + 1, targets);
    this.getOrAllocate(index);
    this.hwpoison.set(index, index + 1, true);
    this.end(inv, targets);
  }

  /**
   * The last file of the inode was released (§3.8): consumers hear 'release' over the whole file, then the
   * inode is evicted and its pages freed (memory lifetime is the inode's; with one file per inode, as
   * KVM_CREATE_GUEST_MEMFD makes, the two coincide).
   */
  evict(): void {
    const targets = this.invalidationTargets(0, this.npages);
    const inv = this.begin('release', 0, this.npages, targets);
    this.runPipeline('release', this.countPrivate(0, this.npages), 0, this.npages);
    this.removePages(0, this.npages);
    this.hwpoison.clear();
    this.evicted = true;
    this.end(inv, targets);
    this.kernel.gmemInodes.delete(this);
  }
}

/** Pages of `runs` present in the page cache, whatever their attribute. */
function countPresent(inode: PageCacheInode, runs: ReadonlyArray<{ start: number; end: number }>): { pages: number; ranges: Array<{ offset: number; length: number }> } {
  let pages = 0;
  const ranges: Array<{ offset: number; length: number }> = [];
  for (const span of runs) {
    for (const present of inode.pages.overlapping(span.start, span.end)) {
      pages += present.end - present.start;
      ranges.push({ offset: present.start * PAGE_SIZE, length: (present.end - present.start) * PAGE_SIZE });
    }
  }
  return { pages, ranges };
}

function sigbus(mechanism: string): Extract<AccessVerdict, { allow: false }> {
  return { allow: false, fault: 'sigbus', fatal: false, logged: false, mechanism };
}
