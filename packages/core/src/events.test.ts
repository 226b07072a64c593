/**
 * Listeners are observers: one that throws never interrupts a kernel operation, its exception is recorded with
 * every other observer's (Host.observerErrors(), source 'listener'); a listener that is not a function, or an
 * unknown event type, is EINVAL at subscribe time (issue 8, item 6).
 */
import { describe, expect, it } from 'vitest';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE } from './constants.js';
import { OBSERVER_ERRORS_KEPT, type GmemEventType } from './events.js';
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
      const errors = host.observerErrors();
      if (seen.includes(type)) {
        expect(errors.length).toBeGreaterThan(0);
        // One record per event the listener threw on, in the one shape every observer's error has.
        expect(errors).toEqual(
          seen
            .filter((t) => t === type)
            .map(() => ({ source: 'listener', hook: type, message: `listener on ${type}` })),
        );
        expect(host.observerErrorCount).toBe(errors.length);
      } else {
        expect(errors).toEqual([]);
      }
      // Not emitted as an event: the other listener saw no 'observer-error'.
      expect(seen).not.toContain('observer-error');
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
    expect(host.observerErrorCount).toBeGreaterThan(3);
    expect(new Set(host.observerErrors().map((e) => `${e.source}:${e.message}`))).toEqual(new Set(['listener:always']));
  });

  it("is listed with a backend's and a consumer's errors, in the order they happened, in one shape; a fork keeps the list", () => {
    /** A registry consumer whose invalidateBegin throws (a class: a fork copies its instances). */
    class Bad {
      readonly kind = 'bad';
      readonly label = 'bad';
      readonly first = 0;
      readonly end = 4;
      invalidateBegin(): void {
        throw new Error('consumer');
      }
    }
    // A removal pipeline that is no pipeline, asked at the release of the last file, which cannot fail (door.ts).
    const broken = { ...swProtected, id: 'broken', removalPipeline: () => 'nope' as never };
    const { host, gmem } = createScenario(broken, {
      size: 4 * P,
      map: false,
      private: [{ offset: 0, length: P, faulted: true }],
    });
    gmem.registerConsumer(new Bad());
    host.events.on('invalidate-end', () => {
      throw new Error('listener');
    });
    gmem.close();
    const expected = [
      {
        source: 'backend broken',
        hook: 'removalPipeline',
        message: "returned 'nope', expected an array of { step, count, bound?: 'upper' }",
      },
      { source: 'consumer bad', hook: 'invalidateBegin', message: 'consumer' },
      { source: 'listener', hook: 'invalidate-end', message: 'listener' },
    ];
    expect(host.observerErrors()).toEqual(expected);
    expect(host.observerErrorCount).toBe(3);
    const fork = host.fork();
    expect(fork.observerErrors()).toEqual(expected);
    expect(fork.observerErrorCount).toBe(3);
  });

  it('that throws a value which throws when printed (or a Proxy whose traps throw) is still listed; the call goes on', () => {
    const { host, gmem } = world();
    const bomb = (): never => {
      throw new Error('trap');
    };
    const thrown = [
      {
        toString() {
          throw new Error('toString bomb');
        },
      },
      new Proxy({}, { getPrototypeOf: bomb, get: bomb }),
    ];
    let n = 0;
    host.events.on('call', () => {
      throw thrown[n++ % thrown.length];
    });
    expect(() =>
      gmem.setMemoryAttributes2({ offset: 0, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }),
    ).not.toThrow();
    expect(() => host.memfdCreate(P).close()).not.toThrow();
    expect(n).toBeGreaterThanOrEqual(2);
    expect(host.observerErrors().slice(0, 2)).toEqual([
      { source: 'listener', hook: 'call', message: 'an object that throws when read' },
      { source: 'listener', hook: 'call', message: 'an object that throws when read' },
    ]);
  });

  it(`keeps the last ${OBSERVER_ERRORS_KEPT} errors and counts them all`, () => {
    const host = createHost();
    let n = 0;
    host.events.on('call', () => {
      throw new Error(String(n++));
    });
    for (let i = 0; i < OBSERVER_ERRORS_KEPT + 5; i++) host.memfdCreate(P).close();
    const errors = host.observerErrors();
    expect(errors).toHaveLength(OBSERVER_ERRORS_KEPT);
    expect(host.observerErrorCount).toBe(n);
    expect(n).toBeGreaterThan(OBSERVER_ERRORS_KEPT);
    expect(errors[0]!.message).toBe(String(n - OBSERVER_ERRORS_KEPT));
    expect(errors[errors.length - 1]).toEqual({ source: 'listener', hook: 'call', message: String(n - 1) });
  });
});

describe('subscribing', () => {
  it.each([null, undefined, 42, 'listener', {}, Symbol('f')])(
    'subscribe(%s) is EINVAL; nothing changes, later calls work',
    (listener) => {
      const { host } = world();
      const error = expectRefused(host, () => host.events.subscribe(listener as never), 'EINVAL');
      expect(error.argument).toBe('listener');
      expect(host.events.active).toBe(false);
      expect(() => host.createVm()).not.toThrow();
    },
  );

  it('on() with an unknown event type is EINVAL, naming the nearest type', () => {
    const { host } = world();
    const error = expectRefused(host, () => host.events.on('zapp' as 'zap', () => {}), 'EINVAL');
    expect(error.message).toMatch(/did you mean zap\?/);
    expectRefused(host, () => host.events.on(undefined as unknown as 'zap', () => {}), 'EINVAL');
    expectRefused(host, () => host.events.on('zap', null as never), 'EINVAL');
    expect(host.events.active).toBe(false);
  });
});
