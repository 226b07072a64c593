/**
 * The page walk (page-walk.ts) asks every page before it changes any, so that a backend's broken answer leaves the
 * model as it was (arch/door.test.ts). What it must not change is an access that stops at a real fault: the pages
 * before the fault are written, allocated, made hardware-private and mapped, exactly as when the same pages are
 * accessed one at a time, and the fault is returned. Each case here compares the two, through every access path:
 * a device, the host kernel's direct map, a host mapping, and the guest (both entry steps, and today's path through
 * the memslot's userspace address).
 */
import { describe, expect, it } from 'vitest';
import type { AccessResult, AccessVerdict } from '../access.js';
import type { ArchBackend } from '../arch/backend.js';
import { swProtected } from '../arch/sw-protected.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE } from '../constants.js';
import { createHost, type Host } from '../host.js';
import { createScenario } from '../testing/scenario.js';

const P = PAGE_SIZE;
const fill = (value: number, length: number) => new Uint8Array(length).fill(value);

/** A well-behaved refusal: the access faults, contained, and (for `lands`) the write lands and poisons the frame. */
const blocked = (lands: boolean): Extract<AccessVerdict, { allow: false }> => ({
  allow: false,
  fault: 'contained',
  fatal: false,
  logged: true,
  mechanism: 'test: blocked',
  ...(lands ? { lands: true, poisons: true } : {}),
});
const einval: Extract<AccessVerdict, { allow: false }> = {
  allow: false,
  fault: 'einval',
  fatal: false,
  logged: false,
  mechanism: 'test: entry refused',
};

/** A privateEntryRefusal that lets the first `allowed` pages enter and refuses every later one. */
function refusesAfter(allowed: number): ArchBackend['privateEntryRefusal'] {
  let asked = 0;
  return () => (asked++ < allowed ? undefined : einval);
}

interface Access {
  /** The host after the access of pages [0, 2) at once, or page by page. */
  host: Host;
  /** The results, in order: one for the 2-page access, one per page for the page-by-page one. */
  results: AccessResult[];
}

/** The world and its access of [0, 2 * P) from `at`, `length` bytes at a time. */
type Case = (length: number) => Access;

function inTwoWays(run: Case): { whole: Access; paged: Access } {
  const whole = run(2 * P);
  const paged = run(P);
  return { whole, paged };
}

/** Run `access(offset, length)` over [0, 2 * P) in steps of `length`, stopping after the first fault. */
function accessAll(length: number, access: (offset: number, length: number) => AccessResult): AccessResult[] {
  const results: AccessResult[] = [];
  for (let offset = 0; offset < 2 * P; offset += length) {
    const result = access(offset, length);
    results.push(result);
    if (!result.ok) break;
  }
  return results;
}

const CASES: Record<string, Case> = {
  'a DMA write whose second page is refused, the write landing (TDX-like)': (length) => {
    const w = createScenario(
      { ...swProtected, id: 'test:walk', deviceAccess: () => blocked(true) },
      { private: [{ offset: P, length: P, faulted: true }] },
    );
    return { host: w.host, results: accessAll(length, (at, n) => w.device!.dmaWrite(w.iova + at, fill(0xab, n))) };
  },
  'a DMA read whose second page is refused': (length) => {
    const w = createScenario(
      { ...swProtected, id: 'test:walk', deviceAccess: () => blocked(false) },
      { private: [{ offset: P, length: P, faulted: true }] },
    );
    w.device!.dmaWrite(w.iova, fill(0x11, P));
    return { host: w.host, results: accessAll(length, (at, n) => w.device!.dmaRead(w.iova + at, n)) };
  },
  'a direct map write whose second page is refused': (length) => {
    const w = createScenario(
      { ...swProtected, id: 'test:walk', hostKernelAccess: () => blocked(false) },
      { private: [{ offset: P, length: P, faulted: true }] },
    );
    return { host: w.host, results: accessAll(length, (at, n) => w.gmem.directMapWrite(at, fill(0xab, n))) };
  },
  'a host write through the mmap, SIGBUS on the private second page': (length) => {
    const w = createScenario(swProtected, { private: [{ offset: P, length: P }] });
    const mapping = w.gmem.mmap({ length: 2 * P, shared: true });
    return { host: w.host, results: accessAll(length, (at, n) => mapping.write(at, fill(0xab, n))) };
  },
  'a private guest write whose second page the hypervisor refuses (entry at install)': (length) => {
    const w = createScenario(
      { ...swProtected, id: 'test:walk', privateEntryRefusal: refusesAfter(1) },
      { private: [{ offset: 0, length: 2 * P }] },
    );
    return {
      host: w.host,
      results: accessAll(length, (at, n) => w.vm.guestWrite(at, fill(0xab, n), { intent: 'private' })),
    };
  },
  'a private guest write whose second page the hypervisor refuses (entry at resolve)': (length) => {
    const w = createScenario(
      { ...swProtected, id: 'test:walk', privateEntryAt: 'resolve', privateEntryRefusal: refusesAfter(1) },
      { private: [{ offset: 0, length: 2 * P }] },
    );
    return {
      host: w.host,
      results: accessAll(length, (at, n) => w.vm.guestWrite(at, fill(0xab, n), { intent: 'private' })),
    };
  },
  'a private guest write whose second page is shared (KVM_EXIT_MEMORY_FAULT)': (length) => {
    const w = createScenario(swProtected, { private: [{ offset: 0, length: P }] });
    return {
      host: w.host,
      results: accessAll(length, (at, n) => w.vm.guestWrite(at, fill(0xab, n), { intent: 'private' })),
    };
  },
  "today's path: a guest write, page 0 shared through the userspace address, page 1 private and refused": (length) => {
    const host = createHost({
      backend: { ...swProtected, id: 'test:walk', privateEntryRefusal: refusesAfter(0) },
      conversion: 'separate',
    });
    const vm = host.createVm({ type: 'coco' });
    const gmem = vm.createGuestMemfd({ size: 2 * P });
    const shared = host.memfdCreate(2 * P).mmap({ length: 2 * P, shared: false });
    vm.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: 2 * P,
      userspaceAddr: shared.address,
      guestMemfd: gmem,
      guestMemfdOffset: 0,
    });
    vm.setMemoryAttributes({ address: P, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    return { host, results: accessAll(length, (at, n) => vm.guestWrite(at, fill(0xab, n))) };
  },
};

describe('an access that stops at a fault leaves exactly what the same pages accessed one at a time leave', () => {
  for (const [name, run] of Object.entries(CASES)) {
    it(name, () => {
      const { whole, paged } = inTwoWays(run);
      // One fault at the second page, after one page done, in both ways.
      expect(whole.results).toHaveLength(1);
      expect(paged.results).toHaveLength(2);
      const [first, second] = paged.results as [AccessResult, AccessResult];
      expect(first.ok).toBe(true);
      expect(second).toMatchObject({ ok: false, done: 0 });
      expect(whole.results[0]).toEqual({ ...second, done: P });
      // The model after: the first page written (and made hardware-private, mapped, allocated) as page by page.
      expect(whole.host.snapshot()).toEqual(paged.host.snapshot());
      expect(whole.host.observerErrors()).toEqual([]);
    });
  }
});
