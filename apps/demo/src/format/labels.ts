/**
 * The words a run record carries for people: a step's compact label ('EAGAIN @4 KiB', 'machine-check FATAL'), an
 * expectation as written, the arguments as the author wrote them, the owner of a frame a stale access reached.
 * The runner records them (they are part of the JSON); every format shows them as they are.
 */
import type { FrameOwner } from '@gmemlab/core';
import { CALLS } from '../scenario/calls.js';
import { evaluate, formatSize, type Expr } from '../scenario/expr.js';
import type { CallStep, Outcome } from '../scenario/load.js';
import type { AccessSummary, StepResult } from '../run/types.js';

/** Who owns a frame, in a few words. */
export function describeOwner(owner: FrameOwner): string {
  switch (owner.kind) {
    case 'free':
      return 'a free frame';
    case 'guest_memfd':
      return `guest_memfd ino ${owner.ino} of ${owner.vm} at 0x${owner.offset.toString(16)} (${owner.attribute}${owner.hardware === 'private' ? ', hardware-private' : ''})`;
    case 'shmem':
      return `shmem ino ${owner.ino} at 0x${owner.offset.toString(16)}`;
    case 'anonymous':
      return `anonymous memory of ${owner.mapping}`;
    case 'pinned':
      return `a page of ino ${owner.ino} truncated under a pin (${owner.holder})`;
  }
}

/** The compact outcome shown in tables. */
export function labelOf(result: StepResult): string {
  const stale = (a: AccessSummary | undefined) => {
    const kinds = [
      ...new Set(
        a?.reached?.map((r) =>
          r.ownerKind === 'guest_memfd' ? 'guest page' : r.ownerKind === 'free' ? 'free frame' : r.ownerKind,
        ) ?? [],
      ),
    ];
    return kinds.length > 0 ? ` (stale: ${kinds.join(', ')})` : '';
  };
  switch (result.kind) {
    case 'ok':
      return `ok${stale(result.access)}`;
    case 'errno':
      return result.errorOffset === undefined ? result.errno : `${result.errno} @${formatSize(result.errorOffset)}`;
    case 'fault':
      return `${result.access.fault === 'memory-fault' ? 'MEMORY_FAULT exit' : result.access.fault}${result.access.fatal ? ' FATAL' : ''}${stale(result.access)}`;
    case 'host-down':
      return 'host down';
    case 'error':
      return 'ERROR';
  }
}

/** An `expect:` outcome as a label of the same words ('EAGAIN @4 KiB +stale-iopte'). */
export function outcomeLabel(outcome: Outcome, lookup: (name: string) => bigint | undefined = () => undefined): string {
  const parts: string[] = [];
  if (outcome.ok) parts.push('ok');
  if (outcome.errno)
    parts.push(
      outcome.errorOffset ? `${outcome.errno} @${formatSize(safeEval(outcome.errorOffset, lookup))}` : outcome.errno,
    );
  if (outcome.fault)
    parts.push(
      `${outcome.fault === 'memory-fault' ? 'MEMORY_FAULT exit' : outcome.fault}${outcome.fatal ? ' FATAL' : ''}`,
    );
  if (outcome.hostDown) parts.push('host down');
  if (outcome.reaches) parts.push(`reaches ${outcome.reaches.join('/')}`);
  if (outcome.bytes) parts.push(`bytes 0x${safeEval(outcome.bytes, lookup).toString(16).padStart(2, '0')}`);
  for (const v of outcome.violations ?? []) parts.push(`+${v}`);
  return parts.join(' ') || 'anything';
}

const safeEval = (expr: Expr, lookup: (name: string) => bigint | undefined): bigint => {
  try {
    return evaluate(expr, lookup);
  } catch {
    return -1n;
  }
};

/** The arguments as written (`raw`: the step object of the file), for display. */
export function argsText(step: CallStep, raw: Record<string, unknown>): string {
  return Object.keys(CALLS[step.call]!.args)
    .filter((name) => raw[name] !== undefined)
    .map((name) => {
      const value = raw[name];
      if (Array.isArray(value)) return `${name}=${value.join('|')}`;
      // Bytes read as YAML integers (0x5a -> 90) are shown in hex again.
      if (CALLS[step.call]!.args[name]!.type === 'byte' && typeof value === 'number')
        return `${name}=0x${value.toString(16).padStart(2, '0')}`;
      return `${name}=${String(value)}`;
    })
    .join(' ');
}

/** Raw step objects of a scenario file by path ('3', '5.2'), to show arguments as the author wrote them. */
export function rawSteps(raw: unknown): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  const walk = (list: unknown, prefix: string) => {
    if (!Array.isArray(list)) return;
    list.forEach((s, i) => {
      const path = `${prefix}${i + 1}`;
      out.set(path, s as Record<string, unknown>);
      if (s && typeof s === 'object' && 'steps' in s) walk((s as { steps: unknown }).steps, `${path}.`);
    });
  };
  walk((raw as { steps?: unknown }).steps, '');
  return out;
}
