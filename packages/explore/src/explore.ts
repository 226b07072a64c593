/**
 * One exploration run (an architecture under a contract): the search, or random walks for larger worlds, and
 * every violating trace and witness written as a scenario. `ExploreResult` is exactly one element of the
 * `results` array `gmemlab explore --format json` prints; `ExploreRun` adds what a report needs besides.
 */
import type { ArchBackend, Contract } from '@gmemlab/core';
import { PROPERTY_NAMES, type PropertyName } from './properties.js';
import { randomWalks } from './random.js';
import { scenarioOf, type ScenarioObject } from './scenario.js';
import { checkVisited, search, type SearchOptions, type SearchResult } from './search.js';
import type { WorldConfig } from './world.js';

export interface ExploreOptions {
  backend: ArchBackend;
  contract: Contract;
  /** The world's size; defaults to DEFAULT_WORLD. */
  world?: Partial<WorldConfig>;
  /** The depth bound: the longest trace searched (or walked). Default 30. */
  depth?: number;
  /** Breadth-first search stops (not exhaustive) after this many states. Default 2,000,000. */
  maxStates?: number;
  /** Random walks instead of the exhaustive search: how many. */
  randomWalks?: number;
  /** The random walks' seed. Default 1. */
  seed?: number;
  /**
   * How the search remembers visited states: 'exact' (canonical forms), 'fingerprint' (64-bit fingerprints), or
   * 'auto' (the default: exact up to a million states, then fingerprints). See `SearchOptions.visited`. Random
   * walks keep no visited set and ignore it.
   */
  visited?: 'auto' | 'exact' | 'fingerprint';
  /** The breadth-first search's progress: see `SearchOptions.onLevel`. Random walks do not call it. */
  onLevel?: SearchOptions['onLevel'];
}

/** One property's result, as `--format json` prints it. */
export interface PropertyResult {
  holds: boolean;
  /** No witness was found: the situation the property guards never arose, so `holds` means nothing. */
  vacuous: boolean;
  /** The shortest violating trace, as a scenario `gmemlab run` replays. */
  trace?: ScenarioObject;
  /** The shortest trace to the guarded situation, as a scenario. */
  witness?: ScenarioObject;
}

/** One run's result, as `--format json` prints it (the elements of `results`). */
export interface ExploreResult {
  arch: string;
  contract: Contract;
  states: number;
  depth: number;
  exhaustive: boolean;
  properties: Record<PropertyName, PropertyResult>;
  /**
   * Present when the search kept visited states as 64-bit fingerprints from some point on: from how many states,
   * and the estimated chance that two states were taken for one (`SearchResult.fingerprints`).
   */
  fingerprints?: { from: number; collisionBound: number };
}

/** A run: the result, the traces as action ids, and the search's statistics. */
export interface ExploreRun {
  result: ExploreResult;
  /** Per property: the traces as action ids and what their last step showed. */
  traces: Record<PropertyName, { trace?: string[]; traceNote?: string; witness?: string[]; witnessNote?: string }>;
  stats: {
    mode: 'breadth-first' | 'random-walks';
    world: WorldConfig;
    /** The depth bound. */
    bound: number;
    transitions: number;
    /** New states per level (breadth-first only). */
    levels: number[];
    /** Milliseconds of the run (search and writing the scenarios). */
    elapsedMs: number;
    /** Milliseconds of the search alone. */
    searchMs: number;
    /** Distinct states found per second of the search (of those found in this run, when it went on from a checkpoint). */
    statesPerSecond: number;
    /**
     * When the search went on from a checkpoint (exploreThreaded): the states the file held. `searchMs` counts this
     * run only, so `statesPerSecond` counts the states found after.
     */
    resumedFrom?: number;
    /** Per property: how many checked transitions met its premise (the guarded situation) and how many violated it. */
    counts: SearchResult['counts'];
    /** When visited states were kept as fingerprints: from how many states on, and the bound on a collision. */
    fingerprints?: SearchResult['fingerprints'];
    /** When the search was spread over worker threads (exploreThreaded): how many. */
    threads?: number;
  };
}

export function explore(options: ExploreOptions): ExploreRun {
  const started = performance.now();
  if (options.visited !== undefined) checkVisited(options.visited);
  const searched: SearchResult =
    options.randomWalks !== undefined
      ? randomWalks({
          ...options,
          walks: options.randomWalks,
          ...(options.seed !== undefined ? { seed: options.seed } : {}),
        })
      : search(options);
  return runOf(options, searched, started);
}

/** @internal A run's report from its search result: the traces written as scenarios, the statistics. */
export function runOf(
  options: Pick<ExploreOptions, 'backend' | 'contract' | 'randomWalks'>,
  searched: SearchResult,
  started: number,
  /** The states a checkpoint held when the search went on from it (its time is this run's: rates count the rest). */
  resumedFrom?: number,
): ExploreRun {
  // States found by this run (its time is this run's alone).
  const found = searched.states - (resumedFrom ?? 0);
  const properties = {} as Record<PropertyName, PropertyResult>;
  const traces = {} as ExploreRun['traces'];
  for (const name of PROPERTY_NAMES) {
    const found = searched.properties[name];
    const common = { backend: options.backend, contract: options.contract, world: searched.world, property: name };
    properties[name] = {
      holds: found.holds,
      vacuous: found.vacuous,
      ...(found.trace
        ? {
            trace: scenarioOf({
              ...common,
              trace: found.trace,
              kind: 'counterexample',
              ...(found.traceNote ? { note: found.traceNote } : {}),
            }),
          }
        : {}),
      ...(found.witness
        ? {
            witness: scenarioOf({
              ...common,
              trace: found.witness,
              kind: 'witness',
              ...(found.witnessNote ? { note: found.witnessNote } : {}),
            }),
          }
        : {}),
    };
    traces[name] = {
      ...(found.trace ? { trace: found.trace, traceNote: found.traceNote } : {}),
      ...(found.witness ? { witness: found.witness, witnessNote: found.witnessNote } : {}),
    };
  }
  return {
    result: {
      arch: searched.arch,
      contract: searched.contract,
      states: searched.states,
      depth: searched.depth,
      exhaustive: searched.exhaustive,
      properties,
      ...(searched.fingerprints ? { fingerprints: searched.fingerprints } : {}),
    },
    traces,
    stats: {
      mode: options.randomWalks !== undefined ? 'random-walks' : 'breadth-first',
      world: searched.world,
      bound: searched.bound,
      transitions: searched.transitions,
      levels: searched.levels,
      elapsedMs: Math.round(performance.now() - started),
      searchMs: searched.elapsedMs,
      statesPerSecond: searched.elapsedMs > 0 ? Math.round((found / searched.elapsedMs) * 1000) : found,
      ...(resumedFrom !== undefined ? { resumedFrom } : {}),
      counts: searched.counts,
      ...(searched.fingerprints ? { fingerprints: searched.fingerprints } : {}),
    },
  };
}
