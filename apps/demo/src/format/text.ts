/**
 * Plain layouts: 'text' is ASCII only, no colour, lines kept short enough for a mailing-list post; 'table' is the
 * same with colour on a terminal (never with NO_COLOR or when piped).
 */
import { styleText } from 'node:util';
import type { Comparison, RunResult } from '../run/types.js';
import { costText, COST_LEGEND, OUTCOME_TEXT, OUTCOMES, verdictMatrix, type VerdictCell } from '../run/verdict.js';
import { effectLines, failureLine, matrixOf, summaryLine, violationLine } from './common.js';

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
  const wanted =
    format === 'table' && stream.isTTY === true && !('NO_COLOR' in process.env && process.env.NO_COLOR !== '');
  return wanted ? coloured : plain;
}

/** Non-ASCII characters (from scenario titles and notes) replaced, so text survives any mail client. */
const ascii = (s: string) =>
  s
    .replace(/[\u2018\u2019]/g, "'")
    .replace(/[\u201c\u201d]/g, '"')
    .replace(/[\u2013\u2014]/g, '-')
    .replace(/\u00a7/g, 'S')
    .replace(/[^\x09\x0a\x20-\x7e]/g, '?');

function pad(cells: string[][], style: Style, marks?: boolean[]): string[] {
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((row, r) => {
    const line = row
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
    return marks?.[r] ? style.warn(line) : line;
  });
}

export function renderRunText(runs: readonly RunResult[], style: Style = plain, comparison?: Comparison): string {
  const out: string[] = [];
  if (comparison) {
    out.push(
      style.bold(
        `Verdict: '${comparison.scenarios.map((sc) => sc.id).join("', '")}' on each architecture under each design`,
      ),
      `  ${outcomeLegend()}`,
    );
    out.push(
      ...verdictText(comparison, style, { full: true }).map((l) => `  ${l}`),
      ...wrap(`cell: outcome @step that decided it; ${COST_LEGEND}`, 96).map((l) => style.dim(`  ${l}`)),
      '',
    );
  }
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
      const got = step.outcomes
        ? Object.entries(step.outcomes)
            .map(([l, n]) => `${l} x${n}`)
            .join(', ')
        : step.label;
      const verdict = step.verdict === 'pass' ? style.good('PASS') : step.verdict === 'fail' ? style.bad('FAIL') : '';
      const verdictMark =
        step.outcome && step.outcome !== 'safe'
          ? `   [${OUTCOME_TEXT[step.outcome].symbol} ${OUTCOME_TEXT[step.outcome].long}]`
          : '';
      out.push(
        `     = ${got}${step.result.kind === 'ok' && step.result.value ? ` (${step.result.value})` : ''}${verdictMark}${step.expected !== undefined ? `   expected: ${step.expected}` : ''}${verdict ? `   ${verdict}` : ''}`,
      );
      if (step.failure) out.push(style.bad(`     ! ${step.failure}`));
      for (const line of effectLines(step, run.bounds)) out.push(`     ${line}`);
      for (const v of step.violations) out.push(style.bad(`     VIOLATION ${v.kind}: ${v.message}`));
      if (step.crash)
        out.push(
          style.bad(
            `     HOST CRASHED: ${step.crash.fault} (${step.crash.mechanism}) by ${step.crash.by} via ${step.crash.via}; every later call fails`,
          ),
        );
    }
    const counters = Object.entries(run.counters);
    out.push(
      `   result: ${run.ok ? style.good('every expectation held') : style.bad(`${run.failures} step(s) failed`)}; violations: ${run.violationKinds.join(', ') || 'none'}${run.crashed ? '; the host crashed' : ''}`,
    );
    // A count that is an upper bound says so: "at most".
    if (counters.length > 0)
      out.push(
        `   firmware/hypervisor steps in total: ${counters.map(([k, v]) => `${k} x${run.bounds?.[k] === 'upper' ? `${v} (at most)` : v}`).join(', ')}`,
      );
    out.push('');
  }
  return style === plain ? ascii(out.join('\n')) : out.join('\n');
}

/** The outcome legend, worst last: '. safe < ~ contained fault < # IOMMU fault < ! stale DMA reached another owner < X host crash'. */
export const outcomeLegend = (): string =>
  OUTCOMES.map((o) => `${OUTCOME_TEXT[o].symbol} ${OUTCOME_TEXT[o].long}`).join(' < ');

const cellHead = (c: VerdictCell | undefined, ref: (c: VerdictCell) => string) =>
  c
    ? `${OUTCOME_TEXT[c.outcome].symbol} ${OUTCOME_TEXT[c.outcome].short}${c.path !== undefined ? ` ${ref(c)}` : ''}`
    : '-';

/**
 * The verdict matrix: rows architectures, columns designs, each cell the worst outcome over the scenarios run with
 * the scenario and step that decided it; `full` adds the cost line under each row. Built to fit 100 columns for
 * the built-in library (scenarios are numbered, the numbers listed below the matrix).
 */
export function verdictText(
  comparison: Comparison,
  style: Style,
  options: { scenarioId?: string; full: boolean },
): string[] {
  const m = verdictMatrix(comparison, options.scenarioId);
  const number = new Map(comparison.scenarios.map((sc, i) => [sc.id, `S${i + 1}`]));
  const one = options.scenarioId !== undefined || comparison.scenarios.length === 1;
  const ref = (c: VerdictCell) => (one ? `@${c.path}` : `${number.get(c.scenario!)}@${c.path}`);
  const rows: string[][] = [['', ...m.contracts]];
  const marks: boolean[] = [false];
  for (const r of m.rows) {
    rows.push([r.arch, ...r.cells.map((c) => cellHead(c, ref))]);
    marks.push(false);
    if (options.full) {
      rows.push([
        '',
        ...r.cells.map((c) => (c ? `  ${costText(c.cost)}${c.failed > 0 ? ` FAIL ${c.failed}` : ''}` : '')),
      ]);
      marks.push(false);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const colour = (text: string, cell: VerdictCell | undefined) => {
    if (!cell) return text;
    return cell.outcome === 'safe'
      ? style.good(text)
      : cell.outcome === 'host-crash' || cell.outcome === 'stale-reach'
        ? style.bad(text)
        : style.warn(text);
  };
  const out: string[] = [];
  let k = 0;
  for (const r of rows) {
    const row = k === 0 ? undefined : m.rows[options.full ? Math.floor((k - 1) / 2) : k - 1];
    const head = options.full ? (k - 1) % 2 === 0 : true;
    out.push(
      r
        .map((c, i) => {
          const text = c.padEnd(widths[i]!);
          return i === 0 ? style.bold(text) : row && head ? colour(text, row.cells[i - 1]) : text;
        })
        .join('  ')
        .trimEnd(),
    );
    k++;
  }
  return out;
}

/**
 * `compare` as text: the verdict matrix first (with a cost line per row and the scenario numbers), then per scenario
 * the same matrix in small, its violations grouped (one line per kind, area and range, with a count) and its failed
 * expectations grouped; with `details`, each scenario's step table follows (steps in rows, architecture x design in
 * columns, '*' where architectures differ).
 */
export function renderCompareText(
  comparison: Comparison,
  style: Style = plain,
  options: { details?: boolean; maxWidth?: number } = {},
): string {
  const maxWidth = options.maxWidth ?? 160;
  const out: string[] = [];
  const n = comparison.scenarios.length;
  out.push(
    style.bold(
      `Verdict: the worst outcome of each architecture under each design, over ${n === 1 ? `'${comparison.scenarios[0]!.id}'` : `${n} scenarios`}`,
    ),
  );
  out.push(`  ${outcomeLegend()}`);
  out.push(...verdictText(comparison, style, { full: true }).map((l) => `  ${l}`));
  out.push(
    ...wrap(`cell: outcome ${n === 1 ? '@step' : 'S<scenario>@step'} that decided it; ${COST_LEGEND}`, 96).map((l) =>
      style.dim(`  ${l}`),
    ),
  );
  if (n > 1) {
    const names = comparison.scenarios.map((sc, i) => `S${i + 1} ${sc.id}`);
    const lines: string[] = [];
    let line = '';
    for (const name of names) {
      if (line && line.length + name.length + 3 > 98) {
        lines.push(line);
        line = name;
      } else line = line ? `${line}   ${name}` : name;
    }
    if (line) lines.push(line);
    out.push(...lines.map((l) => style.dim(`  ${l}`)));
  }
  out.push('');
  for (const info of comparison.scenarios) {
    const m = matrixOf(comparison, info.id);
    out.push(...wrap(`== ${info.id}: ${info.title}`, 98).map((l, i) => style.bold(i === 0 ? l : `   ${l}`)));
    if (options.details) {
      out.push(...wrap(info.situation, 100).map((l) => `   ${l}`));
      out.push(...wrap(`source: ${info.source.join('; ')}`, 100).map((l) => `   ${l}`));
    }
    if (n > 1) out.push(...verdictText(comparison, style, { scenarioId: info.id, full: false }).map((l) => `  ${l}`));
    if (options.details) {
      // Columns in design blocks; a block per design when all of them do not fit.
      const header = (cols: typeof m.columns) => [' ', 'step', ...cols.map((c) => `${c.arch}/${c.contract}`)];
      const block = (cols: typeof m.columns, indexes: number[]) => {
        const shown = new Set(cols.map((c) => c.contract));
        const marks = m.rows.map((r) => r.differsIn.some((c) => shown.has(c)));
        const cells = [
          header(cols),
          ...m.rows.map((r, k) => [marks[k] ? '*' : ' ', `${r.path} ${r.call}`, ...indexes.map((i) => r.cells[i]!)]),
        ];
        return pad(cells, style, [false, ...marks]);
      };
      const all = m.columns.map((_, i) => i);
      const lines = block(m.columns, all);
      const contracts = [...new Set(m.columns.map((c) => c.contract))];
      if (Math.max(...lines.map((l) => l.length)) <= maxWidth || contracts.length === 1)
        out.push(...lines.map((l) => `  ${l}`));
      else {
        for (const contract of contracts) {
          const idx = all.filter((i) => m.columns[i]!.contract === contract);
          out.push(`  design ${contract}:`);
          out.push(
            ...block(
              idx.map((i) => m.columns[i]!),
              idx,
            ).map((l) => `  ${l}`),
          );
        }
      }
      if (m.hidden > 0)
        out.push(
          style.dim(
            `  (${m.hidden} set-up step(s) that succeed everywhere are not shown; '*' marks rows where architectures differ; '!' a failed expectation)`,
          ),
        );
    }
    // One line each, wrapped with a hanging indent to stay within 100 columns.
    const hang = (text: string) => wrap(text, 92).map((l, i) => (i === 0 ? `  ${l}` : `      ${l}`));
    for (const c of m.crashes) out.push(...hang(`host crash ${c.column} step ${c.path}: ${c.text}`).map(style.bad));
    for (const g of m.violationGroups) out.push(...hang(`violation ${violationLine(g)}`));
    for (const g of m.failureGroups) out.push(...hang(`FAIL ${failureLine(g)}`).map(style.bad));
    out.push('');
  }
  if (!options.details)
    out.push(style.dim("(each scenario's step table: --details; one run's timeline: gmemlab run <scenario>)"));
  out.push(...wrap(summaryLine(comparison), 100));
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
