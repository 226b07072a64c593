/**
 * A page-cache-backed inode: the part shared by guest_memfd and shmem (memfd) files.
 *
 * The page cache maps file page indices to pfns as runs (RangeMap with a linear codec). Long-term pins
 * (get_user_pages with FOLL_LONGTERM, i.e. GUP) are kept as ranges of page indices; they are what makes a folio's
 * refcount "unexpected" to the in-place conversion check (kernel-contract §4.2 step 11).
 */
import type { AccessVerdict } from '../access.js';
import { PAGE_SIZE } from '../constants.js';
import { linearCodec, RangeMap, type Run } from '../util/range-map.js';
import type { FrameHolder, PhysicalMemory } from './physical.js';

export interface PinRecord {
  start: number;
  end: number;
  /** Who holds it, e.g. 'pin()' or 'ioas:3/area:2'. */
  holder: string;
}

export abstract class PageCacheInode {
  abstract readonly kind: 'guest_memfd' | 'shmem';
  readonly pages = new RangeMap<number>(linearCodec);
  readonly pins: PinRecord[] = [];
  /**
   * Frames truncated from the file while a long-term pin held them, as runs pfn -> the file index they had. The
   * page cache's reference is gone (filemap_free_folio ran `.free_folio` and put it); the pin's reference is the
   * last one, so the frame goes back to the allocator when no pin covers it any more (mm/gup.c
   * unpin_user_page -> gup_put_folio -> folio_put_refs). Keyed by pfn: the same index may be truncated under a
   * pin twice, each time with its own frame.
   */
  readonly orphans = new RangeMap<number>(linearCodec);
  /** Set when the inode is evicted: its pages are gone and nothing may allocate again. */
  evicted = false;

  constructor(
    readonly phys: PhysicalMemory,
    readonly ino: number,
    readonly size: number,
  ) {}

  get npages(): number {
    return Math.ceil(this.size / PAGE_SIZE);
  }

  lookup(index: number): number | undefined {
    return this.pages.get(index);
  }

  private holder(index: number): FrameHolder {
    return { kind: 'page-cache', inode: this, index };
  }

  /** Allocate frames for every missing page in [start, end) (page-cache fill, in index order). */
  populate(start: number, end: number): void {
    for (const gap of this.pages.gaps(start, end)) {
      let at = gap.start;
      for (const run of this.phys.allocate(gap.end - gap.start, this.holder(gap.start))) {
        this.pages.set(at, at + run.count, run.pfn);
        at += run.count;
      }
    }
  }

  /** The pfn for `index`, allocating it on first use ("zero before first use": a new frame reads as zeros). */
  getOrAllocate(index: number): number {
    const pfn = this.pages.get(index);
    if (pfn !== undefined) return pfn;
    const fresh = this.phys.allocate(1, this.holder(index))[0]!.pfn;
    this.pages.set(index, index + 1, fresh);
    return fresh;
  }

  /**
   * Remove [start, end) from the page cache and free the frames; returns what was removed. A frame under a
   * long-term pin leaves the file but is not freed: the pin's reference holds it until the last pin covering it
   * goes (`removePin`), and then it is freed and reusable like any other.
   */
  removePages(start: number, end: number): Run<number>[] {
    const removed = this.pages.delete(start, end);
    for (const run of removed) {
      let at = run.start;
      const held = this.pins.filter((pin) => pin.end > run.start && pin.start < run.end).sort((a, b) => a.start - b.start);
      for (const pin of held) {
        if (pin.end <= at) continue;
        const from = Math.max(at, pin.start);
        if (from > at) this.phys.free(run.value + (at - run.start), from - at);
        const to = Math.max(from, Math.min(run.end, pin.end));
        if (to > from) {
          this.phys.orphan(run.value + (from - run.start), to - from, this.ino, from, pin.holder);
          this.orphans.set(run.value + (from - run.start), run.value + (to - run.start), from);
        }
        at = Math.max(at, to);
      }
      if (at < run.end) this.phys.free(run.value + (at - run.start), run.end - at);
    }
    return removed;
  }

  /** The lowest pinned page index in [start, end), if any. */
  firstPinned(start: number, end: number): number | undefined {
    let lowest: number | undefined;
    for (const pin of this.pins) {
      if (pin.start < end && pin.end > start) {
        const at = Math.max(start, pin.start);
        // Only pages in the page cache carry a refcount; a pin always covers allocated pages.
        if (lowest === undefined || at < lowest) lowest = at;
      }
    }
    return lowest;
  }

  addPin(pin: PinRecord): void {
    this.pins.push(pin);
  }

  /**
   * unpin_user_pages: the pin's references go. A frame truncated under it (an orphan) that no other pin covers
   * loses its last reference there and is freed (gup_put_folio -> folio_put_refs -> the page allocator); its
   * bytes stay until the next owner is handed it zeroed, as for any free. Returns the frames freed.
   */
  removePin(pin: PinRecord): Array<{ pfn: number; count: number; index: number }> {
    const i = this.pins.indexOf(pin);
    if (i < 0) return [];
    this.pins.splice(i, 1);
    const freed: Array<{ pfn: number; count: number; index: number }> = [];
    if (this.orphans.runCount === 0) return freed;
    for (const run of this.orphans.toArray()) {
      const first = run.value;
      const last = first + (run.end - run.start);
      if (pin.end <= first || pin.start >= last) continue;
      // Index ranges of the run that a remaining pin still holds.
      const held = new RangeMap<true>();
      for (const other of this.pins) if (other.start < last && other.end > first) held.set(Math.max(first, other.start), Math.min(last, other.end), true);
      for (const gap of held.gaps(first, last)) {
        const pfn = run.start + (gap.start - first);
        const count = gap.end - gap.start;
        this.orphans.delete(pfn, pfn + count);
        this.phys.free(pfn, count);
        freed.push({ pfn, count, index: gap.start });
      }
    }
    return freed;
  }

  /** Copy `length` bytes at `offset` out of the file's frames; holes read as zeros. */
  readAt(offset: number, out: Uint8Array, outOffset: number, length: number): void {
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / PAGE_SIZE);
      const inPage = at % PAGE_SIZE;
      const chunk = Math.min(PAGE_SIZE - inPage, length - done);
      const pfn = this.pages.get(index);
      if (pfn === undefined) out.fill(0, outOffset + done, outOffset + done + chunk);
      else this.phys.read(pfn, inPage, out, outOffset + done, chunk);
      done += chunk;
    }
  }

  /** Write bytes at `offset`, allocating pages as needed. */
  writeAt(offset: number, src: Uint8Array, srcOffset: number, length: number): void {
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / PAGE_SIZE);
      const inPage = at % PAGE_SIZE;
      const chunk = Math.min(PAGE_SIZE - inPage, length - done);
      this.phys.write(this.getOrAllocate(index), inPage, src, srcOffset + done, chunk);
      done += chunk;
    }
  }
}

/** A shmem inode, as made by memfd_create. */
export class ShmemInode extends PageCacheInode {
  readonly kind = 'shmem' as const;

  /** shmem_fault: only beyond EOF fails. */
  userFaultCheck(index: number): Extract<AccessVerdict, { allow: false }> | undefined {
    if (index * PAGE_SIZE >= this.size) return { allow: false, fault: 'sigbus', fatal: false, logged: false, mechanism: 'shmem_fault: offset beyond i_size' };
    return undefined;
  }
}
