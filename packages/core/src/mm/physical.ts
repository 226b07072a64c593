/**
 * Host physical memory: page frames (pfns), who owns each, and their bytes.
 *
 * File offsets and pfns are different things: a guest_memfd page, once allocated, is backed by a pfn; stage-2
 * entries, host PTEs and IOPTEs point at pfns. Freed frames are handed out again, most recently freed first, as
 * the page allocator's per-CPU lists do (mm/page_alloc.c: free_unref_page puts a page at the head of its pcp
 * list, rmqueue_pcplist takes from the head). So a stale mapping ends up pointing at a frame that belongs to
 * someone else — another file, another VM's private page — and every frame knows its current owner, so an access
 * through a stale entry can say whose memory it reached. Owners and the free list are kept as runs.
 *
 * Bytes are held sparsely. Allocation zeroes a frame (the page cache hands guest_memfd and shmem zeroed folios:
 * kernel-contract §3.9 "zero before first use"); freeing does not, so a stale read of a freed frame sees what the
 * last owner left unless a removal pipeline cleared it (TDX page clear, pKVM hyp_poison_page, CCA scrub).
 */
import { PAGE_SIZE } from '../constants.js';
import { linearCodec, RangeMap, type RunCodec } from '../util/range-map.js';

/** Who holds a run of frames: a page-cache inode at consecutive indices, an anonymous COW copy, or a pin. */
export type FrameHolder =
  | { kind: 'page-cache'; inode: FrameInode; index: number }
  | { kind: 'anonymous'; label: string }
  /** A page truncated from its file while a long-term pin held it: it lives until the pin goes. */
  | { kind: 'orphan'; ino: number; index: number; holder: string };

/** What physical memory needs to know about an inode to describe its frames. */
export interface FrameInode {
  readonly ino: number;
  readonly kind: 'guest_memfd' | 'shmem';
}

/**
 * Who holds a run of frames, without the page index: the page-cache inode itself, an anonymous holder as it was
 * given, or a pin's orphan record. PhysicalMemory keeps this and the page index in two run maps (below).
 */
type HolderBase = FrameInode | Extract<FrameHolder, { kind: 'anonymous' }> | OrphanBase;

interface OrphanBase {
  readonly kind: 'orphan';
  readonly ino: number;
  readonly holder: string;
}

// Frozen: shared, as it is, by a forked host (util/clone.ts). Two frames have the same base when the holders
// FrameHolder describes for them differ at most in the index: the same inode, the same anonymous label, the same
// orphaned file and pin.
const baseCodec: RunCodec<HolderBase> = Object.freeze<RunCodec<HolderBase>>({
  shift: (value) => value,
  equals: (a, b) => {
    if (a === b) return true;
    if (a.kind !== b.kind) return false;
    if (a.kind === 'anonymous') return a.label === (b as typeof a).label;
    if (a.kind === 'orphan') return a.ino === (b as typeof a).ino && a.holder === (b as typeof a).holder;
    return false; // two different inodes
  },
});

export interface FrameRun {
  pfn: number;
  count: number;
}

export class PhysicalMemory {
  /** Frames never handed out start here (4 GiB, so that a pfn never looks like a small offset). */
  private nextPfn = 0x100000;
  private readonly contents = new Map<number, Uint8Array>();
  /**
   * Digests of frames whose bytes did not change since they were last hashed. The bytes change only through
   * write(), copy() and forgetContents() (the arrays never leave this class), which drop the entry; so a
   * snapshot hashes only the frames written since the last one, and its answer is the same as hashing all.
   */
  private readonly digests = new Map<number, string>();
  /** framesWithContents(), until a frame gains or loses its bytes. */
  private sortedFrames: number[] | undefined;
  /** Counts changes to bytes (contentChanges) and to the free list (freeChanges), for the snapshot caches. */
  private contentChanges = 0;
  private freeChanges = 0;
  private snapshotCache: {
    frames?: { changes: number; value: ReadonlyArray<readonly [number, string]> };
    holders?: { changes: number; value: ReadonlyArray<readonly [number, number, string]> };
    free?: { changes: number; value: ReadonlyArray<readonly [number, number]> };
  } = {};
  private readonly poisoned = new Set<number>();
  /**
   * Frame holders, as two run maps over pfns rather than one of FrameHolder objects: the holder less its index
   * (`owners`, a few runs: one inode's frames are mostly one run of pfns), and the page index of every frame a
   * page-cache inode or an orphan holds (`indices`, linear: one number per run, no object). A 1 TiB TDX
   * guest_memfd whose page cache fills 2 MiB block by block holds about 200,000 runs; an object per run was
   * most of their memory (issue 19). Together they describe the same runs one map of FrameHolder would hold
   * (holderRuns): a run ends where the owner changes or the index stops advancing by one, in either map.
   */
  private readonly owners = new RangeMap<HolderBase>(baseCodec);
  private readonly indices = new RangeMap<number>(linearCodec);
  /** Freed runs, the most recently freed last: allocation takes from the end. */
  private readonly freeList: FrameRun[] = [];
  /** Frames allocated and not yet freed. */
  liveFrames = 0;

  /**
   * Allocate `count` frames for `holder` (whose index advances along the frames): most recently freed first,
   * then never-used frames. Returns the runs in index order; each frame reads as zeros.
   */
  allocate(count: number, holder: FrameHolder): FrameRun[] {
    const runs: FrameRun[] = [];
    let left = count;
    let offset = 0;
    while (left > 0) {
      let run: FrameRun;
      const top = this.freeList[this.freeList.length - 1];
      if (top) {
        const take = Math.min(left, top.count);
        run = { pfn: top.pfn, count: take };
        if (take === top.count) this.freeList.pop();
        else this.freeList[this.freeList.length - 1] = { pfn: top.pfn + take, count: top.count - take };
      } else {
        run = { pfn: this.nextPfn, count: left };
        this.nextPfn += left;
      }
      this.forgetContents(run.pfn, run.count);
      this.setHolder(run.pfn, run.pfn + run.count, holder, offset);
      runs.push(run);
      offset += run.count;
      left -= run.count;
    }
    this.liveFrames += count;
    this.freeChanges++;
    return runs;
  }

  /** Give frames back to the allocator. Their bytes stay until the next owner is handed them zeroed. */
  free(pfn: number, count: number): void {
    if (count <= 0) return;
    this.liveFrames -= count;
    this.owners.remove(pfn, pfn + count);
    this.indices.remove(pfn, pfn + count);
    this.clearPoison(pfn, count);
    this.freeList.push({ pfn, count });
    this.freeChanges++;
  }

  /** A page left its file under a pin: it keeps its frame, now held by the pin alone. */
  orphan(pfn: number, count: number, ino: number, index: number, holder: string): void {
    this.owners.set(pfn, pfn + count, { kind: 'orphan', ino, holder });
    this.indices.set(pfn, pfn + count, index);
  }

  /** Frames [start, end) are held by `holder`, whose index (if it has one) is at `offset` along it at `start`. */
  private setHolder(start: number, end: number, holder: FrameHolder, offset: number): void {
    if (holder.kind === 'anonymous') {
      this.owners.set(start, end, holder);
      this.indices.remove(start, end);
      return;
    }
    this.owners.set(
      start,
      end,
      holder.kind === 'page-cache' ? holder.inode : { kind: 'orphan', ino: holder.ino, holder: holder.holder },
    );
    this.indices.set(start, end, holder.index + offset);
  }

  /** The holder that `base` and the index at frame `pfn` describe. */
  private holderAt(base: HolderBase, pfn: number): FrameHolder {
    if (base.kind === 'anonymous') return base;
    const index = this.indices.get(pfn)!;
    if (base.kind === 'orphan') return { kind: 'orphan', ino: base.ino, index, holder: base.holder };
    return { kind: 'page-cache', inode: base, index };
  }

  /** The holder runs over frames [pfn, pfn + count), each as it holds its first frame; frames between are free. */
  holdersIn(pfn: number, count: number): ReadonlyArray<{ start: number; end: number; value: FrameHolder }> {
    const out: Array<{ start: number; end: number; value: FrameHolder }> = [];
    for (const owned of this.owners.overlapping(pfn, pfn + count)) {
      const base = owned.value;
      if (base.kind === 'anonymous') {
        out.push(owned as { start: number; end: number; value: FrameHolder });
        continue;
      }
      // A frame with an owner other than anonymous always has an index (setHolder, orphan).
      for (const run of this.indices.overlapping(owned.start, owned.end))
        out.push({
          start: run.start,
          end: run.end,
          value:
            base.kind === 'orphan'
              ? { kind: 'orphan', ino: base.ino, index: run.value, holder: base.holder }
              : { kind: 'page-cache', inode: base, index: run.value },
        });
    }
    return out;
  }

  /** Who holds frame `pfn` now, or undefined when it is free. */
  holderOf(pfn: number): FrameHolder | undefined {
    const base = this.owners.get(pfn);
    return base === undefined ? undefined : this.holderAt(base, pfn);
  }

  /** Drop the bytes of [pfn, pfn + count): they read as zeros afterwards. */
  forgetContents(pfn: number, count: number): void {
    if (this.contents.size === 0) return;
    if (count < this.contents.size) {
      for (let i = 0; i < count; i++) this.forget(pfn + i);
    } else {
      for (const key of [...this.contents.keys()]) if (key >= pfn && key < pfn + count) this.forget(key);
    }
  }

  private forget(pfn: number): void {
    if (!this.contents.delete(pfn)) return;
    this.contentChanges++;
    this.digests.delete(pfn);
    this.sortedFrames = undefined;
  }

  /** Clear integrity poison on [pfn, pfn + count) (MOVDIR64B "also clears the poison bit", or a free). */
  clearPoison(pfn: number, count: number): void {
    if (this.poisoned.size > 0)
      for (const key of [...this.poisoned]) if (key >= pfn && key < pfn + count) this.poisoned.delete(key);
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
      this.sortedFrames = undefined;
    }
    page.set(src.subarray(srcOffset, srcOffset + length), pageOffset);
    this.digests.delete(pfn);
    this.contentChanges++;
  }

  /** Copy a frame's bytes to another frame (copy-on-write). */
  copy(from: number, to: number): void {
    const page = this.contents.get(from);
    if (!page) {
      this.forget(to);
      return;
    }
    if (!this.contents.has(to)) this.sortedFrames = undefined;
    this.contents.set(to, page.slice());
    this.contentChanges++;
    const digest = this.digests.get(from);
    if (digest === undefined) this.digests.delete(to);
    else this.digests.set(to, digest);
  }

  poison(pfn: number): void {
    this.poisoned.add(pfn);
  }

  isPoisoned(pfn: number): boolean {
    return this.poisoned.size > 0 && this.poisoned.has(pfn);
  }

  /** A digest of the bytes of one frame, for snapshots ('' for a zero frame). */
  digest(pfn: number): string {
    const known = this.digests.get(pfn);
    if (known !== undefined) return known;
    const page = this.contents.get(pfn);
    if (!page) return '';
    const digest = hashPage(page);
    this.digests.set(pfn, digest);
    return digest;
  }

  /** The frames holding bytes, for snapshots (the array is shared: do not change it). */
  framesWithContents(): readonly number[] {
    this.sortedFrames ??= [...this.contents.keys()].sort((a, b) => a - b);
    return this.sortedFrames;
  }

  /** @internal How many frames are poisoned, for snapshots. */
  get poisonedCount(): number {
    return this.poisoned.size;
  }

  /** Poisoned frames, for snapshots. */
  poisonedFrames(): number[] {
    return [...this.poisoned].sort((a, b) => a - b);
  }

  /** The free list, most recently freed last, for snapshots: it decides which frame the next allocation gets. */
  freeRuns(): readonly FrameRun[] {
    return this.freeList;
  }

  /**
   * @internal For Host.snapshot(): [pfn, digest] of every frame holding non-zero bytes, the frame holders and
   * the free list, each as frozen arrays that stay the same while what they list does not change.
   */
  snapshotFrames(): ReadonlyArray<readonly [number, string]> {
    const cache = this.snapshotCache;
    if (cache.frames?.changes !== this.contentChanges) {
      const frames: Array<readonly [number, string]> = [];
      for (const pfn of this.framesWithContents()) {
        const digest = this.digest(pfn);
        if (digest !== '') frames.push(Object.freeze([pfn, digest] as const));
      }
      cache.frames = { changes: this.contentChanges, value: Object.freeze(frames) };
    }
    return cache.frames.value;
  }

  /** @internal See snapshotFrames. */
  snapshotHolders(): ReadonlyArray<readonly [number, number, string]> {
    const cache = this.snapshotCache;
    // Either map's change count moving is a change (each only grows, so their sum is a change count).
    const changes = this.owners.changeCount + this.indices.changeCount;
    if (cache.holders?.changes !== changes) {
      cache.holders = {
        changes,
        value: Object.freeze(this.holderRuns().map((run) => Object.freeze(run))),
      };
    }
    return cache.holders.value;
  }

  /** @internal See snapshotFrames. */
  snapshotFree(): ReadonlyArray<readonly [number, number]> {
    const cache = this.snapshotCache;
    if (cache.free?.changes !== this.freeChanges) {
      cache.free = {
        changes: this.freeChanges,
        value: Object.freeze(this.freeList.map((r) => Object.freeze([r.pfn, r.count] as const))),
      };
    }
    return cache.free.value;
  }

  /** Frame holders as runs, for snapshots. */
  holderRuns(): Array<[number, number, string]> {
    return this.holdersIn(0, Infinity).map((run) => {
      const h = run.value;
      const who =
        h.kind === 'page-cache'
          ? `ino ${h.inode.ino}@${h.index}`
          : h.kind === 'anonymous'
            ? `anon ${h.label}`
            : `orphan ino ${h.ino}@${h.index} (${h.holder})`;
      return [run.start, run.end, who];
    });
  }
}

/** FNV-1a over the page's bytes, '' for a page of zeros. */
function hashPage(page: Uint8Array): string {
  let h = 0x811c9dc5;
  let nonZero = false;
  for (let i = 0; i < page.length; i++) {
    const b = page[i]!;
    if (b !== 0) nonZero = true;
    h = Math.imul(h ^ b, 0x01000193) >>> 0;
  }
  return nonZero ? h.toString(16) : '';
}
