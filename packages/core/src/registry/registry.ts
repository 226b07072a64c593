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
  ) {}

  /** A function of its own (made on each read, not kept: a fork copies no closure), so that `const { unregister } = registration` works. */
  get unregister(): () => void {
    return () => this.registry.remove(this.handle, this.kind);
  }
}

/**
 * The consumers, indexed by range (an interval tree, like the kernel's rmap of a file's mappings), so that an
 * invalidation finds the few consumers it overlaps without looking at the others: a conversion on a file
 * mapped by 10,000 iommufd areas touches the one or two it overlaps. A consumer's range is read once, when it
 * registers.
 */
export class MappingRegistry {
  private readonly index = new IntervalIndex<MappingConsumer>();
  /** Consumers registered, by kind (read at registration, like the range). */
  private readonly kinds = new Map<ConsumerKind, number>();

  /** Register `consumer` for pages [first, end) (by default its own first and end). */
  register(consumer: MappingConsumer, first: number = consumer.first, end: number = consumer.end): Registration {
    const kind = consumer.kind;
    this.kinds.set(kind, (this.kinds.get(kind) ?? 0) + 1);
    return new ConsumerRegistration(this, this.index.insert(first, end, consumer), consumer, kind);
  }

  /** @internal */
  remove(handle: IntervalHandle, kind: ConsumerKind): void {
    if (this.index.remove(handle)) this.kinds.set(kind, this.kinds.get(kind)! - 1);
  }

  get size(): number {
    return this.index.size;
  }

  /** Consumers whose range overlaps [start, end), in registration order; `kind` filters. */
  overlapping(start: number, end: number, kind?: ConsumerKind): MappingConsumer[] {
    if (kind !== undefined && !this.kinds.get(kind)) return [];
    const found = this.index.overlapping(start, end);
    return kind === undefined ? found : found.filter((c) => c.kind === kind);
  }

  /** Whether any consumer of `kind` is registered. */
  has(kind: ConsumerKind): boolean {
    return (this.kinds.get(kind) ?? 0) > 0;
  }

  /** Every consumer, in registration order. */
  all(): readonly MappingConsumer[] {
    return this.index.items();
  }
}
