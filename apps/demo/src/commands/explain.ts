/** `gmemlab explain`: one backend's rules, each with its source, and its policy asked. */
import { Option, type Command } from 'commander';
import { BackendError, selectArchs } from '../backends.js';
import { emit, UsageError } from '../cli-support.js';
import { explainBackend } from '../explain.js';
import { backendsFor, configOption } from './options.js';

export async function explainCommand(arch: string, options: { config?: string; format: string }): Promise<void> {
  if (arch === 'all' || arch.includes(','))
    throw new UsageError(`explain: one backend id at a time (e.g. tdx, tdx:connect), not '${arch}'`);
  let backend;
  try {
    [backend] = selectArchs(await backendsFor(options), arch);
  } catch (error) {
    // The loader words its errors for --arch; explain takes the id as an argument.
    if (error instanceof BackendError)
      throw new UsageError(error.message.replace(/^--arch: /, 'explain: ').replace(/, all$/, ''));
    throw error;
  }
  emit(explainBackend(backend!, options.format));
}

export function register(cli: Command): void {
  cli
    .command('explain')
    .description("a backend's rules, each with its source")
    .argument('<arch>', 'a backend id, e.g. tdx, tdx:connect, sev-snp:tio')
    .addOption(configOption())
    .addOption(
      new Option('-f, --format <format>', 'output format')
        .choices(['table', 'text', 'markdown', 'json'])
        .default('table'),
    )
    .action(explainCommand);
}
