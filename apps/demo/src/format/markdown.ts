/** Markdown that pastes into an issue or a review: one table per scenario, a details block per run timeline. */
import type { Comparison, RunResult } from '../run/types.js';
import { costText, COST_LEGEND, OUTCOME_TEXT, OUTCOMES, verdictMatrix, type VerdictCell } from '../run/verdict.js';
import { effectLines, failureLine, matrixOf, summaryLine, violationLine } from './common.js';

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

const legend = () => OUTCOMES.map((o) => `${OUTCOME_TEXT[o].glyph} ${OUTCOME_TEXT[o].long}`).join(' < ');

/** The verdict matrix as a markdown table: rows architectures, columns designs. */
function verdictTable(comparison: Comparison, scenarioId?: string): string[] {
  const m = verdictMatrix(comparison, scenarioId);
  const text = (c: VerdictCell | undefined) => {
    if (!c) return '–';
    const where =
      c.path === undefined ? '' : scenarioId === undefined ? ` — ${c.scenario} step ${c.path}` : ` — step ${c.path}`;
    const cost =
      scenarioId === undefined ? `<br>${costText(c.cost)}${c.failed > 0 ? ` **FAIL ${c.failed}**` : ''}` : '';
    return `${OUTCOME_TEXT[c.outcome].glyph} ${OUTCOME_TEXT[c.outcome].short}${where}${cost}`;
  };
  return [
    `| | ${m.contracts.join(' | ')} |`,
    `|---|${m.contracts.map(() => '---').join('|')}|`,
    ...m.rows.map((r) => `| **${r.arch}** | ${r.cells.map(text).join(' | ')} |`),
  ];
}

/** A file name for a report: the base name unless the caller asks for the full path. */
export const shownFile = (file: string, fullPaths = false): string => (fullPaths ? file : file.replace(/^.*[\\/]/, ''));

export function renderCompareMarkdown(comparison: Comparison, options: { fullPaths?: boolean } = {}): string {
  const out: string[] = [];
  out.push(
    '## Verdict',
    '',
    `The worst outcome of each architecture under each design over ${comparison.scenarios.length} scenario(s), and the scenario and step that decided it. ${legend()}.`,
    '',
  );
  out.push(...verdictTable(comparison), '', `_${COST_LEGEND}._`, '');
  for (const info of comparison.scenarios) {
    const m = matrixOf(comparison, info.id);
    out.push(
      `### ${cell(info.title)}`,
      '',
      info.situation,
      '',
      `Source: ${info.source.join('; ')}${info.file ? ` — \`${shownFile(info.file, options.fullPaths)}\`` : ''}`,
      '',
    );
    if (comparison.scenarios.length > 1) out.push(...verdictTable(comparison, info.id), '');
    out.push(`| | step | ${m.columns.map((c) => `${c.arch}<br>${c.contract}`).join(' | ')} |`);
    out.push(`|---|---|${m.columns.map(() => '---').join('|')}|`);
    for (const r of m.rows)
      out.push(
        `| ${r.differs ? '**≠**' : ''} | ${r.path} \`${r.call}\` | ${r.cells.map((c) => (c.endsWith(' !') ? `**${cell(c)}**` : cell(c))).join(' | ')} |`,
      );
    out.push('');
    if (m.hidden > 0)
      out.push(
        `_${m.hidden} set-up step(s) that succeed everywhere are not shown; ≠ marks rows where architectures differ; ! a failed expectation._`,
        '',
      );
    for (const s of m.skipped) out.push(`- ${s.column}: not run (${s.reason})`);
    for (const c of m.crashes) out.push(`- host crash in ${c.column}, step ${c.path}: ${c.text}`);
    for (const g of m.violationGroups) out.push(`- violation ${cell(violationLine(g))}`);
    for (const g of m.failureGroups) out.push(`- **FAIL** ${cell(failureLine(g))}`);
    out.push('');
  }
  out.push(summaryLine(comparison), '');
  return out.join('\n');
}

export function renderRunMarkdown(runs: readonly RunResult[]): string {
  const out: string[] = [];
  for (const run of runs) {
    out.push(`### ${cell(run.scenario.title)} — ${run.arch}, ${run.contract}`, '');
    if (run.skipped) {
      out.push(`Not run: ${run.skipped}.`, '');
      continue;
    }
    out.push('| step | call | result | expected | what the kernel did |', '|---|---|---|---|---|');
    for (const s of run.steps) {
      const got = s.outcomes
        ? Object.entries(s.outcomes)
            .map(([l, n]) => `${l} ×${n}`)
            .join(', ')
        : s.label;
      const effects = [
        ...effectLines(s, run.bounds),
        ...s.violations.map((v) => `**violation ${v.kind}**: ${v.message}`),
        ...(s.crash ? [`**host crashed**: ${s.crash.mechanism}`] : []),
      ];
      out.push(
        `| ${s.path} | \`${s.call}\` ${cell(s.args)} | ${s.verdict === 'fail' ? `**${cell(got)}**` : cell(got)} | ${cell(s.expected ?? '')}${s.verdict === 'fail' ? ` — ${cell(s.failure ?? '')}` : ''} | ${effects.map(cell).join('<br>')} |`,
      );
    }
    out.push(
      '',
      `Result: ${run.ok ? 'every expectation held' : `${run.failures} step(s) failed`}; violations: ${run.violationKinds.join(', ') || 'none'}.`,
      '',
    );
  }
  return out.join('\n');
}
