/**
 * `pnpm bench`: gmemlab's benchmarks (issue 11), each in its own process, with the per-4K baselines beside
 * benchmark 1 on 1 GiB. Prints a table with the machine, writes bench-results.json at the repository root
 * (rows { name, value, unit, baseline?, ratio? }), and says which targets are met. It exits non-zero only for a
 * crash or a broken result (an invariant broken after a run, a wrong final state, a rate that is not a number,
 * a property-test failure); a missed target is printed as MISSED and is not an error.
 *
 *   pnpm bench [-- --only <substring>]      e.g. --only 1TiB, --only boot
 *   GMEMLAB_BENCH_CPU_PROF=<dir>            run the children under node --cpu-prof, profiles in <dir>
 */
import { fork } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { arch, cpus, release, totalmem, type } from 'node:os';
import { fileURLToPath } from 'node:url';
import { runAccesses } from './benchmarks/accesses.js';
import { runBootStorm } from './benchmarks/boot-storm.js';
import { conversionName, runConversions, type ConversionConfig } from './benchmarks/conversions.js';
import { runExplorer } from './benchmarks/explorer.js';
import { runPropertyThroughput } from './benchmarks/property.js';
import { runTruncation } from './benchmarks/truncation.js';
import { GiB, TiB, type BenchResult, type Row } from './rows.js';
import { growthRows, judge } from './targets.js';

type ChildJob =
  | { benchmark: 'conversions'; config: ConversionConfig }
  | { benchmark: 'boot-storm' }
  | { benchmark: 'truncation' }
  | { benchmark: 'accesses' }
  | { benchmark: 'explorer' };
interface Job {
  id: string;
  /** Runs in a child process (its own heap and resident memory), or here. */
  child?: ChildJob;
  local?: () => BenchResult;
}

const PROPERTY_BUDGET_S = 8;

function runChildJob(job: ChildJob): BenchResult {
  switch (job.benchmark) {
    case 'conversions':
      return runConversions(job.config);
    case 'boot-storm':
      return runBootStorm();
    case 'truncation':
      return runTruncation();
    case 'accesses':
      return runAccesses();
    case 'explorer':
      return runExplorer();
  }
}

function jobs(): Job[] {
  const list: Job[] = [];
  for (const backend of ['tdx', 'sev-snp'] as const) {
    // The four cases of issue 19 under both designs, with the baselines; 16 and 256 GiB under 'gmem-registry'.
    const configs: ConversionConfig[] = [];
    for (const design of ['gmem-registry', 'mirror'] as const) {
      configs.push(
        { size: GiB, areas: 10_000, backend, design, baselines: true },
        { size: GiB, areas: 1, backend, design, baselines: true },
      );
      if (design === 'gmem-registry')
        configs.push(
          { size: 16 * GiB, areas: 10_000, backend, design, baselines: false },
          { size: 256 * GiB, areas: 10_000, backend, design, baselines: false },
        );
      configs.push(
        { size: TiB, areas: 10_000, backend, design, baselines: true },
        { size: TiB, areas: 1, backend, design, baselines: true },
      );
    }
    for (const config of configs)
      list.push({ id: conversionName(config), child: { benchmark: 'conversions', config } });
  }
  list.push({ id: 'boot storm', child: { benchmark: 'boot-storm' } });
  list.push({ id: 'truncation', child: { benchmark: 'truncation' } });
  list.push({ id: 'accesses', child: { benchmark: 'accesses' } });
  list.push({ id: 'property tests', local: () => runPropertyThroughput(PROPERTY_BUDGET_S) });
  list.push({ id: 'explorer', child: { benchmark: 'explorer' } });
  return list;
}

function inChild(job: ChildJob): Promise<BenchResult> {
  const profile = process.env.GMEMLAB_BENCH_CPU_PROF;
  const execArgv = ['--expose-gc', ...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [])];
  return new Promise((resolve) => {
    let result: BenchResult | undefined;
    const child = fork(fileURLToPath(import.meta.url), ['--child', JSON.stringify(job)], {
      execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('message', (message) => {
      result = message as BenchResult;
    });
    child.on('exit', (code, signal) => {
      if (result) resolve(result);
      else
        resolve({
          rows: [],
          problems: [`${JSON.stringify(job)}: the child process died (${signal ?? `exit ${code}`}) without a result`],
        });
    });
  });
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const padLeft = (s: string, n: number) => (s.length >= n ? s : ' '.repeat(n - s.length) + s);

function formatValue(row: Row): string {
  if (row.value === null) return row.note ?? 'n/a';
  return row.value >= 100 ? Math.round(row.value).toLocaleString('en-US') : String(row.value);
}

function table(rows: readonly Row[]): string {
  const lines = [
    `${pad('benchmark', 58)} ${padLeft('value', 14)} ${pad('unit', 14)} ${pad('baseline', 14)} ${padLeft('ratio', 8)}  note`,
  ];
  lines.push('-'.repeat(lines[0]!.length + 20));
  for (const r of rows) {
    const value = r.value === null ? 'n/a' : formatValue(r);
    lines.push(
      `${pad(r.name, 58)} ${padLeft(value, 14)} ${pad(r.unit, 14)} ${pad(r.baseline ?? '', 14)} ${padLeft(r.ratio === undefined ? '' : `${r.ratio}x`, 8)}  ${r.note ?? ''}`,
    );
  }
  return lines.join('\n');
}

function machine(): string[] {
  const cpu = cpus();
  return [
    `node ${process.version} (${process.platform} ${arch()}), ${type()} ${release()}`,
    `cpu: ${cpu[0]?.model ?? 'unknown'} x ${cpu.length}, memory ${(totalmem() / GiB).toFixed(1)} GiB`,
    `${new Date().toISOString()}; rates are medians of rounds; each benchmark has a time budget and reports the rate it measured in it`,
  ];
}

/** Compare with the previous bench-results.json, if there is one: informational, never a failure. */
function regressions(path: string, rows: readonly Row[]): string[] {
  if (!existsSync(path)) return [];
  let previous: Row[];
  try {
    previous = JSON.parse(readFileSync(path, 'utf8')) as Row[];
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const row of rows) {
    const before = previous.find((p) => p.name === row.name && p.unit === row.unit);
    if (!before || typeof before.value !== 'number' || row.value === null || before.value <= 0) continue;
    const slower = row.unit.endsWith('/s')
      ? row.value < before.value / 2
      : row.unit === 'MB' || row.unit === 'x'
        ? row.value > before.value * 1.5
        : false;
    if (slower)
      out.push(`  ${row.name}: ${formatValue(row)} ${row.unit}, previous run ${formatValue(before)} ${before.unit}`);
  }
  return out;
}

async function main(): Promise<void> {
  const started = performance.now();
  const onlyAt = process.argv.indexOf('--only');
  const only = onlyAt >= 0 ? process.argv[onlyAt + 1] : undefined;
  console.log(machine().join('\n'));
  const rows: Row[] = [];
  const problems: string[] = [];
  for (const job of jobs()) {
    if (only !== undefined && !job.id.includes(only)) continue;
    const t = performance.now();
    process.stdout.write(`${pad(job.id, 40)} `);
    let result: BenchResult;
    try {
      result = job.child ? await inChild(job.child) : job.local!();
    } catch (error) {
      result = {
        rows: [],
        problems: [`${job.id}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`],
      };
    }
    rows.push(...result.rows);
    problems.push(...result.problems);
    const main = result.rows[0];
    const shown =
      main === undefined ? '' : main.value === null ? (main.note ?? 'n/a') : `${formatValue(main)} ${main.unit}`;
    console.log(
      `${((performance.now() - t) / 1000).toFixed(1).padStart(5)} s  ${shown}${result.problems.length ? '  BROKEN' : ''}`,
    );
  }
  rows.push(...growthRows(rows));
  console.log(`\n${table(rows)}\n`);

  const verdicts = judge(rows);
  if (only === undefined || verdicts.some((v) => v.status !== 'not measured')) {
    console.log('targets:');
    for (const v of verdicts)
      if (only === undefined || v.status !== 'not measured')
        console.log(`  ${pad(v.status, 12)} ${pad(v.target, 72)} ${v.detail}`);
  }

  const path = fileURLToPath(new URL('../../bench-results.json', import.meta.url));
  const changed = regressions(path, rows);
  if (changed.length > 0)
    console.log(
      `\nmuch slower or larger than the previous bench-results.json (informational; the machine is shared):\n${changed.join('\n')}`,
    );
  if (only === undefined) {
    const json = rows.map(({ name, value, unit, baseline, ratio }) => ({
      name,
      value,
      unit,
      ...(baseline === undefined ? {} : { baseline }),
      ...(ratio === undefined ? {} : { ratio }),
    }));
    writeFileSync(path, `${JSON.stringify(json, null, 2)}\n`);
    console.log(`\nwrote ${path}`);
  }
  console.log(`pnpm bench: ${((performance.now() - started) / 1000).toFixed(0)} s`);
  if (problems.length > 0) {
    console.error(`\nBROKEN RESULTS (${problems.length}):\n${problems.map((p) => `  ${p}`).join('\n')}`);
    process.exitCode = 1;
  }
}

if (process.argv[2] === '--child') {
  const job = JSON.parse(process.argv[3]!) as ChildJob;
  let result: BenchResult;
  try {
    result = runChildJob(job);
  } catch (error) {
    result = {
      rows: [],
      problems: [`${JSON.stringify(job)}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`],
    };
  }
  process.send!(result, () => process.exit(0));
} else {
  await main();
}
