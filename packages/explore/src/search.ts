/**
 * Breadth-first search over the world's states, as TLC does it: level by level from the initial state, each
 * state visited once (by its canonical form, canonical.ts), every enabled action tried from every state, every
 * transition and every new state checked against the properties. The first violation of a property found is
 * therefore one of the shortest, and so is the first witness. The search is exhaustive when a level adds no new
 * state before the depth bound; otherwise it stops at the bound, every trace of at most `depth` actions checked.
 *
 * A state's successors are tried on one world as long as actions leave it where it was (a refused call, a
 * faulting access): after an action that moved it, the next one starts from a copy of the state's world as a
 * replay of its trace from a fresh host would build it (the model is deterministic, so a trace is a state). That
 * copy is a fork (Host.fork) of a pristine world kept for the state: the parent's pristine world, forked, with
 * the discovering action performed on it. States beyond the cached ones of a level are replayed.
 */
import type { ArchBackend, Contract } from '@gmemlab/core';
import { alphabet, perform, type Action } from './actions.js';
import { canonicalState, type Snapshot } from './canonical.js';
import { before, checkState, checkTransition, PROPERTY_NAMES, type Findings, type PropertyName } from './properties.js';
import { createWorld, forkWorld, worldConfig, type World, type WorldConfig } from './world.js';

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
  /** @internal Called after each level with the new states per level so far (for measuring large worlds). */
  onLevel?: (levels: readonly number[], states: number, transitions: number) => void;
  /** @internal From which trace length a state restarts from a fork rather than a replay (default FORK_FROM; tests). */
  forkFrom?: number;
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
  /** Per property: transitions (and, for state predicates, states) that met its premise, and that violated it. */
  counts: PropertyCounts;
}

/** Replay a trace from the initial state: the world after it. */
export function replay(
  config: WorldConfig,
  backend: ArchBackend,
  contract: Contract,
  actions: readonly Action[],
  trace: ArrayLike<number>,
): World {
  const world = createWorld(config, backend, contract);
  for (let i = 0; i < trace.length; i++) perform(world, actions[trace[i]!]!);
  return world;
}

export const snapshotOf = (world: World): Snapshot => world.host.snapshot() as Snapshot;

/**
 * How often, per property, a checked transition or state reached the property's premise (its witness: the
 * situation it guards) and how often one violated it. A property is non-vacuous when its premise count is not 0;
 * the counts say by how much (a premise met once is thin evidence; met thousands of times, the search covered it).
 */
export type PropertyCounts = Record<PropertyName, { premise: number; violated: number }>;

/** Record findings: the first trace for each property (BFS order makes it a shortest one), and the counts. */
export class Recorder {
  readonly properties = Object.fromEntries(
    PROPERTY_NAMES.map((name) => [name, { holds: true, vacuous: true }]),
  ) as Record<PropertyName, PropertyOutcome>;
  readonly counts = Object.fromEntries(
    PROPERTY_NAMES.map((name) => [name, { premise: 0, violated: 0 }]),
  ) as PropertyCounts;

  record(findings: Findings, trace: () => string[]): void {
    for (const [name] of findings.violated) this.counts[name].violated++;
    for (const [name] of findings.witnessed) this.counts[name].premise++;
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
  for (const key of ka)
    if (!deepEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) return false;
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
    h.areas
      .map(
        (a) =>
          `${a.iova}/${a.page}/${a.pages}/${a.kind}/${a.truncated.join('')}/${identity(a.mapping)}/${a.mapping?.mapped}`,
      )
      .join(','),
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

/**
 * States whose trace has at least this many actions restart from a fork of their pristine world; shorter ones
 * replay their trace. A fork copies every object of the world (about 200 in the default world: some 60 us inside a
 * search on the machine measured), a replay makes the world by its calls (about 45 us at the default world's
 * depths): the replay wins below a dozen actions. Either gives the same world, so results do not depend on it.
 */
const FORK_FROM = 12;

/** A state waiting for expansion. */
interface FrontierEntry {
  trace: Uint8Array;
  state: string;
  /** The world the discovering action left, and its snapshot (only for the first CACHED states of a level). */
  world?: World;
  snapshot?: Snapshot;
  /** Whether `world` is exactly as a replay of `trace` builds it (then it serves as the pristine world). */
  exact?: boolean;
  /** The parent's pristine world and the discovering action: the state's pristine world, on demand. */
  base?: { world: World; action: number };
}

export function search(options: SearchOptions): SearchResult {
  const started = performance.now();
  const { backend, contract } = options;
  const config = worldConfig(options.world);
  const bound = options.depth ?? 30;
  const maxStates = options.maxStates ?? 2_000_000;
  const forkFrom = options.forkFrom ?? FORK_FROM;
  if (!Number.isInteger(bound) || bound < 0)
    throw new RangeError(`depth must be a non-negative integer, not ${String(bound)}`);
  const actions = alphabet(config);
  if (actions.length > 255) throw new RangeError('the world has more than 255 actions');
  const ids = (trace: ArrayLike<number>, last?: number) => [
    ...Array.from(trace, (i) => actions[i]!.id),
    ...(last === undefined ? [] : [actions[last]!.id]),
  ];
  const recorder = new Recorder();

  const initial = createWorld(config, backend, contract);
  const visited = new Map<string, Uint8Array | undefined>();
  recorder.record(checkState(initial), () => []);
  // A new state's world, as the action that found it left it, serves as the first copy when it is expanded (a
  // replay saved per state); at most CACHED worlds per level are kept, the others are replayed.
  const initialSnapshot = snapshotOf(initial);
  let frontier: FrontierEntry[] = [
    {
      trace: new Uint8Array(0),
      world: initial,
      snapshot: initialSnapshot,
      state: canonicalState(initial, initialSnapshot),
    },
  ];
  let transitions = 0;
  let level = 0;
  let stopped = false;
  const levels = [1];
  visited.set(frontier[0]!.state, options.onMerge ? frontier[0]!.trace : undefined);

  withoutStackTraces(() => {
    while (frontier.length > 0 && level < bound && !stopped) {
      const next: FrontierEntry[] = [];
      for (const entry of frontier) {
        const trace = entry.trace;
        // The state's world as a replay of its trace builds it, never acted on: each restart forks it.
        // An exact discovering world (nothing changed it before the discovering action) is itself pristine.
        const forks = trace.length >= forkFrom;
        let pristine: { world: World; snapshot: Snapshot } | undefined =
          forks && entry.world && entry.exact ? { world: entry.world, snapshot: entry.snapshot! } : undefined;
        const base = entry.base;
        const pristineWorld = (): { world: World; snapshot: Snapshot } => {
          if (!pristine) {
            let world: World;
            if (base) {
              world = forkWorld(base.world);
              perform(world, actions[base.action]!);
            } else world = replay(config, backend, contract, actions, trace);
            pristine = { world, snapshot: snapshotOf(world) };
          }
          return pristine;
        };
        // A short trace replays faster than a world forks (see FORK_FROM): the two give the same world. A fork's
        // snapshot equals the pristine world's (fork() keeps every observable), so it is reused.
        const restart = (): World =>
          forks ? forkWorld(pristineWorld().world) : replay(config, backend, contract, actions, trace);
        // Likewise every replay of the trace has the first replay's snapshot.
        let replayed: Snapshot | undefined;
        const snapshotOfRestart = (world: World): Snapshot =>
          forks ? pristine!.snapshot : (replayed ??= snapshotOf(world));
        // The world the discovering action left (with its snapshot), or a copy of the pristine world.
        let world = entry.world && !pristine ? entry.world : restart();
        let snapshot = entry.world ? entry.snapshot! : snapshotOfRestart(world);
        // Whether `world` is a replay's, no action run on it yet (only then is a child's pristine world the one its
        // discovering action leaves: an action that leaves the snapshot as it was may still have faulted in a PTE).
        let exact = world !== entry.world;
        entry.world = undefined;
        entry.snapshot = undefined;
        entry.base = undefined;
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
            world = restart();
            snapshot = snapshotOfRestart(world);
            handles = handlesKey(world);
            moved = false;
            exact = true;
          }
          const facts = before(world, action, snapshot);
          const outcome = perform(world, action);
          const after = snapshotOf(world);
          transitions++;
          const unchanged = deepEqual(after, facts.snapshot);
          const findings = checkTransition(world, backend, contract, action, outcome, facts, after, unchanged);
          if (findings.violated.length > 0 || findings.witnessed.length > 0)
            recorder.record(findings, () => ids(trace, a));
          // Most actions leave the world exactly as it was (a refused call, a faulting access): the same snapshot
          // and the same handles mean the same state, without the cost of the canonical form.
          if (unchanged && handlesKey(world) === handles) {
            snapshot = after;
            exact = false;
            continue;
          }
          const there = canonicalState(world, after);
          if (there === here) {
            // The world changed (bytes, a PTE) but not its canonical form: the same state.
            if (options.onMerge) options.onMerge(ids(trace), ids(trace, a));
            snapshot = after;
            handles = handlesKey(world);
            exact = false;
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
          if (next.length < CACHED) {
            // The child's pristine world will be this state's, forked, with action a performed on it.
            if (extended.length < forkFrom) next.push({ trace: extended, world, snapshot: after, state: there });
            else if (exact) next.push({ trace: extended, world, snapshot: after, state: there, exact });
            else
              next.push({
                trace: extended,
                world,
                snapshot: after,
                state: there,
                base: { world: pristineWorld().world, action: a },
              });
          } else next.push({ trace: extended, state: there });
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
      options.onLevel?.(levels, visited.size, transitions);
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
    counts: recorder.counts,
  };
}
