/** `gmemlab scenarios`: the built-in library, one line each. */
import type { Command } from 'commander';
import { loadAll } from '../library.js';

export function scenariosCommand(): void {
  for (const s of loadAll([])) process.stdout.write(`${s.id.padEnd(28)} ${s.title}\n`);
}

export function register(cli: Command): void {
  cli.command('scenarios').description('list the built-in scenarios').action(scenariosCommand);
}
