/**
 * The guest_memfd inode: "physical storage", whose lifetime is the inode's, not a file's (kernel-contract §2).
 * It holds the page cache, the shared/private attribute of every page (the per-gmem attributes of the in-place
 * conversion series, §2 and §4), the hardware state of every page (what firmware enforces, entered at a private
 * guest fault and left on to-shared or free), hardware-poisoned pages, and the mapping registry. Truncation
 * (§3.5), conversion (§4.2), memory failure (§3.11) and eviction are implemented here because they act on every
 * consumer of the inode.
 */
import { printable } from '../util/message.js';
import type { AccessVerdict } from '../access.js';
import type { ConsumerResponse, PageAttribute, PipelineStep } from '../arch/backend.js';
import { PAGE_SIZE } from '../constants.js';
import { fail } from '../errors.js';
import type { InvalidationCause } from '../events.js';
import type { Kernel } from '../kernel.js';
import { PageCacheInode } from '../mm/inode.js';
import { MappingRegistry, type Invalidation, type MappingConsumer } from '../registry/registry.js';
import { IntervalIndex } from '../util/interval-index.js';
import { ShortList } from '../util/short-list.js';
import { RangeMap } from '../util/range-map.js';
import { dmaMappingsOf, isDmaMapped, type DmaArea } from './dma-areas.js';
import { askConsumer } from '../arch/answers.js';
import * as door from '../arch/door.js';
import { conversionShortcuts } from './conversion-shortcuts.js';

type Ranges = Array<{ offset: number; length: number }>;

/** No page leaves the hardware-private state (shared by every conversion where none does; never changed). */
const NOTHING_LEAVES: { pages: number; ranges: Ranges } = Object.freeze({
  pages: 0,
  ranges: Object.freeze([]) as unknown as Ranges,
});

/** No consumer (begin and end of a conversion no consumer revokes); never changed. */
const NO_CONSUMERS: readonly MappingConsumer[] = Object.freeze([]);
/** No pipeline step; never changed. */
const NO_STEPS: readonly PipelineStep[] = Object.freeze([]);

/** @internal What a page entering the hardware-private state at the guest's fault does (GmemInode.privateEntryPlan). */
export interface PrivateEntryPlan {
  readonly steps: readonly PipelineStep[];
  /** The page is cleared (contentsOnPrivateEntry 'zero'). */
  readonly zero: boolean;
}
const ENTER_KEEP: PrivateEntryPlan = Object.freeze({ steps: Object.freeze([]), zero: false });
const ENTER_ZERO: PrivateEntryPlan = Object.freeze({ steps: Object.freeze([]), zero: true });

/** @internal The hardware-private pages a private stage-2 zap ends, with their removal steps (GmemInode.zapRemoval). */
export interface ZapRemoval {
  readonly start: number;
  readonly end: number;
  readonly leaving: { pages: number; ranges: Ranges };
  readonly steps: readonly PipelineStep[];
}

export class GmemInode extends PageCacheInode {
  readonly kind = 'guest_memfd' as const;
  /** Maple-tree equivalent: every index in [0, npages) has an attribute, equal neighbours merged (§2). */
  readonly attributes = new RangeMap<PageAttribute>();
  /** Pages the hardware holds as the guest's private memory (entered at a private guest fault). */
  readonly hardware = new RangeMap<true>();
  /**
   * Pages the guest had made hardware-private and then converted to shared, not made private again since: a
   * hypervisor may still hold them in the guest's stage-2 as shared (pKVM's PKVM_PAGE_SHARED_OWNED), so freeing
   * one is not free (RemovalContext.sharedBack).
   */
  readonly sharedBack = new RangeMap<true>();
  /** Folios marked hwpoison by memory failure (§3.11). */
  readonly hwpoison = new RangeMap<true>();
  readonly registry = new MappingRegistry();
  /**
   * Every iommufd area over this inode's pages, in any IOAS and any contract mode (registered or not), by
   * page range: what "is any of [start, end) DMA-mapped" looks up.
   */
  readonly dmaAreas = new IntervalIndex<DmaArea>();
  /** Invalidations between their begin and end, under the invalidate lock, in the order they began. */
  private readonly active = new ShortList<Invalidation>();
  /** Conversions asking (or restoring) their consumers now (one, unless a consumer converts from inside). */
  private asking = 0;
  /** Reused lists of the consumers a conversion asks, one per level of `asking`. */
  private readonly askScratch: AskScratch[] = [];

  constructor(
    readonly kernel: Kernel,
    ino: number,
    size: number,
    readonly flags: number,
    readonly vmType: 'default' | 'coco',
    /** vCPUs of the VM that created the inode, for the IPI counts of removal pipelines. */
    readonly vcpus: number,
    /** The VM that created the inode, e.g. 'vm:4', for frame-owner reports. */
    readonly vmLabel: string,
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

  /** Whether the hardware holds this page as the guest's private memory. */
  isHardwarePrivate(index: number): boolean {
    return this.hardware.runCount > 0 && this.hardware.has(index);
  }

  /** An invalidation in progress over [start, end), if any (the window in which new mappings must wait, §3.5). */
  invalidationOver(start: number, end: number): Invalidation | undefined {
    return this.active.find((inv) => inv.start < end && inv.end > start);
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

  /**
   * Call one consumer. A consumer cannot veto or abort an invalidation (the kernel's notifier callbacks return
   * void): an exception is caught, reported as a consumer error, and the invalidation goes on.
   */
  private callConsumer(
    consumer: MappingConsumer,
    hook: 'invalidateBegin' | 'invalidateEnd' | 'split' | 'restore',
    inv: Invalidation,
  ): void {
    try {
      consumer[hook]?.(inv);
    } catch (error) {
      // The label is read in this catch too: a consumer's getter that throws here must not abort the punch.
      this.kernel.reportObserverError({
        source: `consumer ${printable(consumer, (c) => String((c as MappingConsumer).label))}`,
        hook,
        error,
      });
    }
  }

  private begin(
    cause: InvalidationCause,
    start: number,
    end: number,
    consumers: readonly MappingConsumer[],
  ): Invalidation {
    const inv: Invalidation = { id: this.kernel.nextInvalidationId(), cause, start, end };
    this.active.add(inv);
    this.emitInvalidation('invalidate-begin', inv);
    for (const consumer of consumers) this.callConsumer(consumer, 'invalidateBegin', inv);
    return inv;
  }

  private end(inv: Invalidation, consumers: readonly MappingConsumer[]): void {
    for (const consumer of consumers) this.callConsumer(consumer, 'invalidateEnd', inv);
    this.active.delete(inv);
    this.emitInvalidation('invalidate-end', inv);
  }

  /** unmap_mapping_range: zap host user PTEs of every mapping of [start, end) in every process. */
  private unmapMappingRange(start: number, end: number, cause: InvalidationCause): void {
    const mappings = this.registry.overlapping(start, end, 'host-mmap');
    if (mappings.length === 0) return;
    const inv: Invalidation = { id: 0, cause, start, end };
    for (const consumer of mappings) consumer.invalidateBegin(inv);
  }

  /** Everything but host mmaps, which are zapped by unmap_mapping_range at their own point in each path. */
  private invalidationTargets(start: number, end: number): MappingConsumer[] {
    const consumers = this.registry.overlapping(start, end);
    return this.registry.has('host-mmap') ? consumers.filter((c) => c.kind !== 'host-mmap') : consumers;
  }

  /** The hardware-private pages of [start, end): their count and byte ranges. */
  private hardwarePrivate(start: number, end: number): { pages: number; ranges: Ranges } {
    let pages = 0;
    const ranges: Ranges = [];
    if (this.hardware.runCount === 0) return { pages, ranges };
    for (const run of this.hardware.overlapping(start, end)) {
      pages += run.end - run.start;
      ranges.push({ offset: run.start * PAGE_SIZE, length: (run.end - run.start) * PAGE_SIZE });
    }
    return { pages, ranges };
  }

  /**
   * The named steps of hardware-private pages leaving that state, asked of the backend before anything changes
   * (so a broken answer is caught first). Only pages that were hardware-private count: a page the guest never
   * faulted in as private was never AUG'd, assigned, delegated or donated, so no firmware runs for it.
   */
  private removalSteps(
    site: door.RemovalSite,
    cause: 'truncate' | 'release' | 'to-shared' | 'memslot-delete',
    leaving: { pages: number; ranges: Ranges },
    start: number,
    end: number,
  ): readonly PipelineStep[] {
    const backend = this.kernel.backend;
    const back = cause === 'to-shared' || cause === 'memslot-delete' ? NOTHING_LEAVES : this.sharedBackIn(start, end);
    if ((leaving.pages === 0 && back.pages === 0) || !backend.removalPipeline) return NO_STEPS;
    return door.removalPipeline(this.kernel, site, {
      cause,
      pages: leaving.pages,
      ranges: leaving.ranges,
      vcpus: this.vcpus,
      iommuDomains: isDmaMapped(this.dmaAreas, start, end) ? 1 : 0,
      ...(back.pages > 0 ? { sharedBack: back.pages, sharedBackRanges: back.ranges } : {}),
    });
  }

  /** The shared-back pages of [start, end) that are present: their count and byte ranges. */
  private sharedBackIn(start: number, end: number): { pages: number; ranges: Ranges } {
    if (this.sharedBack.runCount === 0) return NOTHING_LEAVES;
    let pages = 0;
    const ranges: Ranges = [];
    for (const run of this.sharedBack.overlapping(start, end)) {
      const first = Math.max(run.start, start);
      const last = Math.min(run.end, end);
      pages += last - first;
      ranges.push({ offset: first * PAGE_SIZE, length: (last - first) * PAGE_SIZE });
    }
    return { pages, ranges };
  }

  /**
   * @internal What a private stage-2 zap on the VM fd's conversion to shared (KVM_SET_MEMORY_ATTRIBUTES) will end
   * of [start, end), for a backend whose `privateRemovalAt` is 'zap': the hardware-private pages and the backend's
   * removal steps, asked before the call changes anything (a broken answer fails it with EIO). Undefined when no
   * page there is hardware-private.
   */
  zapRemoval(start: number, end: number): ZapRemoval | undefined {
    const last = Math.min(end, this.npages);
    if (start >= last || this.hardware.runCount === 0) return undefined;
    const leaving = this.hardwarePrivate(start, last);
    if (leaving.pages === 0) return undefined;
    return {
      start,
      end: last,
      leaving,
      steps: this.removalSteps('KVM_SET_MEMORY_ATTRIBUTES', 'to-shared', leaving, start, last),
    };
  }

  /**
   * @internal The zap ends the hardware-private state `removal` found (kernel-contract §4.4): the removal steps
   * run now, the folios stay in the page cache, and the VMM's later punch finds no hardware-private page there.
   */
  leaveAtZap(removal: ZapRemoval, zero: boolean): void {
    this.leaveHardware('to-shared', removal.leaving, removal.steps, zero);
    // Not shared back: on this path the guest's shared accesses reach the VMM's memory, never this page.
    this.sharedBack.delete(removal.start, removal.end);
  }

  /**
   * @internal A memslot bound to [start, end) of this file is deleted, and the backend's hardware gives pages up
   * at the zap of their private stage-2 entries (`privateRemovalAt: 'zap'`; called by Vm only then): the
   * hardware-private pages there leave that state, with the backend's removal steps and contents rule, asked at a
   * site that cannot refuse (door.ts). The folios stay in the page cache, private by attribute; a later private
   * fault makes them hardware-private again. TDX: tdx_sept_remove_private_spte on every zap of a private leaf,
   * the memslot's included [X-a]; CCA: kvm_stage2_unmap_range with only_shared false, which destroys and
   * undelegates the protected granules [C-a].
   */
  leaveAtMemslotDelete(start: number, end: number): void {
    const last = Math.min(end, this.npages);
    if (start >= last || this.hardware.runCount === 0) return;
    const leaving = this.hardwarePrivate(start, last);
    if (leaving.pages === 0) return;
    const site = 'KVM_SET_USER_MEMORY_REGION2';
    const steps = this.removalSteps(site, 'memslot-delete', leaving, start, last);
    const zero = door.contentsOnRemoval(this.kernel, site, { cause: 'memslot-delete' }) === 'zero';
    this.leaveHardware('memslot-delete', leaving, steps, zero);
  }

  /** Pages leave the hardware-private state: count the steps, apply the content rule, forget the state. */
  private leaveHardware(
    cause: InvalidationCause | 'memslot-delete',
    leaving: { pages: number; ranges: Ranges },
    steps: readonly PipelineStep[],
    zero: boolean,
  ): void {
    // Steps are counted even when no page leaves the private state: freeing shared-back pages may cost some.
    this.kernel.recordPipeline(steps);
    if (leaving.pages === 0) return;
    for (const range of leaving.ranges) {
      const first = range.offset / PAGE_SIZE;
      const last = first + range.length / PAGE_SIZE;
      for (const present of this.pages.overlapping(first, last)) {
        const count = present.end - present.start;
        if (zero) {
          this.phys.forgetContents(present.value, count);
          this.phys.clearPoison(present.value, count);
        }
      }
      this.hardware.delete(first, last);
      if (cause === 'to-shared') this.sharedBack.set(first, last, true);
      if (this.kernel.events.active)
        this.kernel.events.emit({
          type: 'hardware',
          change: 'leave',
          cause,
          ino: this.ino,
          offset: range.offset,
          length: range.length,
        });
    }
  }

  /**
   * What the guest's private fault on page `index` does to it, asked of the backend before the fault changes
   * anything: undefined when the page does not enter the hardware-private state (it is there already, or the VM
   * has no private memory); the fault KVM_RUN reports when the hypervisor or firmware refuses the page
   * (ArchBackend.privateEntryRefusal); else the entry steps and what a first private access finds. A hook that
   * throws or answers outside its type fails the fault with EIO (door.ts), as KVM_RUN fails when
   * `kvm_arch_gmem_prepare` or TDH.MEM.PAGE.AUG does.
   */
  privateEntryPlan(
    op: string,
    index: number,
    at: 'resolve' | 'install',
  ): PrivateEntryPlan | Extract<AccessVerdict, { allow: false }> | undefined {
    if (this.vmType !== 'coco' || this.isHardwarePrivate(index)) return undefined;
    const backend = this.kernel.backend;
    if (backend.privateEntryRefusal) {
      const context = {
        offset: index * PAGE_SIZE,
        length: PAGE_SIZE,
        dmaMapped: isDmaMapped(this.dmaAreas, index, index + 1),
        contract: this.kernel.contract,
      };
      const refusal = door.privateEntryRefusal(this.kernel, op, context);
      if (refusal) return refusal;
    }
    const zero = door.contentsOnPrivateEntry(this.kernel, op) === 'zero';
    if (!backend.privateEntry) return zero ? ENTER_ZERO : ENTER_KEEP;
    const ranges = [{ offset: index * PAGE_SIZE, length: PAGE_SIZE }];
    return { steps: door.privateEntry(this.kernel, op, { pages: 1, ranges, vcpus: this.vcpus, at }), zero };
  }

  /**
   * A private guest fault makes page `index` hardware-private (TDH.MEM.PAGE.AUG, RMPUPDATE, DELEGATE +
   * DATA_CREATE, donation), as `plan` (privateEntryPlan) says: the backend's entry steps are counted once per
   * page that enters, and the page holds what a first private access finds.
   */
  enterHardware(index: number, plan: PrivateEntryPlan): void {
    this.hardware.set(index, index + 1, true);
    if (this.sharedBack.runCount > 0) this.sharedBack.delete(index, index + 1);
    const pfn = this.lookup(index);
    if (plan.zero && pfn !== undefined) {
      this.phys.forgetContents(pfn, 1);
      this.phys.clearPoison(pfn, 1);
    }
    this.kernel.recordPipeline(plan.steps);
    if (this.kernel.events.active)
      this.kernel.events.emit({
        type: 'hardware',
        change: 'enter',
        cause: 'guest-fault',
        ino: this.ino,
        offset: index * PAGE_SIZE,
        length: PAGE_SIZE,
      });
  }

  private contentsOnRemoval(site: door.RemovalContentsSite, cause: 'truncate' | 'release'): boolean {
    return door.contentsOnRemoval(this.kernel, site, { cause }) === 'zero';
  }

  /**
   * PUNCH_HOLE (§3.5): under the invalidate lock, invalidate_begin (KVM zaps stage-2; the registry revokes every
   * overlapping iommufd area — the natural hook between begin and truncate_inode_pages_range), then truncation
   * zaps host PTEs and frees the pages (hardware-private ones go through the backend's removal first), then
   * invalidate_end. Truncation never fails because of mappings, and it does not change attributes (CONV8 36/46).
   */
  punchHole(start: number, end: number): void {
    const last = Math.min(end, this.npages);
    const leaving = start < last ? this.hardwarePrivate(start, last) : { pages: 0, ranges: [] };
    // Asked before invalidate_begin: a broken answer fails the punch with EIO and nothing changed (door.ts).
    const steps = this.removalSteps('fallocate', 'truncate', leaving, start, last);
    const zero = leaving.pages > 0 && this.contentsOnRemoval('fallocate', 'truncate');
    const targets = this.invalidationTargets(start, end);
    const inv = this.begin('truncate', start, end, targets);
    if (start < last) {
      this.unmapMappingRange(start, last, 'truncate');
      this.leaveHardware('truncate', leaving, steps, zero);
      this.removePages(start, last);
      this.hwpoison.delete(start, last);
      if (this.sharedBack.runCount > 0) this.sharedBack.delete(start, last);
    }
    this.end(inv, targets);
  }

  /**
   * KVM_SET_MEMORY_ATTRIBUTES2 after validation (§4.2 steps 9-14). Throws EAGAIN with errorOffset, changing
   * nothing, when a page is pinned, a registered consumer refuses, or the hypervisor refuses.
   */
  convert(op: string, start: number, end: number, to: PageAttribute): void {
    // Step 9: a range already in the target state is a no-op with no invalidation at all.
    if (this.attributes.holdsRun(start, end, to)) return;

    // Step 11: to private, host user PTEs go first, in every process (case C8); a zapped PTE refaults
    // transparently, so this is not a change even if the conversion then fails.
    if (to === 'private') this.unmapMappingRange(start, end, 'to-private');

    // The lowest page something refuses, and who (the errorOffset and message of the EAGAIN).
    let blocked: number | undefined;
    let blocker = '';
    // Step 11: the refcount check. Only to-private checks (a private->shared conversion does no refcount check).
    if (to === 'private') {
      const pinned = this.firstPinned(start, end);
      if (pinned !== undefined) {
        blocked = pinned;
        blocker = 'a page has an elevated refcount (a long-term pin)';
      }
    }
    const request = { to, start, end };
    // Made only when some consumer revokes or splits: a conversion every consumer tolerates allocates no list.
    let revokers: MappingConsumer[] | undefined;
    let splitters: MappingConsumer[] | undefined;
    // The consumers over the range are asked in registration order. Once the backend's one answer for this
    // conversion is 'tolerate' (it reads only the conversion's own fields, ArchBackend.conversionPolicyInputs),
    // every consumer whose answer is that policy's tolerates too, asking and keeping nothing: the rest of them are
    // not called (registry.ts, ANSWERS_BY_POLICY).
    const registry = this.registry;
    const depth = this.asking++;
    const scratch = (this.askScratch[depth] ??= new AskScratch());
    try {
      const others = scratch.others as MappingConsumer[];
      const otherSeqs = scratch.otherSeqs;
      const byPolicy = scratch.byPolicy as MappingConsumer[];
      const policySeqs = scratch.policySeqs;
      const otherCount = registry.othersInto(start, end, registry.has('host-mmap'), others, otherSeqs);
      // Whether one of the others runs code when asked (KVM's views do not: no conversionResponse, 'revoke').
      let othersAnswer = false;
      for (let o = 0; o < otherCount; o++) if (others[o]!.conversionResponse) othersAnswer = true;
      // One question first, where it decides for every consumer answering by policy and nothing else is asked
      // before it: any one of them (which area of a kind is asked is not part of the backend's promise), found
      // without listing the others. Its answer 'tolerate', with the policy's one answer 'tolerate', is what
      // asking them in order would have found at the first that asks the backend; any other answer is forgotten
      // and they are all asked in order below (the one asked again gets the answer kept in the policy memo, and
      // keeps the same answers it kept the first time).
      let policyCount = -1;
      const memo = this.kernel.policyMemo;
      // The consumer asked first, and its answer: asked again in its place below, it would answer the same
      // (its areas' answers come from the policy memo, and nothing else ran in between), so it is not.
      let asked: MappingConsumer | undefined;
      let askedAnswer: ConsumerResponse = 'revoke';
      if (memo.wide && !othersAnswer && conversionShortcuts.enabled) {
        const bound = registry.nextSeq;
        const any = registry.anyByPolicy(start, end);
        if (any === undefined) policyCount = 0;
        else if (
          (askedAnswer = askConsumer(op, any, request)) === 'tolerate' &&
          memo.wideAnswer(request) === 'tolerate'
        )
          policyCount = 0;
        else {
          asked = any;
          // As they were registered before that question: a consumer registered since is left out. One
          // unregistered since is a pages object with no area left (IoptPages.detach): asked, it would have
          // tolerated, asking and keeping nothing.
          const n = registry.byPolicyInto(start, end, byPolicy, policySeqs);
          policyCount = 0;
          for (let i = 0; i < n; i++) {
            if (policySeqs[i]! >= bound) continue;
            byPolicy[policyCount] = byPolicy[i]!;
            policySeqs[policyCount++] = policySeqs[i]!;
          }
        }
      }
      if (policyCount < 0) policyCount = registry.byPolicyInto(start, end, byPolicy, policySeqs);
      let p = 0;
      let o = 0;
      let policyTolerates = false;
      for (;;) {
        const policySeq = !policyTolerates && p < policyCount ? policySeqs[p]! : Infinity;
        const otherSeq = o < otherCount ? otherSeqs[o]! : Infinity;
        if (otherSeq === Infinity && policySeq === Infinity) break;
        const asksPolicy = policySeq < otherSeq;
        const consumer = asksPolicy ? byPolicy[p++]! : others[o++]!;
        const response =
          consumer === asked
            ? askedAnswer
            : consumer.conversionResponse
              ? askConsumer(op, consumer, request)
              : 'revoke';
        if (response === 'tolerate' && !policyTolerates && asksPolicy)
          policyTolerates = memo.wideAnswer(request) === 'tolerate';
        if (response === 'refuse') {
          const at = Math.max(start, consumer.first);
          if (blocked === undefined || at < blocked) {
            blocked = at;
            blocker = `${consumer.label} refuses the conversion`;
          }
        } else if (response === 'revoke') (revokers ??= []).push(consumer);
        else if (response === 'split') (splitters ??= []).push(consumer);
      }
    } finally {
      this.asking--;
      scratch.clear();
    }
    // An IOMMU driver that refuses a partial unmap of a huge IOPTE (HostOptions.hugeIopteCut 'refuse'): a revoke
    // that would cut one cannot happen, so the conversion is refused before its point of no return [I].
    if (revokers)
      for (const consumer of revokers) {
        const at = consumer.cutRefusal?.(start, end);
        if (at !== undefined && (blocked === undefined || at < blocked)) {
          blocked = at;
          blocker = `${consumer.label} cannot unmap part of a huge IOPTE (the IOMMU driver refuses a partial unmap)`;
        }
      }
    const backend = this.kernel.backend;
    if (backend.hypervisorRefusal) {
      const context = {
        to,
        offset: start * PAGE_SIZE,
        length: (end - start) * PAGE_SIZE,
        contract: this.kernel.contract,
        dmaMapped: dmaMappingsOf(this.dmaAreas, start, end).map((m) => ({
          offset: m.start * PAGE_SIZE,
          length: (m.end - m.start) * PAGE_SIZE,
          area: m.area,
        })),
      };
      const refusal = door.hypervisorRefusal(this.kernel, op, context);
      if (refusal !== undefined && (blocked === undefined || Math.floor(refusal / PAGE_SIZE) < blocked)) {
        blocked = Math.floor(refusal / PAGE_SIZE);
        blocker = `the ${backend.name} hypervisor refuses the conversion`;
      }
    }
    if (blocked !== undefined) {
      fail('EAGAIN', op, `${blocker} at offset ${blocked * PAGE_SIZE}; nothing was converted`, {
        errorOffset: blocked * PAGE_SIZE,
        hint: 'drop the pin or DMA mapping of that page (IOMMU_IOAS_UNMAP) and retry',
      });
    }
    // Pages leaving the hardware-private state (to shared only: entering happens at the guest's fault).
    const leaving =
      to === 'shared' && this.hardware.runCount > 0
        ? this.hardwarePrivateIn(this.attributes.overlapping(start, end).filter((run) => run.value !== to))
        : NOTHING_LEAVES;
    const steps = this.removalSteps('KVM_SET_MEMORY_ATTRIBUTES2', 'to-shared', leaving, start, end);
    const zero = leaving.pages > 0 && door.contentsOnConversion(this.kernel, op, { to }) === 'zero';

    // Step 12: the point of no return.
    const inv = this.begin(to === 'private' ? 'to-private' : 'to-shared', start, end, revokers ?? NO_CONSUMERS);
    if (splitters) for (const consumer of splitters) this.callConsumer(consumer, 'split', inv);
    // Step 13: the architecture's hook on the pages that actually change.
    this.leaveHardware('to-shared', leaving, steps, zero);
    // Step 14: store, then invalidate_end.
    this.attributes.assign(start, end, to); // step 9 found that it changes
    this.end(inv, revokers ?? NO_CONSUMERS);
    // 'mirror' (RFC-J5, RFC-J6): once the conversion to shared is complete, every registered consumer over the
    // range maps the pages again ("restore the right ones after"); kernel-contract §9.4 leaves this to a mirror.
    if (to === 'shared' && this.kernel.contract === 'mirror') this.restoreAll(start, end, inv);
  }

  /**
   * 'mirror': every consumer over [start, end) but host mmaps, listed before the first is called and in
   * registration order, maps the pages of `inv` again (the list invalidationTargets makes, merged from the
   * registry's two indexes into reused arrays).
   */
  private restoreAll(start: number, end: number, inv: Invalidation): void {
    const registry = this.registry;
    const depth = this.asking++;
    const scratch = (this.askScratch[depth] ??= new AskScratch());
    try {
      const others = scratch.others as MappingConsumer[];
      const otherSeqs = scratch.otherSeqs;
      const byPolicy = scratch.byPolicy as MappingConsumer[];
      const policySeqs = scratch.policySeqs;
      const otherCount = registry.othersInto(start, end, registry.has('host-mmap'), others, otherSeqs);
      const policyCount = registry.byPolicyInto(start, end, byPolicy, policySeqs);
      let o = 0;
      let p = 0;
      while (o < otherCount || p < policyCount) {
        const consumer =
          o >= otherCount || (p < policyCount && policySeqs[p]! < otherSeqs[o]!) ? byPolicy[p++]! : others[o++]!;
        if (consumer.restore) this.callConsumer(consumer, 'restore', inv);
      }
    } finally {
      this.asking--;
      scratch.clear();
    }
  }

  private hardwarePrivateIn(runs: ReadonlyArray<{ start: number; end: number }>): { pages: number; ranges: Ranges } {
    let pages = 0;
    const ranges: Ranges = [];
    for (const span of runs) {
      const found = this.hardwarePrivate(span.start, span.end);
      pages += found.pages;
      ranges.push(...found.ranges);
    }
    return { pages, ranges };
  }

  /**
   * Memory failure on one page (§3.11): the generic memory-failure code unmaps the page from host processes,
   * kvm_gmem_error_folio invalidates KVM (zapping stage-2) without truncation, and the folio is marked hwpoison.
   * Only KVM is invalidated: no source says memory failure reaches the IOMMU, so iommufd areas keep their IOPTEs.
   */
  memoryFailure(index: number): void {
    this.unmapMappingRange(index, index + 1, 'memory-failure');
    const targets = this.registry.overlapping(index, index + 1, 'kvm');
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
    const leaving = this.hardwarePrivate(0, this.npages);
    // The release cannot fail (door.ts): a broken answer here is reported and read as the default.
    const steps = this.removalSteps('release', 'release', leaving, 0, this.npages);
    const zero = leaving.pages > 0 && this.contentsOnRemoval('release', 'release');
    const targets = this.invalidationTargets(0, this.npages);
    const inv = this.begin('release', 0, this.npages, targets);
    this.leaveHardware('release', leaving, steps, zero);
    this.removePages(0, this.npages);
    this.hwpoison.clear();
    this.sharedBack.clear();
    this.evicted = true;
    this.end(inv, targets);
    this.kernel.gmemInodes.delete(this);
  }
}

/**
 * The lists GmemInode.convert asks (and restoreAll restores) from: consumers that do not answer by policy, and
 * those that do (filled for asking only when one question does not decide for all of them), each with its
 * registration number. Arrays never shortened,
 * emptied of consumers after each conversion (ShortList's reason).
 */
class AskScratch {
  readonly others: Array<MappingConsumer | undefined> = [];
  readonly otherSeqs: number[] = [];
  readonly byPolicy: Array<MappingConsumer | undefined> = [];
  readonly policySeqs: number[] = [];

  /** Drop the consumers (every use fills a prefix of each list, which was empty before it). */
  clear(): void {
    const others = this.others;
    for (let i = 0; others[i] !== undefined; i++) others[i] = undefined;
    const byPolicy = this.byPolicy;
    for (let i = 0; byPolicy[i] !== undefined; i++) byPolicy[i] = undefined;
  }
}

function sigbus(mechanism: string): Extract<AccessVerdict, { allow: false }> {
  return { allow: false, fault: 'sigbus', fatal: false, logged: false, mechanism };
}
