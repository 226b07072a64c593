/**
 * Benchmark 5, the explorer: `@gmemlab/explore`'s breadth-first search of its default world (one page, one
 * area), as `gmemlab explore` runs it, one architecture at a time in one thread of this process: tdx, sev-snp,
 * arm-cca and pkvm under 'gmem-registry', then tdx under the other two contracts. The rates are per thread,
 * that is per core: distinct states found per second (the issue's "states per second"), and transitions (an
 * action run from a state and its properties checked, TLC's "states generated") per second.
 * Every search must be exhaustive, or the result is broken.
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
    if (!result.exhaustive) problems.push(`explorer ${backend.id}/${contract}: the search of the default world was not exhaustive (${result.states} states, depth ${result.depth})`);
    states += result.states;
    transitions += result.transitions;
    seconds += elapsed;
    each.push(`${backend.id}/${contract} ${result.states.toLocaleString('en-US')} in ${elapsed.toFixed(2)} s`);
  }
  const stateRate = checkRate('explorer states/s', states / seconds, problems);
  const transitionRate = checkRate('explorer transitions/s', transitions / seconds, problems);
  const busy = cpu / seconds < 0.8 ? `; busy machine: this process had ${Math.round((cpu / seconds) * 100)}% of a core` : '';
  return {
    rows: [
      {
        name: 'explorer states/s (default world)',
        value: Math.round(stateRate),
        unit: 'states/s',
        note: `distinct states per second in one thread: ${states.toLocaleString('en-US')} in ${seconds.toFixed(2)} s over ${RUNS.length} exhaustive searches (${each.join(', ')})${busy}`,
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
