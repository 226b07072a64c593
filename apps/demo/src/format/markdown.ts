/** Markdown that pastes into an issue or a review: one table per scenario, a details block per run timeline. */
import type { Comparison, RunResult } from '../run/types.js';
import { effectLines, matrixOf, summaryLine } from './common.js';

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function renderCompareMarkdown(comparison: Comparison): string {
  const out: string[] = [];
  for (const info of comparison.scenarios) {
    const m = matrixOf(comparison, info.id);
    out.push(`### ${cell(info.title)}`, '', info.situation, '', `Source: ${info.source.join('; ')}${info.file ? ` — \`${info.file}\`` : ''}`, '');
    out.push(`| | step | ${m.columns.map((c) => `${c.arch}<br>${c.contract}`).join(' | ')} |`);
    out.push(`|---|---|${m.columns.map(() => '---').join('|')}|`);
    for (const r of m.rows) out.push(`| ${r.differs ? '**≠**' : ''} | ${r.path} \`${r.call}\` | ${r.cells.map((c) => (c.endsWith(' !') ? `**${cell(c)}**` : cell(c))).join(' | ')} |`);
    out.push('');
    if (m.hidden > 0) out.push(`_${m.hidden} set-up step(s) that succeed everywhere are not shown; ≠ marks rows where architectures differ; ! a failed expectation._`, '');
    for (const s of m.skipped) out.push(`- ${s.column}: not run (${s.reason})`);
    for (const v of m.violations) out.push(`- violation **${v.kind}** in ${v.column}, step ${v.path}: ${cell(v.message)}`);
    for (const c of m.crashes) out.push(`- host crash in ${c.column}, step ${c.path}: ${c.text}`);
    for (const f of m.failures) out.push(`- **FAIL** ${f.column}, step ${f.path} \`${f.call}\`: ${cell(f.failure)}`);
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
      const got = s.outcomes ? Object.entries(s.outcomes).map(([l, n]) => `${l} ×${n}`).join(', ') : s.label;
      const effects = [...effectLines(s), ...s.violations.map((v) => `**violation ${v.kind}**: ${v.message}`), ...(s.crash ? [`**host crashed**: ${s.crash.mechanism}`] : [])];
      out.push(`| ${s.path} | \`${s.call}\` ${cell(s.args)} | ${s.verdict === 'fail' ? `**${cell(got)}**` : cell(got)} | ${cell(s.expected ?? '')}${s.verdict === 'fail' ? ` — ${cell(s.failure ?? '')}` : ''} | ${effects.map(cell).join('<br>')} |`);
    }
    out.push('', `Result: ${run.ok ? 'every expectation held' : `${run.failures} step(s) failed`}; violations: ${run.violationKinds.join(', ') || 'none'}.`, '');
  }
  return out.join('\n');
}
