/**
 * gmemlab: run guest_memfd scenarios on any backend package and compare architectures side by side.
 *
 * This module only wires: the commands (each a module with its options and its named handler, imported when it
 * runs), the parser (commander), and the exit codes. `gmemlab backends` loads the backend loader and nothing of
 * the runner, the formats, the web bundle or the explorer.
 * Exit codes: EXIT_CODES below, the one text --help prints and the README quotes (a test holds them equal).
 */
import { Command, CommanderError } from 'commander';
import { InputError } from './errors.js';
import { VERSION } from './version.js';

/** The exit codes, documented once: --help prints this and apps/demo/README.md quotes it word for word. */
export const EXIT_CODES =
  'Exit codes: 0 every expectation held; 1 an expectation failed (with --oracle: the model and the kernel differ without a documented reason); 2 a usage or input error (one line on stderr; nothing ran); 3 an internal error (a bug; GMEMLAB_DEBUG=1 shows the stack).';

/** Declares one command (its arguments, options and handler) on the program. */
export type RegisterCommand = (cli: Command) => void;

/**
 * Every command, in the order --help lists them, with the module that declares it. A module is imported only
 * when its command runs (or when the whole list is needed: help, an unknown command). A new command is one line.
 */
const COMMANDS: ReadonlyArray<readonly [name: string, load: () => Promise<RegisterCommand>]> = [
  ['compare', async () => (await import('./commands/compare.js')).register],
  ['run', async () => (await import('./commands/run.js')).register],
  ['validate', async () => (await import('./commands/validate.js')).register],
  ['schema', async () => (await import('./commands/schema.js')).register],
  ['scenarios', async () => (await import('./commands/scenarios.js')).register],
  ['backends', async () => (await import('./commands/backends.js')).register],
  ['serve', async () => (await import('./commands/serve.js')).register],
  ['explain', async () => (await import('./commands/explain.js')).register],
  ['explore', async () => (await import('./explore-command.js')).registerExplore],
  ['new-backend', async () => (await import('./new-backend.js')).registerNewBackend],
  ['replay', async () => (await import('./replay/command.js')).register],
];

/**
 * The `gmemlab` program. Given the arguments, it declares only the command they name (when the first one is a
 * command's name); otherwise, or without arguments, every command.
 */
export async function program(argv?: readonly string[]): Promise<Command> {
  const cli = new Command('gmemlab')
    .description('Run guest_memfd scenarios on any architecture backend and compare them side by side.')
    .addHelpText('after', `\n${EXIT_CODES}`)
    .version(VERSION)
    .showHelpAfterError('(gmemlab <command> --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .exitOverride();
  const named = COMMANDS.find(([name]) => name === argv?.[0]);
  for (const [, load] of named ? [named] : COMMANDS) (await load())(cli);
  return cli;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await (await program(argv)).parseAsync(argv as string[], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed its message (help, version, or a usage error).
      return error.exitCode === 0 ? 0 : 2;
    }
    // A scenario file, a backend or config, a usage error, a scenario the oracle cannot run.
    if (error instanceof InputError) {
      process.stderr.write(`gmemlab: ${error.message}\n`);
      return 2;
    }
    const e = error as NodeJS.ErrnoException;
    if (e && typeof e.code === 'string' && typeof e.path === 'string') {
      process.stderr.write(`gmemlab: ${e.path}: ${e.code === 'ENOENT' ? 'no such file or folder' : e.code}\n`);
      return 2;
    }
    process.stderr.write(
      `gmemlab: internal error: ${e instanceof Error ? e.message : String(e)}${process.env.GMEMLAB_DEBUG ? `\n${e?.stack ?? ''}` : ' (GMEMLAB_DEBUG=1 shows the stack; please report it)'}\n`,
    );
    return 3;
  }
}
