/**
 * A picture of one guest_memfd inode, page by page but kept as runs: what the file holds (attribute, hardware
 * state, populated, pinned, poisoned) overlaid with every translation that reaches it (stage-2 entries of each
 * VM, host user PTEs of each mmap, IOPTEs of each iommufd area). A translation is 'stale' where it points at a
 * frame the file no longer holds at that offset (the same test as the invariants, kernel-contract §9.5). Built
 * for display (the demo's page maps) and for explorers; it walks runs, never pages.
 */
import { PAGE_SIZE } from './constants.js';
import type { HostObjects } from './invariants.js';
import type { GmemInode } from './kvm/gmem-inode.js';
import type { Vm } from './kvm/vm.js';
import type { HostMapping } from './mm/host-mapping.js';

/** A run of file pages [start, end) with one value. */
export type PageRun<V> = readonly [start: number, end: number, value: V];

/** One translation layer's runs over file pages: 'live' entries reach the file's page, 'stale' ones do not. */
export type EntryState = 'live' | 'stale';

export interface PageMap {
  ino: number;
  /** The VM the guest_memfd belongs to, e.g. 'vm:4'. */
  vm: string;
  /** Size in pages. */
  npages: number;
  attribute: PageRun<'shared' | 'private'>[];
  /** Pages the hardware holds as private (S-EPT mapped, RMP assigned, delegated, donated). */
  hardware: PageRun<'private'>[];
  /** Pages with a frame in the page cache (absent: a hole). */
  populated: PageRun<true>[];
  pinned: PageRun<true>[];
  poisoned: PageRun<true>[];
  /** Stage-2 entries of every VM bound to the file, by side, in file pages. */
  stage2: PageRun<{ side: 'shared' | 'private'; state: EntryState; owner: string }>[];
  /** Host user PTEs of every live mmap of the file. */
  hostPte: PageRun<{ state: EntryState; owner: string }>[];
  /** IOPTEs of every iommufd area over the file; 'revoked' where guest_memfd revoked the area's pages. */
  iopte: PageRun<{ state: EntryState | 'revoked'; owner: string }>[];
  /**
   * Present when a memslot bound to the file serves shared accesses from its userspace address (not gmem-only:
   * today's path, kernel-contract §4.4): the file pages whose gfn has memory on that shared side (a memfd page or
   * a copy-on-write page at the userspace address), with who holds it.
   */
  sharedBacking?: PageRun<{ owner: string }>[];
  /**
   * Present with `sharedBacking`: the file pages allocated twice, in guest_memfd and on the shared side, until
   * the VMM discards one of them (§4.4).
   */
  doubleAllocated?: PageRun<true>[];
}

/** Split [first, first + n) expected at pfns [pfn, ...) into live and stale runs against the file's page cache. */
function classify(
  inode: GmemInode,
  first: number,
  n: number,
  pfn: number,
  push: (start: number, end: number, state: EntryState) => void,
): void {
  let at = first;
  const end = first + n;
  if (!inode.evicted) {
    for (const run of inode.pages.overlapping(first, end)) {
      if (run.start > at) push(at, run.start, 'stale');
      push(run.start, run.end, run.value === pfn + (run.start - first) ? 'live' : 'stale');
      at = run.end;
    }
  }
  if (at < end) push(at, end, 'stale');
}

const runsOf = <V>(map: Iterable<{ start: number; end: number; value: V }>): PageRun<V>[] =>
  [...map].map((r) => [r.start, r.end, r.value] as const);

export function pageMapOf(objects: Pick<HostObjects, 'vms' | 'ioases' | 'mappings'>, inode: GmemInode): PageMap {
  // Walked twice (the entries, then the shared side): lists, whatever iterables the host passed.
  const vms = [...objects.vms];
  const mappings = [...objects.mappings];
  const { ioases } = objects;
  const map: PageMap = {
    ino: inode.ino,
    vm: inode.vmLabel,
    npages: inode.npages,
    attribute: runsOf(inode.attributes),
    hardware: runsOf(inode.hardware).map(([s, e]) => [s, e, 'private'] as const),
    populated: runsOf(inode.pages).map(([s, e]) => [s, e, true] as const),
    pinned: inode.pins.map((p) => [p.start, p.end, true] as const),
    poisoned: runsOf(inode.hwpoison),
    stage2: [],
    hostPte: [],
    iopte: [],
  };

  for (const vm of vms) {
    for (const slot of vm.memslots()) {
      if (slot.asId !== 0 || slot.gmem?.file?.inode !== inode) continue;
      const { pgoff } = slot.gmem;
      for (const side of ['shared', 'private'] as const) {
        for (const run of vm.stage2[side].overlapping(slot.baseGfn, slot.baseGfn + slot.npages)) {
          const first = run.start - slot.baseGfn + pgoff;
          classify(inode, first, run.end - run.start, run.value, (s, e, state) =>
            map.stage2.push([s, e, { side, state, owner: `vm:${vm.fd}` }]),
          );
        }
      }
    }
  }

  for (const mapping of mappings) {
    if (!mapping.mapped || mapping.file.inode !== inode) continue;
    const first = mapping.fileOffset / PAGE_SIZE;
    const owner = `mmap:0x${mapping.address.toString(16)}`;
    for (const run of mapping.pteRuns()) {
      classify(inode, first + run.start, run.end - run.start, run.value, (s, e, state) =>
        map.hostPte.push([s, e, { state, owner }]),
      );
    }
  }

  for (const ioas of ioases) {
    for (const area of ioas.areaList()) {
      if (area.inode !== inode) continue;
      const first = area.source.firstIndex;
      for (const run of area.ioptes) {
        classify(inode, first + run.start, run.end - run.start, run.value, (s, e, state) =>
          map.iopte.push([s, e, { state, owner: area.label }]),
        );
      }
      for (const run of area.revoked)
        map.iopte.push([first + run.start, first + run.end, { state: 'revoked', owner: area.label }]);
    }
  }
  sharedSide(vms, mappings, inode, map);
  const byStart = (a: PageRun<unknown>, b: PageRun<unknown>) => a[0] - b[0] || a[1] - b[1];
  map.stage2.sort(byStart);
  map.hostPte.sort(byStart);
  map.iopte.sort(byStart);
  return map;
}

/**
 * The shared side of every memslot bound to the inode that is not gmem-only: for each live mapping at the slot's
 * userspace address, the pages that hold memory, as file pages of the inode (index = gfn - base_gfn + pgoff).
 */
function sharedSide(vms: Iterable<Vm>, mappings: Iterable<HostMapping>, inode: GmemInode, map: PageMap): void {
  const live = [...mappings].filter((m) => m.mapped);
  const backing: PageRun<{ owner: string }>[] = [];
  for (const vm of vms) {
    for (const slot of vm.memslots()) {
      if (slot.asId !== 0 || slot.gmemOnly || slot.gmem?.file?.inode !== inode) continue;
      const low = slot.userspaceAddr;
      const high = low + slot.npages * PAGE_SIZE;
      for (const mapping of live) {
        const from = Math.max(low, mapping.address);
        const to = Math.min(high, mapping.address + mapping.length);
        if (from >= to) continue;
        const owner = `mmap:0x${mapping.address.toString(16)}`;
        const first = (from - mapping.address) / PAGE_SIZE;
        for (const run of mapping.populatedRuns(first, (to - mapping.address) / PAGE_SIZE)) {
          // mapping page -> hva -> gfn offset in the slot -> file page
          const index = (p: number) => slot.gmem!.pgoff + (mapping.address + p * PAGE_SIZE - low) / PAGE_SIZE;
          backing.push([index(run.start), index(run.end), { owner }]);
        }
      }
    }
  }
  if (backing.length === 0) return;
  backing.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const double: PageRun<true>[] = [];
  for (const [start, end] of backing) {
    for (const run of inode.evicted ? [] : inode.pages.overlapping(start, end)) {
      const s = Math.max(start, run.start);
      const e = Math.min(end, run.end);
      const last = double[double.length - 1];
      if (last && last[1] >= s) double[double.length - 1] = [last[0], Math.max(last[1], e), true];
      else double.push([s, e, true]);
    }
  }
  map.sharedBacking = backing;
  map.doubleAllocated = double;
}
