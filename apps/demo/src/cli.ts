/**
 * gmemlab: run guest_memfd scenarios on any backend package and compare architectures side by side.
 * Exit codes: EXIT_CODES below, the one text --help prints and the README quotes (a test holds them equal).
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTRACTS, type Contract } from '@gmemlab/core';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { BackendError, DEFAULT_ARCHS, loadBackends, selectArchs, type BackendSet } from './backends.js';
import { contractsOf, progress, UsageError } from './cli-support.js';
import { explainBackend } from './explain.js';
import { registerExplore } from './explore-command.js';
import { registerNewBackend } from './new-backend.js';
import { registerReplay } from './replay/command.js';
import { ReplayError } from './replay/replay.js';
import { OracleError, renderOracleText, runOracle } from './oracle.js';
import { FORMATS, type Format } from './format/common.js';
import { renderCompareHtml, renderRunHtml } from './format/html.js';
import { renderCompareMarkdown, renderRunMarkdown } from './format/markdown.js';
import { renderCompareText, renderRunText, styleFor } from './format/text.js';
import { compare } from './run/compare.js';
import type { Comparison } from './run/types.js';
import { DEFAULT_MAX_STEPS, loadScenario, ScenarioError, type LoadOptions, type Scenario } from './scenario/load.js';
import { scenarioJsonSchema } from './scenario/schema.js';
import { LOOPBACK, MAX_RUNS, startServer } from './serve/server.js';
import { VERSION } from './version.js';
import { webBundle } from './web-bundle.js';

const here = dirname(fileURLToPath(import.meta.url));
export const BUILTIN_SCENARIOS = join(here, '..', 'scenarios');

/** The exit codes, documented once: --help prints this and apps/demo/README.md quotes it word for word. */
export const EXIT_CODES =
  'Exit codes: 0 every expectation held; 1 an expectation failed (with --oracle: the model and the kernel differ without a documented reason); 2 a usage or input error (one line on stderr; nothing ran); 3 an internal error (a bug; GMEMLAB_DEBUG=1 shows the stack).';


function builtinScenarioFiles(): string[] {
  return readdirSync(BUILTIN_SCENARIOS)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort()
    .map((f) => join(BUILTIN_SCENARIOS, f));
}

/** A file path, or the id of a built-in scenario ('rfc-as-posted'). */
function scenarioFile(spec: string): string {
  if (existsSync(spec)) return spec;
  const builtin = builtinScenarioFiles().find((f) => f.replace(/^.*\//, '').replace(/\.(ya?ml|json)$/, '') === spec);
  if (builtin) return builtin;
  throw new ScenarioError(`${spec}: no such file, and no built-in scenario by that name (see 'gmemlab scenarios')`);
}

function loadAll(specs: readonly string[], options: LoadOptions = {}): Scenario[] {
  const files = specs.length > 0 ? specs.map(scenarioFile) : builtinScenarioFiles();
  return files.map((f) => loadScenario(f, options));
}

/** --max-steps: the most calls one scenario may make, repeats multiplied out; checked before anything runs. */
const maxStepsOption = () =>
  new Option('--max-steps <n>', `the most calls one scenario may make, repeats multiplied out (checked before anything runs)`)
    .default(DEFAULT_MAX_STEPS)
    .argParser((value: string) => {
      if (!/^\d{1,12}$/.test(value) || Number(value) < 1) throw new InvalidArgumentError(`'${value}' is not a whole number of calls (1 or more)`);
      return Number(value);
    });

function emit(text: string, out?: string): void {
  if (out) writeFileSync(out, text.endsWith('\n') ? text : `${text}\n`);
  else process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function render(comparison: Comparison, format: Format, kind: 'run' | 'compare', details = false, fullPaths = false): string {
  switch (format) {
    case 'json':
      return JSON.stringify(comparison, null, 2);
    case 'markdown':
      return kind === 'run' ? renderRunMarkdown(comparison.runs) : renderCompareMarkdown(comparison, { fullPaths });
    case 'html':
      return kind === 'run' ? renderRunHtml(comparison, { fullPaths }) : renderCompareHtml(comparison, { fullPaths });
    default: {
      const style = styleFor(process.stdout, format);
      return kind === 'run' ? renderRunText(comparison.runs, style, comparison) : renderCompareText(comparison, style, { details });
    }
  }
}

const formatOption = (fallback: Format) => new Option('-f, --format <format>', 'output format').choices(FORMATS).default(fallback);
const archOption = () => new Option('-a, --arch <ids>', `backend ids, a comma list, or 'all' (default: ${DEFAULT_ARCHS.join(',')})`);
const configOption = () => new Option('-c, --config <file>', 'a gmemlab.config.json listing more backends (default: ./gmemlab.config.json if present)');

async function backendsFor(options: { config?: string }): Promise<BackendSet> {
  return loadBackends(options.config !== undefined ? { config: options.config } : {});
}

export function program(): Command {
  const cli = new Command('gmemlab')
    .description('Run guest_memfd scenarios on any architecture backend and compare them side by side.')
    .addHelpText('after', `\n${EXIT_CODES}`)
    .version(VERSION)
    .showHelpAfterError('(gmemlab <command> --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .exitOverride();

  cli
    .command('compare')
    .description('run scenarios (default: the built-in library) on every architecture and contract; the matrix')
    .argument('[scenario...]', 'scenario files, or names of built-in scenarios')
    .addOption(archOption())
    .addOption(new Option('--contract <names>', "contracts: a comma list or 'all'").default('all'))
    .addOption(configOption())
    .addOption(formatOption('table'))
    .addOption(maxStepsOption())
    .option('--details', "text and table: each scenario's step table after the verdict (markdown, html and json always have them)")
    .option('--full-paths', "markdown and html: name scenario files by their full path (default: the file's name only)")
    .option('-o, --out <file>', 'write the report to a file instead of stdout')
    .action(async (specs: string[], options: { arch?: string; contract: string; config?: string; format: Format; out?: string; details?: boolean; fullPaths?: boolean; maxSteps: number }) => {
      const scenarios = loadAll(specs, { maxSteps: options.maxSteps });
      const backends = selectArchs(await backendsFor(options), options.arch);
      const bar = progress('comparing');
      const result = compare(scenarios, backends, contractsOf(options.contract), { pageMaps: options.format === 'html' || options.format === 'json', onRun: bar.update });
      bar.end();
      emit(render(result, options.format, 'compare', options.details === true, options.fullPaths === true), options.out);
      process.exitCode = result.exitCode;
    });

  cli
    .command('run')
    .description('run one scenario: the timeline of each step on each architecture')
    .argument('<scenario>', 'a scenario file, or the name of a built-in scenario')
    .addOption(archOption())
    .addOption(new Option('--contract <names>', "contracts: a comma list or 'all' (default: the scenario's, else all)"))
    .addOption(configOption())
    .addOption(formatOption('table'))
    .addOption(maxStepsOption())
    .option('--full-paths', "html: name scenario files by their full path (default: the file's name only)")
    .option('-o, --out <file>', 'write the report to a file instead of stdout')
    .addOption(new Option('--oracle <kernel>', 'also run the steps on the running kernel (/dev/kvm) and show both').choices(['linux']))
    .action(async (spec: string, options: { arch?: string; contract?: string; config?: string; format: Format; out?: string; oracle?: string; fullPaths?: boolean; maxSteps: number }) => {
      const scenario = loadAll([spec], { maxSteps: options.maxSteps });
      if (options.oracle === 'linux') {
        if (options.format !== 'table' && options.format !== 'text' && options.format !== 'json') throw new UsageError(`--oracle prints table, text or json, not ${options.format}`);
        const report = await runOracle(scenario[0]!);
        emit(options.format === 'json' ? JSON.stringify(report, null, 2) : renderOracleText(report), options.out);
        process.exitCode = report.divergent ? 1 : 0;
        return;
      }
      const backends = selectArchs(await backendsFor(options), options.arch);
      const contracts = options.contract === undefined ? ((scenario[0]!.contracts as Contract[] | undefined) ?? [...CONTRACTS]) : contractsOf(options.contract);
      const bar = progress('running');
      const result = compare(scenario, backends, contracts, { pageMaps: options.format === 'html' || options.format === 'json', onRun: bar.update });
      bar.end();
      emit(render(result, options.format, 'run', true, options.fullPaths === true), options.out);
      process.exitCode = result.exitCode;
    });

  cli
    .command('validate')
    .description('check scenario files without running them')
    .argument('<scenario...>', 'scenario files')
    .addOption(maxStepsOption())
    .action((specs: string[], options: { maxSteps: number }) => {
      for (const s of loadAll(specs, { maxSteps: options.maxSteps })) process.stdout.write(`${s.file}: ok (${s.steps.length} steps)\n`);
    });

  cli
    .command('schema')
    .description('print the JSON Schema of the scenario format (also published as @gmemlab/demo/scenario.schema.json)')
    .action(() => emit(JSON.stringify(scenarioJsonSchema(), null, 2)));

  cli
    .command('scenarios')
    .description('list the built-in scenarios')
    .action(() => {
      for (const s of loadAll([])) process.stdout.write(`${s.id.padEnd(28)} ${s.title}\n`);
    });

  cli
    .command('backends')
    .description('the backends gmemlab loads (built-in, and those of gmemlab.config.json): which copy, its version, path and core')
    .addOption(configOption())
    .addOption(new Option('-f, --format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (options: { config?: string; format: string }) => {
      const set = await backendsFor(options);
      const rows = set.loaded.map((b) => ({ id: b.id, name: b.name, package: b.package, version: b.version, copy: b.copy, path: b.path, core: b.core, variants: b.variants.map((v) => `${b.id}:${v}`) }));
      if (options.format === 'json') return emit(JSON.stringify({ config: set.config ?? null, backends: rows }, null, 2));
      // copy: 'project' (the user's install, which wins), 'gmemlab' (the demo's own), 'core' (the neutral backend).
      const cells = [['id', 'name', 'package', 'version', 'copy', 'core', 'variants', 'path'], ...rows.map((r) => [r.id, r.name, r.package, r.version, r.copy, r.core.version, r.variants.join(', ') || '-', r.path])];
      const widths = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
      emit(cells.map((c) => c.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + (set.config ? `\n(config: ${set.config})` : ''));
    });

  cli
    .command('serve')
    .description(`the web view on http://${LOOPBACK}:PORT/ (loopback only): choose scenarios and architectures, run, scrub through each step's page maps`)
    .argument('[scenario...]', 'scenario files to offer beside the built-in library (read once, at start; the page chooses among them by id)')
    .addOption(new Option('-p, --port <n>', 'TCP port on 127.0.0.1; 0 picks a free one').default('8470'))
    .addOption(new Option('--max-runs <n>', 'the most runs (scenarios × architectures × designs) one comparison request may ask for').default(String(MAX_RUNS)))
    .addOption(configOption())
    .addOption(new Option('--host <address>').hideHelp())
    .action(async (files: string[], options: { port: string; maxRuns: string; config?: string; host?: string }) => {
      if (options.host !== undefined) throw new UsageError(`--host: gmemlab serve binds ${LOOPBACK} only (the page runs scenarios on request; it is not meant for a network); reach it from elsewhere through an SSH tunnel`);
      if (!/^\d{1,5}$/.test(options.port) || Number(options.port) > 65535) throw new UsageError(`--port: '${options.port}' is not a port number (0-65535; 0 picks a free one)`);
      if (!/^[1-9]\d{0,6}$/.test(options.maxRuns)) throw new UsageError(`--max-runs: '${options.maxRuns}' is not a whole number from 1 to 9999999`);
      const scenarios = [...loadAll([]), ...files.map((f) => loadScenario(f))];
      const ids = new Map<string, string>();
      for (const s of scenarios) {
        if (ids.has(s.id)) throw new UsageError(`${s.file}: its id '${s.id}' is already taken by ${ids.get(s.id)}; rename the file`);
        ids.set(s.id, s.file);
      }
      const backends = await backendsFor(options);
      let server;
      try {
        server = await startServer({ port: Number(options.port), scenarios, backends, script: webBundle(), maxRuns: Number(options.maxRuns) });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE') throw new UsageError(`--port ${options.port}: the port is in use on ${LOOPBACK} (choose another, or --port 0 for a free one)`);
        if (code === 'EACCES') throw new UsageError(`--port ${options.port}: not allowed to listen there (ports below 1024 need privileges; try --port 0)`);
        throw error;
      }
      process.stdout.write(`gmemlab: serving ${server.url}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void server.close().then(resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      process.stdout.write('gmemlab: stopped\n');
    });

  cli
    .command('explain')
    .description("a backend's rules, each with its source")
    .argument('<arch>', "a backend id, e.g. tdx, tdx:connect, sev-snp:tio")
    .addOption(configOption())
    .addOption(new Option('-f, --format <format>', 'output format').choices(['table', 'text', 'markdown', 'json']).default('table'))
    .action(async (arch: string, options: { config?: string; format: string }) => {
      if (arch === 'all' || arch.includes(',')) throw new UsageError(`explain: one backend id at a time (e.g. tdx, tdx:connect), not '${arch}'`);
      let backend;
      try {
        [backend] = selectArchs(await backendsFor(options), arch);
      } catch (error) {
        // The loader words its errors for --arch; explain takes the id as an argument.
        if (error instanceof BackendError) throw new UsageError(error.message.replace(/^--arch: /, 'explain: ').replace(/, all$/, ''));
        throw error;
      }
      emit(explainBackend(backend!, options.format));
    });

  registerExplore(cli);
  registerNewBackend(cli);
  registerReplay(cli, { archOption, configOption, formatOption, maxStepsOption, backendsFor, render, emit });

  return cli;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync(argv as string[], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed its message (help, version, or a usage error).
      return error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof ScenarioError || error instanceof BackendError || error instanceof UsageError || error instanceof OracleError || error instanceof ReplayError) {
      process.stderr.write(`gmemlab: ${error.message}\n`);
      return 2;
    }
    const e = error as NodeJS.ErrnoException;
    if (e && typeof e.code === 'string' && typeof e.path === 'string') {
      process.stderr.write(`gmemlab: ${e.path}: ${e.code === 'ENOENT' ? 'no such file or folder' : e.code}\n`);
      return 2;
    }
    process.stderr.write(`gmemlab: internal error: ${e instanceof Error ? e.message : String(e)}${process.env.GMEMLAB_DEBUG ? `\n${e?.stack ?? ''}` : ' (GMEMLAB_DEBUG=1 shows the stack; please report it)'}\n`);
    return 3;
  }
}
