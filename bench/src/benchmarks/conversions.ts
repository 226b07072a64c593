/**
 * Benchmark 1: random 2 MiB-aligned conversions alternating to-private/to-shared on a guest_memfd of `size` bytes
 * with 128 memslots and `areas` IOMMU_IOAS_MAP_FILE areas with a device attached, in 'gmem-registry' mode, with
 * TDX (which revokes the areas' IOPTEs on to-private) or SEV-SNP (which tolerates them). With `baselines`, the
 * per-4K bitmap (three ways of notifying its DMA listener) and the per-page Map do the same conversions in the
 * same process, round by round in turn.
 * Each configuration runs in its own process, so that its resident memory is its own.
 */
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE } from '@gmemlab/core';
import { sevSnp } from '@gmemlab/sev-snp';
import { tdx } from '@gmemlab/tdx';
import { PerPageMap } from '../baselines/page-map.js';
import { Per4KBitmap } from '../baselines/bitmap.js';
import { interleave, type Contender } from '../measure.js';
import { randomIndices } from '../rng.js';
import { checkRate, residentMB, sizeName, type BenchResult, type Row, rateNote } from '../rows.js';
import { BLOCK, conversionWorld } from '../world.js';

export interface ConversionConfig {
  size: number;
  areas: number;
  backend: 'tdx' | 'sev-snp';
  baselines: boolean;
}

export const CONVERSIONS = 1_000_000;
/** Issue 11's baseline (the target's ratio is against it), and the others beside it: see baselines/. */
const BITMAP = 'per-4K bitmap';
const QEMU = 'per-4K bitmap as QEMU notifies';
const EMPTY_LISTENER = 'per-4K bitmap, empty listener';
const PAGE_MAP = 'per-page Map';
const ROUNDS = 5;
const ROUND_SECONDS = 0.8;
const SLOTS = 128;

export function conversionName(c: Pick<ConversionConfig, 'size' | 'areas' | 'backend'>): string {
  return `conversions ${sizeName(c.size)} ${c.backend}${c.areas === 1 ? ' 1 area' : ''}`;
}

export function runConversions(config: ConversionConfig): BenchResult {
  const problems: string[] = [];
  const name = conversionName(config);
  const started = performance.now();
  const world = conversionWorld({ size: config.size, slots: SLOTS, areas: config.areas, backend: config.backend === 'tdx' ? tdx : sevSnp, seed: 1 });
  const setupSeconds = (performance.now() - started) / 1000;
  const blocks = config.size / BLOCK;
  const sequence = randomIndices(2, CONVERSIONS, blocks);
  const { gmem } = world;
  const gmemlab: Contender = {
    name: 'gmemlab',
    run(from, to) {
      for (let i = from; i < to; i++) {
        gmem.setMemoryAttributes2({ offset: sequence[i % CONVERSIONS]! * BLOCK, size: BLOCK, attributes: i & 1 ? 0 : KVM_MEMORY_ATTRIBUTE_PRIVATE });
      }
    },
  };
  const contenders = [gmemlab];
  const npages = config.size / PAGE_SIZE;
  const areaPages = world.areaLength / PAGE_SIZE;
  const areas = Array.from({ length: config.areas }, (_, a) => ({ first: a * areaPages, end: (a + 1) * areaPages }));
  const isPrivate = (page: number) => world.initiallyPrivate[Math.floor((page * PAGE_SIZE) / BLOCK)] === 1;
  const bitmap = config.baselines ? new Per4KBitmap(npages, areas, isPrivate) : undefined;
  const qemu = config.baselines ? new Per4KBitmap(npages, areas, isPrivate, 'qemu') : undefined;
  const emptyListener = config.baselines ? new Per4KBitmap(npages, areas, isPrivate, 'empty-listener') : undefined;
  const pageMap = config.baselines ? new PerPageMap(npages, areas, isPrivate) : undefined;
  const baselineContender = (label: string, b: { convert(offset: number, size: number, toPrivate: boolean): void }): Contender => ({
    name: label,
    run(from, to) {
      for (let i = from; i < to; i++) b.convert(sequence[i % CONVERSIONS]! * BLOCK, BLOCK, (i & 1) === 0);
    },
  });
  const baselines: Array<[string, Per4KBitmap | PerPageMap]> = [];
  if (bitmap && qemu && emptyListener && pageMap) {
    baselines.push([BITMAP, bitmap], [QEMU, qemu], [EMPTY_LISTENER, emptyListener], [PAGE_MAP, pageMap]);
  }
  for (const [label, b] of baselines) contenders.push(baselineContender(label, b));

  const rates = interleave(contenders, { maxOps: CONVERSIONS, rounds: ROUNDS, roundSeconds: ROUND_SECONDS });
  const resident = residentMB();
  const gm = rates[0]!;
  checkRate(name, gm.median, problems);

  // Broken results: the model must end consistent, and every contender must be where the sequence leads.
  const violations = world.host.checkInvariants();
  if (violations.length > 0) problems.push(`${name}: ${violations.length} invariant violations after the run, first: ${violations[0]!.message}`);
  const snapshot = world.host.snapshot() as { inodes: Array<{ attributes: Array<[number, number, string]> }> };
  const attributeRuns = snapshot.inodes[0]!.attributes;
  const expectShared = (ops: number) => expectedSharedPages(world.initiallyPrivate, sequence, ops);
  const gmShared = attributeRuns.reduce((n, [s, e, v]) => n + (v === 'shared' ? e - s : 0), 0);
  if (gmShared !== expectShared(gm.ops)) problems.push(`${name}: ${gmShared} shared pages after ${gm.ops} conversions, expected ${expectShared(gm.ops)}`);
  const main: Row = {
    name,
    value: Math.round(gm.median),
    unit: 'conversions/s',
    note: `${rateNote(gm)}; ${attributeRuns.length.toLocaleString('en-US')} attribute runs; set-up ${setupSeconds.toFixed(1)} s`,
  };
  const rows: Row[] = [main];
  if (config.size === 2 ** 40 && config.areas > 1) rows.push({ name: `resident memory ${name}`, value: Math.round(resident.peak), unit: 'MB', note: `peak of its own process; at the end ${resident.now.toFixed(0)} MB, of which JS heap ${resident.heap.toFixed(0)} MB, outside the heap ${resident.external.toFixed(0)} MB` });
  const covered = areas.length > 0 ? areas[areas.length - 1]!.end : 0;
  baselines.forEach(([label, b], i) => {
    const rate = rates[i + 1]!;
    checkRate(label, rate.median, problems);
    if (b.sharedPages() !== expectShared(rate.ops)) problems.push(`${label}: ${b.sharedPages()} shared pages after ${rate.ops} conversions, expected ${expectShared(rate.ops)}`);
    // The DMA side did its work too: an IOPTE for every shared page the areas cover, and no other.
    if (b instanceof Per4KBitmap && b !== emptyListener && b.mappedPages() !== b.sharedPages(covered)) {
      problems.push(`${label}: ${b.mappedPages()} pages DMA-mapped after ${rate.ops} conversions, expected ${b.sharedPages(covered)}`);
    }
    const ratio = round(gm.median / rate.median);
    if (i === 0) Object.assign(main, { baseline: label, ratio });
    else rows.push({ name: `${name} (vs ${label})`, value: main.value, unit: main.unit, baseline: label, ratio });
    rows.push({ name: `baseline ${label} ${sizeName(config.size)} (${config.backend} process)`, value: Math.round(rate.median), unit: 'conversions/s', note: rateNote(rate) });
  });
  return { rows, problems };
}

/** Shared pages after `ops` conversions of the sequence from the seeded start, by 2 MiB block. */
function expectedSharedPages(initiallyPrivate: Uint8Array, sequence: Uint32Array, ops: number): number {
  const state = Uint8Array.from(initiallyPrivate);
  for (let i = 0; i < ops; i++) state[sequence[i % sequence.length]!] = i & 1 ? 0 : 1;
  let shared = 0;
  for (const p of state) if (!p) shared++;
  return shared * (BLOCK / PAGE_SIZE);
}

export function round(x: number): number {
  return Math.round(x * 100) / 100;
}
