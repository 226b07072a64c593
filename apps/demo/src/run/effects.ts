/**
 * What the kernel did during a call, from the host's events: invalidations and their cause, entries zapped,
 * IOMMU areas revoked, firmware steps, hardware-state changes. Ranges are kept to the first 64 per step.
 */
import type { GmemEvent } from '@gmemlab/core';
import type { StepEffects } from './types.js';

const KEPT = 64;

export const emptyEffects = (): StepEffects => ({
  invalidations: [],
  zapped: { stage2: 0, hostPte: 0, iopte: 0 },
  revoked: [],
  pipeline: {},
  hardware: { enter: 0, leave: 0 },
});

/** Add the events of one call to `effects`. */
export function addEvents(effects: StepEffects, events: readonly GmemEvent[]): void {
  for (const e of events) {
    switch (e.type) {
      case 'invalidate-begin':
        if (effects.invalidations.length < KEPT)
          effects.invalidations.push({ cause: e.cause, ino: e.ino, offset: e.offset, length: e.length });
        break;
      case 'zap':
        if (e.target === 'stage2') effects.zapped.stage2 += e.end - e.start;
        else if (e.target === 'host-pte') effects.zapped.hostPte += e.end - e.start;
        else effects.zapped.iopte += e.end - e.start;
        break;
      case 'revoke':
        if (effects.revoked.length < KEPT)
          effects.revoked.push({
            area: `ioas:${e.ioas}/area:${e.area}`,
            iova: e.iova,
            length: e.length,
            cause: e.cause,
          });
        break;
      case 'pipeline':
        effects.pipeline[e.step] = (effects.pipeline[e.step] ?? 0) + e.count;
        break;
      case 'hardware':
        effects.hardware[e.change === 'enter' ? 'enter' : 'leave'] += e.length / 4096;
        break;
      default:
        break;
    }
  }
}

/** Fold one iteration's effects into a repeated step's record. */
export function mergeEffects(into: StepEffects, from: StepEffects): void {
  for (const i of from.invalidations) if (into.invalidations.length < KEPT) into.invalidations.push(i);
  for (const r of from.revoked) if (into.revoked.length < KEPT) into.revoked.push(r);
  into.zapped.stage2 += from.zapped.stage2;
  into.zapped.hostPte += from.zapped.hostPte;
  into.zapped.iopte += from.zapped.iopte;
  for (const [k, v] of Object.entries(from.pipeline)) into.pipeline[k] = (into.pipeline[k] ?? 0) + v;
  into.hardware.enter += from.hardware.enter;
  into.hardware.leave += from.hardware.leave;
}
