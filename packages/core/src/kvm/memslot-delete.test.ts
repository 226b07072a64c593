/**
 * Deleting a memslot over hardware-private pages (kernel-contract §3.7): kvm_arch_flush_shadow_memslot zaps the
 * memslot's private stage-2 entries too. Where that zap is where the hardware gives a page up (privateRemovalAt
 * 'zap': TDX's tdx_sept_remove_private_spte [X-a], CCA's DATA_DESTROY + UNDELEGATE [C-a]) the pages leave the
 * hardware-private state at the deletion, with the removal steps, and stay in guest_memfd, private by attribute;
 * where it is not ('free': SEV-SNP, pKVM) they stay hardware-private until guest_memfd frees them.
 */
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  KVM_MEM_GUEST_MEMFD,
  PAGE_SIZE,
  swProtected,
  type ArchBackend,
  type GmemEvent,
} from '../index.js';
import { createScenario } from '../testing/index.js';

const P = PAGE_SIZE;
const PUNCH = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;

function backend(removal: 'zap' | 'free', contents: 'keep' | 'zero' = 'zero'): ArchBackend {
  return {
    ...swProtected,
    id: `t:delete-${removal}`,
    privateRemovalAt: removal,
    privateEntryAt: 'install',
    privateEntry: (context) => [{ step: 'enter', count: context.pages }],
    removalPipeline: (context) => (context.cause === 'to-private' ? [] : [{ step: 'remove', count: context.pages }]),
    contentsOnRemoval: () => contents,
  };
}

/** Pages 0 and 1 of a 4-page file private and faulted in by the guest (hardware-private); page 2 private only. */
function world(removal: 'zap' | 'free', contents: 'keep' | 'zero' = 'zero') {
  const w = createScenario(backend(removal, contents), {
    size: 4 * P,
    map: false,
    private: [
      { offset: 0, length: 2 * P, faulted: true },
      { offset: 2 * P, length: P },
    ],
  });
  return w;
}

type Inode = { ino: number; pages: Array<[number, number, number]>; hardware: Array<[number, number, true]> };
const inodeOf = (w: ReturnType<typeof world>): Inode =>
  (w.host.snapshot() as { inodes: Inode[] }).inodes.find((inode) => inode.ino === w.gmem.inode.ino)!;
const deleteSlot = (w: ReturnType<typeof world>) =>
  w.vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0 });

describe('deleting a memslot over hardware-private pages', () => {
  it("'zap': the pages leave the hardware-private state at the deletion, with the removal steps, after the stage-2 zap", () => {
    const w = world('zap');
    const pagesBefore = inodeOf(w).pages;
    expect(inodeOf(w).hardware).toEqual([[0, 2, true]]);
    const removed = w.host.pipelineCounters().remove ?? 0;
    const events: GmemEvent[] = [];
    const recording = w.host.events.record();
    deleteSlot(w);
    recording.stop();
    events.push(...recording.events);
    expect(w.host.pipelineCounters().remove).toBe(removed + 2);
    expect(inodeOf(w).hardware).toEqual([]);
    // guest_memfd still holds the folios: the deletion unbinds, it does not truncate.
    expect(inodeOf(w).pages).toEqual(pagesBefore);
    const kinds = events.map((e) => (e.type === 'zap' ? `zap ${e.target} ${e.cause}` : `${e.type}`));
    const zap = kinds.indexOf('zap stage2 memslot-delete');
    const leave = events.findIndex((e) => e.type === 'hardware' && e.change === 'leave');
    expect(zap).toBeGreaterThanOrEqual(0);
    expect(leave).toBeGreaterThan(zap);
    expect(events[leave]).toMatchObject({ cause: 'memslot-delete', offset: 0, length: 2 * P });
    expect(w.host.checkInvariants()).toEqual([]);
  });

  it("'zap': a later punch frees pages the hardware no longer holds: no removal steps", () => {
    const w = world('zap');
    deleteSlot(w);
    const removed = w.host.pipelineCounters().remove;
    w.gmem.fallocate(PUNCH, 0, 2 * P);
    expect(w.host.pipelineCounters().remove).toBe(removed);
    expect(w.host.checkInvariants()).toEqual([]);
  });

  it("'zap': bound again, the guest's private fault makes the page hardware-private again (its entry steps again)", () => {
    const w = world('zap');
    deleteSlot(w);
    const entered = w.host.pipelineCounters().enter!;
    w.vm.setUserMemoryRegion2({
      slot: 0,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: 0,
      memorySize: 4 * P,
      guestMemfd: w.gmem,
      guestMemfdOffset: 0,
    });
    expect(w.vm.guestRead(0, 1, { intent: 'private' }).ok).toBe(true);
    expect(w.host.pipelineCounters().enter).toBe(entered + 1);
    expect(inodeOf(w).hardware).toEqual([[0, 1, true]]);
    expect(w.host.checkInvariants()).toEqual([]);
  });

  it("'zap' with contentsOnRemoval 'zero': the guest's bytes are gone from the frame; 'keep' keeps them", () => {
    for (const contents of ['zero', 'keep'] as const) {
      const w = world('zap', contents);
      w.vm.guestWrite(0, new Uint8Array([0xab]), { intent: 'private' });
      deleteSlot(w);
      // The page left the hardware-private state: the host kernel may read it through the direct map now.
      const read = w.gmem.directMapRead(0, 1);
      expect(read.ok, contents).toBe(true);
      expect(read.ok && read.data?.[0], contents).toBe(contents === 'zero' ? 0 : 0xab);
    }
  });

  it("'free': nothing leaves at the deletion; the punch later runs the removal steps", () => {
    const w = world('free');
    const removed = w.host.pipelineCounters().remove ?? 0;
    deleteSlot(w);
    expect(inodeOf(w).hardware).toEqual([[0, 2, true]]);
    expect(w.host.pipelineCounters().remove ?? 0).toBe(removed);
    w.gmem.fallocate(PUNCH, 0, 2 * P);
    expect(w.host.pipelineCounters().remove).toBe(removed + 2);
    expect(w.host.checkInvariants()).toEqual([]);
  });

  it('a memslot whose file was released first has nothing to remove (the release already did)', () => {
    const w = world('zap');
    const removed = w.host.pipelineCounters().remove ?? 0;
    w.gmem.close();
    expect(w.host.pipelineCounters().remove).toBe(removed + 2);
    deleteSlot(w);
    expect(w.host.pipelineCounters().remove).toBe(removed + 2);
    expect(w.host.checkInvariants()).toEqual([]);
  });
});
