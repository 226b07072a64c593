/**
 * Outside audit s19-audit1 of 7e7b198 (memslot deletion removes hardware-private pages on 'zap' backends):
 * the legacy KVM_SET_USER_MEMORY_REGION deletion, a hook that throws at the deletion, and the VM's destruction.
 */
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, swProtected, type ArchBackend } from '../index.js';
import { createScenario } from '../testing/index.js';

const P = PAGE_SIZE;

function backend(removal: ArchBackend['removalPipeline']): ArchBackend {
  return {
    ...swProtected,
    id: 't:delete-audit',
    privateRemovalAt: 'zap',
    privateEntryAt: 'install',
    privateEntry: (context) => [{ step: 'enter', count: context.pages }],
    removalPipeline: removal,
    contentsOnRemoval: () => 'zero',
  };
}
const steps: ArchBackend['removalPipeline'] = (context) =>
  context.cause === 'to-private' ? [] : [{ step: 'remove', count: context.pages }];

function world(removal: ArchBackend['removalPipeline'] = steps) {
  return createScenario(backend(removal), {
    size: 4 * P,
    map: false,
    private: [{ offset: 0, length: 2 * P, faulted: true }],
  });
}
type Inode = { ino: number; hardware: unknown[] };
const hardwareOf = (w: ReturnType<typeof world>) =>
  (w.host.snapshot() as { inodes: Inode[] }).inodes.find((inode) => inode.ino === w.gmem.inode.ino)!.hardware;

describe('audit s19-audit1: memslot deletion on a zap backend', () => {
  it('the legacy KVM_SET_USER_MEMORY_REGION deletion of a guest_memfd slot removes the pages the same way', () => {
    const w = world();
    const removed = w.host.pipelineCounters().remove ?? 0;
    w.vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 });
    expect(w.vm.memslots()).toEqual([]);
    expect(hardwareOf(w)).toEqual([]);
    expect(w.host.pipelineCounters().remove).toBe(removed + 2);
    expect(w.host.checkInvariants()).toEqual([]);
  });

  it('a removalPipeline that throws at the deletion is reported; the slot is still deleted and the pages left', () => {
    let armed = false;
    const w = world((context) => {
      if (armed && context.cause === 'memslot-delete') throw new Error('boom');
      return steps(context);
    });
    armed = true;
    w.vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0 });
    expect(w.vm.memslots()).toEqual([]);
    expect(hardwareOf(w)).toEqual([]);
    expect(JSON.stringify(w.host.observerErrors())).toMatch(/boom/);
    expect(w.host.checkInvariants()).toEqual([]);
  });

  it("the VM's destruction (the last file closed) runs no memslot-delete removal: the release did it", () => {
    const w = world();
    const recording = w.host.events.record();
    w.vm.close();
    w.gmem.close();
    recording.stop();
    const causes = recording.events.flatMap((e) => (e.type === 'hardware' && e.change === 'leave' ? [e.cause] : []));
    expect(causes).not.toContain('memslot-delete');
    expect(causes.length).toBeGreaterThan(0);
    expect(w.host.checkInvariants()).toEqual([]);
  });
});
