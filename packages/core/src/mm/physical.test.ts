import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PhysicalMemory, type FrameHolder, type FrameInode } from './physical.js';

/** The first pfn PhysicalMemory hands out. */
const BASE = 0x100000;
const INODES: readonly FrameInode[] = [
  { ino: 7, kind: 'guest_memfd' },
  { ino: 8, kind: 'guest_memfd' },
  { ino: 9, kind: 'shmem' },
];

type Op =
  | { kind: 'allocate'; count: number; holder: FrameHolder }
  | { kind: 'free'; at: number; count: number }
  | { kind: 'orphan'; at: number; count: number; ino: number; index: number; holder: string };

const holderArb: fc.Arbitrary<FrameHolder> = fc.oneof(
  fc.record({
    kind: fc.constant('page-cache' as const),
    inode: fc.constantFrom(...INODES),
    // -1: the index after the previous allocation's, so that runs meet and may merge.
    index: fc.integer({ min: -1, max: 60 }),
  }),
  fc.record({ kind: fc.constant('anonymous' as const), label: fc.constantFrom('cow-a', 'cow-b') }),
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('allocate' as const),
      count: fc.integer({ min: 1, max: 12 }),
      holder: holderArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('free' as const),
      at: fc.nat(80),
      count: fc.integer({ min: 1, max: 12 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('orphan' as const),
      at: fc.nat(80),
      count: fc.integer({ min: 1, max: 8 }),
      ino: fc.constantFrom(7, 8),
      // -1: the frame's own offset from BASE, so that neighbouring orphans' indices continue each other.
      index: fc.integer({ min: -1, max: 60 }),
      holder: fc.constantFrom('pin-a', 'pin-b'),
    }),
  },
);

/** The holder of one frame, as a holder run starting `delta` frames earlier with `holder` would give it. */
function along(holder: FrameHolder, delta: number): FrameHolder {
  return holder.kind === 'anonymous' ? holder : { ...holder, index: holder.index + delta };
}

/** Whether two frames' holders continue one run (the same holder, the index advancing by one). */
function continues(prev: FrameHolder, next: FrameHolder): boolean {
  if (prev.kind !== next.kind) return false;
  if (prev.kind === 'anonymous') return prev.label === (next as typeof prev).label;
  if (prev.kind === 'page-cache') {
    const n = next as typeof prev;
    return prev.inode === n.inode && prev.index + 1 === n.index;
  }
  const n = next as typeof prev;
  return prev.ino === n.ino && prev.holder === n.holder && prev.index + 1 === n.index;
}

/** The simple model: one holder per frame, in a Map. */
class FrameModel {
  readonly frames = new Map<number, FrameHolder>();

  set(pfn: number, count: number, holder: FrameHolder): void {
    for (let i = 0; i < count; i++) this.frames.set(pfn + i, along(holder, i));
  }

  delete(pfn: number, count: number): void {
    for (let i = 0; i < count; i++) this.frames.delete(pfn + i);
  }

  /** Maximal runs over [start, end), each with its first frame's holder. */
  runs(start: number, end: number): Array<{ start: number; end: number; value: FrameHolder }> {
    const out: Array<{ start: number; end: number; value: FrameHolder }> = [];
    let prev: FrameHolder | undefined;
    for (let pfn = start; pfn < end; pfn++) {
      const h = this.frames.get(pfn);
      const last = out[out.length - 1];
      if (h && prev && last && last.end === pfn && continues(prev, h)) last.end = pfn + 1;
      else if (h) out.push({ start: pfn, end: pfn + 1, value: h });
      prev = h;
    }
    return out;
  }
}

function describeHolder(h: FrameHolder): string {
  return h.kind === 'page-cache'
    ? `ino ${h.inode.ino}@${h.index}`
    : h.kind === 'anonymous'
      ? `anon ${h.label}`
      : `orphan ino ${h.ino}@${h.index} (${h.holder})`;
}

describe('PhysicalMemory frame holders (owners and indices as two run maps)', () => {
  it('answer every query as a per-frame model of the same allocations, frees and orphans does', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 40 }),
        fc.nat(100),
        fc.integer({ min: 1, max: 40 }),
        (ops, qAt, qLen) => {
          const phys = new PhysicalMemory();
          const model = new FrameModel();
          let top = BASE;
          let nextIndex = 0;
          for (const op of ops) {
            if (op.kind === 'allocate') {
              const holder =
                op.holder.kind === 'page-cache' && op.holder.index < 0 ? { ...op.holder, index: nextIndex } : op.holder;
              if (holder.kind === 'page-cache') nextIndex = holder.index + op.count;
              let offset = 0;
              for (const run of phys.allocate(op.count, holder)) {
                model.set(run.pfn, run.count, along(holder, offset));
                offset += run.count;
                top = Math.max(top, run.pfn + run.count);
              }
            } else if (op.kind === 'free') {
              // Free only frames the model holds (the kernel never frees a free frame): the held prefix of the range.
              let count = 0;
              while (count < op.count && model.frames.has(BASE + op.at + count)) count++;
              phys.free(BASE + op.at, count);
              model.delete(BASE + op.at, count);
            } else {
              const index = op.index < 0 ? op.at : op.index;
              phys.orphan(BASE + op.at, op.count, op.ino, index, op.holder);
              model.set(BASE + op.at, op.count, { kind: 'orphan', ino: op.ino, index, holder: op.holder });
              top = Math.max(top, BASE + op.at + op.count);
            }
          }
          for (let pfn = BASE - 2; pfn < top + 2; pfn++) expect(phys.holderOf(pfn)).toEqual(model.frames.get(pfn));
          const expected = model.runs(BASE - 2, top + 2);
          expect(phys.holderRuns()).toEqual(expected.map((r) => [r.start, r.end, describeHolder(r.value)]));
          expect(phys.snapshotHolders()).toEqual(phys.holderRuns());
          const qStart = BASE + qAt - 10;
          expect(phys.holdersIn(qStart, qLen)).toEqual(
            model
              .runs(BASE - 2, top + 2)
              .filter((r) => r.end > qStart && r.start < qStart + qLen)
              .map((r) => {
                const start = Math.max(r.start, qStart);
                return { start, end: Math.min(r.end, qStart + qLen), value: along(r.value, start - r.start) };
              }),
          );
          // The page-cache holders name the inode object itself.
          for (const run of phys.holdersIn(BASE, top - BASE))
            if (run.value.kind === 'page-cache') expect(INODES).toContain(run.value.inode);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps the snapshot list while the holders do not change, and lists them again when they do', () => {
    const phys = new PhysicalMemory();
    phys.allocate(4, { kind: 'page-cache', inode: INODES[0]!, index: 10 });
    const first = phys.snapshotHolders();
    expect(first).toEqual([[BASE, BASE + 4, 'ino 7@10']]);
    expect(phys.snapshotHolders()).toBe(first);
    phys.orphan(BASE + 1, 1, 7, 11, 'pin');
    expect(phys.snapshotHolders()).toEqual([
      [BASE, BASE + 1, 'ino 7@10'],
      [BASE + 1, BASE + 2, 'orphan ino 7@11 (pin)'],
      [BASE + 2, BASE + 4, 'ino 7@12'],
    ]);
  });
});
