/**
 * The `gmemlab replay` command: read a log (replay.ts), run its scenario like `compare` runs one (every
 * architecture and design asked for, every format, the verdict matrix first), and say on stderr what the log held
 * that was not replayed. With --format json the counts are in the report too, as `replay`.
 */
import { Option, type Command } from 'commander';
import { selectArchs } from '../backends.js';
import { contractsOf, emit, progress } from '../cli-support.js';
import { archOption, backendsFor, configOption, formatOption, maxStepsOption } from '../commands/options.js';
import { matrixOf, type Format } from '../format/common.js';
import { RENDERERS } from '../format/registry.js';
import { compare } from '../run/compare.js';
import { countsJson, LOG_FORMATS, replayLog, summary, writeScenarioFile } from './replay.js';

export interface ReplayCommandOptions {
  input: (typeof LOG_FORMATS)[number];
  arch?: string;
  contract: string;
  config?: string;
  format: Format;
  maxSteps: number;
  emitScenario?: string;
  details?: boolean;
  fullPaths?: boolean;
  out?: string;
}

export async function replayCommand(log: string, options: ReplayCommandOptions): Promise<void> {
  const contracts = contractsOf(options.contract);
  const backends = selectArchs(await backendsFor(options), options.arch);
  const result = await replayLog(log, { input: options.input, maxSteps: options.maxSteps });
  process.stderr.write(
    `gmemlab replay: ${summary(result.counts, result.lines).replace(/\n/g, '\ngmemlab replay: ')}\n`,
  );
  for (const a of result.assumptions) process.stderr.write(`gmemlab replay: assumed: ${a}\n`);
  if (options.emitScenario) writeScenarioFile(result, options.emitScenario);
  const bar = progress('replaying');
  const comparison = compare([result.scenario], backends, contracts, {
    pageMaps: options.format === 'html' || options.format === 'json',
    onRun: bar.update,
  });
  bar.end();
  // A failed expectation is the model disagreeing with the logged result: name the log line the step stands for.
  const steps = result.document.steps as Array<{ call: string; note?: string }>;
  for (const g of matrixOf(comparison, result.scenario.id).failureGroups) {
    const note = /^\d+$/.test(g.path) ? steps[Number(g.path) - 1]?.note : undefined;
    process.stderr.write(
      `gmemlab replay: step ${g.path} ${g.call} ${g.failure}${note ? `; it stands for ${note}` : ''}\n`,
    );
  }
  const text =
    options.format === 'json'
      ? JSON.stringify({ ...comparison, replay: countsJson(result) }, null, 2)
      : RENDERERS[options.format].compare(comparison, {
          details: options.details === true,
          fullPaths: options.fullPaths === true,
        });
  emit(text, options.out);
  process.exitCode = comparison.exitCode;
}

export function register(cli: Command): void {
  cli
    .command('replay')
    .description(
      "replay a VMM's log (QEMU's trace log or strace output) on every architecture and contract, as a scenario",
    )
    .argument('<log>', "a QEMU trace log ('log' backend) or strace output (-f, -tt, -T accepted)")
    .addOption(
      new Option('--input <format>', 'the log format (auto: told from its first lines)')
        .choices([...LOG_FORMATS])
        .default('auto'),
    )
    .addOption(archOption())
    .addOption(new Option('--contract <names>', "contracts: a comma list or 'all'").default('all'))
    .addOption(configOption())
    .addOption(formatOption('table'))
    .addOption(maxStepsOption())
    .option(
      '--emit-scenario <file>',
      'also write the scenario the log translates to (gmemlab run replays it the same way)',
    )
    .option('--details', "text and table: the scenario's step table after the verdict")
    .option('--full-paths', "markdown and html: name the log by its full path (default: the file's name only)")
    .option('-o, --out <file>', 'write the report to a file instead of stdout')
    .action(replayCommand);
}
