/**
 * Benchmark 1, on a stationary workload (issue 19): random 2 MiB-aligned conversions alternating
 * to-private/to-shared on a guest_memfd of `size` bytes with 128 memslots and `areas` IOMMU_IOAS_MAP_FILE areas
 * with a device attached, with TDX (which revokes the areas' IOPTEs on to-private) or SEV-SNP (which tolerates
 * them), under 'gmem-registry' or 'mirror'.
 *
 * The DMA state stays where it started, as a real VMM keeps it:
 * - 'mirror' restores the IOPTEs itself once a conversion to shared completes (RFC-J5, RFC-J6).
 * - 'gmem-registry' with TDX: a revoke lasts until the area is unmapped (kernel-contract §5.5, §9.3), a fresh
 *   MAP_FILE maps only the pages shared at that moment, and "map after conversion to shared" is left to
 *   userspace ([T1g]). So the VMM maps again, as QEMU's VFIO listener maps a populated range: after a block it had
 *   made private goes shared, every area over the block is unmapped and mapped again at its IOVA
 *   (IOMMU_IOAS_UNMAP + IOMMU_IOAS_MAP_FILE: the only way back from a revoke, as the dma-buf selftest does; an
 *   area over registered pages cannot be cut, §5.5). The VMM knows which blocks it made private, as QEMU's
 *   RamBlockAttributes bitmap does. A re-map costs what the area holds, so with large areas this is the
 *   design's cost, not a conversion's.
 * - 'gmem-registry' with SEV-SNP: nothing is revoked (the IOPTEs of a page that goes private stay, 'tolerate'),
 *   so the VMM maps nothing again and the mapped pages do not change.
 * The mapped IOPTE pages are counted at the start and at the end of every run; more than a few percent apart is
 * a broken result.
 *
 * With `baselines`, the range-notify bitmap and the physical floor (baselines/range-notify.ts) do the same
 * conversions and the same re-maps in the same process, round by round in turn; on 1 GiB the per-page designs
 * of issue 11 run too, as a reference. Each configuration runs in its own process, so that its resident memory
 * is its own; at 1 TiB that is read after gmemlab's warm-up and before any baseline exists.
 */
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, type Ioas } from '@gmemlab/core';
import { sevSnp } from '@gmemlab/sev-snp';
import { tdx } from '@gmemlab/tdx';
import { PerPageMap } from '../baselines/page-map.js';
import { Per4KBitmap } from '../baselines/bitmap.js';
import { PhysicalFloor, RangeNotifyBitmap } from '../baselines/range-notify.js';
import { interleave, type Contender } from '../measure.js';
import { randomIndices } from '../rng.js';
import { checkRate, GiB, MiB, residentMB, sizeName, TiB, type BenchResult, type Row, rateNote } from '../rows.js';
import { BLOCK, conversionWorld, type ConversionWorld } from '../world.js';

export type Design = 'gmem-registry' | 'mirror';

export interface ConversionConfig {
  size: number;
  areas: number;
  backend: 'tdx' | 'sev-snp';
  design?: Design;
  baselines: boolean;
}

export const CONVERSIONS = 1_000_000;
/** The headline baseline, and the others beside it: see baselines/. */
export const RANGE_NOTIFY = 'range-notify bitmap';
export const FLOOR = 'physical floor';
const BITMAP = 'per-4K bitmap';
const QEMU = 'per-4K bitmap as QEMU notifies';
const PAGE_MAP = 'per-page Map';
const ROUNDS = 5;
const ROUND_SECONDS = 0.8;
const SLOTS = 128;
const BLOCK_PAGES = BLOCK / PAGE_SIZE;
/** Mapped IOPTE pages at the end may differ from the start by this much (the workload is stationary). */
const STATIONARY_TOLERANCE = 0.03;
/** gmemlab alone before the interleaved rounds: JIT warm-up, and the 1 TiB resident memory without baselines. */
const WARMUP_OPS = 200_000;
const WARMUP_SECONDS = 1.5;

export function conversionName(c: Pick<ConversionConfig, 'size' | 'areas' | 'backend' | 'design'>): string {
  return `conversions ${sizeName(c.size)} ${c.backend}${c.design === 'mirror' ? ' mirror' : ''}${c.areas === 1 ? ' 1 area' : ''}`;
}

/** Mapped IOPTE pages over every area of the IOAS. */
export function mappedIoptePages(ioas: Ioas): number {
  let pages = 0;
  const areas = (
    ioas as unknown as {
      areaList(): Array<{
        npages: number;
        ioptes: { overlapping(s: number, e: number): Array<{ start: number; end: number }> };
      }>;
    }
  ).areaList();
  for (const area of areas) for (const run of area.ioptes.overlapping(0, area.npages)) pages += run.end - run.start;
  return pages;
}

/**
 * The VMM of the stationary workload: converts, and under 'gmem-registry' with a backend that revokes on
 * to-private, maps again the areas over a block it had made private once that block goes shared.
 */
export class StationaryVmm {
  private readonly blockPrivate: Uint8Array;
  private readonly areaPages: number;
  private readonly flags: number;
  remaps = 0;

  constructor(
    private readonly world: ConversionWorld,
    private readonly sequence: Uint32Array,
    /** Whether the VMM maps areas again after a conversion to shared ('gmem-registry' with TDX). */
    readonly remapsAreas: boolean,
    private readonly areaCount: number,
  ) {
    this.blockPrivate = Uint8Array.from(world.initiallyPrivate);
    this.areaPages = world.areaLength / PAGE_SIZE;
    // IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA, as world.ts maps them.
    this.flags = 1 | 2 | 4;
  }

  run(from: number, to: number): void {
    const gmem = this.world.gmem;
    const sequence = this.sequence;
    for (let i = from; i < to; i++) {
      const block = sequence[i % CONVERSIONS]!;
      const toPrivate = (i & 1) === 0;
      gmem.setMemoryAttributes2({
        offset: block * BLOCK,
        size: BLOCK,
        attributes: toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
      });
      if (this.remapsAreas) this.afterConversion(block, toPrivate);
    }
  }

  private afterConversion(block: number, toPrivate: boolean): void {
    const wasPrivate = this.blockPrivate[block] === 1;
    if (toPrivate === wasPrivate) return; // no change: the kernel did nothing (step 9)
    this.blockPrivate[block] = toPrivate ? 1 : 0;
    if (toPrivate) return;
    const firstPage = block * BLOCK_PAGES;
    const first = Math.floor(firstPage / this.areaPages);
    const last = Math.min(this.areaCount - 1, Math.floor((firstPage + BLOCK_PAGES - 1) / this.areaPages));
    for (let a = first; a <= last; a++) this.remap(a);
  }

  private remap(a: number): void {
    const { ioas, gmem, areaLength, iova } = this.world;
    ioas.unmap({ iova: iova + a * areaLength, length: areaLength });
    ioas.mapFile({
      fd: gmem,
      start: a * areaLength,
      length: areaLength,
      iova: iova + a * areaLength,
      flags: this.flags,
    });
    this.remaps++;
  }
}

export function runConversions(config: ConversionConfig): BenchResult {
  const problems: string[] = [];
  const design = config.design ?? 'gmem-registry';
  const name = conversionName(config);
  const started = performance.now();
  const world = conversionWorld({
    size: config.size,
    slots: SLOTS,
    areas: config.areas,
    backend: config.backend === 'tdx' ? tdx : sevSnp,
    seed: 1,
    contract: design,
  });
  const setupSeconds = (performance.now() - started) / 1000;
  const blocks = config.size / BLOCK;
  const sequence = randomIndices(2, CONVERSIONS, blocks);
  const mappedAtStart = mappedIoptePages(world.ioas);
  const vmm = new StationaryVmm(world, sequence, design === 'gmem-registry' && config.backend === 'tdx', config.areas);

  // Warm-up: gmemlab alone, from the start of its sequence; the timed rounds go on from where it stopped.
  let warm = 0;
  const warmDeadline = performance.now() + WARMUP_SECONDS * 1000;
  const warmBatch = vmm.remapsAreas ? 1 : 1000;
  while (warm < WARMUP_OPS && performance.now() < warmDeadline) {
    vmm.run(warm, warm + warmBatch);
    warm += warmBatch;
  }
  const resident = config.size === TiB && config.areas > 1 ? residentMB() : undefined;

  const gmemlab: Contender = {
    name: 'gmemlab',
    run: (from, to) => vmm.run(from + warm, to + warm),
    ...(vmm.remapsAreas ? { batch: 1 } : {}),
  };
  const contenders = [gmemlab];
  const npages = config.size / PAGE_SIZE;
  const areaPages = world.areaLength / PAGE_SIZE;
  const areas = Array.from({ length: config.areas }, (_, a) => ({ first: a * areaPages, end: (a + 1) * areaPages }));
  const isPrivate = (page: number) => world.initiallyPrivate[Math.floor((page * PAGE_SIZE) / BLOCK)] === 1;
  type Baseline = { convert(offset: number, size: number, toPrivate: boolean): void };
  const baselines: Array<[string, Baseline]> = [];
  if (config.baselines) {
    baselines.push(
      [RANGE_NOTIFY, new RangeNotifyBitmap(npages, areas, isPrivate, BLOCK_PAGES)],
      [FLOOR, new PhysicalFloor(npages, areas, isPrivate, BLOCK_PAGES)],
    );
    // Issue 11's per-page designs, a reference only, where they fit in time and memory.
    if (config.size <= GiB) {
      baselines.push(
        [BITMAP, new Per4KBitmap(npages, areas, isPrivate)],
        [QEMU, new Per4KBitmap(npages, areas, isPrivate, 'qemu')],
        [PAGE_MAP, new PerPageMap(npages, areas, isPrivate)],
      );
    }
  }
  for (const [label, b] of baselines) {
    contenders.push({
      name: label,
      run(from, to) {
        for (let i = from; i < to; i++) b.convert(sequence[i % CONVERSIONS]! * BLOCK, BLOCK, (i & 1) === 0);
      },
    });
  }

  const rates = interleave(contenders, { maxOps: CONVERSIONS, rounds: ROUNDS, roundSeconds: ROUND_SECONDS });
  const gm = rates[0]!;
  const gmOps = gm.ops + warm;
  checkRate(name, gm.median, problems);

  // Broken results: the model must end consistent, where the sequence leads, with its DMA state where it began.
  const violations = world.host.checkInvariants();
  if (violations.length > 0)
    problems.push(`${name}: ${violations.length} invariant violations after the run, first: ${violations[0]!.message}`);
  const snapshot = world.host.snapshot() as { inodes: Array<{ attributes: Array<[number, number, string]> }> };
  const attributeRuns = snapshot.inodes[0]!.attributes;
  const expectShared = (ops: number) => expectedSharedPages(world.initiallyPrivate, sequence, ops);
  const gmShared = attributeRuns.reduce((n, [s, e, v]) => n + (v === 'shared' ? e - s : 0), 0);
  if (gmShared !== expectShared(gmOps))
    problems.push(`${name}: ${gmShared} shared pages after ${gmOps} conversions, expected ${expectShared(gmOps)}`);
  const mappedAtEnd = mappedIoptePages(world.ioas);
  // Stationary: the mapped pages stay where they began (SEV-SNP: nothing is unmapped or mapped again), or they
  // stay the same share of the shared pages the areas cover (TDX: they follow the attributes, whose shared count
  // itself wanders by a few percent on a 512-block file).
  const covered = config.areas * (world.areaLength / PAGE_SIZE);
  const sharedAtStart = sharedCovered(world.initiallyPrivate, covered);
  const sharedAtEnd = attributeRuns.reduce(
    (n, [s, e, v]) => n + (v === 'shared' ? Math.max(0, Math.min(e, covered) - s) : 0),
    0,
  );
  const drift = relative(mappedAtStart, mappedAtEnd);
  const shareDrift = relative(mappedAtStart / Math.max(1, sharedAtStart), mappedAtEnd / Math.max(1, sharedAtEnd));
  const dmaNote = `mapped IOPTE pages ${mappedAtStart.toLocaleString('en-US')} at the start, ${mappedAtEnd.toLocaleString('en-US')} at the end (${(drift * 100).toFixed(2)}%; ${(shareDrift * 100).toFixed(2)}% as a share of the shared pages covered)`;
  if (Math.min(Math.abs(drift), Math.abs(shareDrift)) > STATIONARY_TOLERANCE)
    problems.push(`${name}: the DMA state is not stationary: ${dmaNote}`);
  const remapNote = vmm.remapsAreas ? `; the VMM mapped ${vmm.remaps.toLocaleString('en-US')} areas again` : '';
  const main: Row = {
    name,
    value: Math.round(gm.median),
    unit: 'conversions/s',
    note: `${rateNote(gm)} after ${warm.toLocaleString('en-US')} warm-up; ${dmaNote}${remapNote}; ${attributeRuns.length.toLocaleString('en-US')} attribute runs; set-up ${setupSeconds.toFixed(1)} s`,
  };
  const rows: Row[] = [main];
  if (resident) {
    rows.push({
      name: `resident memory ${name}`,
      value: Math.round(resident.peak),
      unit: 'MB',
      note: `peak of its own process after set-up and ${warm.toLocaleString('en-US')} conversions, before any baseline; then ${resident.now.toFixed(0)} MB, of which JS heap ${resident.heap.toFixed(0)} MB, outside the heap ${resident.external.toFixed(0)} MB`,
    });
    // What the process still holds after a full collection at the same point: the model's live objects and typed
    // arrays (and the bench's own few MB: the conversion sequence, 3.8 MB). The resident peak above adds Node's own
    // ~43 MB and the collector's slack (young generation, old-space growth, freed typed arrays not yet returned),
    // which move with when the collector last ran.
    rows.push({
      name: `live memory ${name}`,
      value: Math.round(resident.heap + resident.external),
      unit: 'MB',
      note: 'JS heap in use plus memory outside the heap, after a full GC, at the same point as the resident peak',
    });
  }
  baselines.forEach(([label, b], i) => {
    const rate = rates[i + 1]!;
    checkRate(label, rate.median, problems);
    if (b instanceof RangeNotifyBitmap || b instanceof PhysicalFloor) {
      const shared = countOnes(b.attributeBytes());
      if (shared !== expectShared(rate.ops))
        problems.push(
          `${label}: ${shared} shared pages after ${rate.ops} conversions, expected ${expectShared(rate.ops)}`,
        );
    }
    const ratio = round(gm.median / rate.median);
    if (i === 0) Object.assign(main, { baseline: label, ratio });
    else rows.push({ name: `${name} (vs ${label})`, value: main.value, unit: main.unit, baseline: label, ratio });
    rows.push({
      name: `baseline ${label} ${sizeName(config.size)}${config.areas === 1 ? ' 1 area' : ''} (${config.backend}${design === 'mirror' ? ' mirror' : ''} process)`,
      value: Math.round(rate.median),
      unit: 'conversions/s',
      note: rateNote(rate),
    });
  });
  if (config.baselines) problems.push(...checkBaselinesPerPage());
  return { rows, problems };
}

/** Shared pages after `ops` conversions of the sequence from the seeded start, by 2 MiB block. */
function expectedSharedPages(initiallyPrivate: Uint8Array, sequence: Uint32Array, ops: number): number {
  const state = Uint8Array.from(initiallyPrivate);
  for (let i = 0; i < ops; i++) state[sequence[i % sequence.length]!] = i & 1 ? 0 : 1;
  let shared = 0;
  for (const p of state) if (!p) shared++;
  return shared * BLOCK_PAGES;
}

function relative(from: number, to: number): number {
  return from === 0 ? (to === 0 ? 0 : 1) : (to - from) / from;
}

/** Shared pages below `covered` at the seeded start. */
function sharedCovered(initiallyPrivate: Uint8Array, covered: number): number {
  let pages = 0;
  for (let b = 0; b < initiallyPrivate.length; b++)
    if (!initiallyPrivate[b]) pages += Math.max(0, Math.min(BLOCK_PAGES, covered - b * BLOCK_PAGES));
  return pages;
}

function countOnes(bytes: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bytes.length; i++) n += bytes[i]!;
  return n;
}

/**
 * The baselines do the model's work: on a small file (256 MiB, 7 areas whose edges fall inside 2 MiB blocks, the
 * last pages uncovered), the same 4,000 conversions leave the model (TDX, under both designs, with the VMM's
 * re-maps) and each baseline with the same attribute and the same DMA state (an IOPTE or none) on every page.
 */
export function checkBaselinesPerPage(): string[] {
  const problems: string[] = [];
  const size = 256 * MiB;
  const areaCount = 7;
  const ops = 4000;
  const npages = size / PAGE_SIZE;
  for (const design of ['gmem-registry', 'mirror'] as const) {
    const world = conversionWorld({ size, slots: 8, areas: areaCount, backend: tdx, seed: 5, contract: design });
    const sequence = randomIndices(6, ops, size / BLOCK);
    const vmm = new StationaryVmm(world, sequence, design === 'gmem-registry', areaCount);
    vmm.run(0, ops);
    const modelAttrs = new Uint8Array(npages);
    const snapshot = world.host.snapshot() as { inodes: Array<{ attributes: Array<[number, number, string]> }> };
    for (const [s, e, v] of snapshot.inodes[0]!.attributes) if (v === 'shared') modelAttrs.fill(1, s, e);
    const modelDma = new Uint8Array(npages);
    const list = (
      world.ioas as unknown as {
        areaList(): Array<{
          first: number;
          npages: number;
          ioptes: { overlapping(s: number, e: number): Array<{ start: number; end: number }> };
        }>;
      }
    ).areaList();
    for (const area of list)
      for (const run of area.ioptes.overlapping(0, area.npages))
        modelDma.fill(1, area.first + run.start, area.first + run.end);
    const areaPages = world.areaLength / PAGE_SIZE;
    const areas = Array.from({ length: areaCount }, (_, a) => ({ first: a * areaPages, end: (a + 1) * areaPages }));
    const isPrivate = (page: number) => world.initiallyPrivate[Math.floor(page / BLOCK_PAGES)] === 1;
    for (const [label, b] of [
      [RANGE_NOTIFY, new RangeNotifyBitmap(npages, areas, isPrivate)],
      [FLOOR, new PhysicalFloor(npages, areas, isPrivate)],
    ] as const) {
      for (let i = 0; i < ops; i++) b.convert(sequence[i]! * BLOCK, BLOCK, (i & 1) === 0);
      const attrs = b.attributeBytes();
      const dma = b.dmaBytes();
      for (let page = 0; page < npages; page++) {
        if (attrs[page] !== modelAttrs[page] || dma[page] !== modelDma[page]) {
          problems.push(
            `${label} differs from the model (tdx, ${design}) at page ${page} after ${ops} conversions: attribute ${attrs[page] ? 'shared' : 'private'} vs ${modelAttrs[page] ? 'shared' : 'private'}, DMA ${dma[page] ? 'mapped' : 'unmapped'} vs ${modelDma[page] ? 'mapped' : 'unmapped'}`,
          );
          break;
        }
      }
    }
  }
  return problems;
}

export function round(x: number): number {
  return Math.round(x * 100) / 100;
}
