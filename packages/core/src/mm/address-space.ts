/**
 * The VMM process's user address space: where mmaps land, so that a memslot's userspace_addr can be resolved.
 * Addresses are handed out upwards from 16 TiB and never reused, below TASK_SIZE_MAX.
 */
import { PAGE_SIZE, TASK_SIZE_MAX } from '../constants.js';
import { RangeMap } from '../util/range-map.js';
import type { HostMapping } from './host-mapping.js';

export class AddressSpace {
  private next = 2 ** 44;
  /** Keyed by virtual page number. */
  private readonly vmas = new RangeMap<HostMapping>();

  /** Reserve `length` bytes (page multiple) plus a guard page; undefined when the space is exhausted. */
  reserve(length: number): number | undefined {
    if (this.next + length > TASK_SIZE_MAX) return undefined;
    const address = this.next;
    this.next += length + PAGE_SIZE;
    return address;
  }

  insert(mapping: HostMapping): void {
    this.vmas.set(mapping.address / PAGE_SIZE, (mapping.address + mapping.length) / PAGE_SIZE, mapping);
  }

  remove(mapping: HostMapping): void {
    this.vmas.delete(mapping.address / PAGE_SIZE, (mapping.address + mapping.length) / PAGE_SIZE);
  }

  /** Whether `mapping` was made in this address space (so belongs to this host), whether or not still mapped. */
  owns(mapping: HostMapping): boolean {
    // Every mapping is made in its kernel's address space (HostMapping's constructor inserts it there).
    return mapping.space === this;
  }

  /** Every live mapping, in address order. */
  *live(): IterableIterator<HostMapping> {
    for (const run of this.vmas) yield run.value;
  }

  /** The live mapping containing `address`. */
  find(address: number): HostMapping | undefined {
    return this.vmas.get(Math.floor(address / PAGE_SIZE));
  }
}
