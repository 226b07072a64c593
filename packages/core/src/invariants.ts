/**
 * Invariants the kernel must keep, checked over the whole host (kernel-contract §9.5). Each check walks runs,
 * never pages, so it stays cheap on a 1 TiB guest_memfd.
 */
import * as door from './arch/door.js';
import { PAGE_SIZE } from './constants.js';
import type { Ioas } from './iommufd/ioas.js';
import type { Kernel } from './kernel.js';
import type { GmemInode } from './kvm/gmem-inode.js';
import type { Vm } from './kvm/vm.js';
import type { HostMapping } from './mm/host-mapping.js';
import type { PageCacheInode } from './mm/inode.js';
import type { RangeMap } from './util/range-map.js';

/**
 * The host's live objects, each list in creation order (mappings in address order), as host.ts passes them to
 * the checks that walk the whole host: the Kernel keeps these lists write-only, so that it names no object type.
 */
export interface HostObjects {
  readonly gmemInodes: Iterable<GmemInode>;
  readonly vms: Iterable<Vm>;
  readonly ioases: Iterable<Ioas>;
  readonly mappings: Iterable<HostMapping>;
}

export type ViolationKind =
  /** An IOPTE points at a pfn its file no longer owns at that offset (I1). */
  | 'stale-iopte'
  /** A stage-2 entry points at a pfn the guest_memfd no longer owns, or maps a page through the wrong side (I3). */
  | 'stale-spte'
  /** A host user PTE points at a pfn the file no longer owns, or at a private page. */
  | 'stale-host-pte'
  /** An IOPTE maps a page the backend says no device may reach (I2: TDX private pages). */
  | 'unsafe-iopte'
  /** The attribute runs do not cover [0, size) or are not merged (I4). */
  | 'attributes'
  /**
   * The attribute and the hardware state disagree where the kernel keeps them in step: a page the hardware
   * holds as private whose attribute is shared (to-shared must take it out first, §4.2 step 13), or a private
   * stage-2 entry over a page the hardware does not hold (the entry is written after the page enters).
   */
  | 'hardware-state';

export interface Violation {
  kind: ViolationKind;
  message: string;
  /** The inode concerned, and the byte range of it. */
  ino?: number;
  offset?: number;
  length?: number;
  /** Who holds the bad entry: 'ioas:1/area:2', 'vm:4', 'mmap:0x...'. */
  owner?: string;
}

/**
 * A violation's identity across checks (kind, owner, inode, range; not the message): a step's new violations are
 * those whose key the check before it lacked. The demo's runner and the explorer's traces both diff this way.
 */
export const violationKey = (v: Violation): string =>
  `${v.kind}|${v.owner ?? ''}|${v.ino ?? ''}|${v.offset ?? ''}|${v.length ?? ''}`;

/**
 * A map's runs as [start, end, value] triples: the list RangeMap keeps for snapshots, the same array while the map
 * does not change (a snapshot taken before the check has usually listed it already), so walking it allocates
 * nothing, where a for-of over the map runs a generator and makes an object per run.
 */
const runsOf = <V>(map: RangeMap<V>) => map.snapshotRuns();

/**
 * Compare a run of entries (file pages [first, first + n) expected at pfns [pfn, pfn + n)) with the file's page
 * cache; return the file page ranges where they disagree.
 */
function mismatches(
  inode: PageCacheInode,
  first: number,
  n: number,
  pfn: number,
): Array<{ start: number; end: number }> {
  if (inode.evicted) return [{ start: first, end: first + n }];
  const bad: Array<{ start: number; end: number }> = [];
  let at = first;
  for (const run of inode.pages.overlapping(first, first + n)) {
    if (run.start > at) bad.push({ start: at, end: run.start });
    // Within a run, the file's pfns and the entry's pfns both advance by one per page.
    if (run.value !== pfn + (run.start - first)) bad.push({ start: run.start, end: run.end });
    at = run.end;
  }
  if (at < first + n) bad.push({ start: at, end: first + n });
  return bad;
}

/**
 * The file page ranges of a run of IOPTEs (file pages [first, first + n) at pfns [pfn, pfn + n)) whose frame is
 * held neither by the file at that index nor, once truncated, by a pin of that index: frames freed or reused.
 * With `anonymous` (an area over a private mapping) an anonymous COW copy still allocated counts as held.
 */
function unheld(
  kernel: Kernel,
  inode: PageCacheInode,
  first: number,
  n: number,
  pfn: number,
  anonymous = false,
): Array<{ start: number; end: number }> {
  const bad: Array<{ start: number; end: number }> = [];
  const add = (start: number, end: number) => {
    const last = bad[bad.length - 1];
    if (last && last.end === start) last.end = end;
    else if (end > start) bad.push({ start, end });
  };
  for (const miss of mismatches(inode, first, n, pfn)) {
    // Walk the frames' holder runs (pfn space); file index = pfn - pfn + first, a constant shift.
    const shift = first - pfn;
    let at = miss.start;
    for (const run of kernel.phys.holdersIn(miss.start - shift, miss.end - miss.start)) {
      const from = Math.max(run.start + shift, miss.start);
      const to = Math.min(run.end + shift, miss.end);
      add(at, from); // a gap between holder runs: free frames
      const h = run.value;
      // Over a private mapping, a live anonymous COW copy is held too (by the mapping, and by the area's pin).
      const held =
        (h.kind === 'orphan' && h.ino === inode.ino && h.index - run.start === shift) ||
        (anonymous && h.kind === 'anonymous');
      if (!held) add(from, to);
      at = to;
    }
    add(at, miss.end);
  }
  return bad;
}

/** [range.start, range.end) less the sorted, disjoint `holes`. */
function subtract(
  range: { start: number; end: number },
  holes: ReadonlyArray<{ start: number; end: number }>,
): Array<{ start: number; end: number }> {
  const out: Array<{ start: number; end: number }> = [];
  let at = range.start;
  for (const hole of holes) {
    if (hole.end <= at || hole.start >= range.end) continue;
    if (hole.start > at) out.push({ start: at, end: hole.start });
    at = Math.max(at, hole.end);
  }
  if (at < range.end) out.push({ start: at, end: range.end });
  return out;
}

const SIDES = ['shared', 'private'] as const;

export function checkInvariants(kernel: Kernel, { gmemInodes, vms, ioases, mappings }: HostObjects): Violation[] {
  const violations: Violation[] = [];

  for (const inode of gmemInodes) {
    let at = 0;
    let previous: string | undefined;
    for (const [start, end, value] of runsOf(inode.attributes)) {
      if (start !== at || value === previous) {
        violations.push({
          kind: 'attributes',
          message: `ino ${inode.ino}: attribute runs are not contiguous and merged at page ${start}`,
          ino: inode.ino,
          offset: start * PAGE_SIZE,
        });
      }
      at = end;
      previous = value;
    }
    if (at !== inode.npages) {
      violations.push({
        kind: 'attributes',
        message: `ino ${inode.ino}: attributes cover [0, ${at}) pages, not [0, ${inode.npages})`,
        ino: inode.ino,
      });
    }
    for (const [start, end] of runsOf(inode.hardware)) {
      for (const attr of inode.attributes.overlapping(start, end)) {
        if (attr.value === 'private') continue;
        violations.push({
          kind: 'hardware-state',
          message: `ino ${inode.ino}: the hardware holds shared pages as private`,
          ino: inode.ino,
          offset: attr.start * PAGE_SIZE,
          length: (attr.end - attr.start) * PAGE_SIZE,
        });
      }
    }
  }

  for (const vm of vms) {
    for (const side of SIDES) {
      for (const run of runsOf(vm.stage2[side])) {
        const [runStart, runEnd, runPfn] = run;
        for (let gfn = runStart; gfn < runEnd;) {
          const slot = vm.slotAt(gfn);
          const file = slot?.gmem?.file;
          if (!slot || !file) {
            violations.push({
              kind: 'stale-spte',
              message: `vm:${vm.fd}: stage-2 entry for gfn 0x${gfn.toString(16)} outlived its guest_memfd binding`,
              owner: `vm:${vm.fd}`,
            });
            break;
          }
          const end = Math.min(runEnd, slot.baseGfn + slot.npages);
          const first = gfn - slot.baseGfn + slot.gmem!.pgoff;
          const pfn = runPfn + (gfn - runStart);
          for (const bad of mismatches(file.inode, first, end - gfn, pfn)) {
            violations.push({
              kind: 'stale-spte',
              message: `vm:${vm.fd}: stage-2 entries point at pages ino ${file.inode.ino} no longer holds`,
              ino: file.inode.ino,
              offset: bad.start * PAGE_SIZE,
              length: (bad.end - bad.start) * PAGE_SIZE,
              owner: `vm:${vm.fd}`,
            });
          }
          if (vm.type === 'coco' && side === 'private') {
            for (const hole of file.inode.hardware.gaps(first, first + (end - gfn))) {
              violations.push({
                kind: 'hardware-state',
                message: `vm:${vm.fd}: a private stage-2 entry maps a page the hardware does not hold as private`,
                ino: file.inode.ino,
                offset: hole.start * PAGE_SIZE,
                length: (hole.end - hole.start) * PAGE_SIZE,
                owner: `vm:${vm.fd}`,
              });
            }
          }
          if (vm.type === 'coco') {
            for (const attr of file.inode.attributes.overlapping(first, first + (end - gfn))) {
              if (attr.value !== side) {
                violations.push({
                  kind: 'stale-spte',
                  message: `vm:${vm.fd}: a ${side} stage-2 entry maps a ${attr.value} page`,
                  ino: file.inode.ino,
                  offset: attr.start * PAGE_SIZE,
                  length: (attr.end - attr.start) * PAGE_SIZE,
                  owner: `vm:${vm.fd}`,
                });
              }
            }
          }
          gfn = end;
        }
      }
    }
  }

  for (const ioas of ioases) {
    for (const area of ioas.areasInOrder()) {
      // A private user mapping: its IOPTEs may reach anonymous COW copies, held by the mapping while it lives and
      // by the area's GUP pin after munmap or MADV_DONTNEED (an orphan at that index, releaseCopies).
      const anonymous = area.source.kind === 'user' && !area.source.mapping.shared;
      const first = area.source.firstIndex;
      const gmem = area.isGmem ? (area.inode as import('./kvm/gmem-inode.js').GmemInode) : undefined;
      for (const [runStart, runEnd, runPfn] of runsOf(area.ioptes)) {
        // guest_memfd (I1): an IOPTE must reach the page its file holds at that index now. Any other file: an
        // IOPTE must reach a frame still held, by the file or by a pin — a page punched out of a pinned memfd
        // lives on until the unpin (batch_unpin), and a device reaching it reaches no one else's memory; a frame
        // freed or handed to another owner is DMA reaching freed memory (kernel-contract §9.5).
        const stale = gmem
          ? mismatches(area.inode, first + runStart, runEnd - runStart, runPfn)
          : unheld(kernel, area.inode, first + runStart, runEnd - runStart, runPfn, anonymous);
        for (const bad of stale) {
          violations.push({
            kind: 'stale-iopte',
            message: `${area.label}: IOPTEs point at pages ino ${area.inode.ino} no longer holds (a DMA through them reaches whoever holds those frames now: free, reused or pinned)`,
            ino: area.inode.ino,
            offset: bad.start * PAGE_SIZE,
            length: (bad.end - bad.start) * PAGE_SIZE,
            owner: area.label,
          });
        }
        if (gmem && !gmem.evicted) {
          // Only live IOPTEs can reach a guest page; a stale one is reported above.
          for (const attr of gmem.attributes.overlapping(first + runStart, first + runEnd)) {
            const reachable = door.deviceMayReach(kernel, 'checkInvariants', {
              attribute: gmem.vmType === 'coco' ? attr.value : 'shared',
              vmType: gmem.vmType,
            });
            if (reachable) continue;
            for (const live of subtract(attr, stale)) {
              violations.push({
                kind: 'unsafe-iopte',
                message: `${area.label}: IOPTEs map ${attr.value} pages that no device may reach on ${kernel.backend.name}`,
                ino: gmem.ino,
                offset: live.start * PAGE_SIZE,
                length: (live.end - live.start) * PAGE_SIZE,
                owner: area.label,
              });
            }
          }
        }
      }
    }
  }

  for (const mapping of mappings) {
    if (!mapping.mapped) continue;
    const inode = mapping.file.inode;
    const first = mapping.fileOffset / PAGE_SIZE;
    for (const run of mapping.pteRuns()) {
      for (const bad of mismatches(inode, first + run.start, run.end - run.start, run.value)) {
        violations.push({
          kind: 'stale-host-pte',
          message: `mmap:0x${mapping.address.toString(16)}: PTEs point at pages ino ${inode.ino} no longer holds`,
          ino: inode.ino,
          offset: bad.start * PAGE_SIZE,
          length: (bad.end - bad.start) * PAGE_SIZE,
        });
      }
      const attributes = (inode as Partial<import('./kvm/gmem-inode.js').GmemInode>).attributes;
      for (const attr of attributes?.overlapping(first + run.start, first + run.end) ?? []) {
        if (attr.value === 'private') {
          violations.push({
            kind: 'stale-host-pte',
            message: `mmap:0x${mapping.address.toString(16)}: a host PTE maps a private page`,
            ino: inode.ino,
            offset: attr.start * PAGE_SIZE,
            length: (attr.end - attr.start) * PAGE_SIZE,
          });
        }
      }
    }
  }
  return violations;
}
