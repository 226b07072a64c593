/** `gmemlab serve`: the web view on the loopback interface, until SIGINT or SIGTERM. */
import { Option, type Command } from 'commander';
import { UsageError } from '../cli-support.js';
import { loadAll } from '../library.js';
import { loadScenario } from '../scenario/load.js';
import { LOOPBACK, MAX_RUNS, startServer, type RunningServer } from '../serve/server.js';
import { webBundle } from '../web-bundle.js';
import { backendsFor, configOption } from './options.js';

export interface ServeCommandOptions {
  port: string;
  maxRuns: string;
  config?: string;
  host?: string;
}

export async function serveCommand(files: string[], options: ServeCommandOptions): Promise<void> {
  if (options.host !== undefined)
    throw new UsageError(
      `--host: gmemlab serve binds ${LOOPBACK} only (the page runs scenarios on request; it is not meant for a network); reach it from elsewhere through an SSH tunnel`,
    );
  if (!/^\d{1,5}$/.test(options.port) || Number(options.port) > 65535)
    throw new UsageError(`--port: '${options.port}' is not a port number (0-65535; 0 picks a free one)`);
  if (!/^[1-9]\d{0,6}$/.test(options.maxRuns))
    throw new UsageError(`--max-runs: '${options.maxRuns}' is not a whole number from 1 to 9999999`);
  const scenarios = [...loadAll([]), ...files.map((f) => loadScenario(f))];
  const ids = new Map<string, string>();
  for (const s of scenarios) {
    if (ids.has(s.id))
      throw new UsageError(`${s.file}: its id '${s.id}' is already taken by ${ids.get(s.id)}; rename the file`);
    ids.set(s.id, s.file);
  }
  const backends = await backendsFor(options);
  let server: RunningServer;
  try {
    server = await startServer({
      port: Number(options.port),
      scenarios,
      backends,
      script: webBundle(),
      maxRuns: Number(options.maxRuns),
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new UsageError(
        `--port ${options.port}: the port is in use on ${LOOPBACK} (choose another, or --port 0 for a free one)`,
      );
    if (code === 'EACCES')
      throw new UsageError(
        `--port ${options.port}: not allowed to listen there (ports below 1024 need privileges; try --port 0)`,
      );
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
}

export function register(cli: Command): void {
  cli
    .command('serve')
    .description(
      `the web view on http://${LOOPBACK}:PORT/ (loopback only): choose scenarios and architectures, run, scrub through each step's page maps`,
    )
    .argument(
      '[scenario...]',
      'scenario files to offer beside the built-in library (read once, at start; the page chooses among them by id)',
    )
    .addOption(new Option('-p, --port <n>', 'TCP port on 127.0.0.1; 0 picks a free one').default('8470'))
    .addOption(
      new Option(
        '--max-runs <n>',
        'the most runs (scenarios × architectures × designs) one comparison request may ask for',
      ).default(String(MAX_RUNS)),
    )
    .addOption(configOption())
    .addOption(new Option('--host <address>').hideHelp())
    .action(serveCommand);
}
