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
import { createHash } from 'node:crypto';
import type { ArchBackend, Contract } from '@gmemlab/core';
import { alphabet, perform, type Action, type Outcome } from './actions.js';
import { canonicalState, type Snapshot } from './canonical.js';
import { collisionBound, fingerprint, FingerprintSet } from './fingerprint.js';
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
  /**
   * Called after each level with the new states per level so far, the states, the transitions and the properties
   * violated so far (progress on large worlds: a violation is known, with its shortest trace, before the search ends).
   */
  onLevel?: (levels: readonly number[], states: number, transitions: number, violated: readonly PropertyName[]) => void;
  /** @internal From which trace length a state restarts from a fork rather than a replay (default FORK_FROM; tests). */
  forkFrom?: number;
  /**
   * How visited states are remembered: 'exact' keeps every canonical form (about 0.5 KB a state); 'fingerprint'
   * keeps a 64-bit fingerprint of it (11-23 bytes a state, fingerprint.ts) at an estimated risk of taking two states
   * for one; 'auto' (the default) is exact up to a million states, then fingerprints. With `onMerge`, 'auto' stays
   * exact, and 'fingerprint' is refused.
   */
  visited?: 'auto' | 'exact' | 'fingerprint';
  /** @internal In 'auto' mode, from how many states on fingerprints are kept (default EXACT_UP_TO; tests). */
  exactUpTo?: number;
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
  /**
   * Present when visited states were kept as 64-bit fingerprints from some point of the search: from how many
   * states on, and the birthday estimate of the chance that two of the states found share a fingerprint (so that
   * the second was taken for the first and not expanded), were fingerprints spread uniformly.
   */
  fingerprints?: { from: number; collisionBound: number };
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
 * The model's behaviour near the start, as a SHA-256 (hex): the fingerprint of the initial state, then for each
 * action enabled there (by its index in the alphabet) what its call did and the fingerprint of the state it
 * leaves, and the same for each action enabled after it. What a call did: ok, the errno and the call that
 * returned it, or the fault with its kind, address, fatal and logged flags, mechanism, bytes done and
 * KVM_EXIT_MEMORY_FAULT exit; and for any access the pages it reached through stale entries, by address and owner
 * (frame numbers are names: left out, as the canonical form leaves them out). A checkpoint's key (checkpoint.ts): a
 * build whose states or outcomes differ on a trace of at most two actions is not handed another build's frontier.
 * Cost: one replay per trace of at most two actions (about 570 in the world of two pages and two areas, 23 with
 * one action and 543 with two: about 0.2 s; up to a second in the largest world `worldConfig` accepts).
 */
export function modelProbe(
  config: WorldConfig,
  backend: ArchBackend,
  contract: Contract,
  actions: readonly Action[],
): string {
  const hash = createHash('sha256');
  const print = new Uint32Array(2);
  const note = (world: World, action?: number, outcome?: Outcome): void => {
    fingerprint(canonicalState(world, snapshotOf(world)), print);
    hash.update(`${action ?? '-'}:${outcome === undefined ? '' : describeOutcome(outcome)}:`);
    hash.update(`${print[0]!.toString(16)}.${print[1]!.toString(16)};`);
  };
  withoutStackTraces(() => {
    const initial = createWorld(config, backend, contract);
    note(initial);
    const first = actions.map((action) => action.enabled(initial));
    for (let a = 0; a < actions.length; a++) {
      if (!first[a]) continue;
      const after = createWorld(config, backend, contract);
      note(after, a, perform(after, actions[a]!));
      hash.update('(');
      // A crashed host takes no action (every call would throw HostCrashedError): the search expands none either.
      if (!after.host.crashed) {
        const second = actions.map((action) => action.enabled(after));
        for (let b = 0; b < actions.length; b++) {
          if (!second[b]) continue;
          const world = replay(config, backend, contract, actions, [a]);
          note(world, b, perform(world, actions[b]!));
        }
      }
      hash.update(')');
    }
  });
  return hash.digest('hex');
}

/** @internal What a call did, for the probe: its outcome without frame numbers or bytes read. */
export function describeOutcome(outcome: Outcome): string {
  if (outcome.kind === 'errno') return `errno ${outcome.error.errno} ${outcome.error.op}`;
  const access = outcome.access;
  if (access === undefined) return outcome.kind;
  const reached = (access.reached ?? []).map((frame) => [frame.address, frame.owner]);
  if (access.ok) return JSON.stringify(['ok', reached]);
  const { fault, address, fatal, logged, mechanism, done, exit } = access;
  return JSON.stringify(['fault', fault, address, fatal, logged, mechanism, done, exit ?? null, reached]);
}

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

  /** The properties violated so far, in PROPERTY_NAMES order. */
  violated(): PropertyName[] {
    return PROPERTY_NAMES.filter((name) => !this.properties[name].holds);
  }

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
export function handlesKey(world: World): string {
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
export const CACHED = 4096;

/**
 * States whose trace has at least this many actions restart from a fork of their pristine world; shorter ones
 * replay their trace. A replay builds the world by its calls (a new world 5-20 us, then about 3-5 us per action
 * on the machine measured); a fork copies the world's objects (at depth 13 of the world of two pages and two areas,
 * 231 through the cloner's identity map, range maps and interval indexes each in one step: 35-38 us; the fork's
 * first snapshot starts from nothing). Measured on that world's
 * states (BENCHMARKS.md, stops 29 and 30), replays expanded more states per CPU-second than forks at depths 11
 * (15%), 12 (20-30%) and 13 (about 35%); at depths 17, 22 and 27 (level-13 states extended by random actions that
 * change the state) the two came within 10% of each other, replays ahead at 17, forks at 27: the threshold sits
 * between.
 * Either gives the same world (search-fork.test.ts), so results do not depend on it.
 */
export const FORK_FROM = 20;

/**
 * In 'auto' mode, how many states are remembered by their canonical forms before the search switches to
 * fingerprints: about 1 GB of canonical forms. Every search of the default world and of `--areas 2` stays exact.
 */
const EXACT_UP_TO = 1_000_000;

/** What a new state keeps for its expansion besides its trace (only the first CACHED states of a level). */
interface Cached {
  /** The world the discovering action left, and its snapshot. */
  world: World;
  snapshot: Snapshot;
  /** Whether `world` is exactly as a replay of the trace builds it (then it serves as the pristine world). */
  exact?: boolean;
  /** The parent's pristine world and the discovering action: the state's pristine world, on demand. */
  base?: { world: World; action: number };
}

/**
 * The states of one level, waiting for expansion, packed: every trace of a level has the level's length, so the
 * traces are one byte array; the states' fingerprints are one word array; their canonical forms are kept only
 * while the search is exact. A level of a million states is about 30 MB.
 */
export class Level {
  count = 0;
  traces: Uint8Array;
  prints: Uint32Array;
  /** Canonical forms, while the search is exact; dropped when it turns to fingerprints. */
  keys: string[] | undefined;
  readonly cached: Array<Cached | undefined> = [];

  constructor(
    readonly length: number,
    exact: boolean,
  ) {
    this.traces = new Uint8Array(Math.max(1, length) * 64);
    this.prints = new Uint32Array(128);
    this.keys = exact ? [] : undefined;
  }

  trace(i: number): Uint8Array {
    return this.traces.subarray(i * this.length, (i + 1) * this.length);
  }

  /** Add a state: its parent's trace and the action that found it, its fingerprint, its form when exact. */
  push(parent: Uint8Array, action: number, print: Uint32Array, key: string, cached?: Cached): void {
    const at = this.count * this.length;
    // Twice as long, or as long as a new level's (one read back from a checkpoint may have no room left, or none).
    if (at + this.length > this.traces.length) {
      const traces = new Uint8Array(Math.max(this.traces.length * 2, Math.max(1, this.length) * 64));
      traces.set(this.traces);
      this.traces = traces;
    }
    if (this.count * 2 + 2 > this.prints.length) {
      const prints = new Uint32Array(Math.max(this.prints.length * 2, 128));
      prints.set(this.prints);
      this.prints = prints;
    }
    this.traces.set(parent, at);
    if (this.length > 0) this.traces[at + this.length - 1] = action;
    this.prints[this.count * 2] = print[0]!;
    this.prints[this.count * 2 + 1] = print[1]!;
    this.keys?.push(key);
    if (cached) this.cached[this.count] = cached;
    this.count++;
  }
}

/**
 * @internal The visited set: canonical forms (with a trace each when merges are reported) while exact, then
 * 64-bit fingerprints; `onSwitch` is called when it turns to fingerprints (the levels drop their forms then).
 */
export class Visited {
  private exactSet: Map<string, Uint8Array | undefined> | undefined;
  private printSet: FingerprintSet | undefined;
  /** From how many states on fingerprints were kept (undefined while exact). */
  fingerprintsFrom: number | undefined;

  constructor(
    private readonly exactUpTo: number,
    private readonly keepTraces: boolean,
    private readonly onSwitch: () => void,
  ) {
    if (exactUpTo === 0) {
      this.printSet = new FingerprintSet();
      this.fingerprintsFrom = 0;
    } else this.exactSet = new Map();
  }

  get size(): number {
    return this.exactSet ? this.exactSet.size : this.printSet!.size;
  }

  /** Whether states are still told apart by their canonical forms. */
  get exact(): boolean {
    return this.exactSet !== undefined;
  }

  /** The fingerprints held (a checkpoint); only once the set keeps fingerprints. */
  pairs(): Uint32Array {
    if (!this.printSet) throw new Error('a visited set of canonical forms is not written to a checkpoint');
    return this.printSet.pairs();
  }

  /** A set of fingerprints rebuilt from a checkpoint's pairs. */
  static fromPairs(pairs: Uint32Array, fingerprintsFrom: number): Visited {
    const visited = new Visited(0, false, () => {});
    visited.printSet = new FingerprintSet(pairs.length / 2);
    for (let i = 0; i < pairs.length; i += 2) visited.printSet.add(pairs[i]!, pairs[i + 1]!);
    visited.fingerprintsFrom = fingerprintsFrom;
    return visited;
  }

  /** The trace kept with a visited form (searches that report merges). */
  traceOf(key: string): Uint8Array {
    return this.exactSet!.get(key)!;
  }

  /** Whether the state (its form `key`, its fingerprint `print`) was visited; if not, it is now. */
  visit(key: string, print: Uint32Array, trace: () => Uint8Array): boolean {
    const exactSet = this.exactSet;
    if (exactSet) {
      if (exactSet.has(key)) return true;
      exactSet.set(key, this.keepTraces ? trace() : undefined);
      if (exactSet.size >= this.exactUpTo) {
        // Switch to fingerprints: every form seen so far goes in by its fingerprint.
        this.fingerprintsFrom = exactSet.size;
        const printSet = new FingerprintSet(exactSet.size * 4);
        const p = new Uint32Array(2);
        for (const form of exactSet.keys()) {
          fingerprint(form, p);
          printSet.add(p[0]!, p[1]!);
        }
        this.printSet = printSet;
        this.exactSet = undefined;
        // The levels waiting and being built drop their forms too: from here on states are told apart by prints.
        this.onSwitch();
      }
      return false;
    }
    return !this.printSet!.add(print[0]!, print[1]!);
  }
}

/** Check a `visited` option (search and explore): a RangeError naming the modes. */
export function checkVisited(mode: unknown): asserts mode is 'auto' | 'exact' | 'fingerprint' {
  if (mode !== 'auto' && mode !== 'exact' && mode !== 'fingerprint')
    throw new RangeError(`visited must be 'auto', 'exact' or 'fingerprint', not ${String(mode)}`);
}

/** @internal A search's checked settings (search and the threaded search). */
export interface SearchSettings {
  config: WorldConfig;
  bound: number;
  maxStates: number;
  forkFrom: number;
  exactUpTo: number;
  actions: readonly Action[];
  /** A trace (and an action after it) as action ids. */
  ids: (trace: ArrayLike<number>, last?: number) => string[];
}

/** @internal Check a search's options (RangeErrors naming the option) and complete them. */
export function searchSettings(options: Omit<SearchOptions, 'backend' | 'contract'>): SearchSettings {
  const config = worldConfig(options.world);
  const bound = options.depth ?? 30;
  const maxStates = options.maxStates ?? 2_000_000;
  const forkFrom = options.forkFrom ?? FORK_FROM;
  const mode = options.visited === undefined ? 'auto' : options.visited;
  if (!Number.isInteger(bound) || bound < 0)
    throw new RangeError(`depth must be a non-negative integer, not ${String(bound)}`);
  checkVisited(mode);
  const exactUpToOption = options.exactUpTo ?? EXACT_UP_TO;
  if (!(Number.isSafeInteger(exactUpToOption) && exactUpToOption >= 1))
    throw new RangeError(`exactUpTo must be a positive integer, not ${String(options.exactUpTo)}`);
  if (options.onMerge && mode === 'fingerprint')
    throw new RangeError("onMerge needs the canonical forms: visited 'exact' or 'auto'");
  // Merges are reported with both traces, so a search with onMerge keeps the canonical forms whatever its size.
  const exactUpTo = mode === 'exact' || options.onMerge ? Infinity : mode === 'fingerprint' ? 0 : exactUpToOption;
  const actions = alphabet(config);
  if (actions.length > 255) throw new RangeError('the world has more than 255 actions');
  const ids = (trace: ArrayLike<number>, last?: number) => [
    ...Array.from(trace, (i) => actions[i]!.id),
    ...(last === undefined ? [] : [actions[last]!.id]),
  ];
  return { config, bound, maxStates, forkFrom, exactUpTo, actions, ids };
}

export function search(options: SearchOptions): SearchResult {
  const started = performance.now();
  const { backend, contract } = options;
  const { config, bound, maxStates, forkFrom, exactUpTo, actions, ids } = searchSettings(options);
  const recorder = new Recorder();

  // The level being expanded and the one being built (the switch to fingerprints drops their forms).
  let frontier: Level;
  let next: Level | undefined;
  const visited = new Visited(exactUpTo, options.onMerge !== undefined, () => {
    frontier.keys = undefined;
    if (next) next.keys = undefined;
  });
  const print = new Uint32Array(2);
  const size = (): number => visited.size;
  const visit = (key: string, trace: () => Uint8Array): boolean => visited.visit(key, print, trace);

  const initial = createWorld(config, backend, contract);
  recorder.record(checkState(initial), () => []);
  // A new state's world, as the action that found it left it, serves as the first copy when it is expanded (a
  // replay saved per state); at most CACHED worlds per level are kept, the others are replayed.
  const initialSnapshot = snapshotOf(initial);
  const initialForm = canonicalState(initial, initialSnapshot);
  fingerprint(initialForm, print);
  frontier = new Level(0, visited.exact);
  frontier.push(new Uint8Array(0), 0, print, initialForm, { world: initial, snapshot: initialSnapshot });
  visit(initialForm, () => new Uint8Array(0));
  let transitions = 0;
  let level = 0;
  let stopped = false;
  const levels = [1];
  const herePrint = new Uint32Array(2);

  withoutStackTraces(() => {
    while (frontier.count > 0 && level < bound && !stopped) {
      next = new Level(level + 1, visited.exact);
      for (let i = 0; i < frontier.count; i++) {
        const trace = frontier.trace(i);
        const entry = frontier.cached[i];
        frontier.cached[i] = undefined;
        // The state's world as a replay of its trace builds it, never acted on: each restart forks it.
        // An exact discovering world (nothing changed it before the discovering action) is itself pristine.
        const forks = trace.length >= forkFrom;
        let pristine: { world: World; snapshot: Snapshot } | undefined =
          forks && entry?.exact ? { world: entry.world, snapshot: entry.snapshot } : undefined;
        const base = entry?.base;
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
        let world = entry && !pristine ? entry.world : restart();
        let snapshot = entry ? entry.snapshot : snapshotOfRestart(world);
        // Whether `world` is a replay's, no action run on it yet (only then is a child's pristine world the one its
        // discovering action leaves: an action that leaves the snapshot as it was may still have faulted in a PTE).
        let exact = world !== entry?.world;
        if (world.host.crashed) continue;
        const here = frontier.keys?.[i];
        herePrint[0] = frontier.prints[i * 2]!;
        herePrint[1] = frontier.prints[i * 2 + 1]!;
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
          fingerprint(there, print);
          if (here !== undefined ? there === here : print[0] === herePrint[0] && print[1] === herePrint[1]) {
            // The world changed (bytes, a PTE) but not its canonical form: the same state.
            if (options.onMerge) options.onMerge(ids(trace), ids(trace, a));
            snapshot = after;
            handles = handlesKey(world);
            exact = false;
            continue;
          }
          moved = true;
          const extend = (): Uint8Array => {
            const extended = new Uint8Array(trace.length + 1);
            extended.set(trace);
            extended[trace.length] = a;
            return extended;
          };
          if (visit(there, extend)) {
            if (options.onMerge) options.onMerge(ids(visited.traceOf(there)), ids(trace, a));
            continue;
          }
          recorder.record(checkState(world), () => ids(trace, a));
          let cached: Cached | undefined;
          if (next.count < CACHED) {
            // The child's pristine world will be this state's, forked, with action a performed on it.
            if (trace.length + 1 < forkFrom || exact) cached = { world, snapshot: after, exact };
            else cached = { world, snapshot: after, base: { world: pristineWorld().world, action: a } };
          }
          next.push(trace, a, print, there, cached);
          if (size() >= maxStates) {
            stopped = true;
            break;
          }
        }
        if (stopped) break;
      }
      if (next.count > 0) {
        level++;
        levels.push(next.count);
      }
      options.onLevel?.(levels, size(), transitions, recorder.violated());
      frontier = next;
    }
  });
  return searchResult({
    backend,
    contract,
    config,
    bound,
    started,
    visited,
    recorder,
    transitions,
    levels,
    stopped,
    frontier,
  });
}

/** @internal A search's result from its end state (the serial search and the threaded one). */
export function searchResult(end: {
  backend: ArchBackend;
  contract: Contract;
  config: WorldConfig;
  bound: number;
  started: number;
  visited: Visited;
  recorder: Recorder;
  transitions: number;
  levels: number[];
  stopped: boolean;
  frontier: Level;
}): SearchResult {
  const states = end.visited.size;
  const from = end.visited.fingerprintsFrom;
  return {
    arch: end.backend.id,
    contract: end.contract,
    world: end.config,
    states,
    transitions: end.transitions,
    depth: end.levels.length - 1,
    bound: end.bound,
    exhaustive: end.frontier.count === 0 && !end.stopped,
    levels: end.levels,
    elapsedMs: Math.round(performance.now() - end.started),
    properties: end.recorder.properties,
    counts: end.recorder.counts,
    ...(from !== undefined ? { fingerprints: { from, collisionBound: collisionBound(states) } } : {}),
  };
}
