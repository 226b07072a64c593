/**
 * Random walks, for worlds too large to search exhaustively: `walks` walks of at most `depth` actions from the
 * initial state, each action drawn uniformly from those enabled, every transition and state checked as in the
 * breadth-first search. A walk is not a proof: the result is never exhaustive. A violating trace (and a witness)
 * is shrunk before it is reported: delta debugging removes chunks of actions while the shorter trace still
 * violates the same property, then single actions, until no removal keeps the violation; the trace is cut after
 * the first violating step. Deterministic: the same seed gives the same walks, the same traces.
 */
import { alphabet, perform, type Action } from './actions.js';
import { canonicalState } from './canonical.js';
import { before, checkState, checkTransition, type Findings, type PropertyName } from './properties.js';
import {
  deepEqual,
  Recorder,
  snapshotOf,
  withoutStackTraces,
  type SearchOptions,
  type SearchResult,
} from './search.js';
import { createWorld, worldConfig, type WorldConfig } from './world.js';

export interface RandomWalkOptions extends SearchOptions {
  /** How many walks. */
  walks: number;
  /** The seed of the walks' random numbers (a 32-bit integer). Default 1. */
  seed?: number;
}

/** mulberry32: a small, fast, seedable PRNG (32-bit state). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Replay `trace` (action indices) and check it: the index of the first step whose findings (violations if
 * `what` is 'violated', else witnesses) include `property`, or -1. A trace with an action that is not enabled
 * where it comes is not a trace of this world: -1.
 */
export function firstFinding(
  config: WorldConfig,
  options: SearchOptions,
  actions: readonly Action[],
  trace: readonly number[],
  property: PropertyName,
  what: keyof Findings,
): number {
  const world = createWorld(config, options.backend, options.contract);
  if (what === 'violated' && checkState(world).violated.some(([p]) => p === property)) return 0;
  for (let i = 0; i < trace.length; i++) {
    if (world.host.crashed) return -1;
    const action = actions[trace[i]!]!;
    if (!action.enabled(world)) return -1;
    const snapshot = snapshotOf(world);
    const facts = before(world, action, snapshot);
    const outcome = perform(world, action);
    const after = snapshotOf(world);
    const findings = checkTransition(
      world,
      options.backend,
      options.contract,
      action,
      outcome,
      facts,
      after,
      deepEqual(after, snapshot),
    );
    if (findings[what].some(([p]) => p === property)) return i;
    if (what === 'violated' && checkState(world).violated.some(([p]) => p === property)) return i;
  }
  return -1;
}

/** Shrink a trace that shows `property` (delta debugging: chunks, then single actions), cut after that step. */
export function shrink(
  config: WorldConfig,
  options: SearchOptions,
  actions: readonly Action[],
  trace: readonly number[],
  property: PropertyName,
  what: keyof Findings,
): number[] {
  const check = (candidate: readonly number[]) => firstFinding(config, options, actions, candidate, property, what);
  let best = [...trace];
  const at = check(best);
  if (at < 0) return best;
  best = best.slice(0, at + 1);
  for (let chunk = Math.max(1, best.length >> 1); chunk >= 1; chunk >>= 1) {
    let progress = true;
    while (progress) {
      progress = false;
      for (let start = 0; start + chunk <= best.length; start++) {
        const candidate = [...best.slice(0, start), ...best.slice(start + chunk)];
        const found = check(candidate);
        if (found >= 0) {
          best = candidate.slice(0, found + 1);
          progress = true;
          break;
        }
      }
    }
  }
  return best;
}

export function randomWalks(options: RandomWalkOptions): SearchResult {
  const started = performance.now();
  const { backend, contract } = options;
  const config = worldConfig(options.world);
  const depth = options.depth ?? 30;
  if (!Number.isInteger(options.walks) || options.walks < 1)
    throw new RangeError(`walks must be a positive integer, not ${String(options.walks)}`);
  if (!Number.isInteger(depth) || depth < 1)
    throw new RangeError(`depth must be a positive integer, not ${String(depth)}`);
  const actions = alphabet(config);
  const random = prng(options.seed ?? 1);
  const recorder = new Recorder();
  const raw: Partial<Record<PropertyName, { trace?: number[]; witness?: number[] }>> = {};
  const keep = (findings: Findings, trace: readonly number[]) => {
    for (const [name] of findings.violated) (raw[name] ??= {}).trace ??= [...trace];
    for (const [name] of findings.witnessed) (raw[name] ??= {}).witness ??= [...trace];
    recorder.record(findings, () => trace.map((i) => actions[i]!.id));
  };
  const seen = new Set<string>();
  let transitions = 0;
  let longest = 0;
  withoutStackTraces(() => {
    for (let walk = 0; walk < options.walks; walk++) {
      const world = createWorld(config, backend, contract);
      seen.add(canonicalState(world, snapshotOf(world)));
      keep(checkState(world), []);
      const trace: number[] = [];
      for (let step = 0; step < depth && !world.host.crashed; step++) {
        const enabled: number[] = [];
        for (let a = 0; a < actions.length; a++) if (actions[a]!.enabled(world)) enabled.push(a);
        if (enabled.length === 0) break;
        const a = enabled[Math.floor(random() * enabled.length)]!;
        const action = actions[a]!;
        const snapshot = snapshotOf(world);
        const facts = before(world, action, snapshot);
        const outcome = perform(world, action);
        const after = snapshotOf(world);
        transitions++;
        trace.push(a);
        keep(
          checkTransition(world, backend, contract, action, outcome, facts, after, deepEqual(after, snapshot)),
          trace,
        );
        const state = canonicalState(world, after);
        if (!seen.has(state)) {
          seen.add(state);
          keep(checkState(world), trace);
        }
      }
      longest = Math.max(longest, trace.length);
    }
    // Shrink what was found; notes are re-read from the shrunk trace's last step.
    for (const [name, found] of Object.entries(raw) as Array<
      [PropertyName, { trace?: number[]; witness?: number[] }]
    >) {
      const outcome = recorder.properties[name];
      if (found.trace) {
        const shrunk = shrink(config, options, actions, found.trace, name, 'violated');
        outcome.trace = shrunk.map((i) => actions[i]!.id);
        outcome.traceNote = noteOf(config, options, actions, shrunk, name, 'violated') ?? outcome.traceNote;
      }
      if (found.witness) {
        const shrunk = shrink(config, options, actions, found.witness, name, 'witnessed');
        outcome.witness = shrunk.map((i) => actions[i]!.id);
        outcome.witnessNote = noteOf(config, options, actions, shrunk, name, 'witnessed') ?? outcome.witnessNote;
      }
    }
  });
  return {
    arch: backend.id,
    contract,
    world: config,
    states: seen.size,
    transitions,
    depth: longest,
    bound: depth,
    exhaustive: false,
    levels: [],
    elapsedMs: Math.round(performance.now() - started),
    properties: recorder.properties,
    counts: recorder.counts,
  };
}

/** The note of the last step of a trace for a property (what the violation or witness was). */
function noteOf(
  config: WorldConfig,
  options: SearchOptions,
  actions: readonly Action[],
  trace: readonly number[],
  property: PropertyName,
  what: keyof Findings,
): string | undefined {
  const world = createWorld(config, options.backend, options.contract);
  let note: string | undefined;
  for (const index of trace) {
    const action = actions[index]!;
    const snapshot = snapshotOf(world);
    const facts = before(world, action, snapshot);
    const outcome = perform(world, action);
    const after = snapshotOf(world);
    const findings = checkTransition(
      world,
      options.backend,
      options.contract,
      action,
      outcome,
      facts,
      after,
      deepEqual(after, snapshot),
    );
    const state = what === 'violated' ? checkState(world).violated : [];
    note = [...findings[what], ...state].find(([p]) => p === property)?.[1] ?? note;
  }
  return note;
}
