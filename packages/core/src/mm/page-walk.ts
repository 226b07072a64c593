/**
 * One memory access, page by page in address order, stopping at the first page that faults — like a CPU memset
 * or a DMA engine. Host, guest, device and direct-map accesses differ only in how they resolve a page to a pfn;
 * this walk does the rest (copying bytes, partial results, the access event).
 */
import { faultResult, type AccessResult, type AccessVerdict, type MemoryFaultExit, type ReachedFrame } from '../access.js';
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

export function walkPages(
  kernel: Kernel,
  who: Pick<AccessEvent, 'by' | 'via'>,
  address: number,
  length: number,
  data: Uint8Array | undefined,
  resolve: (page: number, write: boolean) => PageStep,
): AccessResult {
  const write = data !== undefined;
  const out = write ? undefined : new Uint8Array(length);
  let done = 0;
  let reached: ReachedFrame[] | undefined;
  const reach = (at: number, pfn: number) => {
    (reached ??= []).push({ address: at - (at % PAGE_SIZE), pfn, owner: kernel.describeFrame(pfn) });
  };
  let result: AccessResult | undefined;
  while (done < length) {
    const at = address + done;
    const inPage = at % PAGE_SIZE;
    const chunk = Math.min(PAGE_SIZE - inPage, length - done);
    const step = resolve(Math.floor(at / PAGE_SIZE), write);
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
  if (!result.ok && result.fatal) kernel.crash({ ...who, address: result.address, fault: result.fault, mechanism: result.mechanism });
  return result;
}
