/**
 * Benchmark 3: truncation under many DMA areas. A 1 TiB guest_memfd (all shared) with 128 memslots and 10,000
 * areas with a device attached (TDX, 'gmem-registry'); each cycle punches a hole over 32 consecutive areas
 * (FALLOC_FL_PUNCH_HOLE: KVM zaps stage-2, the registry revokes each area whole, the pages are freed), then the
 * VMM re-maps them: IOMMU_IOAS_UNMAP of each revoked area and IOMMU_IOAS_MAP_FILE at the same IOVA, which pins the
 * pages again through the attached device.
 */
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
} from '@gmemlab/core';
import { tdx } from '@gmemlab/tdx';
import { measure } from '../measure.js';
import { randomIndices } from '../rng.js';
import { checkRate, TiB, type BenchResult, rateNote } from '../rows.js';
import { conversionWorld } from '../world.js';
import { round } from './conversions.js';

const AREAS = 10_000;
const SPAN = 32;
const CYCLES = 100_000;

export function runTruncation(): BenchResult {
  const problems: string[] = [];
  const world = conversionWorld({ size: TiB, slots: 128, areas: AREAS, backend: tdx, seed: 3, privateHalf: false });
  const { gmem, ioas, areaLength, iova } = world;
  const flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
  const starts = randomIndices(4, CYCLES, AREAS - SPAN);
  const rate = measure(
    {
      name: 'truncation',
      run(from, to) {
        for (let i = from; i < to; i++) {
          const first = starts[i % CYCLES]!;
          gmem.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, first * areaLength, SPAN * areaLength);
          for (let a = first; a < first + SPAN; a++) {
            ioas.unmap({ iova: iova + a * areaLength, length: areaLength });
            ioas.mapFile({ fd: gmem, start: a * areaLength, length: areaLength, iova: iova + a * areaLength, flags });
          }
        }
      },
    },
    { maxOps: CYCLES, rounds: 5, roundSeconds: 0.8, batch: 10 },
  );
  checkRate('truncation', rate.median, problems);
  const violations = world.host.checkInvariants();
  if (violations.length > 0)
    problems.push(`truncation: ${violations.length} invariant violations, first: ${violations[0]!.message}`);
  const snapshot = world.host.snapshot() as { ioases: Array<{ areas: Array<{ revoked: unknown[] }> }> };
  const areas = snapshot.ioases[0]!.areas;
  if (areas.length !== AREAS || areas.some((a) => a.revoked.length > 0))
    problems.push(`truncation: ${areas.length} areas after the run, some still revoked`);
  const note = rateNote(rate, ' cycles');
  return {
    rows: [
      { name: 'truncation 1TiB tdx: punch over 32 areas + re-map', value: round(rate.median), unit: 'cycles/s', note },
      {
        name: 'truncation 1TiB tdx: areas revoked and re-mapped',
        value: Math.round(rate.median * SPAN),
        unit: 'areas/s',
      },
    ],
    problems,
  };
}
