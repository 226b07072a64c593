/**
 * `gmemlab explore`: exhaustive bounded exploration (@gmemlab/explore) of every selected architecture under every
 * selected contract, one run per worker thread. Prints, per run, the states explored, the depth reached, whether
 * the search was complete or stopped at the bound, and each property held, violated or vacuous; writes each
 * shortest counterexample and witness as a scenario file (`--out-dir`) that `gmemlab run` replays.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { ArchBackend, Contract } from '@gmemlab/core';
import {
  DEFAULT_WORLD,
  describeWorld,
  exploreMany,
  exploreThreaded,
  CheckpointError,
  PROPERTY_NAMES,
  type BackendRef,
  type ExploreJob,
  type ExploreRun,
  type Progress,
  type ScenarioObject,
} from '@gmemlab/explore';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { exploreContractsOf, progress, UsageError } from './cli-support.js';
import { InputError } from './errors.js';
import { renderCompareHtml } from './format/html.js';
import { compare } from './run/compare.js';
import { parseScenario } from './scenario/load.js';
import { stringify } from 'yaml';
import { BUILTIN_PACKAGES, DEFAULT_ARCHS, loadBackends, selectArchs, type BackendSet } from './backends.js';

interface ExploreCommandOptions {
  arch?: string;
  contract: string;
  config?: string;
  depth: number;
  maxStates: number;
  visited: 'auto' | 'exact' | 'fingerprint';
  pages: number;
  areas: number;
  vm2Pages: number;
  format: 'table' | 'json' | 'html';
  outDir?: string;
  out?: string;
  randomWalks?: number;
  seed: number;
  workers?: number;
  checkpoint?: string;
  checkpointEvery?: number;
}

const integer = (min: number, max: number) => (value: string) => {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(`an integer from ${min} to ${max} is needed, not '${value}'`);
  return n;
};

/** How a worker thread finds a selected backend: the built-in packages by file; anything else stays on this thread. */
function referenceOf(set: BackendSet, backend: ArchBackend): ArchBackend | BackendRef {
  const colon = backend.id.indexOf(':');
  const base = colon < 0 ? backend.id : backend.id.slice(0, colon);
  const variant = colon < 0 ? undefined : backend.id.slice(colon + 1);
  const loaded = set.loaded.find((b) => b.id === base);
  if (!loaded || (variant !== undefined && !loaded.variants.includes(variant))) return backend;
  const require = createRequire(import.meta.url);
  if (loaded.package === '@gmemlab/core')
    return variant === undefined ? { module: require.resolve('@gmemlab/core'), export: 'swProtected' } : backend;
  if (!(BUILTIN_PACKAGES as readonly string[]).includes(loaded.package)) return backend;
  return { module: loaded.entry, ...(variant !== undefined ? { variant } : {}) };
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function fileName(run: ExploreRun, property: string, witness: boolean): string {
  return `${run.result.arch.replace(/[^a-z0-9-]/gi, '-')}_${run.result.contract}_${property}${witness ? '_witness' : ''}.yaml`;
}

function scenarioYaml(scenario: ScenarioObject, run: ExploreRun): string {
  const header = `# ${scenario.title}\n# Replay: gmemlab run <this file> --arch ${run.result.arch} --contract ${run.result.contract}\n`;
  return header + stringify(scenario, { lineWidth: 0 });
}

/** The table: one row per run, then every violation's shortest trace. */
function renderTable(runs: readonly ExploreRun[], wallMs: number, workers: number, written: string[]): string {
  const lines: string[] = [];
  const first = runs[0]?.stats;
  if (first) {
    const mode =
      first.mode === 'breadth-first'
        ? `breadth-first, depth bound ${first.bound}`
        : `random walks, at most ${first.bound} steps each`;
    lines.push(`gmemlab explore: ${describeWorld(first.world)}; ${mode}.`, '');
  }
  const rows = [['arch', 'contract', 'states', 'depth', 'search', 'time', 'states/s', 'properties']];
  for (const run of runs) {
    const r = run.result;
    const violated = PROPERTY_NAMES.filter((p) => !r.properties[p].holds);
    const vacuous = PROPERTY_NAMES.filter((p) => r.properties[p].vacuous);
    const holding = PROPERTY_NAMES.length - violated.length;
    const parts = [
      violated.length > 0
        ? `VIOLATED ${violated.map((p) => `${p} (${run.traces[p].trace?.length ?? '?'} steps)`).join(', ')}`
        : `all ${PROPERTY_NAMES.length} hold`,
      violated.length > 0 && holding > 0 ? `${holding} hold` : '',
      vacuous.length > 0 ? `vacuous: ${vacuous.join(', ')}` : '',
    ].filter(Boolean);
    rows.push([
      r.arch,
      r.contract,
      r.states.toLocaleString('en-US'),
      String(r.depth),
      r.exhaustive
        ? 'complete'
        : run.stats.mode === 'breadth-first'
          ? r.depth < run.stats.bound
            ? 'stopped at state limit'
            : 'stopped at bound'
          : 'random walks',
      seconds(run.stats.searchMs),
      run.stats.statesPerSecond.toLocaleString('en-US'),
      parts.join('; '),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const right = new Set([2, 3, 5, 6]);
  for (const row of rows)
    lines.push(
      row
        .map((cell, i) =>
          i === row.length - 1 ? cell : right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!),
        )
        .join('  ')
        .trimEnd(),
    );
  const violations = runs.flatMap((run) => PROPERTY_NAMES.filter((p) => run.traces[p].trace).map((p) => ({ run, p })));
  if (violations.length > 0) {
    lines.push(
      '',
      runs.some((run) => run.stats.mode === 'random-walks')
        ? 'Counterexamples, shrunk (after the setup):'
        : 'Shortest counterexamples (after the setup):',
    );
    for (const { run, p } of violations) {
      const t = run.traces[p];
      lines.push(
        `  ${run.result.arch} ${run.result.contract} ${p}: ${t.trace!.join(' -> ')}`,
        `      ${t.traceNote ?? ''}`,
      );
    }
  }
  // How often each property's premise (the situation it guards) was met: non-vacuity, with its weight.
  lines.push('', 'Premises met (checked transitions in the situation each property guards; 0: vacuous):');
  for (const run of runs)
    lines.push(
      `  ${run.result.arch} ${run.result.contract}: ${PROPERTY_NAMES.map((p) => `${p} ${run.stats.counts[p].premise.toLocaleString('en-US')}`).join(', ')}`,
    );
  const vacuous = runs.flatMap((run) =>
    PROPERTY_NAMES.filter((p) => run.result.properties[p].vacuous).map(
      (p) => `${run.result.arch} ${run.result.contract} ${p}`,
    ),
  );
  if (vacuous.length > 0)
    lines.push('', `Vacuous (the guarded situation never arose, so "holds" means nothing): ${vacuous.join('; ')}`);
  // A search that kept fingerprints may, with the stated chance, have taken two states for one (as TLC reports).
  const printed = runs.filter((run) => run.stats.fingerprints);
  if (printed.length > 0) {
    lines.push(
      '',
      'Visited states kept as 64-bit fingerprints (estimated chance that two states were taken for one, were fingerprints uniform):',
    );
    for (const run of printed) {
      const f = run.stats.fingerprints!;
      lines.push(
        `  ${run.result.arch} ${run.result.contract}: from ${f.from.toLocaleString('en-US')} states on; ${f.collisionBound.toExponential(1)}`,
      );
    }
  }
  const states = runs.reduce((n, run) => n + run.result.states, 0);
  // A search that went on from a checkpoint: its time is this run's, so its rate is of the states this run found.
  const resumedFrom = runs.reduce((n, run) => n + (run.stats.resumedFrom ?? 0), 0);
  const resumed = runs.some((run) => run.stats.resumedFrom !== undefined)
    ? `, ${(states - resumedFrom).toLocaleString('en-US')} of them found in this run (the checkpoint held ${resumedFrom.toLocaleString('en-US')})`
    : '';
  // Thread time: a threaded search kept its threads busy for its whole search.
  const searchMs = runs.reduce((n, run) => n + run.stats.searchMs * (run.stats.threads ?? 1), 0);
  lines.push(
    '',
    `${runs.length} run${runs.length === 1 ? '' : 's'}, ${states.toLocaleString('en-US')} states${resumed} in ${seconds(wallMs)} on ${workers > 1 ? `${workers} worker threads` : 'one thread'} (${Math.round(((states - resumedFrom) / Math.max(searchMs, 1)) * 1000).toLocaleString('en-US')} states/s per thread).`,
  );
  if (written.length > 0)
    lines.push(
      `Wrote ${written.length} scenario files (replay one with: gmemlab run <file> --arch <arch> --contract <contract>).`,
    );
  return lines.join('\n');
}

export function registerExplore(cli: Command): void {
  cli
    .command('explore')
    .description(
      'search every sequence of VMM, guest, device and second-VM actions in a small world, up to a depth, for property violations; shortest counterexamples as scenarios',
    )
    .addOption(
      new Option('-a, --arch <ids>', `backend ids, a comma list, or 'all' (default: ${DEFAULT_ARCHS.join(',')})`),
    )
    .addOption(new Option('--contract <names>', "contracts: a comma list or 'all'").default('all'))
    .addOption(
      new Option(
        '-c, --config <file>',
        'a gmemlab.config.json listing more backends (default: ./gmemlab.config.json if present)',
      ),
    )
    .addOption(
      new Option('--depth <n>', 'the depth bound: the longest trace searched').argParser(integer(0, 200)).default(30),
    )
    .addOption(
      new Option('--max-states <n>', 'the breadth-first search stops (not complete) after this many distinct states')
        .argParser(integer(1, 100_000_000))
        .default(2_000_000),
    )
    .addOption(
      new Option(
        '--visited <mode>',
        'how visited states are kept: exact (canonical forms, about 1 KB each), fingerprint (8 bytes each, with a stated chance of merging two), auto (exact up to a million states)',
      )
        .choices(['auto', 'exact', 'fingerprint'])
        .default('auto'),
    )
    .addOption(
      new Option('--pages <n>', "pages of the VM's guest_memfd").argParser(integer(1, 8)).default(DEFAULT_WORLD.pages),
    )
    .addOption(
      new Option(
        '--areas <n>',
        'IOAS areas that may exist at once (one page each, or with --pages 2 or more the whole file)',
      )
        .argParser(integer(0, 4))
        .default(DEFAULT_WORLD.maxAreas),
    )
    .addOption(
      new Option('--vm2-pages <n>', "pages of the second VM's guest_memfd (frames it can take)")
        .argParser(integer(0, 4))
        .default(DEFAULT_WORLD.vm2Pages),
    )
    .addOption(
      new Option(
        '-f, --format <format>',
        'output format (html: every counterexample replayed on every architecture, lane by lane, in one self-contained page)',
      )
        .choices(['table', 'json', 'html'])
        .default('table'),
    )
    .option('--out-dir <dir>', 'write each counterexample and witness as a scenario file there')
    .option('-o, --out <file>', 'write the report to a file instead of stdout')
    .addOption(
      new Option(
        '--random-walks <n>',
        'random walks instead of the exhaustive search (for larger worlds); violating traces are shrunk',
      ).argParser(integer(1, 10_000_000)),
    )
    .addOption(new Option('--seed <n>', "the random walks' seed").argParser(integer(0, 2 ** 32 - 1)).default(1))
    .addOption(
      new Option(
        '--workers <n>',
        'worker threads: one run per thread (default: one per core, at most one per run), or with a single run its search spread over N threads (for large worlds); 0: none',
      ).argParser(integer(0, 64)),
    )
    .option(
      '--checkpoint <file>',
      "one run's search, over --workers threads (at least one), writes its state there at each level's end once visited states are fingerprints (not with --visited exact, nor before a million states with auto), and goes on from the file when it exists: a search of hours can stop and resume",
    )
    .addOption(
      new Option(
        '--checkpoint-every <minutes>',
        "with --checkpoint: within a level, write the file again once this many minutes have passed since the last (default 10; 0: after every chunk of states expanded but a level's last, each write the whole visited set at 8 bytes a state): a search stopped mid-level loses at most that much",
      ).argParser(integer(0, 1440)),
    )
    .action(async (options: ExploreCommandOptions) => {
      const contracts = exploreContractsOf(options.contract);
      const set = await loadBackends(options.config !== undefined ? { config: options.config } : {});
      const backends = selectArchs(set, options.arch);
      const world = { pages: options.pages, maxAreas: options.areas, vm2Pages: options.vm2Pages };
      const jobs: ExploreJob[] = backends.flatMap((backend) =>
        contracts.map((contract) => ({
          backend: referenceOf(set, backend),
          contract,
          world,
          depth: options.depth,
          maxStates: options.maxStates,
          visited: options.visited,
          ...(options.randomWalks !== undefined ? { randomWalks: options.randomWalks, seed: options.seed } : {}),
        })),
      );
      if (options.checkpoint !== undefined) {
        if (jobs.length !== 1) throw new UsageError('--checkpoint: one run only (one --arch, one --contract)');
        if (options.randomWalks !== undefined) throw new UsageError('--checkpoint: not with --random-walks');
        if (!('module' in jobs[0]!.backend))
          throw new UsageError('--checkpoint: this backend cannot be loaded in a worker thread');
      } else if (options.checkpointEvery !== undefined)
        throw new UsageError('--checkpoint-every: with --checkpoint only');
      const started = performance.now();
      const bar = progress('exploring');
      // --workers given: several runs take one worker each, a single run's search is spread over them. Not given:
      // one worker per core for several runs, and a single run on this thread (threads cost more than they give
      // on small worlds: a worker rebuilds each state it expands).
      const threads = options.workers ?? Math.min((await import('node:os')).availableParallelism(), jobs.length);
      // A single search over the workers: its levels as they end (a large world takes hours).
      const onLevel = (levels: readonly number[], states: number) =>
        bar.note(`level ${levels.length - 1}: ${states.toLocaleString('en-US')} states`);
      const violatedSoFar = (violated: readonly string[]) =>
        `violated so far: ${violated.length > 0 ? violated.join(', ') : 'none'}`;
      // A checkpoint written while level + 1 was being found: how far the expansion of level's states went.
      const partWay = (level: number, { expanded, states }: Progress) =>
        `part-way through level ${level + 1} (${expanded.toLocaleString('en-US')} of the ` +
        `${states.toLocaleString('en-US')} states of level ${level} expanded)`;
      // A checkpointed search runs for hours, often with stderr in a log file: there, one line per level.
      let lastLevel: number | undefined;
      const logLevel = (
        levels: readonly number[],
        states: number,
        transitions: number,
        violated: readonly string[],
      ) => {
        onLevel(levels, states);
        if (process.stderr.isTTY === true) return;
        const seconds = Math.round((performance.now() - started) / 1000);
        const level = levels.length - 1;
        // The search reports every expansion; the last of a complete search finds no new state and makes no level.
        const what =
          level === lastLevel
            ? `level ${level} expanded: no new states`
            : states >= options.maxStates
              ? `level ${level} stopped at the state limit: ${levels.at(-1)!.toLocaleString('en-US')} new`
              : `level ${level} done: ${levels.at(-1)!.toLocaleString('en-US')} new`;
        lastLevel = level;
        process.stderr.write(
          `explore: ${what}, ` +
            `${states.toLocaleString('en-US')} states, ${transitions.toLocaleString('en-US')} transitions, ${seconds} s; ` +
            // A violation is known (its shortest trace found) long before a large search ends.
            `${violatedSoFar(violated)}\n`,
        );
      };
      const runs =
        options.checkpoint !== undefined
          ? [
              await exploreThreaded({
                ...(jobs[0] as ExploreJob & { backend: BackendRef }),
                threads: Math.max(1, options.workers ?? 1),
                checkpoint: options.checkpoint,
                ...(options.checkpointEvery !== undefined ? { checkpointEvery: options.checkpointEvery * 60_000 } : {}),
                onLevel: logLevel,
                // Said only when a file was written (none before the visited set turns to fingerprints).
                onCheckpoint: (level: number, bytes: number, within?: Progress) => {
                  if (process.stderr.isTTY === true) return;
                  const size =
                    bytes < 2 ** 20 ? `${(bytes / 2 ** 10).toFixed(1)} KiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
                  const where = within ? partWay(level, within) : `at level ${level}`;
                  process.stderr.write(`explore: checkpoint written ${where}: ${options.checkpoint!}, ${size}\n`);
                },
                // Where a resumed search starts: its next line is that level's expansion.
                onResume: (
                  level: number,
                  _levels: readonly number[],
                  states: number,
                  transitions: number,
                  violated: readonly string[],
                  within?: Progress,
                ) => {
                  lastLevel = level;
                  if (process.stderr.isTTY === true) return;
                  process.stderr.write(
                    `explore: resumed from ${options.checkpoint!} ${within ? partWay(level, within) : `at level ${level}`}: ` +
                      `${states.toLocaleString('en-US')} states, ${transitions.toLocaleString('en-US')} transitions; ` +
                      `${violatedSoFar(violated)}\n`,
                  );
                },
              }).catch((error: unknown) => {
                // A checkpoint file that is not this search's, or cannot be written, is the user's input.
                throw error instanceof CheckpointError ? new InputError(`--checkpoint: ${error.message}`) : error;
              }),
            ]
          : await exploreMany(jobs, { workers: threads, onRun: bar.update, onLevel });
      // Several runs: one per worker. One breadth-first run: its search spread over the workers.
      const workers =
        runs.length === 1 && runs[0]!.stats.threads ? runs[0]!.stats.threads : Math.min(threads, jobs.length);
      bar.end();
      const wallMs = performance.now() - started;
      const written: string[] = [];
      if (options.outDir !== undefined) {
        mkdirSync(options.outDir, { recursive: true });
        for (const run of runs) {
          for (const name of PROPERTY_NAMES) {
            const p = run.result.properties[name];
            for (const [scenario, witness] of [
              [p.trace, false],
              [p.witness, true],
            ] as const) {
              if (!scenario) continue;
              const file = join(options.outDir, fileName(run, name, witness));
              writeFileSync(file, scenarioYaml(scenario, run));
              written.push(file);
            }
          }
        }
      }
      const text =
        options.format === 'json'
          ? JSON.stringify({ results: runs.map((run) => run.result) }, null, 2)
          : options.format === 'html'
            ? explorerHtml(runs, backends, contracts)
            : renderTable(runs, wallMs, workers, written);
      if (options.out !== undefined) writeFileSync(options.out, `${text}\n`);
      else process.stdout.write(`${text}\n`);
    });
}

/**
 * The web view of an explorer result: each shortest counterexample (or, when nothing is violated, each witness)
 * is a scenario, replayed by the runner on every architecture explored under its contract, so its lane shows the
 * violation step by step and the other lanes show what the same VMM does elsewhere (the expectations are
 * qualified by the architecture and design the trace was found on, so other lanes report what happened there,
 * never a failed expectation).
 */
function explorerHtml(runs: readonly ExploreRun[], backends: ArchBackend[], contracts: Contract[]): string {
  const pick = (witness: boolean) =>
    runs.flatMap((run) =>
      PROPERTY_NAMES.flatMap((name) => {
        const scenario = witness ? run.result.properties[name].witness : run.result.properties[name].trace;
        const file = fileName(run, name, witness);
        return scenario ? [parseScenario(scenario, file, file)] : [];
      }),
    );
  const traces = pick(false);
  return renderCompareHtml(compare(traces.length > 0 ? traces : pick(true), backends, contracts, { pageMaps: true }));
}
