/**
 * The mapping registry of one guest_memfd inode: every consumer of its pages, registered by file range (page
 * indices), not by address (Jason Gunthorpe and Sean Christopherson in the RFC thread, kernel-contract §6, §9.1).
 *
 * Consumers are KVM's views (one per VM with bindings, like the kernel's per-file bindings), host mmaps, iommufd
 * pages objects (one per MAP_FILE, shared by every area copied or cut from it, §9.1) and anything a third party
 * registers. The registry is per inode because memory is per inode: every
 * VM view of the file shares it (§9.1).
 */
import type { InvalidationCause } from '../events.js';
import type { ConsumerResponse, ConversionTarget } from '../arch/backend.js';
import { IntervalIndex, type IntervalHandle } from '../util/interval-index.js';

export interface Invalidation {
  /** A number unique per host, pairing begin with end. */
  readonly id: number;
  readonly cause: InvalidationCause;
  /** Page-index range [start, end) of the inode. */
  readonly start: number;
  readonly end: number;
}

export interface ConversionRequest {
  readonly to: ConversionTarget;
  /** Page-index range [start, end). */
  readonly start: number;
  readonly end: number;
}

/**
 * The kinds the core registers; third parties use their own names. 'iommufd-area' is no longer registered by the
 * core (its pages object, 'iommufd-pages', is) and stays in the union for consumers that name it.
 */
export type ConsumerKind = 'kvm' | 'host-mmap' | 'iommufd-pages' | 'iommufd-area' | (string & {});

/**
 * A consumer of guest_memfd pages. Implement this to register your own (a vhost worker, an accelerator's page
 * table): the registry will call you on every invalidation that overlaps your range.
 */
export interface MappingConsumer {
  readonly kind: ConsumerKind;
  /** For messages and events, e.g. 'ioas:1/area:2'. */
  readonly label: string;
  /** The page-index range [first, end) of the inode this consumer may map, read once, when it registers. */
  readonly first: number;
  readonly end: number;
  /**
   * Asked before a conversion's point of no return. 'revoke' (the default) means invalidateBegin is called for
   * the converting range; 'refuse' fails the conversion with EAGAIN; 'tolerate' leaves the consumer alone;
   * 'split' calls `split` at the point of no return. Any other answer, or an exception, fails the conversion
   * with EIO naming this consumer, before anything changed.
   */
  conversionResponse?(request: ConversionRequest): ConsumerResponse;
  /**
   * Drop entries for [start, end) of the inode before the pages change or go. It cannot veto the invalidation:
   * an exception is caught, reported (Host.observerErrors()) and the invalidation goes on, as the kernel's
   * notifier callbacks, which return void, cannot stop a truncation.
   */
  invalidateBegin(invalidation: Invalidation): void;
  /** The invalidation is over: new entries may be made again. Exceptions are handled as for invalidateBegin. */
  invalidateEnd?(invalidation: Invalidation): void;
  /**
   * Asked of a consumer that answered 'revoke', before the point of no return: the lowest page index of
   * [start, end) it cannot unmap (an IOMMU driver that refuses a partial unmap of a huge IOPTE), or undefined.
   * A page it names fails the conversion with EAGAIN at that page.
   */
  cutRefusal?(start: number, end: number): number | undefined;
  /** Restructure entries around [start, end) after a 'split' answer (huge IOPTEs to 4K); entries stay. */
  split?(invalidation: Invalidation): void;
  /**
   * 'mirror' mode only: a conversion to shared of [start, end) completed (attributes stored, invalidate_end
   * run); map the pages again (RFC-J5, RFC-J6). Exceptions are handled as for invalidateBegin.
   */
  restore?(invalidation: Invalidation): void;
}

/**
 * @internal The brand of a consumer whose conversionResponse is the backend's conversionPolicy for its areas and
 * nothing else (iommufd/pages.ts's IoptPages): where the policy's one answer for a conversion is 'tolerate'
 * (ArchBackend.conversionPolicyInputs naming fields of the conversion only), every such consumer tolerates, asking
 * and keeping nothing, so GmemInode.convert does not call the others once one has asked. A symbol the package does
 * not export: no third-party consumer carries it.
 */
export const ANSWERS_BY_POLICY: unique symbol = Symbol('gmemlab: conversionResponse is the backend policy');

/** Whether `consumer`'s conversionResponse is the backend's policy and nothing else (ANSWERS_BY_POLICY). */
export function answersByPolicy(consumer: MappingConsumer): boolean {
  return (consumer as { readonly [ANSWERS_BY_POLICY]?: true })[ANSWERS_BY_POLICY] === true;
}

export interface Registration {
  readonly consumer: MappingConsumer;
  unregister(): void;
}

class ConsumerRegistration implements Registration {
  constructor(
    private readonly registry: MappingRegistry,
    private readonly handle: IntervalHandle,
    readonly consumer: MappingConsumer,
    private readonly kind: ConsumerKind,
    private readonly byPolicy: boolean,
  ) {}

  /** A function of its own (made on each read, not kept: a fork copies no closure), so that `const { unregister } = registration` works. */
  get unregister(): () => void {
    return () => this.registry.remove(this.handle, this.kind, this.byPolicy);
  }
}

/**
 * The consumers, indexed by range (an interval tree, like the kernel's rmap of a file's mappings), so that an
 * invalidation finds the few consumers it overlaps without looking at the others: a conversion on a file
 * mapped by 10,000 iommufd areas touches the one or two it overlaps. A consumer's range is read once, when it
 * registers.
 *
 * Two indexes with one registration order over both: the consumers whose answer to a conversion is the
 * backend's policy (ANSWERS_BY_POLICY: iommufd pages objects), and every other. A conversion whose policy answer
 * is one 'tolerate' for all of them needs only one of the former it overlaps (anyByPolicy), found in O(log n),
 * not a list of every one (GmemInode.convert); every other question gets the one list, in registration order.
 */
/** A registration as it was made: the consumer's kind and label then, and the page range registered. */
export interface ConsumerName {
  readonly kind: ConsumerKind;
  readonly label: string;
  readonly first: number;
  readonly end: number;
}

export class MappingRegistry {
  private readonly byPolicy = new IntervalIndex<MappingConsumer>();
  private readonly others = new IntervalIndex<MappingConsumer>();
  /** Registrations so far: the next one's number in the order over both indexes. */
  private registrations = 0;
  /** Consumers registered, by kind (read at registration, like the range). */
  private readonly kinds = new Map<ConsumerKind, number>();
  /** all(), until the next registration or removal. */
  private ordered: MappingConsumer[] | undefined;
  /**
   * What each registration showed when it was made, by its number: kind, label (read once, here: a consumer
   * crosses the public surface, and its getters are not read again) and the range registered. names() lists them.
   */
  private readonly registered = new Map<number, ConsumerName>();
  /** names(), until the next registration or removal. */
  private orderedNames: ConsumerName[] | undefined;
  /** Scratch for the merge in overlapping(): reused arrays, emptied of consumers after each use. */
  private readonly policyItems: MappingConsumer[] = [];
  private readonly policySeqs: number[] = [];
  private readonly otherItems: MappingConsumer[] = [];
  private readonly otherSeqs: number[] = [];

  /** Register `consumer` for pages [first, end) (by default its own first and end). */
  register(consumer: MappingConsumer, first: number = consumer.first, end: number = consumer.end): Registration {
    const kind = consumer.kind;
    const label = consumer.label;
    const byPolicy = answersByPolicy(consumer);
    const index = byPolicy ? this.byPolicy : this.others;
    const handle = index.insert(first, end, consumer, this.registrations);
    this.registered.set(this.registrations, Object.freeze({ kind, label, first, end }));
    this.registrations++;
    this.kinds.set(kind, (this.kinds.get(kind) ?? 0) + 1);
    this.ordered = this.orderedNames = undefined;
    return new ConsumerRegistration(this, handle, consumer, kind, byPolicy);
  }

  /** @internal */
  remove(handle: IntervalHandle, kind: ConsumerKind, byPolicy: boolean): void {
    if ((byPolicy ? this.byPolicy : this.others).remove(handle)) {
      this.kinds.set(kind, this.kinds.get(kind)! - 1);
      this.registered.delete(handle.seq);
      this.ordered = this.orderedNames = undefined;
    }
  }

  get size(): number {
    return this.byPolicy.size + this.others.size;
  }

  /** @internal The number the next registration gets: every consumer registered so far has a smaller one. */
  get nextSeq(): number {
    return this.registrations;
  }

  /** Consumers whose range overlaps [start, end), in registration order; `kind` filters. */
  overlapping(start: number, end: number, kind?: ConsumerKind): MappingConsumer[] {
    if (kind !== undefined && !this.kinds.get(kind)) return [];
    const policyItems = this.policyItems;
    const otherItems = this.otherItems;
    const p = this.byPolicy.size === 0 ? 0 : this.byPolicy.overlappingInto(start, end, policyItems, this.policySeqs);
    const o = this.others.size === 0 ? 0 : this.others.overlappingInto(start, end, otherItems, this.otherSeqs);
    const out: MappingConsumer[] = [];
    let i = 0;
    let j = 0;
    while (i < p || j < o) {
      const consumer =
        j >= o || (i < p && this.policySeqs[i]! < this.otherSeqs[j]!) ? policyItems[i++]! : otherItems[j++]!;
      if (kind === undefined || consumer.kind === kind) out.push(consumer);
    }
    policyItems.fill(undefined as unknown as MappingConsumer, 0, p);
    otherItems.fill(undefined as unknown as MappingConsumer, 0, o);
    return out;
  }

  /**
   * @internal The consumers overlapping [start, end) that do not answer by policy, host mmaps left out when
   * `withoutMmaps`, in registration order: items[i] with its registration number seqs[i], for i in [0, the
   * count returned).
   */
  othersInto(start: number, end: number, withoutMmaps: boolean, items: MappingConsumer[], seqs: number[]): number {
    if (this.others.size === 0) return 0;
    const n = this.others.overlappingInto(start, end, items, seqs);
    if (!withoutMmaps) return n;
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const consumer = items[i]!;
      if (consumer.kind === 'host-mmap') continue;
      items[kept] = consumer;
      seqs[kept++] = seqs[i]!;
    }
    return kept;
  }

  /** @internal Some consumer overlapping [start, end) that answers by policy (not the first registered), or undefined. */
  anyByPolicy(start: number, end: number): MappingConsumer | undefined {
    return this.byPolicy.size === 0 ? undefined : this.byPolicy.anyOverlapping(start, end)?.item;
  }

  /** @internal The consumers overlapping [start, end) that answer by policy, as othersInto (without a filter). */
  byPolicyInto(start: number, end: number, items: MappingConsumer[], seqs: number[]): number {
    return this.byPolicy.size === 0 ? 0 : this.byPolicy.overlappingInto(start, end, items, seqs);
  }

  /** Whether any consumer of `kind` is registered. */
  has(kind: ConsumerKind): boolean {
    return (this.kinds.get(kind) ?? 0) > 0;
  }

  /** Every consumer, in registration order. */
  /** What each consumer of all() showed when it registered (kind, label, range), in the same order. */
  names(): readonly ConsumerName[] {
    if (this.orderedNames === undefined) {
      const seqs = [...this.byPolicy.hits(), ...this.others.hits()].map((hit) => hit.seq).sort((a, b) => a - b);
      this.orderedNames = seqs.map((seq) => this.registered.get(seq)!);
    }
    return this.orderedNames;
  }

  all(): readonly MappingConsumer[] {
    if (this.ordered === undefined) {
      const hits = [...this.byPolicy.hits(), ...this.others.hits()].sort((a, b) => a.seq - b.seq);
      this.ordered = hits.map((hit) => hit.item);
    }
    return this.ordered;
  }
}
