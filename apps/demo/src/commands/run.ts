/** `gmemlab run`: one scenario, the timeline of each step on each architecture; with --oracle, beside the kernel. */
import { DESIGNS, type Design } from '../run/designs.js';
import { Option, type Command } from 'commander';
import { selectArchs } from '../backends.js';
import { contractsOf, emit, progress, UsageError } from '../cli-support.js';
import type { Format } from '../format/common.js';
import { RENDERERS } from '../format/registry.js';
import { loadAll } from '../library.js';
import { compare } from '../run/compare.js';
import type { Scenario } from '../scenario/load.js';
import { archOption, backendsFor, configOption, formatOption, maxStepsOption } from './options.js';

export interface RunCommandOptions {
  arch?: string;
  contract?: string;
  config?: string;
  format: Format;
  out?: string;
  oracle?: string;
  fullPaths?: boolean;
  maxSteps: number;
}

export async function runCommand(spec: string, options: RunCommandOptions): Promise<void> {
  const [scenario] = loadAll([spec], { maxSteps: options.maxSteps }) as [Scenario];
  if (options.oracle === 'linux') return oracleCommand(scenario, options);
  const backends = selectArchs(await backendsFor(options), options.arch);
  const contracts =
    options.contract === undefined
      ? ((scenario.contracts as Design[] | undefined) ?? [...DESIGNS])
      : contractsOf(options.contract);
  const bar = progress('running');
  const result = compare([scenario], backends, contracts, {
    pageMaps: options.format === 'html' || options.format === 'json',
    onRun: bar.update,
  });
  bar.end();
  emit(RENDERERS[options.format].run(result, { details: true, fullPaths: options.fullPaths === true }), options.out);
  process.exitCode = result.exitCode;
}

/** --oracle linux: the steps on the model and on /dev/kvm; the oracle (and @gmemlab/linux) is loaded only here. */
async function oracleCommand(scenario: Scenario, options: RunCommandOptions): Promise<void> {
  if (options.format !== 'table' && options.format !== 'text' && options.format !== 'json')
    throw new UsageError(`--oracle prints table, text or json, not ${options.format}`);
  const { renderOracleText, runOracle } = await import('../oracle.js');
  const report = await runOracle(scenario);
  emit(options.format === 'json' ? JSON.stringify(report, null, 2) : renderOracleText(report), options.out);
  process.exitCode = report.divergent ? 1 : 0;
}

export function register(cli: Command): void {
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
    .addOption(
      new Option('--oracle <kernel>', 'also run the steps on the running kernel (/dev/kvm) and show both').choices([
        'linux',
      ]),
    )
    .action(runCommand);
}
