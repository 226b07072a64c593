/**
 * Host physical memory: page frames (pfns) and their bytes.
 *
 * File offsets and pfns are different things: a guest_memfd page, once allocated, is backed by a pfn; stage-2
 * entries, host PTEs and IOPTEs point at pfns. Frames are handed out in contiguous runs and never reused, so a
 * stale mapping keeps pointing at a frame that no file owns any more and stays recognisable as stale. Bytes are
 * held sparsely: a frame never written reads as zeros.
 */
import { PAGE_SIZE } from '../constants.js';

export class PhysicalMemory {
  /** Frames start at 4 GiB so that a pfn never looks like a small offset. */
  private nextPfn = 0x100000;
  private readonly contents = new Map<number, Uint8Array>();
  private readonly poisoned = new Set<number>();
  /** Frames allocated and not yet freed. */
  liveFrames = 0;

  allocate(count: number): number {
    const base = this.nextPfn;
    this.nextPfn += count;
    this.liveFrames += count;
    return base;
  }

  /** Give frames back to the host allocator: their bytes and poison go with them. */
  free(pfn: number, count: number): void {
    this.liveFrames -= count;
    this.forgetContents(pfn, count);
  }

  /** Drop the bytes of [pfn, pfn + count): they read as zeros afterwards. */
  forgetContents(pfn: number, count: number): void {
    if (count < this.contents.size) {
      for (let i = 0; i < count; i++) this.contents.delete(pfn + i);
    } else {
      for (const key of [...this.contents.keys()]) if (key >= pfn && key < pfn + count) this.contents.delete(key);
    }
    if (this.poisoned.size > 0) for (const key of [...this.poisoned]) if (key >= pfn && key < pfn + count) this.poisoned.delete(key);
  }

  read(pfn: number, pageOffset: number, out: Uint8Array, outOffset: number, length: number): void {
    const page = this.contents.get(pfn);
    if (page) out.set(page.subarray(pageOffset, pageOffset + length), outOffset);
    else out.fill(0, outOffset, outOffset + length);
  }

  write(pfn: number, pageOffset: number, src: Uint8Array, srcOffset: number, length: number): void {
    let page = this.contents.get(pfn);
    if (!page) {
      page = new Uint8Array(PAGE_SIZE);
      this.contents.set(pfn, page);
    }
    page.set(src.subarray(srcOffset, srcOffset + length), pageOffset);
  }

  /** Copy a frame's bytes to another frame (copy-on-write). */
  copy(from: number, to: number): void {
    const page = this.contents.get(from);
    if (page) this.contents.set(to, page.slice());
    else this.contents.delete(to);
  }

  poison(pfn: number): void {
    this.poisoned.add(pfn);
  }

  isPoisoned(pfn: number): boolean {
    return this.poisoned.size > 0 && this.poisoned.has(pfn);
  }

  /** A digest of the bytes of one frame, for snapshots ('' for a zero frame). */
  digest(pfn: number): string {
    const page = this.contents.get(pfn);
    if (!page) return '';
    let h = 0x811c9dc5;
    let nonZero = false;
    for (let i = 0; i < page.length; i++) {
      const b = page[i]!;
      if (b !== 0) nonZero = true;
      h = Math.imul(h ^ b, 0x01000193) >>> 0;
    }
    return nonZero ? h.toString(16) : '';
  }

  /** The frames holding bytes, for snapshots. */
  framesWithContents(): number[] {
    return [...this.contents.keys()].sort((a, b) => a - b);
  }
}
