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
  if (holder.kind === 'orphan') return { kind: 'pinned', ino: holder.ino, offset: holder.index * PAGE_SIZE, holder: holder.holder };
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
 * One page of a device or host-kernel access that reached frame `pfn`: the step the page walk takes (the frame,
 * poisoning it, or the fault). `stale` says the entry that led there no longer belongs to the frame's owner.
 */
export function frameStep(kernel: Kernel, by: 'device' | 'host-kernel', op: string, pfn: number, write: boolean, stale: boolean): PageStep {
  const holder = kernel.phys.holderOf(pfn);
  if (holder?.kind === 'page-cache' && holder.inode.kind === 'guest_memfd') {
    const gmem = holder.inode as unknown as GmemInode;
    const attribute = gmem.attributeOf(holder.index);
    const hardware = gmem.isHardwarePrivate(holder.index) ? 'private' : 'shared';
    if (gmem.vmType === 'coco' && (attribute === 'private' || hardware === 'private')) {
      const context = { attribute, hardware, write, vmType: gmem.vmType, stale } as const;
      const verdict: AccessVerdict = door.accessVerdict(kernel, op, by === 'device' ? 'deviceAccess' : 'hostKernelAccess', context);
      if (!verdict.allow) {
        const landsAt = verdict.lands ? { landsAt: pfn } : {};
        return { ...verdict, ...landsAt, ...(stale ? { staleAt: pfn } : {}) };
      }
      return { pfn, stale, poisons: verdict.poisons === true };
    }
  }
  return { pfn, stale };
}
