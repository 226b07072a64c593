/**
 * The invariant violations new at a step: the host's check after the call, less those the check before it already
 * reported (by core's `violationKey`: kind, owner, inode and range). And whether a DMA that completed went through
 * an IOPTE the check reports as unsafe.
 */
import { PAGE_SIZE, violationKey, type Device, type Violation } from '@gmemlab/core';
import type { ViolationSummary } from './types.js';

/** The violations seen so far, by key; `next` takes a check's violations and returns those new since the last. */
export class ViolationDiff {
  private known = new Set<string>();

  next(current: readonly Violation[]): ViolationSummary[] {
    const fresh = current.filter((v) => !this.known.has(violationKey(v))).map(summarizeViolation);
    this.known = new Set(current.map(violationKey));
    return fresh;
  }
}

export const summarizeViolation = (v: Violation): ViolationSummary => ({
  kind: v.kind,
  message: v.message,
  ...(v.owner ? { owner: v.owner } : {}),
  ...(v.ino !== undefined ? { ino: v.ino } : {}),
  ...(v.offset !== undefined ? { offset: v.offset } : {}),
  ...(v.length !== undefined ? { length: v.length } : {}),
});

/**
 * Whether a DMA that completed went through an IOPTE the model reports as unsafe: per page, the area the IOVA page
 * falls in and the file page it maps, against the open 'unsafe-iopte' violations (area label, inode, file range).
 * A DMA to a shared page of an area whose other pages are private is not counted (kernel-contract §9.5 I2).
 */
export function throughUnsafeIopte(
  dma: { device: Pick<Device, 'ioas'>; iova: number; length: number },
  open: readonly Violation[],
): boolean {
  const unsafe = open.filter((v) => v.kind === 'unsafe-iopte' && v.offset !== undefined && v.length !== undefined);
  if (unsafe.length === 0 || !(dma.length > 0)) return false;
  const last = Math.floor((dma.iova + dma.length - 1) / PAGE_SIZE);
  for (let page = Math.floor(dma.iova / PAGE_SIZE); page <= last; page++) {
    const area = dma.device.ioas.areaAt(page);
    if (!area) continue;
    const at = (area.first + page - area.iova / PAGE_SIZE) * PAGE_SIZE;
    if (
      unsafe.some(
        (v) => v.owner === area.label && v.ino === area.inode.ino && at >= v.offset! && at < v.offset! + v.length!,
      )
    )
      return true;
  }
  return false;
}
