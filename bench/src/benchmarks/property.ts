/**
 * Benchmark 5: property-test calls per second (the explorer's states per second: explorer.ts).
 *
 * The property tests run from tests/property (calls.ts, through vitest, as `pnpm test` and `pnpm fuzz` run them)
 * for a time budget: each call with its argument generation, the snapshot before it and the checks after it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkRate, type BenchResult } from '../rows.js';

export function runPropertyThroughput(budgetSeconds: number): BenchResult {
  const problems: string[] = [];
  const out = join(tmpdir(), `gmemlab-bench-property-${process.pid}.json`);
  const tests = fileURLToPath(new URL('../../tests/', import.meta.url));
  const env = { ...process.env, GMEMLAB_BENCH_BUDGET: String(budgetSeconds), GMEMLAB_BENCH_OUT: out };
  const run = spawnSync('pnpm', ['exec', 'vitest', 'run', '--config', 'vitest.throughput.config.ts'], {
    cwd: tests,
    env,
    encoding: 'utf8',
  });
  if (!existsSync(out)) {
    problems.push(
      `property tests: no result (vitest exited with ${run.status}): ${(run.stderr || run.stdout || '').split('\n').slice(-12).join('\n')}`,
    );
    return { rows: [{ name: 'property tests', value: null, unit: 'calls/s', note: 'did not run' }], problems };
  }
  const result = JSON.parse(readFileSync(out, 'utf8')) as {
    calls: number;
    seconds: number;
    sequences: number;
    configurations: number;
    failures: string[];
  };
  rmSync(out, { force: true });
  for (const failure of result.failures) problems.push(`property tests: ${failure}`);
  if (run.status !== 0 && result.failures.length === 0)
    problems.push(`property tests: vitest exited with ${run.status}`);
  const rate = checkRate('property tests', result.calls / result.seconds, problems);
  return {
    rows: [
      {
        name: 'property tests',
        value: Math.round(rate),
        unit: 'calls/s',
        note: `${result.calls.toLocaleString('en-US')} calls in ${result.sequences.toLocaleString('en-US')} sequences, ${result.seconds.toFixed(1)} s, ${result.configurations} configurations (both modes, every backend)`,
      },
    ],
    problems,
  };
}
