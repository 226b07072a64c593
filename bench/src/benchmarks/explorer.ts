/**
 * Benchmark 5, the explorer: `@gmemlab/explore`'s breadth-first search of its default world (one page, one
 * area), as `gmemlab explore` runs it, one architecture at a time in one thread of this process: tdx, sev-snp,
 * arm-cca and pkvm under 'gmem-registry', then tdx under the other two contracts. The rates are per thread,
 * that is per core: distinct states found per second (the issue's "states per second"), and transitions (an
 * action run from a state and its properties checked, TLC's "states generated") per second.
 * Every search must be exhaustive, or the result is broken.
 *
 * Then the world issue 19 asks for: 2 pages, 2 areas and the second VM (`gmemlab explore --pages 2 --areas 2`),
 * tdx under 'gmem-registry', its first LARGE_STATES distinct states (breadth-first, so the first levels whole):
 * not exhaustive (that world has far more states than this session's search can visit in its 60 s budget), so the
 * row is the rate on the world that matters, and the level sizes in its note show how the world grows.
 */
import type { ArchBackend, Contract } from '@gmemlab/core';
import { armCca } from '@gmemlab/arm-cca';
import { search } from '@gmemlab/explore';
import { pkvm } from '@gmemlab/pkvm';
import { sevSnp } from '@gmemlab/sev-snp';
import { tdx } from '@gmemlab/tdx';
import { checkRate, type BenchResult } from '../rows.js';

const RUNS: Array<{ backend: ArchBackend; contract: Contract }> = [
  { backend: tdx, contract: 'gmem-registry' },
  { backend: sevSnp, contract: 'gmem-registry' },
  { backend: armCca, contract: 'gmem-registry' },
  { backend: pkvm, contract: 'gmem-registry' },
  { backend: tdx, contract: 'vmm-driven' },
  { backend: tdx, contract: 'mirror' },
];

/** How many states of the 2-page world the bench searches: about 15-30 s at the rates measured. */
const LARGE_STATES = 10_000;

export function runExplorer(): BenchResult {
  const problems: string[] = [];
  let states = 0;
  let transitions = 0;
  let seconds = 0;
  let cpu = 0;
  const each: string[] = [];
  for (const { backend, contract } of RUNS) {
    const used = process.cpuUsage();
    const started = performance.now();
    const result = search({ backend, contract });
    const elapsed = (performance.now() - started) / 1000;
    const spent = process.cpuUsage(used);
    cpu += (spent.user + spent.system) / 1e6;
    if (!result.exhaustive)
      problems.push(
        `explorer ${backend.id}/${contract}: the search of the default world was not exhaustive (${result.states} states, depth ${result.depth})`,
      );
    states += result.states;
    transitions += result.transitions;
    seconds += elapsed;
    each.push(`${backend.id}/${contract} ${result.states.toLocaleString('en-US')} in ${elapsed.toFixed(2)} s`);
  }
  const stateRate = checkRate('explorer states/s', states / seconds, problems);
  const largeUsed = process.cpuUsage();
  const largeStarted = performance.now();
  const large = search({
    backend: tdx,
    contract: 'gmem-registry',
    world: { pages: 2, maxAreas: 2 },
    maxStates: LARGE_STATES,
  });
  const largeSeconds = (performance.now() - largeStarted) / 1000;
  const largeSpent = process.cpuUsage(largeUsed);
  const largeShare = (largeSpent.user + largeSpent.system) / 1e6 / largeSeconds;
  if (large.states !== LARGE_STATES)
    problems.push(`explorer 2-page world: ${large.states} states, not the ${LARGE_STATES} asked for`);
  const largeRate = checkRate('explorer states/s (2 pages)', large.states / largeSeconds, problems);
  const transitionRate = checkRate('explorer transitions/s', transitions / seconds, problems);
  const busy =
    cpu / seconds < 0.8 ? `; busy machine: this process had ${Math.round((cpu / seconds) * 100)}% of a core` : '';
  return {
    rows: [
      {
        name: 'explorer states/s (default world)',
        value: Math.round(stateRate),
        unit: 'states/s',
        note: `distinct states per second in one thread: ${states.toLocaleString('en-US')} in ${seconds.toFixed(2)} s over ${RUNS.length} exhaustive searches (${each.join(', ')})${busy}`,
      },
      {
        name: 'explorer states/s (2 pages, 2 areas)',
        value: Math.round(largeRate),
        unit: 'states/s',
        note: `tdx/gmem-registry, the first ${LARGE_STATES.toLocaleString('en-US')} states of --pages 2 --areas 2 in ${largeSeconds.toFixed(2)} s (${large.transitions.toLocaleString('en-US')} transitions; new states per level ${large.levels.join(', ')})${largeShare < 0.8 ? `; busy machine: this process had ${Math.round(largeShare * 100)}% of a core` : ''}`,
      },
      {
        name: 'explorer transitions/s (default world)',
        value: Math.round(transitionRate),
        unit: 'transitions/s',
        note: `actions run from a state with the properties checked after them (TLC's "states generated"): ${transitions.toLocaleString('en-US')} in ${seconds.toFixed(2)} s`,
      },
    ],
    problems,
  };
}
