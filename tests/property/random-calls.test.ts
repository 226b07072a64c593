/**
 * Random sequences of API calls, valid and hostile, in every contract mode (issue: at least 100,000 calls per
 * CI run in all), with and without event listeners that throw. The generators and the properties are in
 * calls.ts, shared with `pnpm fuzz`, which runs them for a time budget instead of a fixed count.
 */
import { CONTRACTS, createHost, PAGE_SIZE, registersWithGmem } from '@gmemlab/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  announceSeed,
  BACKENDS,
  checkProperty,
  runSequence,
  sequences,
  stats,
  throwingListeners,
  withoutNoops,
} from './calls.js';

const P = PAGE_SIZE;
const RUNS = Number(process.env.GMEMLAB_PROPERTY_RUNS ?? 1000);
const BACKEND_RUNS = Math.max(1, Math.round(RUNS / 10));
/** One sequence in five runs with listeners that throw at random points. */
const listeners = fc.option(throwingListeners, { freq: 4 });

announceSeed('random-calls.test.ts');

describe('random call sequences', () => {
  // Each assert below draws from a seed of its own, the file's seed plus k (calls.ts).
  let k = 0;
  for (const contract of CONTRACTS) {
    const index = k++;
    it(`only GmemError escapes, failed calls change nothing${registersWithGmem(contract) ? ', invariants hold' : ''} ('${contract}')`, () => {
      const start = stats.calls;
      const thrownBefore = stats.listenerThrows;
      checkProperty(
        fc.property(sequences, listeners, (sequence, plan) =>
          runSequence(contract, withoutNoops(sequence), { listeners: plan }),
        ),
        RUNS,
        index,
      );
      console.log(
        `${contract}: ${stats.calls - start} calls in ${RUNS} sequences, ${stats.listenerThrows - thrownBefore} listener exceptions absorbed; successes: ${JSON.stringify(Object.fromEntries(stats.succeeded))}`,
      );
      // The sequences must reach the interesting states, not stop at argument checks (each of these succeeds
      // 40-250 times per 1,000 sequences; the floor leaves room for chance).
      for (const name of [
        'convert',
        'fallocate',
        'mapFile',
        'attach',
        'dmaWrite',
        'guestWrite',
        'bind',
        'hostWrite',
        'unmapArea',
        'memoryFailure',
        'copy',
      ]) {
        expect(stats.succeeded.get(name) ?? 0, `successful ${name} calls`).toBeGreaterThan(RUNS / 100);
      }
      stats.succeeded.clear();
    });
  }

  // The same properties with every architecture's backend and variant: whatever the policy, failed calls change
  // nothing and, in the registering modes ('gmem-registry', 'mirror'), the invariants hold (the backend's own 'unsafe-iopte' rule included).
  for (const backend of BACKENDS) {
    const base = k;
    k += CONTRACTS.length;
    it(`holds with the ${backend.id} backend in every mode`, () => {
      for (const [c, contract] of CONTRACTS.entries()) {
        checkProperty(
          fc.property(sequences, listeners, (sequence, plan) =>
            runSequence(contract, withoutNoops(sequence), { backend, listeners: plan }),
          ),
          BACKEND_RUNS,
          base + c,
        );
      }
    });
  }

  it('in vmm-driven mode a truncation under a live DMA mapping leaves a stale IOPTE', () => {
    const host = createHost({ contract: 'vmm-driven' });
    const gmem = host.createVm({ type: 'coco' }).createGuestMemfd({ size: 4 * P, flags: 3 });
    const ioas = host.openIommufd().createIoas();
    ioas.mapFile({ fd: gmem, start: 0, length: 4 * P, flags: 6 });
    ioas.attachDevice();
    gmem.fallocate(3, 0, P);
    expect(host.checkInvariants().map((v) => v.kind)).toEqual(['stale-iopte']);
  });
});
