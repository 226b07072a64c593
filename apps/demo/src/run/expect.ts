/**
 * Judging a step against the scenario's `expect:` cases: which case applies to an architecture and design, and
 * why a result does not meet it.
 */
import { labelOf } from '../format/labels.js';
import { evaluate, formatSize } from '../scenario/expr.js';
import type { ExpectCase, Outcome } from '../scenario/load.js';
import type { StepResult, ViolationSummary } from './types.js';

/** Whether a case's selectors match: 'tdx' matches 'tdx' and 'tdx:connect'; 'tdx:connect' only itself. */
export function caseMatches(c: ExpectCase, arch: string, contract: string): boolean {
  const family = arch.split(':')[0];
  if (c.arch && !c.arch.some((a) => a === arch || (!a.includes(':') && a === family))) return false;
  if (c.contract && !c.contract.includes(contract)) return false;
  return true;
}

/** Why the result does not meet the outcome, or undefined when it does. */
export function mismatch(
  outcome: Outcome,
  result: StepResult,
  fresh: readonly ViolationSummary[],
  lookup: (name: string) => bigint | undefined,
): string | undefined {
  const got = labelOf(result);
  if (result.kind === 'error') return `the call threw: ${result.message}`;
  if (outcome.ok && result.kind !== 'ok') return `expected ok, got ${got}`;
  if (outcome.errno) {
    if (result.kind !== 'errno' || result.errno !== outcome.errno) return `expected ${outcome.errno}, got ${got}`;
    if (outcome.errorOffset) {
      const want = Number(evaluate(outcome.errorOffset, lookup));
      if (result.errorOffset !== want)
        return `expected errorOffset ${formatSize(want)}, got ${result.errorOffset === undefined ? 'none' : formatSize(result.errorOffset)}`;
    }
  }
  if (outcome.fault) {
    if (result.kind !== 'fault' || result.access.fault !== outcome.fault)
      return `expected ${outcome.fault}, got ${got}`;
    if (outcome.fatal !== undefined && result.access.fatal !== outcome.fatal)
      return `expected ${outcome.fatal ? 'a fatal' : 'a non-fatal'} ${outcome.fault}, got ${got}`;
  }
  if (outcome.hostDown && result.kind !== 'host-down') return `expected host down, got ${got}`;
  const access = result.kind === 'ok' ? result.access : result.kind === 'fault' ? result.access : undefined;
  if (outcome.reaches) {
    const kinds = new Set(access?.reached?.map((r) => r.ownerKind));
    const missing = outcome.reaches.filter((k) => !kinds.has(k));
    if (missing.length > 0)
      return `expected the access to reach ${missing.join(', ')}, it reached ${kinds.size > 0 ? [...kinds].join(', ') : 'nothing stale'}`;
  }
  if (outcome.bytes) {
    const want = Number(evaluate(outcome.bytes, lookup));
    if (!access?.bytes || access.bytes.length !== 1 || access.bytes[0] !== want)
      return `expected every byte read to be 0x${want.toString(16)}, read ${access?.bytes ? access.bytes.map((b) => `0x${b.toString(16)}`).join(', ') : 'nothing'}`;
  }
  const wanted = new Set(outcome.violations ?? []);
  const appeared = new Set(fresh.map((v) => v.kind));
  const unexpected = [...appeared].filter((k) => !wanted.has(k));
  const absent = [...wanted].filter((k) => !appeared.has(k));
  if (unexpected.length > 0)
    return `violation not expected: ${fresh.find((v) => unexpected.includes(v.kind))!.message}`;
  if (absent.length > 0) return `expected violation ${absent.join(', ')} did not appear`;
  return undefined;
}

/**
 * The failure of one run of a step: the matching case's mismatch; with no case for this architecture and design,
 * only a model error (an exception that is not the kernel's answer) fails — what happened is reported, its
 * violations included, never as a failure.
 */
export function judge(
  chosen: ExpectCase | undefined,
  result: StepResult,
  fresh: readonly ViolationSummary[],
  lookup: (name: string) => bigint | undefined,
): string | undefined {
  if (chosen) return mismatch(chosen.outcome, result, fresh, lookup);
  if (result.kind === 'error') return `the call threw: ${result.message}`;
  return undefined;
}
