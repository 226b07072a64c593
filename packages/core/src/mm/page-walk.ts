/**
 * One memory access, page by page in address order, stopping at the first page that faults — like a CPU memset
 * or a DMA engine. Host, guest, device and direct-map accesses differ only in how they resolve a page to a pfn;
 * this walk does the rest (copying bytes, partial results, the access event).
 *
 * In two passes, so that a backend breaking its contract finds the model as it was (door.ts: a 'refuse' hook
 * that throws or answers outside its type fails the call with EIO, nothing changed). First each page is asked,
 * in address order up to the first page that faults (`ask`: it consults the backend's access hooks and changes
 * nothing). Then each asked page is taken, in the same order (`take`: the changes reaching that page makes — a
 * page allocated or faulted in, made hardware-private, a stage-2 entry written — and its step), and its bytes
 * move. A fault is still a returned value: the pages before it were written, as a CPU's or a DMA engine's would
 * be; only a thrown error leaves nothing changed.
 */
import {
  faultResult,
  type AccessResult,
  type AccessVerdict,
  type MemoryFaultExit,
  type ReachedFrame,
} from '../access.js';
import { PAGE_SIZE } from '../constants.js';
import type { AccessEvent } from '../events.js';
import type { Kernel } from '../kernel.js';

/** How one page resolved: the frame the access reaches, or the fault. */
export type PageStep =
  | {
      pfn: number;
      /** The frame is no longer its owner's (a stale mapping). */
      stale?: boolean;
      /** A write here poisons the frame (it lands and breaks integrity). */
      poisons?: boolean;
    }
  | (Extract<AccessVerdict, { allow: false }> & {
      /** Where an unchecked write lands although the access faults (e.g. a TDX machine check). */
      landsAt?: number;
      /** The frame reached, when it was reached through a stale entry. */
      staleAt?: number;
      exit?: MemoryFaultExit;
    });

/**
 * The first pass over a page: decide it without changing the model (it may ask the backend, which may throw). An
 * answer with `allow: false` is a fault: no later page is asked.
 */
export type AskPage<A> = (page: number, write: boolean) => A;

/**
 * The second pass over a page asked first (`asked` is what `ask` answered; undefined when there is no first
 * pass): make the changes reaching it makes and return its step. It throws nothing, and it returns a fault for an
 * answer that was one (a fault found only here, such as a translation through the host's page tables, ends the
 * walk too).
 */
export type TakePage<A> = (asked: A, page: number, write: boolean) => PageStep;

/** A `take` for an `ask` whose answers are the steps themselves and change nothing to reach (a device's IOMMU walk). */
export const asAsked: TakePage<PageStep> = (step) => step;

const isFault = (answer: unknown): boolean =>
  typeof answer === 'object' && answer !== null && (answer as { allow?: unknown }).allow === false;

/**
 * The access of [address, address + length): `data` written, or read when undefined. `ask` is undefined for a path
 * that asks no backend (the host's own page tables); then each page is taken in one pass.
 */
export function walkPages<A>(
  kernel: Kernel,
  who: Pick<AccessEvent, 'by' | 'via'>,
  address: number,
  length: number,
  data: Uint8Array | undefined,
  ask: AskPage<A> | undefined,
  take: TakePage<A>,
): AccessResult {
  const write = data !== undefined;
  // First pass. The answers are kept without an array for the common one-page access.
  let first: A | undefined;
  let answers: A[] | undefined;
  if (ask) {
    let asked = 0;
    for (let done = 0; done < length; asked++) {
      const at = address + done;
      const answer = ask(Math.floor(at / PAGE_SIZE), write);
      if (asked === 0) first = answer;
      else (answers ??= [first as A]).push(answer);
      if (isFault(answer)) break;
      done += Math.min(PAGE_SIZE - (at % PAGE_SIZE), length - done);
    }
  }
  // Second pass.
  const out = write ? undefined : new Uint8Array(length);
  let done = 0;
  let reached: ReachedFrame[] | undefined;
  const reach = (at: number, pfn: number) => {
    (reached ??= []).push({ address: at - (at % PAGE_SIZE), pfn, owner: kernel.describeFrame(pfn) });
  };
  let result: AccessResult | undefined;
  for (let n = 0; done < length; n++) {
    const at = address + done;
    const inPage = at % PAGE_SIZE;
    const chunk = Math.min(PAGE_SIZE - inPage, length - done);
    const step = take((n === 0 || !answers ? first : answers[n]) as A, Math.floor(at / PAGE_SIZE), write);
    if (!('pfn' in step)) {
      if (step.staleAt !== undefined) reach(at, step.staleAt);
      if (step.landsAt !== undefined && data) {
        kernel.phys.write(step.landsAt, inPage, data, done, chunk);
        if (step.poisons) kernel.phys.poison(step.landsAt);
      }
      const fault = faultResult(step, at, done);
      if (step.exit) fault.exit = step.exit;
      if (reached) fault.reached = reached;
      result = fault;
      break;
    }
    if (step.stale) reach(at, step.pfn);
    if (step.poisons && write) kernel.phys.poison(step.pfn);
    if (data) kernel.phys.write(step.pfn, inPage, data, done, chunk);
    else kernel.phys.read(step.pfn, inPage, out!, done, chunk);
    done += chunk;
  }
  if (!result) {
    result = out ? { ok: true, data: out } : { ok: true };
    if (reached) result.reached = reached;
  }
  if (kernel.events.active) {
    kernel.events.emit({ type: 'access', ...who, write, address, length, result, ...(reached ? { stale: true } : {}) });
  }
  // Fatal means fatal: a machine check that is not contained or a kernel oops takes the host down.
  if (!result.ok && result.fatal)
    kernel.crash({ ...who, address: result.address, fault: result.fault, mechanism: result.mechanism });
  return result;
}
