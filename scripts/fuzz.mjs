#!/usr/bin/env node
/**
 * `pnpm fuzz [--budget <seconds>] [--seed <n>]`: the property tests (tests/property) for a time budget (default
 * 60 s) instead of a fixed count, in both contract modes with the neutral backend and every backend package,
 * with event listeners that throw at random points. Reports calls per second and any escape or invariant break
 * as a shrunk sequence. Not run by CI (`pnpm test` runs the fixed ~100k-call property tests).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const usage = 'usage: pnpm fuzz [--budget <seconds>] [--seed <n>]';
const args = process.argv.slice(2);
let budget = 60;
let seed;
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  const [flag, inline] = arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, undefined];
  const next = () => {
    const value = inline ?? args[++i];
    if (value === undefined) fail(`${flag} needs a value`);
    return value;
  };
  if (flag === '--help' || flag === '-h') {
    console.log(usage);
    process.exit(0);
  } else if (flag === '--budget') {
    budget = Number(next());
    if (!Number.isFinite(budget) || budget <= 0) fail(`--budget must be a positive number of seconds`);
  } else if (flag === '--seed') {
    seed = Number(next());
    if (!Number.isInteger(seed) || seed < 0) fail('--seed must be a non-negative integer');
  } else if (arg !== '--') {
    fail(`unknown argument ${arg}`);
  }
}

function fail(message) {
  console.error(`fuzz: ${message}\n${usage}`);
  process.exit(2);
}

const tests = fileURLToPath(new URL('../tests/', import.meta.url));
const env = {
  ...process.env,
  GMEMLAB_FUZZ_BUDGET: String(budget),
  ...(seed === undefined ? {} : { GMEMLAB_FUZZ_SEED: String(seed) }),
};
const result = spawnSync('pnpm', ['exec', 'vitest', 'run', '--config', 'vitest.fuzz.config.ts'], {
  cwd: tests,
  env,
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
