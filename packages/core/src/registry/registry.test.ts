import { describe, expect, it } from 'vitest';
import { swProtected } from '../arch/sw-protected.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE } from '../constants.js';
import { GmemError } from '../errors.js';
import { createScenario } from '../testing/scenario.js';
import { ANSWERS_BY_POLICY, MappingRegistry, type Invalidation, type MappingConsumer } from './registry.js';

const P = PAGE_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

/** No DMA area: the consumers registered here are the only ones. */
const setup = () => createScenario(swProtected, { size: 8 * P, populate: false, map: false, attach: false });

function recorder(first: number, end: number, response?: MappingConsumer['conversionResponse']) {
  const calls: string[] = [];
  const consumer: MappingConsumer = {
    kind: 'accelerator',
    label: 'acc:0',
    first,
    end,
    conversionResponse: response,
    invalidateBegin: (inv: Invalidation) => calls.push(`begin ${inv.cause} ${inv.start}-${inv.end}`),
    invalidateEnd: (inv: Invalidation) => calls.push(`end ${inv.cause} ${inv.start}-${inv.end}`),
  };
  return { consumer, calls };
}

describe('the mapping registry', () => {
  it('tells a third-party consumer of every overlapping invalidation, begin before end', () => {
    const { gmem } = setup();
    const { consumer, calls } = recorder(2, 4);
    gmem.registerConsumer(consumer);
    gmem.fallocate(PUNCH, 0, P); // does not overlap
    gmem.fallocate(PUNCH, 3 * P, 2 * P);
    gmem.setMemoryAttributes2({ offset: 2 * P, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    expect(calls).toEqual(['begin truncate 3-5', 'end truncate 3-5', 'begin to-private 2-3', 'end to-private 2-3']);
  });

  it('a refusing consumer fails the conversion with EAGAIN at its first page, changing nothing', () => {
    const { host, gmem } = setup();
    gmem.registerConsumer(recorder(5, 8, () => 'refuse').consumer);
    const before = host.snapshot();
    try {
      gmem.setMemoryAttributes2({ offset: 0, size: 8 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      expect.unreachable();
    } catch (error) {
      expect(GmemError.isInstance(error) && error.errno).toBe('EAGAIN');
      expect((error as GmemError).errorOffset).toBe(5 * P);
    }
    expect(host.snapshot()).toEqual(before);
  });

  it('the lowest blocker wins: a pin below a refusing consumer sets errorOffset', () => {
    const { gmem } = setup();
    gmem.registerConsumer(recorder(5, 8, () => 'refuse').consumer);
    gmem.pin(3 * P, P);
    try {
      gmem.setMemoryAttributes2({ offset: 0, size: 8 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      expect.unreachable();
    } catch (error) {
      expect((error as GmemError).errorOffset).toBe(3 * P);
    }
  });

  it('a tolerating consumer is not invalidated on conversion, but truncation reaches it anyway', () => {
    const { gmem } = setup();
    const { consumer, calls } = recorder(0, 8, () => 'tolerate');
    gmem.registerConsumer(consumer);
    gmem.setMemoryAttributes2({ offset: 0, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
    gmem.fallocate(PUNCH, 0, P);
    expect(calls).toEqual(['begin truncate 0-1', 'end truncate 0-1']);
  });

  it('unregistering stops the calls; bad consumers are EINVAL', () => {
    const { gmem } = setup();
    const { consumer, calls } = recorder(0, 8);
    gmem.registerConsumer(consumer).unregister();
    gmem.fallocate(PUNCH, 0, P);
    expect(calls).toEqual([]);
    expect(() => gmem.registerConsumer({ ...consumer, end: 9 })).toThrow(/EINVAL/);
    expect(() => gmem.registerConsumer({ ...consumer, invalidateBegin: undefined as never })).toThrow(/EINVAL/);
  });

  it('a guest fault racing an invalidation retries (mmu_invalidate_retry_gfn)', () => {
    const { vm, gmem } = setup();
    let during: unknown;
    gmem.registerConsumer({
      ...recorder(0, 8).consumer,
      invalidateBegin: () => {
        during = vm.guestRead(0, 1);
      },
    });
    gmem.fallocate(PUNCH, 0, P);
    expect(during).toMatchObject({ ok: false, fault: 'retry' });
    expect(vm.guestRead(0, 1).ok).toBe(true);
    expect(vm.mmu.inProgress).toBe(0);
  });

  it('release fires only when the last reference goes: an mmap keeps the file alive', () => {
    const { host, gmem } = setup();
    const { consumer, calls } = recorder(0, 8);
    gmem.registerConsumer(consumer);
    const mapping = gmem.mmap({ length: 8 * P, shared: true });
    mapping.write(0, new Uint8Array([1]));
    gmem.close();
    expect(calls).toEqual([]);
    expect(mapping.read(0, 1)).toMatchObject({ ok: true, data: new Uint8Array([1]) });
    mapping.munmap();
    expect(calls).toEqual(['begin release 0-8', 'end release 0-8']);
    expect(host.allocatedPages).toBe(0);
  });

  it('keeps one registration order over consumers answering by policy and the rest (two indexes inside)', () => {
    const registry = new MappingRegistry();
    const made: MappingConsumer[] = [];
    const make = (i: number, byPolicy: boolean, first: number, end: number): MappingConsumer => {
      const consumer = {
        kind: byPolicy ? 'iommufd-pages' : i % 2 ? 'kvm' : 'host-mmap',
        label: `c:${i}`,
        first,
        end,
        invalidateBegin: () => {},
        ...(byPolicy ? { [ANSWERS_BY_POLICY]: true } : {}),
      } as MappingConsumer;
      made.push(consumer);
      return consumer;
    };
    const registrations = [];
    for (let i = 0; i < 40; i++) {
      const byPolicy = i % 3 !== 0;
      const first = (i * 7) % 30;
      registrations.push(registry.register(make(i, byPolicy, first, first + 1 + (i % 9))));
    }
    registrations[4]!.unregister();
    registrations[9]!.unregister();
    const live = made.filter((_, i) => i !== 4 && i !== 9);
    expect(registry.all()).toEqual(live);
    expect(registry.size).toBe(38);
    for (let start = 0; start < 40; start += 3) {
      const want = live.filter((c) => c.first < start + 5 && c.end > start);
      expect(registry.overlapping(start, start + 5)).toEqual(want);
      expect(registry.overlapping(start, start + 5, 'kvm')).toEqual(want.filter((c) => c.kind === 'kvm'));
      const any = registry.anyByPolicy(start, start + 5);
      const policy = want.filter((c) => c.kind === 'iommufd-pages');
      if (policy.length === 0) expect(any).toBeUndefined();
      else expect(policy).toContain(any);
    }
  });
});
