/**
 * The canonical form of a world's state: `host.snapshot()` (plain data) and the actors' handles, with every
 * quantity that is only a name replaced by the order in which a fixed walk of the state meets it, and every
 * quantity no later call can observe dropped. Two worlds whose canonical forms are equal behave the same under
 * every sequence of actions, up to those names, so the search visits such states once.
 *
 * Why each reduction is sound (the properties in properties.ts look at none of the renamed or dropped values):
 * - **pfns** are renamed in order of first appearance (page caches by inode and index, stage-2 by VM and gfn,
 *   IOPTEs by area in IOVA order, the pending fault, the host PTEs, then frames held by nobody else, then the
 *   free list in allocation order). The model compares pfns only for equality (is this the file's frame at that
 *   index, who holds this frame); runs of consecutive pfns are expanded page by page first, so run boundaries,
 *   which depend on the numbers, do not leak into the form. The properties read frame owners and equality only.
 * - **The truncation flag** of an area (history the VMM's handle keeps, for no-dma-after-free's witness) is kept
 *   only while the area's mapping is invalidated (revoked, or its IOPTE stale): only then can it make a DMA a
 *   witness, and it decides nothing else.
 * - **The free list** is kept as the sequence in which the allocator will hand frames out (the last freed run
 *   first, each run from its first frame), up to the last frame something still references: free frames after it
 *   are indistinguishable from never-used frames (an allocation zeroes a frame's bytes and sets its owner).
 * - **Which pin holds a page truncated under pins** (the first pin in the inode's list) is dropped: it is only
 *   reported as `FrameOwner.holder`, which no property reads; pins are kept as a sorted set, each with the frames
 *   it holds (GUP pins folios: a page refaulted at a pinned index is not pinned) (the order of the
 *   inode's pin list decides nothing else).
 * - **Frames truncated under a pin** are kept, each named, even when no entry leads to them: when the last pin
 *   covering one goes, it is freed (kernel-contract §3.12, §9.2), and its place in the free list decides which
 *   frame a later allocation gets.
 * - **Area ids** (IOMMU area numbers, which only grow) are replaced by the area's rank in IOVA order; an id of an
 *   area that no longer exists becomes 'gone'. They appear only in labels (registry consumers, pin holders).
 * - **Mapping addresses** (never reused by the model's address space) are dropped: with every IOMMU_IOAS_MAP one
 *   page long, IOVA placement does not depend on the user address's alignment, and the world's memslots take
 *   their shared side from guest_memfd (GMEM_ONLY), not from a user address.
 * - **fd numbers** are replaced by the fd table's order (no action creates an fd; closing only removes one);
 *   **ino numbers** by creation order (both guest_memfds exist from the start).
 * - **mmu_invalidate_seq** only grows; it is compared with nothing but the seq a pending guest fault sampled
 *   (mmu_invalidate_retry_gfn), so only that comparison is kept. A pending fault whose seq is behind can only
 *   retry, whatever its page, side and frame: it is kept as 'retry' alone.
 * - **A user area's mapping** (mapped or not) matters only until the device attaches (the attach fills the area
 *   through the user address; nothing detaches), so it is kept only while no device is attached.
 * - **Pipeline counters** count firmware steps; the model never reads them back.
 * - **Bytes** (frame contents) decide nothing the properties see: no model rule branches on a byte (poison,
 *   which does decide, is kept), and no property reads data. Every write writes the same byte anyway.
 * - **Host PTEs** that a refault would install again (the file's current frame of a shared, unpoisoned page)
 *   are dropped, as `host.snapshot()` drops all PTEs ("a zapped PTE refaults transparently"); any other PTE (a
 *   stale one, or one over a private page) is kept, with its frame.
 * - **A crashed host** is one state: every later call throws HostCrashedError and nothing runs.
 * What is not reduced: which pages of VM 1 and VM 2 are which (GPAs, file offsets and IOVAs are fixed by the
 * setup and differ between pages, so pages are not symmetric), and the order of the free list.
 */
import { PAGE_SIZE } from '@gmemlab/core';
import type { World } from './world.js';

type Run<V> = [start: number, end: number, value: V];

/** The parts of `host.snapshot()` the canonical form reads (it is typed `unknown` by the core). */
export interface Snapshot {
  fds: Array<[number, string]>;
  inodes: Array<{
    ino: number;
    size: number;
    attributes: Run<string>[];
    pages: Run<number>[];
    pins: Array<[number, number, string, Array<[number, number, number]>?]>;
    hardware: Run<true>[];
    hwpoison: Run<true>[];
    consumers: string[];
  }>;
  vms: Array<{
    fd: number;
    dead: string | null;
    mmu: { seq: number; inProgress: number };
    slots: Array<{
      slot: number;
      baseGfn: number;
      npages: number;
      flags: number;
      gmemOnly: boolean;
      gmem: { fd: number | null; pgoff: number } | null;
    }>;
    shared: Run<number>[];
    private: Run<number>[];
  }>;
  mappings: Array<[number, number, number, boolean]>;
  ioases: Array<{
    id: number;
    domain: boolean;
    areas: Array<{
      id: number;
      iova: number;
      length: number;
      registered: boolean;
      revoked: Run<true>[];
      split4K: Run<true>[];
      ioptes: Run<number>[];
    }>;
  }>;
  frameHolders: Array<[number, number, string]>;
  freeFrames: Array<[number, number]>;
  poisoned: number[];
  crashed: unknown;
}

/** Per-page values of linear runs (a run [s, e) with pfn p maps index i to p + i - s); undefined for holes. */
export function expandLinear(runs: readonly Run<number>[], from: number, to: number): Array<number | undefined> {
  const out = new Array<number | undefined>(to - from).fill(undefined);
  for (const [start, end, pfn] of runs)
    for (let i = Math.max(start, from); i < Math.min(end, to); i++) out[i - from] = pfn + (i - start);
  return out;
}

/** Per-page flags of runs over [0, n). */
export function expandFlags(runs: readonly Run<unknown>[], n: number): boolean[] {
  const out = new Array<boolean>(n).fill(false);
  for (const [start, end] of runs) for (let i = start; i < Math.min(end, n); i++) out[i] = true;
  return out;
}

/** Per-page values of runs over [0, n). */
export function expandValues<V>(runs: readonly Run<V>[], n: number, fallback: V): V[] {
  const out = new Array<V>(n).fill(fallback);
  for (const [start, end, value] of runs) for (let i = start; i < Math.min(end, n); i++) out[i] = value;
  return out;
}

type SnapshotArea = Snapshot['ioases'][number]['areas'][number];

/**
 * Whether an area's mapping of VM 1's page `page`, the area's page `index`, was invalidated: guest_memfd revoked
 * it, or its IOPTE reaches a frame the file no longer holds at that index (the file's page was truncated, or the
 * file released).
 */
export function invalidated(world: World, snapshot: Snapshot, area: SnapshotArea, page: number, index = 0): boolean {
  if (area.revoked.some(([start, end]) => start <= index && index < end)) return true;
  const iopte = expandLinear(area.ioptes, index, index + 1)[0];
  if (iopte === undefined) return false;
  const inode = snapshot.inodes.find((i) => i.ino === world.gmemIno);
  return !inode || expandLinear(inode.pages, page, page + 1)[0] !== iopte;
}

/** The canonical form of the world's state, as a string (equal strings: the same state). */
export function canonicalState(world: World, snapshot: Snapshot): string {
  if (snapshot.crashed !== null) return 'crashed';
  const names = new Map<number, number>();
  const name = (pfn: number | undefined): number => {
    if (pfn === undefined) return -1;
    let n = names.get(pfn);
    if (n === undefined) {
      n = names.size;
      names.set(pfn, n);
    }
    return n;
  };
  // Area labels ('ioas:1/area:7') by rank in IOVA order; mapping labels ('mmap:0x...') without the address.
  const areaLabels = new Map<string, string>();
  for (const ioas of snapshot.ioases)
    ioas.areas.forEach((area, rank) => areaLabels.set(`ioas:${ioas.id}/area:${area.id}`, `area:${rank}`));
  const label = (text: string): string => {
    const at = text.indexOf('ioas:');
    if (at >= 0) {
      let end = text.indexOf(':', text.indexOf('/area:', at) + 6);
      if (end < 0) end = text.indexOf(')', at);
      if (end < 0) end = text.length;
      const area = text.slice(at, end);
      return `${text.slice(0, at)}${areaLabels.get(area) ?? 'area:gone'}${text.slice(end)}`;
    }
    const mmap = text.indexOf('mmap:0x');
    if (mmap >= 0) {
      let end = mmap + 7;
      while (end < text.length && text[end] !== ':') end++;
      return `${text.slice(0, mmap)}mmap${text.slice(end)}`;
    }
    return text;
  };
  const inoRank = new Map(snapshot.inodes.map((inode, rank) => [inode.ino, rank]));
  const fdRank = new Map(snapshot.fds.map(([fd], rank) => [fd, rank]));

  const inodes = snapshot.inodes.map((inode) => {
    const n = Math.ceil(inode.size / PAGE_SIZE);
    return [
      n,
      expandLinear(inode.pages, 0, n).map(name),
      expandValues(inode.attributes, n, 'private').map((a) => (a === 'private' ? 1 : 0)),
      expandFlags(inode.hardware, n).map(Number),
      expandFlags(inode.hwpoison, n).map(Number),
      // Which frames each pin holds (by name): a page refaulted at a pinned index is not pinned.
      inode.pins
        .map(
          ([s, e, holder, frames]) =>
            `${s}-${e}:${label(holder)}:${(frames ?? []).flatMap(([fs, fe, pfn]) => Array.from({ length: fe - fs }, (_, i) => `${fs + i}=${name(pfn + i)}`)).join(',')}`,
        )
        .sort(),
      inode.consumers.map(label).sort(),
    ];
  });

  const vms = snapshot.vms.map((vm) => {
    const slots = vm.slots.map((s) => [
      s.slot,
      s.baseGfn,
      s.npages,
      s.flags,
      s.gmemOnly,
      s.gmem ? [s.gmem.fd === null ? -1 : (fdRank.get(s.gmem.fd) ?? -2), s.gmem.pgoff] : null,
    ]);
    const span = vm.slots.reduce((max, s) => Math.max(max, s.baseGfn + s.npages), 0);
    const extent = (runs: Run<number>[]) => runs.reduce((max, [, end]) => Math.max(max, end), span);
    return [
      vm.dead === null ? 0 : 1,
      vm.mmu.inProgress,
      slots,
      expandLinear(vm.shared, 0, extent(vm.shared)).map(name),
      expandLinear(vm.private, 0, extent(vm.private)).map(name),
    ];
  });

  const handles = world.handles;
  const ioases = snapshot.ioases.map((ioas) => [
    ioas.domain ? 1 : 0,
    ioas.areas.map((area) => {
      const n = area.length / PAGE_SIZE;
      const mine = handles.areas.find((a) => a.iova === area.iova);
      return [
        area.iova,
        n,
        area.registered ? 1 : 0,
        expandFlags(area.revoked, n).map(Number),
        expandFlags(area.split4K, n).map(Number),
        expandLinear(area.ioptes, 0, n).map(name),
        // The truncation flag (history, for a witness) only where it can matter: on a mapping it invalidated.
        // Whether a user area's mapping is still mapped only matters while the area may still be filled (no device
        // yet: the first attach pins and maps it through that user address).
        mine
          ? [
              mine.page,
              mine.pages,
              mine.kind,
              mine.truncated.map((t, i) => (t && invalidated(world, snapshot, area, mine.page + i, i) ? 1 : 0)),
              mine.mapping && !handles.device ? (mine.mapping.mapped ? 1 : 0) : -1,
            ]
          : null,
      ];
    }),
  ]);

  let pending: unknown = null;
  if (handles.pending) {
    const { fault, page } = handles.pending;
    const vm = snapshot.vms[0]!;
    // A fault whose sampled seq is behind can only retry (mmu_invalidate_retry_gfn compares the seq first):
    // nothing else about it matters any more.
    pending = fault.mmuSeq === vm.mmu.seq ? [page, fault.side, name(fault.pfn)] : 'retry';
  }

  // Host PTEs a refault would not reproduce (see the header).
  let ptes: unknown = null;
  if (handles.mappingState === 'live' && handles.mapping) {
    const vm1 = snapshot.inodes.find((inode) => inode.ino === world.gmemIno);
    const first = 0; // the mmap starts at file offset 0
    const cache = vm1 ? expandLinear(vm1.pages, 0, world.config.pages) : [];
    const attributes = vm1 ? expandValues(vm1.attributes, world.config.pages, 'private') : [];
    const poison = vm1 ? expandFlags(vm1.hwpoison, world.config.pages) : [];
    const odd: Array<[number, number]> = [];
    for (const run of handles.mapping.pteRuns()) {
      for (let page = run.start; page < run.end; page++) {
        const pfn = run.value + (page - run.start);
        const index = first + page;
        if (cache[index] === pfn && attributes[index] === 'shared' && !poison[index]) continue;
        odd.push([page, name(pfn)]);
      }
    }
    ptes = odd;
  }

  // Frames truncated under a pin come back to the allocator at the last unpin: named, whatever leads to them.
  for (const [start, end, who] of snapshot.frameHolders)
    if (who.startsWith('orphan ')) for (let pfn = start; pfn < end; pfn++) name(pfn);
  // Frames held but not yet named: kept only when something names them later (poison); see the header.
  const holders: Array<[number, string]> = [];
  for (const [start, end, who] of snapshot.frameHolders) {
    // 'ino 1001@3' or 'orphan ino 1001@3 (holder)': a run's holder names its first frame; the index advances.
    const match = /^(.*?)ino (\d+)@(\d+)(.*)$/.exec(who);
    for (let pfn = start; pfn < end; pfn++) {
      if (!names.has(pfn)) continue;
      // Which pin holds a truncated page (the text after its index) is a name: only FrameOwner.holder reports it.
      const text = match
        ? `${match[1]}ino#${inoRank.get(Number(match[2])) ?? 'gone'}@${Number(match[3]) + (pfn - start)}`
        : label(who);
      holders.push([names.get(pfn)!, text]);
    }
  }
  holders.sort((a, b) => a[0] - b[0]);

  // The free list in allocation order, cut after the last frame something references.
  const order: number[] = [];
  for (let r = snapshot.freeFrames.length - 1; r >= 0; r--) {
    const [pfn, count] = snapshot.freeFrames[r]!;
    for (let i = 0; i < count; i++) order.push(pfn + i);
  }
  let last = -1;
  order.forEach((pfn, i) => {
    if (names.has(pfn)) last = i;
  });
  const free = order.slice(0, last + 1).map((pfn) => (names.has(pfn) ? names.get(pfn)! : 'x'));
  const poisoned = snapshot.poisoned
    .filter((pfn) => names.has(pfn))
    .map((pfn) => names.get(pfn)!)
    .sort((a, b) => a - b);

  return JSON.stringify([
    snapshot.fds.map(([, kind]) => kind),
    inodes,
    vms,
    snapshot.mappings.map(([, length, fileOffset, shared]) => [length, fileOffset, shared]),
    ioases,
    holders,
    free,
    poisoned,
    [
      handles.gmemOpen ? 1 : 0,
      handles.released ? 1 : 0,
      handles.mappingState,
      handles.device ? 1 : 0,
      handles.pins.map((p) => (p ? 1 : 0)),
      pending,
      ptes,
    ],
  ]);
}
