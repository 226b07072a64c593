/**
 * One breadth-first search spread over worker threads, with the serial search's result exactly (the same states,
 * levels, transitions, shortest traces and counts). The search stays level by level: the calling thread keeps the
 * visited set, the levels and the findings; each level's states are cut into chunks that the workers expand. A
 * worker rebuilds each state from its trace (a world cannot cross threads), tries every enabled action on it as
 * the serial search does, and sends back, in order, each transition's findings and each successor whose canonical
 * form differs from its state's (its fingerprint, its form while the search is exact, and the state's findings).
 * The calling thread merges the chunks in the level's order: a successor is new or not exactly when the serial
 * search would find it new at that point, so the same states get the same traces.
 *
 * A worker keeps the last parent world it built (never acted on): a level's states are grouped by parent, since
 * each parent's new successors were pushed together, so siblings start from a fork of their parent's world and
 * one action rather than a replay of the whole trace.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ArchBackend, Contract } from '@gmemlab/core';
import { perform, type Action } from './actions.js';
import { canonicalState, type Snapshot } from './canonical.js';
import {
  CheckpointError,
  checkCheckpointPlace,
  readCheckpoint,
  writeCheckpoint,
  type CheckpointKey,
  type PackedLevel,
  type Within,
} from './checkpoint.js';
import { runOf, type ExploreOptions, type ExploreRun } from './explore.js';
import { fingerprint } from './fingerprint.js';
import { loadBackendRef, workerFile, type BackendRef } from './backend-ref.js';
import { before, checkState, checkTransition, type Findings, type PropertyName } from './properties.js';
import {
  deepEqual,
  handlesKey,
  Level,
  modelProbe,
  Recorder,
  replay,
  searchResult,
  searchSettings,
  snapshotOf,
  Visited,
  withoutStackTraces,
  type SearchOptions,
  type SearchResult,
} from './search.js';
import { createWorld, forkWorld, type World, type WorldConfig } from './world.js';

/** A chunk of a level: `count` states of trace length `length`, their fingerprints, their forms while exact. */
export interface ChunkTask {
  id: number;
  length: number;
  count: number;
  traces: Uint8Array;
  prints: Uint32Array;
  keys?: string[];
}

/**
 * What one transition of a chunk showed, in the order the serial search meets it: findings of the transition
 * (`successor` false), or a successor whose form differs from its state's (`successor` true) with its fingerprint,
 * its form (while exact) and the successor state's own findings.
 */
export interface ChunkEvent {
  /** The state's index in the chunk, and the action tried. */
  s: number;
  a: number;
  /** Transitions tried in the chunk up to and including this one. */
  t: number;
  successor: boolean;
  findings: Findings;
  print?: [number, number];
  key?: string;
}

export interface ChunkResult {
  id: number;
  transitions: number;
  events: ChunkEvent[];
}

/** What a worker expands chunks with: the search's backend, contract, world and settings. */
export class Expander {
  private parentTrace: Uint8Array | undefined;
  private parentWorld: World | undefined;

  constructor(
    private readonly config: WorldConfig,
    private readonly backend: ArchBackend,
    private readonly contract: Contract,
    private readonly actions: readonly Action[],
    private readonly forkFrom: number,
  ) {}

  /** The world a replay of `trace` builds, from the last parent's world when `trace` extends it. */
  private pristine(trace: Uint8Array): World {
    const n = trace.length;
    if (n === 0) return createWorld(this.config, this.backend, this.contract);
    const parent = trace.subarray(0, n - 1);
    const cached = this.parentTrace;
    let same = cached !== undefined && cached.length === parent.length;
    for (let i = 0; same && i < parent.length; i++) same = cached![i] === parent[i];
    if (!same) {
      this.parentWorld = replay(this.config, this.backend, this.contract, this.actions, parent);
      this.parentTrace = parent.slice();
    }
    const world = forkWorld(this.parentWorld!);
    perform(world, this.actions[trace[n - 1]!]!);
    return world;
  }

  /** Expand a chunk: the serial search's loop over each state's enabled actions, without the visited set. */
  expand(task: ChunkTask): ChunkResult {
    return withoutStackTraces(() => this.expandChunk(task));
  }

  private expandChunk(task: ChunkTask): ChunkResult {
    const { actions, backend, contract, config, forkFrom } = this;
    const events: ChunkEvent[] = [];
    const print = new Uint32Array(2);
    let transitions = 0;
    for (let s = 0; s < task.count; s++) {
      const trace = task.traces.subarray(s * task.length, (s + 1) * task.length);
      const forks = trace.length >= forkFrom;
      let pristine: { world: World; snapshot: Snapshot } | undefined;
      const pristineWorld = (): { world: World; snapshot: Snapshot } => {
        if (!pristine) {
          const world = this.pristine(trace);
          pristine = { world, snapshot: snapshotOf(world) };
        }
        return pristine;
      };
      // As in the serial search: short traces replay, longer ones fork the state's pristine world.
      const restart = (): World =>
        forks ? forkWorld(pristineWorld().world) : replay(config, backend, contract, actions, trace);
      let replayed: Snapshot | undefined;
      const snapshotOfRestart = (world: World): Snapshot =>
        forks ? pristine!.snapshot : (replayed ??= snapshotOf(world));
      let world = restart();
      let snapshot = snapshotOfRestart(world);
      if (world.host.crashed) continue;
      const here = task.keys?.[s];
      const here0 = task.prints[s * 2]!;
      const here1 = task.prints[s * 2 + 1]!;
      let handles = handlesKey(world);
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
        }
        const facts = before(world, action, snapshot);
        const outcome = perform(world, action);
        const after = snapshotOf(world);
        transitions++;
        const unchanged = deepEqual(after, facts.snapshot);
        const findings = checkTransition(world, backend, contract, action, outcome, facts, after, unchanged);
        if (findings.violated.length > 0 || findings.witnessed.length > 0)
          events.push({ s, a, t: transitions, successor: false, findings });
        if (unchanged && handlesKey(world) === handles) {
          snapshot = after;
          continue;
        }
        const there = canonicalState(world, after);
        fingerprint(there, print);
        if (here !== undefined ? there === here : print[0] === here0 && print[1] === here1) {
          snapshot = after;
          handles = handlesKey(world);
          continue;
        }
        moved = true;
        events.push({
          s,
          a,
          t: transitions,
          successor: true,
          findings: checkState(world),
          print: [print[0]!, print[1]!],
          ...(task.keys ? { key: there } : {}),
        });
      }
    }
    return { id: task.id, transitions, events };
  }
}

/** Options of a search spread over worker threads: the backend as a reference a worker can import. */
export interface ThreadedSearchOptions extends Omit<SearchOptions, 'backend' | 'onMerge'> {
  backend: BackendRef;
  /** Worker threads (default: the machine's available parallelism). */
  threads?: number;
  /** @internal States per chunk, a positive integer (default: a level's states over eight chunks per thread, 16 to 1,024). */
  chunk?: number;
  /** @internal Expand on the calling thread (tests from source, where no built worker exists). */
  inThread?: boolean;
  /**
   * A checkpoint file (checkpoint.ts): written at the end of each level once visited states are kept as
   * fingerprints, and within a level every `checkpointEvery` milliseconds; when it exists at the start, the search
   * goes on from it (the same backend, contract and world, or an error). The result is the uninterrupted search's,
   * `elapsedMs` aside (it counts this run only).
   */
  checkpoint?: string;
  /**
   * Within a level, the checkpoint is written again once this many milliseconds have passed since the last one, after
   * the chunk whose merge passes it (default ten minutes: a session that stops mid-level loses at most that much;
   * 0: after every chunk merged but a level's last).
   */
  checkpointEvery?: number;
  /**
   * Called after each checkpoint is written (at a level's end, after its `onLevel`): the level whose states wait, the
   * size in bytes, and for one written part-way through their expansion, how many of them are expanded.
   */
  onCheckpoint?: (level: number, bytes: number, within?: Progress) => void;
  /**
   * Called once when the search goes on from its checkpoint, before any expansion: the level whose states wait, what
   * `onLevel` would say of it (new states per level, states, transitions, properties violated so far), and for a file
   * written part-way through their expansion, how far it went.
   */
  onResume?: (
    level: number,
    levels: readonly number[],
    states: number,
    transitions: number,
    violated: readonly PropertyName[],
    within?: Progress,
  ) => void;
}

/** How far a level's expansion went: `expanded` of its `states` (the chunks merged, in order). */
export interface Progress {
  expanded: number;
  states: number;
}

/** A part-way expansion's progress: the states of the chunks merged. */
const progressOf = (within: Within, states: number): Progress => ({
  expanded: Math.min(states, within.merged * within.chunk),
  states,
});

/** Ten minutes: see ThreadedSearchOptions.checkpointEvery. */
const CHECKPOINT_EVERY = 600_000;

/** A level read back from a checkpoint (pushes grow its arrays). */
const restored = (packed: PackedLevel): Level => {
  const level = new Level(packed.length, false);
  level.traces = packed.traces;
  level.prints = packed.prints;
  level.count = packed.count;
  return level;
};

/** A worker's side of the threaded search: the messages it answers (worker.ts dispatches them). */
export type SearchMessage =
  | { kind: 'search-init'; backend: BackendRef; contract: Contract; world: WorldConfig; forkFrom: number }
  | { kind: 'search-chunk'; task: ChunkTask };

let expander: Expander | undefined;

/** @internal Answer a threaded-search message in a worker. */
export async function answerSearchMessage(message: SearchMessage): Promise<ChunkResult | undefined> {
  if (message.kind === 'search-init') {
    const backend = await loadBackendRef(message.backend);
    const { actions } = searchSettings({ world: message.world });
    expander = new Expander(message.world, backend, message.contract, actions, message.forkFrom);
    return undefined;
  }
  if (!expander) throw new Error('search-chunk before search-init');
  return expander.expand(message.task);
}

/** Where chunks go: worker threads, or this thread. */
interface Pool {
  run(task: ChunkTask): Promise<ChunkResult>;
  close(): Promise<void>;
}

async function workerPool(count: number, init: SearchMessage, file: URL): Promise<Pool> {
  const workers: Array<{ worker: Worker; busy: number }> = [];
  const waiting = new Map<number, { resolve: (r: ChunkResult) => void; reject: (e: Error) => void }>();
  let failure: Error | undefined;
  let closing = false;
  const fail = (error: Error) => {
    failure ??= error;
    for (const { reject } of waiting.values()) reject(failure);
    waiting.clear();
  };
  for (let i = 0; i < count; i++) {
    const worker = new Worker(file);
    const entry = { worker, busy: 0 };
    worker.on('message', (reply: { id: number; result?: ChunkResult; error?: string }) => {
      if (reply.id < 0 && reply.error === undefined) return; // init done
      entry.busy--;
      const w = waiting.get(reply.id);
      if (reply.error !== undefined || !reply.result) {
        fail(new Error(`a search worker failed: ${reply.error ?? 'no result'}`));
        return;
      }
      waiting.delete(reply.id);
      w?.resolve(reply.result);
    });
    worker.on('error', (error) => fail(error));
    // A worker that ends on its own (process.exit in a backend, a crash without an error event) would leave its
    // chunks unanswered and the search waiting forever.
    worker.on('exit', (code) => {
      if (!closing) fail(new Error(`a search worker exited (code ${code}) with chunks unanswered`));
    });
    worker.postMessage({ id: -1, search: init });
    workers.push(entry);
  }
  return {
    run(task) {
      const result = failure
        ? Promise.reject(failure)
        : new Promise<ChunkResult>((resolve, reject) => {
            const entry = workers.reduce((best, w) => (w.busy < best.busy ? w : best));
            entry.busy++;
            waiting.set(task.id, { resolve, reject });
            entry.worker.postMessage({ id: task.id, search: { kind: 'search-chunk', task } });
          });
      // A failure rejects every chunk out; the search awaits one of them. The others must not be unhandled
      // rejections (which end the process before the caller's catch runs).
      result.catch(() => {});
      return result;
    },
    async close() {
      closing = true;
      await Promise.all(workers.map(({ worker }) => worker.terminate()));
    },
  };
}

/**
 * The breadth-first search of `search()`, with each level's expansion spread over worker threads. Its result is
 * the serial search's (`elapsedMs` aside). Merges are not reported (`onMerge` is the serial search's).
 */
export async function searchThreaded(options: ThreadedSearchOptions): Promise<SearchResult> {
  return searchLoaded(options, await loadBackendRef(options.backend));
}

/** searchThreaded, its backend already loaded from options.backend (workers load it again from the reference). */
async function searchLoaded(options: ThreadedSearchOptions, backend: ArchBackend): Promise<SearchResult> {
  const started = performance.now();
  const { contract } = options;
  const settings = searchSettings(options);
  const { config, bound, maxStates, forkFrom, exactUpTo, ids } = settings;
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1)
    throw new RangeError(`threads must be a positive integer, not ${String(threads)}`);
  if (options.chunk !== undefined && !(Number.isInteger(options.chunk) && options.chunk >= 1))
    throw new RangeError(`chunk must be a positive integer, not ${String(options.chunk)}`);
  const every = options.checkpointEvery ?? CHECKPOINT_EVERY;
  if (!(typeof every === 'number' && every >= 0))
    throw new RangeError(`checkpointEvery must be a number of milliseconds, 0 or more, not ${String(every)}`);
  const recorder = new Recorder();
  let frontier: Level;
  let next: Level | undefined;
  let visited = new Visited(exactUpTo, false, () => {
    frontier.keys = undefined;
    if (next) next.keys = undefined;
  });
  const print = new Uint32Array(2);
  let transitions = 0;
  let level = 0;
  let stopped = false;
  let levels = [1];
  let taskId = 0;
  // A level's expansion that a checkpoint holds part-way: the first level goes on from it.
  let resume: Within | undefined;
  const initial = createWorld(config, backend, contract);
  const initialForm = canonicalState(initial, snapshotOf(initial));
  fingerprint(initialForm, print);
  // A checkpoint's key: what must match for its file to be resumed (the probe replays every trace of two actions).
  const key: CheckpointKey | undefined =
    options.checkpoint === undefined
      ? undefined
      : {
          arch: backend.id,
          contract,
          world: config,
          exactUpTo,
          alphabet: settings.actions.map((action) => action.id),
          probe: modelProbe(config, backend, contract, settings.actions),
        };
  if (options.checkpoint !== undefined) checkCheckpointPlace(options.checkpoint);
  if (options.checkpoint !== undefined && existsSync(options.checkpoint)) {
    // Go on from the level the checkpoint's frontier holds.
    const saved = readCheckpoint(options.checkpoint, key!);
    // A resumed search goes on from the checkpoint: it can go deeper or further, not back.
    if (saved.level > bound)
      throw new CheckpointError(
        `${options.checkpoint}: the checkpoint is at level ${saved.level}, past this search's depth ${bound}`,
      );
    // Part-way through expanding its level: level + 1 states are visited already.
    if (saved.within && saved.level === bound)
      throw new CheckpointError(
        `${options.checkpoint}: the checkpoint is part-way through finding level ${saved.level + 1}, past this search's depth ${bound}`,
      );
    if (saved.visited.length / 2 >= maxStates)
      throw new CheckpointError(
        `${options.checkpoint}: the checkpoint holds ${saved.visited.length / 2} states, this search stops at ${maxStates}`,
      );
    visited = Visited.fromPairs(saved.visited, saved.fingerprintsFrom);
    Object.assign(recorder.properties, saved.properties);
    Object.assign(recorder.counts, saved.counts);
    frontier = restored(saved.frontier);
    resume = saved.within;
    level = saved.level;
    levels = saved.levels;
    transitions = saved.transitions;
    options.onResume?.(
      level,
      levels,
      visited.size,
      transitions,
      recorder.violated(),
      ...(resume ? [progressOf(resume, frontier.count)] : []),
    );
  } else {
    recorder.record(
      withoutStackTraces(() => checkState(initial)),
      () => [],
    );
    frontier = new Level(0, visited.exact);
    frontier.push(new Uint8Array(0), 0, print, initialForm);
    visited.visit(initialForm, print, () => new Uint8Array(0));
  }
  // The workers start once the search is known to go ahead (a refused checkpoint leaves none behind).
  const file = options.inThread ? undefined : workerFile();
  const init: SearchMessage = { kind: 'search-init', backend: options.backend, contract, world: config, forkFrom };
  let pool: Pool;
  if (file) pool = await workerPool(threads, init, file);
  else {
    const local = new Expander(config, backend, contract, settings.actions, forkFrom);
    pool = { run: (task) => Promise.resolve(local.expand(task)), close: () => Promise.resolve() };
  }
  try {
    let written = performance.now();
    // A checkpoint is written once visited states are fingerprints (a set of forms is gigabytes).
    const checkpointing = (): boolean => options.checkpoint !== undefined && !visited.exact;
    // The checkpoint as it stands: at a level's end (the frontier is the next level), or part-way through it.
    const save = (within?: Within): void => {
      const bytes = writeCheckpoint(options.checkpoint!, {
        ...key!,
        level,
        levels,
        transitions,
        properties: recorder.properties,
        counts: recorder.counts,
        fingerprintsFrom: visited.fingerprintsFrom!,
        frontier,
        visited: visited.pairs(),
        ...(within ? { within } : {}),
      });
      written = performance.now();
      options.onCheckpoint?.(level, bytes, ...(within ? [progressOf(within, frontier.count)] : []));
    };
    while (frontier.count > 0 && level < bound && !stopped) {
      // The chunk size a checkpoint's part-way expansion was cut into: the merge goes on in the same order.
      const size =
        resume?.chunk ?? options.chunk ?? Math.max(16, Math.min(1024, Math.ceil(frontier.count / (threads * 8))));
      const start = resume?.merged ?? 0;
      next = resume ? restored(resume.next) : new Level(level + 1, visited.exact);
      resume = undefined;
      const length = frontier.length;
      const chunks = Math.ceil(frontier.count / size);
      // Chunks go out as workers free up, at most `window` ahead of the merge (a worker that runs ahead takes more;
      // results wait for the merge only that far). Results are merged in the level's order.
      const window = threads * 4;
      const results: Array<Promise<ChunkResult> | undefined> = [];
      let launched = start;
      let merged = start;
      const launch = (): void => {
        while (!stopped && launched < chunks && launched - merged < window) {
          const first = launched * size;
          const count = Math.min(size, frontier.count - first);
          // A level that turned to fingerprints part-way sends no forms from then on: the serial search too
          // compares a successor with its state by fingerprint after the switch. (Chunks already out compare
          // forms; the two differ only where a state and its successor share a 64-bit fingerprint.)
          const keys = frontier.keys?.slice(first, first + count);
          const result = pool.run({
            id: taskId++,
            length,
            count,
            traces: frontier.traces.slice(first * length, (first + count) * length),
            prints: frontier.prints.slice(first * 2, (first + count) * 2),
            ...(keys ? { keys } : {}),
          });
          results[launched++] = result;
          void result.then(launch, () => {});
        }
      };
      launch();
      for (let c = start; c < chunks && !stopped; c++) {
        const result = await results[c]!;
        results[c] = undefined;
        merged = c + 1;
        launch();
        const first = c * size;
        for (const event of result.events) {
          const trace = frontier.trace(first + event.s);
          if (!event.successor) {
            recorder.record(event.findings, () => ids(trace, event.a));
            continue;
          }
          print[0] = event.print![0];
          print[1] = event.print![1];
          const key = event.key ?? '';
          const extend = (): Uint8Array => {
            const extended = new Uint8Array(trace.length + 1);
            extended.set(trace);
            extended[trace.length] = event.a;
            return extended;
          };
          if (visited.visit(key, print, extend)) continue;
          recorder.record(event.findings, () => ids(trace, event.a));
          next.push(trace, event.a, print, key);
          if (visited.size >= maxStates) {
            // The serial search stops right after this transition: count the chunk's transitions up to it.
            stopped = true;
            transitions += event.t;
            break;
          }
        }
        if (stopped) break;
        transitions += result.transitions;
        // Part-way through the level, when it is time: the chunks merged so far and the next level they found.
        if (checkpointing() && c + 1 < chunks && performance.now() - written >= every)
          save({ chunk: size, merged: c + 1, next });
      }
      // A stopped search does not wait for the chunks still out: closing the pool ends them.
      if (next.count > 0) {
        level++;
        levels.push(next.count);
      }
      options.onLevel?.(levels, visited.size, transitions, recorder.violated());
      frontier = next;
      if (checkpointing() && !stopped && frontier.count > 0) save();
    }
  } finally {
    await pool.close();
  }
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

/**
 * One exploration run (see `explore`) whose search is spread over worker threads: the same run, with
 * `stats.threads` set. Random walks are not threaded (use `explore`).
 */
export async function exploreThreaded(
  options: Omit<ExploreOptions, 'backend' | 'randomWalks' | 'seed'> & {
    backend: BackendRef;
    /** Worker threads (default: the machine's available parallelism). */
    threads?: number;
    /** @internal See ThreadedSearchOptions.chunk. */
    chunk?: number;
    /** @internal See ThreadedSearchOptions.inThread. */
    inThread?: boolean;
    /** A checkpoint file: see ThreadedSearchOptions.checkpoint. */
    checkpoint?: string;
    /** See ThreadedSearchOptions.checkpointEvery. */
    checkpointEvery?: number;
    /** See ThreadedSearchOptions.onCheckpoint. */
    onCheckpoint?: ThreadedSearchOptions['onCheckpoint'];
    /** See ThreadedSearchOptions.onResume. */
    onResume?: ThreadedSearchOptions['onResume'];
  },
): Promise<ExploreRun> {
  const started = performance.now();
  const backend = await loadBackendRef(options.backend);
  let resumedFrom: number | undefined;
  const searched = await searchLoaded(
    {
      ...options,
      onResume: (...args) => {
        resumedFrom = args[2];
        options.onResume?.(...args);
      },
    },
    backend,
  );
  const run = runOf({ backend, contract: options.contract }, searched, started, resumedFrom);
  run.stats.threads = workerFile() && !options.inThread ? (options.threads ?? availableParallelism()) : 1;
  return run;
}
