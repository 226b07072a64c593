/**
 * Listeners are observers: one that throws never interrupts a kernel operation, its exception is collected; a
 * listener that is not a function, or an unknown event type, is EINVAL at subscribe time (issue 8, item 6).
 */
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from './constants.js';
import { LISTENER_ERRORS_KEPT, type GmemEventType } from './events.js';
import { swProtected } from './arch/sw-protected.js';
import { createHost } from './host.js';
import { createScenario } from './testing/scenario.js';
import { expectRefused } from './test-support.js';

const P = PAGE_SIZE;

/** A VM with a bound guest_memfd, faulted in through stage-2, a host mapping and a live DMA mapping. */
function world() {
  const { host, vm, gmem, iova, device } = createScenario(swProtected, { size: 4 * P });
  const mapping = gmem.mmap({ length: 4 * P, shared: true });
  vm.guestWrite(0, new Uint8Array(4 * P).fill(1));
  mapping.read(0, 4 * P);
  device!.dmaRead(iova, 4 * P);
  return { host, vm, gmem };
}

const punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

describe('a listener that throws', () => {
  for (const type of ['zap', 'revoke', 'invalidate-begin', 'invalidate-end', 'call', 'pipeline'] as const) {
    it(`on '${type}' does not interrupt fallocate(PUNCH_HOLE): the punch completes exactly as without it`, () => {
      const control = world();
      control.gmem.fallocate(punch, 0, 2 * P);

      const { host, vm, gmem } = world();
      const seen: GmemEventType[] = [];
      host.events.on(type, () => {
        throw new Error(`listener on ${type}`);
      });
      host.events.subscribe((event) => seen.push(event.type));
      gmem.fallocate(punch, 0, 2 * P);
      expect(host.snapshot()).toEqual(control.host.snapshot());
      expect(vm.mmu.inProgress).toBe(0);
      expect(host.checkInvariants()).toEqual([]);
      // Every listener still saw every event, the throwing one's included.
      expect(seen).toContain('invalidate-end');
      const errors = host.events.listenerErrors();
      if (seen.includes(type)) {
        expect(errors.length).toBeGreaterThan(0);
        expect(errors.every((e) => e.event.type === type && String(e.error).includes(type))).toBe(true);
        expect(host.events.listenerErrorCount).toBe(errors.length);
      }
      host.events.clearListenerErrors();
      expect(host.events.listenerErrors()).toEqual([]);
      expect(host.events.listenerErrorCount).toBe(0);
    });
  }

  it('on every event does not interrupt a conversion, a VM creation or a DMA', () => {
    const { host, vm, gmem } = world();
    host.events.subscribe(() => {
      throw new Error('always');
    });
    gmem.setMemoryAttributes2({ offset: 0, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(host.snapshot()).toMatchObject({ inodes: [{ attributes: [[0, 4, 'private']] }] });
    expect(host.createVm().fd).toBeGreaterThan(0);
    expect(vm.mmu.inProgress).toBe(0);
    expect(host.events.listenerErrorCount).toBeGreaterThan(3);
  });

  it(`keeps the last ${LISTENER_ERRORS_KEPT} errors and counts them all`, () => {
    const host = createHost();
    let n = 0;
    host.events.on('call', () => {
      throw new Error(String(n++));
    });
    for (let i = 0; i < LISTENER_ERRORS_KEPT + 5; i++) host.memfdCreate(P).close();
    const errors = host.events.listenerErrors();
    expect(errors).toHaveLength(LISTENER_ERRORS_KEPT);
    expect(host.events.listenerErrorCount).toBe(n);
    expect(String(errors[errors.length - 1]!.error)).toBe(`Error: ${n - 1}`);
  });
});

describe('subscribing', () => {
  it.each([null, undefined, 42, 'listener', {}, Symbol('f')])('subscribe(%s) is EINVAL; nothing changes, later calls work', (listener) => {
    const { host } = world();
    const error = expectRefused(host, () => host.events.subscribe(listener as never), 'EINVAL');
    expect(error.argument).toBe('listener');
    expect(host.events.active).toBe(false);
    expect(() => host.createVm()).not.toThrow();
  });

  it('on() with an unknown event type is EINVAL, naming the nearest type', () => {
    const { host } = world();
    const error = expectRefused(host, () => host.events.on('zapp' as 'zap', () => {}), 'EINVAL');
    expect(error.message).toMatch(/did you mean zap\?/);
    expectRefused(host, () => host.events.on(undefined as unknown as 'zap', () => {}), 'EINVAL');
    expectRefused(host, () => host.events.on('zap', null as never), 'EINVAL');
    expect(host.events.active).toBe(false);
  });
});
