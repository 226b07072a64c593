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
  /**
   * The frames pinned, as page-cache runs (index -> pfn) taken when the pin was added: GUP pins folios, not file
   * offsets, so a page that refaults at a pinned index after truncation is a new folio the pin does not hold.
   */
  frames?: Run<number>[];
}

/** The index ranges of `run` (index -> pfn, linear) whose frame `pin` holds. */
function heldBy(pin: PinRecord, run: Run<number>): Array<{ start: number; end: number }> {
  const held: Array<{ start: number; end: number }> = [];
  for (const frames of pin.frames ?? []) {
    const start = Math.max(frames.start, run.start);
    const end = Math.min(frames.end, run.end);
    // Both runs are linear: they name the same frames over the overlap exactly when their offsets agree.
    if (start < end && frames.value - frames.start === run.value - run.start) held.push({ start, end });
  }
  return held;
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
    for (const run of removed) this.release(run);
    return removed;
  }

  /**
   * A private mapping gives back its anonymous COW copies of indices [run.start, run.end) (munmap,
   * MADV_DONTNEED): a copy that a GUP pin of an IOMMU area holds keeps its frame until that pin goes (the pin
   * holds a reference to the folio), as a truncated page cache page does; the others are freed.
   */
  releaseCopies(run: Run<number>): void {
    this.release(run);
  }

  /** Free the frames of `run` (index -> pfn), orphaning those a pin holds at those indices. */
  private release(run: Run<number>): void {
    {
      let at = run.start;
      const held =
        this.pins.length === 0
          ? []
          : this.pins
              .flatMap((pin) => heldBy(pin, run).map((range) => ({ ...range, holder: pin.holder })))
              .sort((a, b) => a.start - b.start);
      for (const range of held) {
        if (range.end <= at) continue;
        const from = Math.max(at, range.start);
        if (from > at) this.phys.free(run.value + (at - run.start), from - at);
        const to = range.end;
        this.phys.orphan(run.value + (from - run.start), to - from, this.ino, from, range.holder);
        this.orphans.set(run.value + (from - run.start), run.value + (to - run.start), from);
        at = to;
      }
      if (at < run.end) this.phys.free(run.value + (at - run.start), run.end - at);
    }
  }

  /** The lowest page index in [start, end) whose current frame a pin holds (an elevated refcount), if any. */
  firstPinned(start: number, end: number): number | undefined {
    let lowest: number | undefined;
    for (const pin of this.pins) {
      if (pin.start >= end || pin.end <= start) continue;
      for (const run of this.pages.overlapping(Math.max(start, pin.start), Math.min(end, pin.end))) {
        const clipped = {
          start: Math.max(run.start, start, pin.start),
          end: Math.min(run.end, end, pin.end),
          value: run.value + (Math.max(run.start, start, pin.start) - run.start),
        };
        for (const range of heldBy(pin, clipped))
          if (lowest === undefined || range.start < lowest) lowest = range.start;
      }
    }
    return lowest;
  }

  /**
   * A long-term pin: of `pin.frames` when given, else of the frames now in the page cache over [pin.start,
   * pin.end) (call after populating).
   */
  addPin(pin: PinRecord): void {
    pin.frames ??= this.pages.overlapping(pin.start, pin.end).map((run) => {
      const from = Math.max(run.start, pin.start);
      return { start: from, end: Math.min(run.end, pin.end), value: run.value + (from - run.start) };
    });
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
      // The orphan run as index -> pfn, to compare with the pins' frames.
      const asPages = { start: first, end: last, value: run.start };
      if (heldBy(pin, asPages).length === 0) continue;
      // Index ranges of the run that a remaining pin still holds.
      const held = new RangeMap<true>();
      for (const other of this.pins) for (const range of heldBy(other, asPages)) held.set(range.start, range.end, true);
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
    if (index * PAGE_SIZE >= this.size)
      return {
        allow: false,
        fault: 'sigbus',
        fatal: false,
        logged: false,
        mechanism: 'shmem_fault: offset beyond i_size',
      };
    return undefined;
  }
}
