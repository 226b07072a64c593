/**
 * The `gmemlab replay` command: read a log (replay.ts), run its scenario like `compare` runs one (every
 * architecture and design asked for, every format, the verdict matrix first), and say on stderr what the log held
 * that was not replayed. With --format json the counts are in the report too, as `replay`.
 */
import { Option, type Command } from 'commander';
import type { BackendSet } from '../backends.js';
import { selectArchs } from '../backends.js';
import { contractsOf, progress } from '../cli-support.js';
import type { Format } from '../format/common.js';
import { compare } from '../run/compare.js';
import type { Comparison } from '../run/types.js';
import { countsJson, LOG_FORMATS, replayLog, summary, writeScenarioFile } from './replay.js';

/** What the command borrows from cli.ts (passed in, so this module imports nothing of it). */
export interface ReplayCommandHelpers {
  archOption(): Option;
  configOption(): Option;
  formatOption(fallback: Format): Option;
  maxStepsOption(): Option;
  backendsFor(options: { config?: string }): Promise<BackendSet>;
  render(comparison: Comparison, format: Format, kind: 'run' | 'compare', details?: boolean, fullPaths?: boolean): string;
  emit(text: string, out?: string): void;
}

export function registerReplay(cli: Command, h: ReplayCommandHelpers): void {
  cli
    .command('replay')
    .description("replay a VMM's log (QEMU's trace log or strace output) on every architecture and contract, as a scenario")
    .argument('<log>', "a QEMU trace log ('log' backend) or strace output (-f, -tt, -T accepted)")
    .addOption(new Option('--input <format>', 'the log format (auto: told from its first lines)').choices([...LOG_FORMATS]).default('auto'))
    .addOption(h.archOption())
    .addOption(new Option('--contract <names>', "contracts: a comma list or 'all'").default('all'))
    .addOption(h.configOption())
    .addOption(h.formatOption('table'))
    .addOption(h.maxStepsOption())
    .option('--emit-scenario <file>', 'also write the scenario the log translates to (gmemlab run replays it the same way)')
    .option('--details', "text and table: the scenario's step table after the verdict")
    .option('--full-paths', "markdown and html: name the log by its full path (default: the file's name only)")
    .option('-o, --out <file>', 'write the report to a file instead of stdout')
    .action(async (log: string, options: { input: (typeof LOG_FORMATS)[number]; arch?: string; contract: string; config?: string; format: Format; maxSteps: number; emitScenario?: string; details?: boolean; fullPaths?: boolean; out?: string }) => {
      const contracts = contractsOf(options.contract);
      const backends = selectArchs(await h.backendsFor(options), options.arch);
      const result = await replayLog(log, { input: options.input, maxSteps: options.maxSteps });
      process.stderr.write(`gmemlab replay: ${summary(result.counts, result.lines).replace(/\n/g, '\ngmemlab replay: ')}\n`);
      for (const a of result.assumptions) process.stderr.write(`gmemlab replay: assumed: ${a}\n`);
      if (options.emitScenario) writeScenarioFile(result, options.emitScenario);
      const bar = progress('replaying');
      const comparison = compare([result.scenario], backends, contracts, { pageMaps: options.format === 'html' || options.format === 'json', onRun: bar.update });
      bar.end();
      const text = options.format === 'json' ? JSON.stringify({ ...comparison, replay: countsJson(result) }, null, 2) : h.render(comparison, options.format, 'compare', options.details === true, options.fullPaths === true);
      h.emit(text, options.out);
      process.exitCode = comparison.exitCode;
    });
}
