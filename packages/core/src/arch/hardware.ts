/**
 * What the hardware does when a device or the host kernel reaches a frame. The answer depends on the frame, not
 * on the mapping that led there: a stale IOPTE whose frame was freed and handed to another VM's guest_memfd
 * reaches *that* VM's page, with its hardware state. A frame of a 'coco' VM's guest_memfd whose attribute or
 * hardware state is private goes to the backend (deviceAccess / hostKernelAccess); anything else is ordinary
 * memory.
 */
import { PAGE_SIZE } from '../constants.js';
import type { AccessVerdict, FrameOwner } from '../access.js';
import type { Kernel } from '../kernel.js';
import type { GmemInode } from '../kvm/gmem-inode.js';
import type { PageStep } from '../mm/page-walk.js';
import type { PhysicalMemory } from '../mm/physical.js';
import * as door from './door.js';

/** Who owns frame `pfn` now, as a plain description. */
export function describeFrame(phys: PhysicalMemory, pfn: number): FrameOwner {
  const holder = phys.holderOf(pfn);
  if (!holder) return { kind: 'free' };
  if (holder.kind === 'anonymous') return { kind: 'anonymous', mapping: holder.label };
  if (holder.kind === 'orphan')
    return { kind: 'pinned', ino: holder.ino, offset: holder.index * PAGE_SIZE, holder: holder.holder };
  const offset = holder.index * PAGE_SIZE;
  if (holder.inode.kind === 'shmem') return { kind: 'shmem', ino: holder.inode.ino, offset };
  const gmem = holder.inode as unknown as GmemInode;
  return {
    kind: 'guest_memfd',
    ino: gmem.ino,
    offset,
    vm: gmem.vmLabel,
    attribute: gmem.attributeOf(holder.index),
    hardware: gmem.isHardwarePrivate(holder.index) ? 'private' : 'shared',
  };
}

/**
 * What the hardware does when a device or the host kernel touches page `index` of guest_memfd `gmem`: the
 * backend's verdict (deviceAccess / hostKernelAccess, checked by the door) for a page of a 'coco' VM whose
 * attribute or hardware state is private; undefined for ordinary memory. Changes nothing. `stale` says the entry
 * that led there no longer belongs to the page.
 */
export function gmemPageVerdict(
  kernel: Kernel,
  by: 'device' | 'host-kernel',
  op: string,
  gmem: GmemInode,
  index: number,
  write: boolean,
  stale: boolean,
): AccessVerdict | undefined {
  if (gmem.vmType !== 'coco') return undefined;
  const attribute = gmem.attributeOf(index);
  const hardware = gmem.isHardwarePrivate(index) ? 'private' : 'shared';
  if (attribute !== 'private' && hardware !== 'private') return undefined;
  const context = { attribute, hardware, write, vmType: gmem.vmType, stale } as const;
  return door.accessVerdict(kernel, op, by === 'device' ? 'deviceAccess' : 'hostKernelAccess', context);
}

/** The step the page walk takes at frame `pfn` under `verdict` (undefined: ordinary memory): the frame, poisoning it, or the fault. */
export function verdictStep(verdict: AccessVerdict | undefined, pfn: number, stale: boolean): PageStep {
  if (!verdict) return { pfn, stale };
  if (!verdict.allow) {
    const landsAt = verdict.lands ? { landsAt: pfn } : {};
    return { ...verdict, ...landsAt, ...(stale ? { staleAt: pfn } : {}) };
  }
  return { pfn, stale, poisons: verdict.poisons === true };
}

/**
 * One page of a device or host-kernel access that reached frame `pfn`: the step the page walk takes. `stale`
 * says the entry that led there no longer belongs to the frame's owner.
 */
export function frameStep(
  kernel: Kernel,
  by: 'device' | 'host-kernel',
  op: string,
  pfn: number,
  write: boolean,
  stale: boolean,
): PageStep {
  const holder = kernel.phys.holderOf(pfn);
  const verdict =
    holder?.kind === 'page-cache' && holder.inode.kind === 'guest_memfd'
      ? gmemPageVerdict(kernel, by, op, holder.inode as unknown as GmemInode, holder.index, write, stale)
      : undefined;
  return verdictStep(verdict, pfn, stale);
}
