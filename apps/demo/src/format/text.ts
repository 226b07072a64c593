/**
 * Plain layouts: 'text' is ASCII only, no colour, lines kept short enough for a mailing-list post; 'table' is the
 * same with colour on a terminal (never with NO_COLOR or when piped).
 */
import { styleText } from 'node:util';
import type { Comparison, RunResult } from '../run/types.js';
import { effectLines, matrixOf, summaryLine } from './common.js';

export interface Style {
  bold(s: string): string;
  dim(s: string): string;
  bad(s: string): string;
  good(s: string): string;
  warn(s: string): string;
}

const plain: Style = { bold: (s) => s, dim: (s) => s, bad: (s) => s, good: (s) => s, warn: (s) => s };
const coloured: Style = {
  bold: (s) => styleText('bold', s),
  dim: (s) => styleText('dim', s),
  bad: (s) => styleText('red', s),
  good: (s) => styleText('green', s),
  warn: (s) => styleText('yellow', s),
};

/** Colour only on a TTY, and never with NO_COLOR set (https://no-color.org). */
export function styleFor(stream: NodeJS.WriteStream, format: string): Style {
  const wanted = format === 'table' && stream.isTTY === true && !('NO_COLOR' in process.env && process.env.NO_COLOR !== '');
  return wanted ? coloured : plain;
}

/** Non-ASCII characters (from scenario titles and notes) replaced, so text survives any mail client. */
const ascii = (s: string) => s.replace(/[\u2018\u2019]/g, "'").replace(/[\u201c\u201d]/g, '"').replace(/[\u2013\u2014]/g, '-').replace(/\u00a7/g, 'S').replace(/[^\x09\x0a\x20-\x7e]/g, '?');

function pad(cells: string[][], style: Style, marks?: boolean[]): string[] {
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((row, r) => {
    const line = row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
    return marks?.[r] ? style.warn(line) : line;
  });
}

export function renderRunText(runs: readonly RunResult[], style: Style = plain): string {
  const out: string[] = [];
  for (const run of runs) {
    out.push(style.bold(`== ${run.scenario.id} on ${run.arch} (${run.archName}), contract ${run.contract}`));
    out.push(`   ${run.scenario.title}`);
    if (run.skipped) {
      out.push(`   not run: ${run.skipped}`, '');
      continue;
    }
    for (const step of run.steps) {
      const head = `[${step.path}] ${step.call}${step.on && step.on !== step.call.split('.')[0] ? ` on ${step.on}` : ''}${step.times !== undefined ? ` x${step.times}` : ''} ${step.args}${step.as ? ` -> ${step.as}` : ''}`;
      out.push(head.trimEnd());
      if (step.note) out.push(style.dim(`     # ${step.note}`));
      const got = step.outcomes ? Object.entries(step.outcomes).map(([l, n]) => `${l} x${n}`).join(', ') : step.label;
      const verdict = step.verdict === 'pass' ? style.good('PASS') : step.verdict === 'fail' ? style.bad('FAIL') : '';
      out.push(`     = ${got}${step.result.kind === 'ok' && step.result.value ? ` (${step.result.value})` : ''}${step.expected !== undefined ? `   expected: ${step.expected}` : ''}${verdict ? `   ${verdict}` : ''}`);
      if (step.failure) out.push(style.bad(`     ! ${step.failure}`));
      for (const line of effectLines(step)) out.push(`     ${line}`);
      for (const v of step.violations) out.push(style.bad(`     VIOLATION ${v.kind}: ${v.message}`));
      if (step.crash) out.push(style.bad(`     HOST CRASHED: ${step.crash.fault} (${step.crash.mechanism}) by ${step.crash.by} via ${step.crash.via}; every later call fails`));
    }
    const counters = Object.entries(run.counters);
    out.push(`   result: ${run.ok ? style.good('every expectation held') : style.bad(`${run.failures} step(s) failed`)}; violations: ${run.violationKinds.join(', ') || 'none'}${run.crashed ? '; the host crashed' : ''}`);
    // A count that is an upper bound says so: "at most".
    if (counters.length > 0) out.push(`   firmware/hypervisor steps in total: ${counters.map(([k, v]) => `${k} x${run.bounds?.[k] === 'upper' ? `${v} (at most)` : v}`).join(', ')}`);
    out.push('');
  }
  return style === plain ? ascii(out.join('\n')) : out.join('\n');
}

/** The matrix of a comparison: per scenario, steps in rows, arch x contract in columns, '*' where architectures differ. */
export function renderCompareText(comparison: Comparison, style: Style = plain, maxWidth = 160): string {
  const out: string[] = [];
  for (const info of comparison.scenarios) {
    const m = matrixOf(comparison, info.id);
    out.push(style.bold(`== ${info.id}: ${info.title}`));
    out.push(...wrap(info.situation, 100).map((l) => `   ${l}`));
    out.push(...wrap(`source: ${info.source.join('; ')}`, 100).map((l) => `   ${l}`));
    // Columns in contract blocks; a block per contract when all of them do not fit.
    const header = (cols: typeof m.columns) => [' ', 'step', ...cols.map((c) => `${c.arch}/${c.contract}`)];
    // '*' where architectures differ under a contract shown in this block.
    const block = (cols: typeof m.columns, indexes: number[]) => {
      const shown = new Set(cols.map((c) => c.contract));
      const marks = m.rows.map((r) => r.differsIn.some((c) => shown.has(c)));
      const cells = [header(cols), ...m.rows.map((r, k) => [marks[k] ? '*' : ' ', `${r.path} ${r.call}`, ...indexes.map((i) => r.cells[i]!)])];
      return pad(cells, style, [false, ...marks]);
    };
    const all = m.columns.map((_, i) => i);
    const lines = block(m.columns, all);
    const contracts = [...new Set(m.columns.map((c) => c.contract))];
    if (Math.max(...lines.map((l) => l.length)) <= maxWidth || contracts.length === 1) out.push(...lines.map((l) => `  ${l}`));
    else {
      for (const contract of contracts) {
        const idx = all.filter((i) => m.columns[i]!.contract === contract);
        out.push(`  contract ${contract}:`);
        out.push(...block(idx.map((i) => m.columns[i]!), idx).map((l) => `  ${l}`));
      }
    }
    if (m.hidden > 0) out.push(style.dim(`  (${m.hidden} set-up step(s) that succeed everywhere are not shown; '*' marks rows where architectures differ; '!' a failed expectation)`));
    for (const s of m.skipped) out.push(style.dim(`  ${s.column}: not run (${s.reason})`));
    for (const v of m.violations) out.push(`  violation ${v.column} step ${v.path}: ${v.kind}: ${v.message}`);
    for (const c of m.crashes) out.push(style.bad(`  host crash ${c.column} step ${c.path}: ${c.text}`));
    for (const f of m.failures) out.push(style.bad(`  FAIL ${f.column} step ${f.path} ${f.call}: ${f.failure}`));
    out.push('');
  }
  out.push(summaryLine(comparison));
  return style === plain ? ascii(out.join('\n')) : out.join('\n');
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + word.length + 1 > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}
