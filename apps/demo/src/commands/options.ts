/** The options several commands take, written once: --format, --arch, --config, --max-steps; and the loader call. */
import { InvalidArgumentError, Option } from 'commander';
import { DEFAULT_ARCHS, loadBackends, type BackendSet } from '../backends.js';
import { FORMATS, type Format } from '../format/common.js';
import { DEFAULT_MAX_STEPS } from '../scenario/limits.js';

export const formatOption = (fallback: Format) =>
  new Option('-f, --format <format>', 'output format').choices(FORMATS).default(fallback);
export const archOption = () =>
  new Option('-a, --arch <ids>', `backend ids, a comma list, or 'all' (default: ${DEFAULT_ARCHS.join(',')})`);
export const configOption = () =>
  new Option(
    '-c, --config <file>',
    'a gmemlab.config.json listing more backends (default: ./gmemlab.config.json if present)',
  );

/** --max-steps: the most calls one scenario may make, repeats multiplied out; checked before anything runs. */
export const maxStepsOption = () =>
  new Option(
    '--max-steps <n>',
    `the most calls one scenario may make, repeats multiplied out (checked before anything runs)`,
  )
    .default(DEFAULT_MAX_STEPS)
    .argParser((value: string) => {
      if (!/^\d{1,12}$/.test(value) || Number(value) < 1)
        throw new InvalidArgumentError(`'${value}' is not a whole number of calls (1 or more)`);
      return Number(value);
    });

/** The backends, from --config or ./gmemlab.config.json. */
export async function backendsFor(options: { config?: string }): Promise<BackendSet> {
  return loadBackends(options.config !== undefined ? { config: options.config } : {});
}
