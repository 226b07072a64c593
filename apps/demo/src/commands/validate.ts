/** `gmemlab validate`: check scenario files without running them. */
import type { Command } from 'commander';
import { loadAll } from '../library.js';
import { maxStepsOption } from './options.js';

export function validateCommand(specs: string[], options: { maxSteps: number }): void {
  for (const s of loadAll(specs, { maxSteps: options.maxSteps }))
    process.stdout.write(`${s.file}: ok (${s.steps.length} steps)\n`);
}

export function register(cli: Command): void {
  cli
    .command('validate')
    .description('check scenario files without running them')
    .argument('<scenario...>', 'scenario files')
    .addOption(maxStepsOption())
    .action(validateCommand);
}
