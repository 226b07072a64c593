/**
 * Breadth-first search over the world's states, as TLC does it: level by level from the initial state, each
 * state visited once (by its canonical form, canonical.ts), every enabled action tried from every state, every
 * transition and every new state checked against the properties. The first violation of a property found is
 * therefore one of the shortest, and so is the first witness. The search is exhaustive when a level adds no new
 * state before the depth bound; otherwise it stops at the bound, every trace of at most `depth` actions checked.
 *
 * States are reached by replaying their trace from a fresh host (the model is deterministic, so a trace is a
 * state). A state's successors share one replay as long as actions leave it where it was (a refused call, a
 * faulting access): the world is replayed again only after an action that moved it.
 */
import type { ArchBackend, Contract } from '@gmemlab/core';
import { alphabet, perform, type Action } from './actions.js';
import { canonicalState, type Snapshot } from './canonical.js';
import { before, checkState, checkTransition, PROPERTY_NAMES, type Findings, type PropertyName } from './properties.js';
import { createWorld, worldConfig, type World, type WorldConfig } from './world.js';

export interface SearchOptions {
  backend: ArchBackend;
  contract: Contract;
  world?: Partial<WorldConfig>;
  /** The longest trace explored (actions after the setup). Default 30 (the default world's searches end by depth 12; some variants need 22). */
  depth?: number;
  /** Stop (not exhaustive) after this many states. Default 2,000,000. */
  maxStates?: number;
  /**
   * Called when a transition reaches a state already visited by another trace (the two traces' states have the
   * same canonical form and are merged): for tests of the canonical form's soundness. Costs a trace per state.
   */
  onMerge?: (first: readonly string[], other: readonly string[]) => void;
}

/** A property's result: the shortest violating trace and the shortest witness, as action ids. */
export interface PropertyOutcome {
  holds: boolean;
  vacuous: boolean;
  /** The shortest trace to a violation, and what the last action did. */
  trace?: string[];
  traceNote?: string;
  witness?: string[];
  witnessNote?: string;
}

export interface SearchResult {
  arch: string;
  contract: Contract;
  world: WorldConfig;
  /** Distinct states (canonical forms) found, the initial state included. */
  states: number;
  /** Transitions (action runs) checked. */
  transitions: number;
  /** The deepest level that holds a state. */
  depth: number;
  /** The depth bound searched with. */
  bound: number;
  /** The search ran out of new states before the bound. */
  exhaustive: boolean;
  /** New states found at each level (level 0: the initial state). */
  levels: number[];
  elapsedMs: number;
  properties: Record<PropertyName, PropertyOutcome>;
}

/** Replay a trace from the initial state: the world after it. */
export function replay(config: WorldConfig, backend: ArchBackend, contract: Contract, actions: readonly Action[], trace: ArrayLike<number>): World {
  const world = createWorld(config, backend, contract);
  for (let i = 0; i < trace.length; i++) perform(world, actions[trace[i]!]!);
  return world;
}

export const snapshotOf = (world: World): Snapshot => world.host.snapshot() as Snapshot;

/** Record findings: the first trace for each property (BFS order makes it a shortest one). */
export class Recorder {
  readonly properties = Object.fromEntries(PROPERTY_NAMES.map((name) => [name, { holds: true, vacuous: true }])) as Record<PropertyName, PropertyOutcome>;

  record(findings: Findings, trace: () => string[]): void {
    for (const [name, note] of findings.violated) {
      const p = this.properties[name];
      if (p.trace) continue;
      p.holds = false;
      p.trace = trace();
      p.traceNote = note;
    }
    for (const [name, note] of findings.witnessed) {
      const p = this.properties[name];
      if (p.witness) continue;
      p.vacuous = false;
      p.witness = trace();
      p.witnessNote = note;
    }
  }
}

/** Deep equality of plain data (snapshots: arrays, plain objects, strings, numbers, booleans, null). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const key of ka) if (!deepEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) return false;
  return true;
}

/** Object identities, for handlesKey. */
const identities = new WeakMap<object, number>();
const identity = (object: object | undefined): number => {
  if (object === undefined) return -1;
  let id = identities.get(object);
  if (id === undefined) {
    id = nextIdentity++;
    identities.set(object, id);
  }
  return id;
};
let nextIdentity = 0;

/**
 * The actors' handles exactly (objects by identity): with an identical snapshot, an identical key means the
 * world did not move. (Host PTEs are in neither, but an action that leaves both unchanged can only have faulted
 * in a PTE the fault handler would install again, which the canonical form ignores too.)
 */
function handlesKey(world: World): string {
  const h = world.handles;
  return [
    h.gmemOpen,
    h.released,
    h.mappingState,
    identity(h.mapping),
    h.areas.map((a) => `${a.iova}/${a.page}/${a.kind}/${a.truncated}/${identity(a.mapping)}/${a.mapping?.mapped}`).join(','),
    identity(h.device),
    h.pins.map(identity).join(','),
    identity(h.pending?.fault),
  ].join(';');
}

/**
 * Run `fn` with Error.stackTraceLimit 0: a refused call throws a GmemError, an Error, which would otherwise capture
 * a stack trace that nobody reads, on most transitions.
 */
export function withoutStackTraces<T>(fn: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** How many worlds of new states a level keeps for their expansion (memory: a world is a few tens of KiB). */
const CACHED = 4096;

export function search(options: SearchOptions): SearchResult {
  const started = performance.now();
  const { backend, contract } = options;
  const config = worldConfig(options.world);
  const bound = options.depth ?? 30;
  const maxStates = options.maxStates ?? 2_000_000;
  if (!Number.isInteger(bound) || bound < 0) throw new RangeError(`depth must be a non-negative integer, not ${String(bound)}`);
  const actions = alphabet(config);
  if (actions.length > 255) throw new RangeError('the world has more than 255 actions');
  const ids = (trace: ArrayLike<number>, last?: number) => [...Array.from(trace, (i) => actions[i]!.id), ...(last === undefined ? [] : [actions[last]!.id])];
  const recorder = new Recorder();

  const initial = createWorld(config, backend, contract);
  const visited = new Map<string, Uint8Array | undefined>();
  recorder.record(checkState(initial), () => []);
  // A new state's world, as the action that found it left it, serves as the first copy when it is expanded (a
  // replay saved per state); at most CACHED worlds per level are kept, the others are replayed.
  const initialSnapshot = snapshotOf(initial);
  let frontier: Array<{ trace: Uint8Array; world?: World; snapshot?: Snapshot; state: string }> = [{ trace: new Uint8Array(0), world: initial, snapshot: initialSnapshot, state: canonicalState(initial, initialSnapshot) }];
  let transitions = 0;
  let level = 0;
  let stopped = false;
  const levels = [1];
  visited.set(frontier[0]!.state, options.onMerge ? frontier[0]!.trace : undefined);

  withoutStackTraces(() => {
    while (frontier.length > 0 && level < bound && !stopped) {
      const next: typeof frontier = [];
      for (const entry of frontier) {
        const trace = entry.trace;
        // The world the discovering action left (with its snapshot), or a replay of the trace.
        let world = entry.world ?? replay(config, backend, contract, actions, trace);
        let snapshot = entry.world ? entry.snapshot! : snapshotOf(world);
        entry.world = undefined;
        entry.snapshot = undefined;
        if (world.host.crashed) continue;
        const here = entry.state;
        let handles = handlesKey(world);
        // Which actions the actors can take here: fixed for the state, whatever the actions tried before did.
        const enabled = actions.map((action) => action.enabled(world));
        let moved = false;
        for (let a = 0; a < actions.length; a++) {
          const action = actions[a]!;
          if (!enabled[a]) continue;
          if (moved) {
            world = replay(config, backend, contract, actions, trace);
            snapshot = snapshotOf(world);
            handles = handlesKey(world);
            moved = false;
          }
          const facts = before(world, action, snapshot);
          const outcome = perform(world, action);
          const after = snapshotOf(world);
          transitions++;
          const unchanged = deepEqual(after, facts.snapshot);
          const findings = checkTransition(world, backend, contract, action, outcome, facts, after, unchanged);
          if (findings.violated.length > 0 || findings.witnessed.length > 0) recorder.record(findings, () => ids(trace, a));
          // Most actions leave the world exactly as it was (a refused call, a faulting access): the same snapshot
          // and the same handles mean the same state, without the cost of the canonical form.
          if (unchanged && handlesKey(world) === handles) {
            snapshot = after;
            continue;
          }
          const there = canonicalState(world, after);
          if (there === here) {
            // The world changed (bytes, a PTE) but not its canonical form: the same state.
            if (options.onMerge) options.onMerge(ids(trace), ids(trace, a));
            snapshot = after;
            handles = handlesKey(world);
            continue;
          }
          moved = true;
          if (visited.has(there)) {
            if (options.onMerge) options.onMerge(ids(visited.get(there)!), ids(trace, a));
            continue;
          }
          const extended = new Uint8Array(trace.length + 1);
          extended.set(trace);
          extended[trace.length] = a;
          visited.set(there, options.onMerge ? extended : undefined);
          recorder.record(checkState(world), () => ids(extended));
          next.push(next.length < CACHED ? { trace: extended, world, snapshot: after, state: there } : { trace: extended, state: there });
          if (visited.size >= maxStates) {
            stopped = true;
            break;
          }
        }
        if (stopped) break;
      }
      if (next.length > 0) {
        level++;
        levels.push(next.length);
      }
      frontier = next;
    }
  });
  return {
    arch: backend.id,
    contract,
    world: config,
    states: visited.size,
    transitions,
    depth: level,
    bound,
    exhaustive: frontier.length === 0 && !stopped,
    levels,
    elapsedMs: Math.round(performance.now() - started),
    properties: recorder.properties,
  };
}
