/**
 * A call's outcome as a StepResult: a returned value (an object, a number, an access result: ok, or a fault as a
 * value) or a thrown error (the kernel's errno, the host down after a fatal fault, or a model error).
 */
import { GmemError, HostCrashedError, type AccessResult } from '@gmemlab/core';
import { describeOwner } from '../format/labels.js';
import type { AccessSummary, StepResult } from './types.js';

/** The first `max` distinct byte values of `data`, in order of appearance, in one pass that stops early. */
export function distinctBytes(data: Uint8Array, max: number): number[] {
  if (data.length === 0) return [];
  // A large read of one repeated byte (an accept, a bounce buffer) is the common case: compare 4 bytes at a time.
  if (data.byteOffset % 4 === 0) {
    const words = new Uint32Array(data.buffer, data.byteOffset, data.length >>> 2);
    const first = data[0]! * 0x01010101;
    let i = 0;
    while (i < words.length && words[i] === first) i++;
    let j = i * 4;
    while (j < data.length && data[j] === data[0]) j++;
    if (j === data.length) return [data[0]!];
  }
  const seen = new Uint8Array(256);
  const out: number[] = [];
  for (let i = 0; i < data.length && out.length < max; i++) {
    const b = data[i]!;
    if (seen[b] === 0) {
      seen[b] = 1;
      out.push(b);
    }
  }
  return out;
}

export function summarizeAccess(result: AccessResult): AccessSummary {
  const summary: AccessSummary = { ok: result.ok };
  if (!result.ok) {
    Object.assign(summary, {
      fault: result.fault,
      fatal: result.fatal,
      logged: result.logged,
      mechanism: result.mechanism,
      address: result.address,
      done: result.done,
    });
    if (result.exit) summary.exit = { gpa: result.exit.gpa, size: result.exit.size, flags: result.exit.flags };
  } else if (result.data) {
    summary.bytes = distinctBytes(result.data, 4);
  }
  if (result.reached && result.reached.length > 0) {
    summary.reached = result.reached
      .slice(0, 8)
      .map((r) => ({ address: r.address, pfn: r.pfn, owner: describeOwner(r.owner), ownerKind: r.owner.kind }));
  }
  return summary;
}

// A pending guest fault also has `ok`-less fields; an access result is the one with a boolean `ok` and no `install`.
const isAccessResult = (value: unknown): value is AccessResult =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as { ok?: unknown }).ok === 'boolean' &&
  !('install' in value);

/** What a call that returned gave back: an access (ok or fault), a number (shown in hex), or an object. */
export function resultOfValue(value: unknown): StepResult {
  if (isAccessResult(value))
    return value.ok
      ? { kind: 'ok', access: summarizeAccess(value) }
      : { kind: 'fault', access: summarizeAccess(value) };
  return { kind: 'ok', ...(typeof value === 'number' ? { value: `0x${value.toString(16)}` } : {}) };
}

/** What a call that threw gave back: the kernel's errno, the host down, or an error of the model itself. */
export function resultOfError(error: unknown): StepResult {
  if (GmemError.isInstance(error))
    return {
      kind: 'errno',
      errno: error.errno,
      ...(error.errorOffset !== undefined ? { errorOffset: error.errorOffset } : {}),
      message: error.message,
    };
  if (HostCrashedError.isInstance(error)) return { kind: 'host-down', message: error.message };
  return { kind: 'error', message: error instanceof Error ? error.message : String(error) };
}
