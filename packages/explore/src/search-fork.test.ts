/**
 * The search restarts a state from a fork of its pristine world (Host.fork) or from a replay of its trace; the
 * two build the same world, so the results are the same whichever it uses, at every depth.
 */
import { CONTRACTS, swProtected, type ArchBackend, type ConversionContext } from '@gmemlab/core';
import { describe, expect, it } from 'vitest';
import { search, type SearchResult } from './index.js';

const refusing: ArchBackend = Object.freeze({
  ...swProtected,
  id: 'refusing',
  name: 'Refusing (test)',
  conversionPolicy: ({ to }: ConversionContext) => (to === 'private' ? 'refuse' : 'tolerate'),
});
const timeless = (result: SearchResult) => ({ ...result, elapsedMs: 0 });

describe('forks and replays', () => {
  it('give the same search, traces and witnesses included (a whole search)', () => {
    const replayed = search({ backend: swProtected, contract: 'gmem-registry', forkFrom: Infinity });
    expect(timeless(search({ backend: swProtected, contract: 'gmem-registry', forkFrom: 0 }))).toEqual(
      timeless(replayed),
    );
  });

  for (const contract of CONTRACTS) {
    it(`give the same search, traces and witnesses included (a refusing backend, '${contract}', 1,000 states)`, () => {
      const options = { backend: refusing, contract, maxStates: 1000 };
      expect(timeless(search({ ...options, forkFrom: 0 }))).toEqual(
        timeless(search({ ...options, forkFrom: Infinity })),
      );
    });
  }

  it('give the same search in a larger world cut by maxStates', () => {
    const options = {
      backend: swProtected,
      contract: 'mirror' as const,
      world: { pages: 2, maxAreas: 2 },
      maxStates: 1500,
    };
    expect(timeless(search({ ...options, forkFrom: 0 }))).toEqual(timeless(search({ ...options, forkFrom: Infinity })));
  });
});
