/**
 * The properties, each named, each a predicate over one transition (an action, its outcome, the state before and
 * after) or over a state; and for each, its witness: a transition showing that the situation the property guards
 * arises at all (Stateright's "sometimes" beside its "always"). A property whose witness the search never meets
 * is reported vacuous, not as holding.
 *
 * Definitions (README.md repeats them with their sources):
 * - no-dma-after-free: no DMA reaches a frame the guest_memfd no longer owns at the IOPTE's index, i.e. the
 *   device access's AccessResult has no `reached` frame (the core lists there every frame reached through a stale
 *   IOPTE, with its owner now: free, another page or VM, a pin). Witness: a DMA through a mapping a truncation
 *   invalidated: the area's page was truncated (punched, or the file released) after the area was made, and the
 *   area is revoked or its IOPTE no longer reaches the file's page.
 * - no-fatal-fault: no action takes the host down (`host.crashed` stays undefined: no uncontained machine check,
 *   kernel oops or hypervisor panic). Witness: a DMA aimed at a hardware-private page: the page its area maps, or
 *   the frame its IOPTE reaches, is held by firmware as a guest's private page. (Host accesses through the mmap
 *   meet the fault handler, which refuses private pages on every architecture; a DMA meets the hardware.)
 * - no-stale-stage2: no state has a stage-2 entry that outlived a truncation's invalidate_end or maps a page
 *   through the wrong side (`host.checkInvariants()` kind 'stale-spte'). Witness: a truncation (PUNCH_HOLE, or
 *   the release of the file) of a page that a stage-2 entry maps.
 * - no-private-leak: no device access and no host access through the VMM's mmap moves bytes to or from a frame
 *   that was hardware-private when the access began. Bytes moved on the page when the access completed it (an
 *   `ok` result: the architecture let it through), or, for a write that faulted, when the backend's verdict for
 *   that frame says the write lands (`deviceAccess(...).lands`: TDX writes the line and breaks its integrity
 *   before the machine check). A fault that stops the access before the page moves nothing. The
 *   access is single-page, so the frame is known before the call: the IOPTE's frame (DMA), or the PTE's frame,
 *   else the file's frame at that index (host). Witness: as for no-fatal-fault.
 * - failed-call-changes-nothing: a call that throws GmemError leaves `host.snapshot()` deep-equal (kernel-contract
 *   §9.5 I5). Witness: a call that throws GmemError.
 * - refuse-means-refuse: no conversion of a shared page to private completes while an IOAS area has an IOPTE
 *   over the page and the architecture answers 'refuse' for it: the backend's `conversionPolicy` for that area
 *   (asked by the explorer with the context the registry would pass, in either contract mode) or its
 *   `hypervisorRefusal`. Only backends that can answer 'refuse' give it teeth (none of the four published
 *   defaults do; pkvm:refuse-dma-mapped's hypervisorRefusal and a refusing policy do). Witness: a conversion of a
 *   shared page to private attempted while an area has an IOPTE over it.
 */
import {
  PAGE_SIZE,
  type AccessResult,
  type ArchBackend,
  type Contract,
  type DmaAreaInfo,
  type HardwareState,
  type PageAttribute,
} from '@gmemlab/core';
import type { Action, Outcome } from './actions.js';
import { expandFlags, expandLinear, expandValues, invalidated, type Snapshot } from './canonical.js';
import { iovaOf, type World } from './world.js';

export const PROPERTY_NAMES = [
  'no-dma-after-free',
  'no-fatal-fault',
  'no-stale-stage2',
  'no-private-leak',
  'failed-call-changes-nothing',
  'refuse-means-refuse',
] as const;
export type PropertyName = (typeof PROPERTY_NAMES)[number];

export interface PropertyDefinition {
  name: PropertyName;
  /** What must always hold. */
  always: string;
  /** The situation it guards, which must arise for the result to mean anything. */
  sometimes: string;
  /** Where the rule comes from. */
  source: string;
}

export const PROPERTIES: readonly PropertyDefinition[] = Object.freeze([
  {
    name: 'no-dma-after-free',
    always:
      "no DMA reaches a frame the guest_memfd no longer owns at that index (the access's `reached` frames: free, reused by another page or VM, or held by a pin)",
    sometimes:
      "a DMA through a mapping a truncation invalidated (the area's page was truncated after it was made, and the area is revoked or its IOPTE stale)",
    source: 'kernel-contract §9.3, §9.5 I1; seed thread RFC-S1, RFC-J1',
  },
  {
    name: 'no-fatal-fault',
    always:
      'no action takes the host down: host.crashed stays undefined (no uncontained machine check, oops or hypervisor panic)',
    sometimes: "a DMA aimed at a page that firmware holds as a guest's private page",
    source: 'kernel-contract §9.4, §9.5 I2; seed thread RFC-J5 (Xu Yilun: a DMA to TD memory is a host machine check)',
  },
  {
    name: 'no-stale-stage2',
    always:
      "no stage-2 entry survives a truncation's invalidate_end, and none maps a page through the wrong side (invariant 'stale-spte')",
    sometimes: 'a truncation (PUNCH_HOLE or the release of the file) of a page a stage-2 entry maps',
    source: 'kernel-contract §3.5, §3.6, §9.5 I3',
  },
  {
    name: 'no-private-leak',
    always:
      "no device access and no host access through the mmap moves bytes to or from a frame that is hardware-private: completed on that page, or a faulting write that lands there by the backend's verdict",
    sometimes: "a DMA aimed at a page that firmware holds as a guest's private page",
    source: 'kernel-contract §9.4, §3.3; arch-behaviour §1',
  },
  {
    name: 'failed-call-changes-nothing',
    always: 'a call that throws GmemError leaves host.snapshot() deep-equal',
    sometimes: 'a call throws GmemError',
    source: 'kernel-contract §9.5 I5, §4.2',
  },
  {
    name: 'refuse-means-refuse',
    always:
      "no conversion of a shared page to private completes while an IOPTE maps it and the architecture answers 'refuse' for it (conversionPolicy or hypervisorRefusal)",
    sometimes: 'a conversion of a shared page to private attempted while an IOAS area has an IOPTE over it',
    source: 'kernel-contract §9.4; pKVM-IA#92 (prior-art §7)',
  },
] satisfies PropertyDefinition[]);

/** What a transition showed: the properties it violates and the ones it witnesses, each with a short reason. */
export interface Findings {
  violated: Array<[PropertyName, string]>;
  witnessed: Array<[PropertyName, string]>;
}

/** A frame as the state before an action knows it. */
interface FrameInfo {
  pfn: number;
  /** The guest_memfd page holding it, if one does. */
  owner?: { ino: number; index: number; attribute: PageAttribute; hardware: HardwareState };
}

/** Facts about the state before an action that the checks need (computed before the action runs). */
export interface Before {
  snapshot: Snapshot;
  device: boolean;
  released: boolean;
  /** For DMA: the target area and frame; for host accesses: the frame. */
  target?: {
    areaPage?: number;
    truncated?: boolean;
    invalidated?: boolean;
    frame?: FrameInfo;
    areaPageHardwarePrivate?: boolean;
    stale?: boolean;
  };
  /** For to-private: whether the page was shared, and the areas with IOPTEs over it. */
  conversion?: { wasShared: boolean; mapped: DmaAreaInfo[] };
  /** For truncations: whether a stage-2 entry of VM 1 maps the page (or, for a release, any page). */
  stage2Over?: boolean;
}

function holderOf(snapshot: Snapshot, pfn: number): { ino: number; index: number } | undefined {
  for (const [start, end, who] of snapshot.frameHolders) {
    if (pfn < start || pfn >= end) continue;
    const match = /^ino (\d+)@(\d+)$/.exec(who);
    // A run of page-cache frames has consecutive indices: the holder string names the run's first one.
    return match ? { ino: Number(match[1]), index: Number(match[2]) + (pfn - start) } : undefined;
  }
  return undefined;
}

function frameInfo(snapshot: Snapshot, pfn: number): FrameInfo {
  const holder = holderOf(snapshot, pfn);
  if (!holder) return { pfn };
  const inode = snapshot.inodes.find((i) => i.ino === holder.ino);
  if (!inode) return { pfn };
  const n = Math.ceil(inode.size / PAGE_SIZE);
  const attribute = expandValues(inode.attributes, n, 'private')[holder.index] as PageAttribute;
  const hardware = expandFlags(inode.hardware, n)[holder.index] ? 'private' : 'shared';
  return { pfn, owner: { ino: holder.ino, index: holder.index, attribute, hardware } };
}

/** VM 1's guest_memfd in the snapshot (absent once released). */
function vm1Inode(world: World, snapshot: Snapshot) {
  return snapshot.inodes.find((inode) => inode.ino === world.gmemIno);
}

function pageHardwarePrivate(world: World, snapshot: Snapshot, page: number): boolean {
  const inode = vm1Inode(world, snapshot);
  return inode ? expandFlags(inode.hardware, world.config.pages)[page] === true : false;
}

/** Gather the facts an action's checks need, before it runs. */
export function before(world: World, action: Action, snapshot: Snapshot): Before {
  const handles = world.handles;
  const facts: Before = {
    snapshot,
    device: handles.device !== undefined,
    released: handles.released,
  };
  const ioas = snapshot.ioases[0];
  if (action.kind === 'dma') {
    // The area over the IOVA, and which of its pages the DMA reaches (an area of the whole file has one per page).
    const iova = iovaOf(action.slot!);
    const mine = handles.areas.find((a) => a.iova <= iova && iova < a.iova + a.pages * PAGE_SIZE);
    const area = ioas?.areas.find((a) => a.iova <= iova && iova < a.iova + a.length);
    const index = area ? (iova - area.iova) / PAGE_SIZE : 0;
    const page = mine ? mine.page + index : 0;
    let frame: FrameInfo | undefined;
    let stale = false;
    if (area && !expandFlags(area.revoked, index + 1)[index]) {
      const pfn = expandLinear(area.ioptes, index, index + 1)[0];
      if (pfn !== undefined) {
        frame = frameInfo(snapshot, pfn);
        const inode = mine ? vm1Inode(world, snapshot) : undefined;
        stale = !inode || expandLinear(inode.pages, 0, world.config.pages)[page] !== pfn;
      }
    }
    facts.target = mine
      ? {
          areaPage: page,
          truncated: mine.truncated[index] === true,
          invalidated: area ? invalidated(world, snapshot, area, page, index) : false,
          areaPageHardwarePrivate: pageHardwarePrivate(world, snapshot, page),
          stale,
          ...(frame ? { frame } : {}),
        }
      : { ...(frame ? { frame } : {}), stale };
  } else if (action.kind === 'host-access') {
    const page = action.page!;
    const pte = handles.mapping?.pteRuns().find((run) => run.start <= page && page < run.end);
    const inode = vm1Inode(world, snapshot);
    const pfn = pte
      ? pte.value + (page - pte.start)
      : inode
        ? expandLinear(inode.pages, 0, world.config.pages)[page]
        : undefined;
    facts.target = {
      areaPage: page,
      areaPageHardwarePrivate: pageHardwarePrivate(world, snapshot, page),
      ...(pfn !== undefined ? { frame: frameInfo(snapshot, pfn) } : {}),
    };
  } else if (action.kind === 'to-private') {
    const page = action.page!;
    const inode = vm1Inode(world, snapshot);
    const wasShared = inode ? expandValues(inode.attributes, world.config.pages, 'private')[page] === 'shared' : false;
    const mapped: DmaAreaInfo[] = [];
    for (const area of ioas?.areas ?? []) {
      const mine = handles.areas.find((a) => a.iova === area.iova);
      // An area with an IOPTE over this page (an area of the whole file may have one over another page only).
      if (
        !mine ||
        page < mine.page ||
        page >= mine.page + mine.pages ||
        expandLinear(area.ioptes, page - mine.page, page - mine.page + 1)[0] === undefined
      )
        continue;
      mapped.push({
        ioas: ioas!.id,
        area: area.id,
        iova: area.iova,
        length: area.length,
        fileOffset: mine.page * PAGE_SIZE,
        iopteSize: PAGE_SIZE,
        hasIoptes: true,
        source: mine.kind,
      });
    }
    facts.conversion = { wasShared, mapped };
  } else if (
    action.kind === 'punch' ||
    action.kind === 'close' ||
    action.kind === 'munmap' ||
    action.kind === 'unmap'
  ) {
    const vm = snapshot.vms[0];
    const mapsPage = (gfn: number) =>
      [...(vm?.shared ?? []), ...(vm?.private ?? [])].some(([s, e]) => s <= gfn && gfn < e);
    facts.stage2Over =
      action.kind === 'punch' ? mapsPage(action.page!) : [...(vm?.shared ?? []), ...(vm?.private ?? [])].length > 0;
  }
  return facts;
}

/** Does the backend refuse converting this page to private while `mapped` areas map it? */
function architectureRefuses(
  backend: ArchBackend,
  contract: Contract,
  page: number,
  mapped: readonly DmaAreaInfo[],
): string | undefined {
  const offset = page * PAGE_SIZE;
  for (const area of mapped) {
    let answer: unknown;
    try {
      answer = backend.conversionPolicy({
        to: 'private',
        offset,
        length: PAGE_SIZE,
        contract,
        area,
        overlapOffset: offset,
        overlapLength: PAGE_SIZE,
      });
    } catch {
      answer = undefined;
    }
    if (answer === 'refuse')
      return `conversionPolicy answers 'refuse' for area ${area.area} at IOVA 0x${area.iova.toString(16)}`;
  }
  if (backend.hypervisorRefusal && mapped.length > 0) {
    let refusal: unknown;
    try {
      refusal = backend.hypervisorRefusal({
        to: 'private',
        offset,
        length: PAGE_SIZE,
        contract,
        dmaMapped: mapped.map((area) => ({ offset, length: PAGE_SIZE, area })),
      });
    } catch {
      refusal = undefined;
    }
    if (typeof refusal === 'number')
      return `the ${backend.name} hypervisor refuses (hypervisorRefusal answers offset ${refusal})`;
  }
  return undefined;
}

/** The owners (kinds) of the frames an access reached through stale entries, each once. */
export const ownerKinds = (access: AccessResult | undefined) => [
  ...new Set((access?.reached ?? []).map((r) => r.owner.kind)),
];

/** The findings of one transition. */
export function checkTransition(
  world: World,
  backend: ArchBackend,
  contract: Contract,
  action: Action,
  outcome: Outcome,
  facts: Before,
  after: Snapshot,
  unchanged: boolean,
): Findings {
  // `unchanged`: the snapshot after is deep-equal to the snapshot before.
  const violated: Findings['violated'] = [];
  const witnessed: Findings['witnessed'] = [];
  const access = outcome.kind === 'ok' ? outcome.access : outcome.kind === 'fault' ? outcome.access : undefined;

  // no-dma-after-free
  if (action.kind === 'dma') {
    if (access?.reached && access.reached.length > 0)
      violated.push([
        'no-dma-after-free',
        `the DMA reaches a frame the guest_memfd no longer owns (now: ${ownerKinds(access).join(', ')})`,
      ]);
    if (facts.target?.truncated && facts.target.invalidated)
      witnessed.push(['no-dma-after-free', 'a DMA through a mapping a truncation invalidated']);
  }

  // no-fatal-fault
  if (after.crashed !== null && facts.snapshot.crashed === null) {
    const crash = after.crashed as { fault?: string; mechanism?: string };
    violated.push(['no-fatal-fault', `the host goes down: ${crash.fault ?? 'fatal fault'} (${crash.mechanism ?? ''})`]);
  }

  // no-private-leak, and the witness shared with no-fatal-fault
  if (action.kind === 'dma' || action.kind === 'host-access') {
    const target = facts.target;
    const frame = target?.frame;
    const frameHw = frame?.owner?.hardware === 'private';
    // The witness is a device's: a host access through the mmap meets the fault handler, which refuses private
    // pages on every architecture; a DMA meets the hardware, where architectures differ.
    if (action.kind === 'dma' && (target?.areaPageHardwarePrivate || frameHw)) {
      witnessed.push(['no-fatal-fault', 'a DMA aimed at a hardware-private page']);
      witnessed.push(['no-private-leak', 'a DMA aimed at a hardware-private page']);
    }
    if (frameHw && access) {
      const write = action.write === true;
      let landed = false;
      if (!access.ok && write && action.kind === 'dma') {
        let verdict: unknown;
        try {
          verdict = backend.deviceAccess({
            attribute: frame!.owner!.attribute,
            hardware: 'private',
            write,
            vmType: 'coco',
            stale: facts.target?.stale === true,
          });
        } catch {
          verdict = undefined;
        }
        landed =
          typeof verdict === 'object' &&
          verdict !== null &&
          (verdict as { allow?: boolean }).allow === false &&
          (verdict as { lands?: boolean }).lands === true;
      }
      if (access.ok || landed) {
        violated.push([
          'no-private-leak',
          `${action.kind === 'dma' ? 'a DMA' : 'a host access'} ${write ? 'writes' : 'reads'} a hardware-private frame${landed ? ' (the write lands before the fault)' : ''}`,
        ]);
      }
    }
  }

  // failed-call-changes-nothing
  if (outcome.kind === 'errno') {
    witnessed.push(['failed-call-changes-nothing', `${outcome.error.errno} from ${outcome.error.op ?? action.id}`]);
    if (!unchanged)
      violated.push([
        'failed-call-changes-nothing',
        `the call failed with ${outcome.error.errno} and the snapshot changed`,
      ]);
  }

  // refuse-means-refuse
  if (action.kind === 'to-private' && facts.conversion?.wasShared && facts.conversion.mapped.length > 0) {
    witnessed.push(['refuse-means-refuse', 'a conversion to private under a live DMA mapping']);
    if (outcome.kind === 'ok') {
      const refusal = architectureRefuses(backend, contract, action.page!, facts.conversion.mapped);
      if (refusal) violated.push(['refuse-means-refuse', `the conversion completed although ${refusal}`]);
    }
  }

  // no-stale-stage2's witness (the property itself is a state predicate: checkState)
  if (facts.stage2Over) {
    const truncated = (action.kind === 'punch' && outcome.kind === 'ok') || (!facts.released && world.handles.released);
    if (truncated)
      witnessed.push([
        'no-stale-stage2',
        action.kind === 'punch'
          ? 'PUNCH_HOLE of a page a stage-2 entry maps'
          : 'the release of the file while stage-2 entries map it',
      ]);
  }
  return { violated, witnessed };
}

/** The findings of a state (the state predicates). */
export function checkState(world: World): Findings {
  const stale = world.host.checkInvariants().filter((v) => v.kind === 'stale-spte');
  return { violated: stale.length > 0 ? [['no-stale-stage2', stale[0]!.message]] : [], witnessed: [] };
}
