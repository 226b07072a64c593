/**
 * The VMM process's user address space: where mmaps land, so that a memslot's userspace_addr can be resolved.
 * Addresses are handed out upwards from 16 TiB and never reused, below TASK_SIZE_MAX.
 */
import { PAGE_SIZE, TASK_SIZE_MAX } from '../constants.js';
import { RangeMap } from '../util/range-map.js';
import type { AccessVerdict } from '../access.js';

/**
 * A mapping as the address space files it (mm/host-mapping.ts's HostMapping is the one kind): where it is, the
 * address space it was made in, and how a page of it resolves (follow_page, for a fault through userspace_addr).
 */
export interface Vma {
  readonly address: number;
  readonly length: number;
  /** The address space the mapping was made in, mapped or not. */
  readonly space: unknown;
  /** The pfn behind page `page` of the mapping, faulting it in; or why not. */
  translate(page: number, write: boolean): number | Extract<AccessVerdict, { allow: false }>;
}

/** The address space of mappings of kind M (HostMapping on a host; the type stays here so mm/ has no circle). */
export class AddressSpace<M extends Vma = Vma> {
  private next = 2 ** 44;
  /** Keyed by virtual page number. */
  private readonly vmas = new RangeMap<M>();
  /** live() as an array, for snapshots; dropped by insert() and remove(), the only changes of `vmas` (private). */
  private liveCache: M[] | undefined;

  /** Reserve `length` bytes (page multiple) plus a guard page; undefined when the space is exhausted. */
  reserve(length: number): number | undefined {
    if (this.next + length > TASK_SIZE_MAX) return undefined;
    const address = this.next;
    this.next += length + PAGE_SIZE;
    return address;
  }

  insert(mapping: M): void {
    this.vmas.set(mapping.address / PAGE_SIZE, (mapping.address + mapping.length) / PAGE_SIZE, mapping);
    this.liveCache = undefined;
  }

  remove(mapping: M): void {
    this.vmas.delete(mapping.address / PAGE_SIZE, (mapping.address + mapping.length) / PAGE_SIZE);
    this.liveCache = undefined;
  }

  /** Whether `mapping` was made in this address space (so belongs to this host), whether or not still mapped. */
  owns(mapping: Vma): boolean {
    // Every mapping is made in its kernel's address space (HostMapping's constructor inserts it there).
    return mapping.space === this;
  }

  /** Every live mapping, in address order. */
  *live(): IterableIterator<M> {
    for (const run of this.vmas) yield run.value;
  }

  /** @internal Every live mapping, in address order, as an array shared until the next change: do not change it. */
  liveList(): readonly M[] {
    return (this.liveCache ??= [...this.live()]);
  }

  /** The live mapping containing `address`. */
  find(address: number): M | undefined {
    return this.vmas.get(Math.floor(address / PAGE_SIZE));
  }
}
