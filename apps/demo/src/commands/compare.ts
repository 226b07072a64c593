/** `gmemlab compare`: scenarios (default: the built-in library) on every architecture and design; the matrix. */
import { Option, type Command } from 'commander';
import { selectArchs } from '../backends.js';
import { contractsOf, emit, progress } from '../cli-support.js';
import type { Format } from '../format/common.js';
import { RENDERERS } from '../format/registry.js';
import { loadAll } from '../library.js';
import { compare } from '../run/compare.js';
import { archOption, backendsFor, configOption, formatOption, maxStepsOption } from './options.js';

export interface CompareCommandOptions {
  arch?: string;
  contract: string;
  config?: string;
  format: Format;
  out?: string;
  details?: boolean;
  fullPaths?: boolean;
  maxSteps: number;
}

export async function compareCommand(specs: string[], options: CompareCommandOptions): Promise<void> {
  const scenarios = loadAll(specs, { maxSteps: options.maxSteps });
  const backends = selectArchs(await backendsFor(options), options.arch);
  const bar = progress('comparing');
  const result = compare(scenarios, backends, contractsOf(options.contract), {
    pageMaps: options.format === 'html' || options.format === 'json',
    onRun: bar.update,
  });
  bar.end();
  emit(
    RENDERERS[options.format].compare(result, {
      details: options.details === true,
      fullPaths: options.fullPaths === true,
    }),
    options.out,
  );
  process.exitCode = result.exitCode;
}

export function register(cli: Command): void {
  cli
    .command('compare')
    .description('run scenarios (default: the built-in library) on every architecture and contract; the matrix')
    .argument('[scenario...]', 'scenario files, or names of built-in scenarios')
    .addOption(archOption())
    .addOption(new Option('--contract <names>', "contracts: a comma list or 'all'").default('all'))
    .addOption(configOption())
    .addOption(formatOption('table'))
    .addOption(maxStepsOption())
    .option(
      '--details',
      "text and table: each scenario's step table after the verdict (markdown, html and json always have them)",
    )
    .option('--full-paths', "markdown and html: name scenario files by their full path (default: the file's name only)")
    .option('-o, --out <file>', 'write the report to a file instead of stdout')
    .action(compareCommand);
}
