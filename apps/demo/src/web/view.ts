/**
 * The comparison on the page: a tab per scenario; in each, one lane per architecture x contract with a cell per
 * step (the outcome, faults, MEMORY_FAULT exits, invariant violations and host crashes marked; steps where the
 * architectures differ underlined), and at the step chosen with the scrubber each lane's outcome, effects and a
 * page map of every guest_memfd. Lanes and cells carry stable data attributes (data-lane="tdx/vmm-driven",
 * data-step="12", data-label="machine-check FATAL") for tests and scripts.
 */
import { effectLines } from '../format/common.js';
import type { Comparison } from '../run/types.js';
import {
  costText,
  COST_LEGEND,
  OUTCOME_TEXT,
  OUTCOMES,
  verdictMatrix,
  type Outcome,
  type VerdictCell,
} from '../run/verdict.js';
import type { StepRecord } from '../run/types.js';
import { fill, h } from './dom.js';
import {
  cellText,
  countersUpTo,
  focusOf,
  kindOf,
  pagesAt,
  scenarioViews,
  type Focus,
  type Lane,
  type ScenarioView,
  type StepKind,
} from './model.js';
import { FILL, pageMapFigure, swatch } from './page-map.js';

export const GLYPH: Record<StepKind, string> = {
  ok: '·',
  errno: 'E',
  exit: '⏏',
  fault: '↯',
  stale: '⚠',
  crash: '✖',
  'host-down': '–',
  error: '?',
};

/** Step kinds that are no verdict outcome of their own (all 'safe', or after the crash): they keep their own mark. */
const OWN_MARK: ReadonlySet<StepKind> = new Set(['errno', 'exit', 'host-down', 'error']);

/**
 * A step's mark in its lane: the verdict's glyph for its outcome (the legend's ✓ ◐ ■ ▲ ✖, so a lane reads in the
 * verdict's vocabulary), except an errno, a MEMORY_FAULT exit, host down and a model error, which keep their own.
 */
export function stepMark(step: StepRecord, kind: StepKind): { glyph: string; outcome: Outcome } {
  const outcome = step.outcome ?? 'safe';
  return { glyph: OWN_MARK.has(kind) ? GLYPH[kind] : OUTCOME_TEXT[outcome].glyph, outcome };
}

const KIND_TEXT: Record<StepKind, string> = {
  ok: 'ok',
  errno: 'the call failed with an errno',
  exit: 'KVM_EXIT_MEMORY_FAULT: the guest exits to the VMM',
  fault: 'a fault, contained',
  stale: 'the access went through a stale entry',
  crash: 'fatal: the host crashed',
  'host-down': 'the host is down',
  error: 'the model threw (a bug)',
};

export const CONTRACT_TEXT: Record<string, string> = {
  'vmm-driven': 'the RFC as posted: nothing in the kernel revokes IOPTEs; the VMM must unmap in time',
  'gmem-registry': 'guest_memfd keeps a registry of every mapping of its pages and revokes them itself',
  mirror:
    'as gmem-registry, but iommufd mirrors guest_memfd: IOPTEs a conversion to private removed come back after to-shared',
};

export function legend(): HTMLElement {
  const item = (fillValue: string, text: string, outline = false) =>
    h('span', { class: 'item' }, swatch(fillValue, outline), text);
  const step = (kind: StepKind, text: string) =>
    h(
      'span',
      { class: 'item' },
      h(
        'span',
        { class: `cell k-${kind}`, 'data-legend-kind': kind, style: 'width:22px;height:18px;display:inline-flex' },
        h('span', { class: 'glyph' }, GLYPH[kind]),
      ),
      text,
    );
  const outcome = (o: Outcome) =>
    h(
      'span',
      { class: 'item' },
      h(
        'span',
        { class: `cell o-${o}`, 'data-legend-outcome': o, style: 'width:22px;height:18px;display:inline-flex' },
        h('span', { class: 'glyph' }, OUTCOME_TEXT[o].glyph),
      ),
      OUTCOME_TEXT[o].long,
    );
  return h(
    'div',
    { class: 'legend', 'aria-label': 'legend' },
    h('span', { class: 'group' }, 'Page map:'),
    item(FILL.shared, 'shared'),
    item(FILL.private, 'private'),
    item(FILL.hole, 'hole (no page)'),
    item(FILL.hardware, 'hardware-private'),
    item(FILL.live, 'host PTE / IOPTE'),
    item(FILL.reach, 'reaches a private page', true),
    item(FILL.stale, 'stale entry (frame no longer the file’s)', true),
    item(FILL.revoked, 'IOPTE revoked by guest_memfd'),
    h('span', { class: 'group' }, 'Steps:'),
    OUTCOMES.map(outcome),
    step('errno', 'errno'),
    step('exit', 'MEMORY_FAULT exit'),
    step('host-down', 'host down'),
    h(
      'span',
      { class: 'item' },
      h(
        'span',
        { class: 'cell', style: 'width:22px;height:18px;display:inline-flex' },
        h('span', { class: 'violation' }),
      ),
      'invariant violation',
    ),
    h(
      'span',
      { class: 'item' },
      h('span', { class: 'cell fail', style: 'width:22px;height:18px;display:inline-flex' }),
      'expectation failed',
    ),
    h(
      'span',
      { class: 'item' },
      h('span', { class: 'cell differs', style: 'width:22px;height:18px;display:inline-flex' }),
      'architectures differ',
    ),
  );
}

interface SectionState {
  view: ScenarioView;
  section: HTMLElement;
  select(column: number): void;
  selected: number;
}

let active: SectionState | undefined;
let keyboardInstalled = false;

function installKeyboard(): void {
  if (keyboardInstalled) return;
  keyboardInstalled = true;
  document.addEventListener('keydown', (event) => {
    if (!active || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target as HTMLElement | null;
    // The range input moves itself; text fields keep their arrows.
    if (
      target &&
      (target.matches('input[type=range], input[type=text], input[type=number], textarea, select') ||
        target.isContentEditable)
    )
      return;
    const last = active.view.columns.length - 1;
    const to =
      event.key === 'ArrowLeft'
        ? active.selected - 1
        : event.key === 'ArrowRight'
          ? active.selected + 1
          : event.key === 'Home'
            ? 0
            : event.key === 'End'
              ? last
              : undefined;
    if (to === undefined) return;
    event.preventDefault();
    active.select(Math.max(0, Math.min(last, to)));
  });
}

/** One-line findings of a scenario: what a reader should look at first. */
function findings(view: ScenarioView): HTMLElement {
  const items: HTMLElement[] = [];
  const differs = view.columns.filter((c) => c.differs).map((c) => c.path);
  if (differs.length > 0)
    items.push(h('li', {}, `Architectures differ at step${differs.length > 1 ? 's' : ''} ${differs.join(', ')}.`));
  for (const lane of view.lanes) {
    const violations = lane.steps.flatMap((s) => (s ? s.violations.map((v) => ({ step: s.path, kind: v.kind })) : []));
    if (violations.length > 0)
      items.push(
        h(
          'li',
          {},
          h('b', {}, lane.key),
          `: invariant violation ${[...new Set(violations.map((v) => `${v.kind} at step ${v.step}`))].join(', ')}`,
        ),
      );
    if (lane.crashAt !== undefined) {
      const step = lane.steps[lane.crashAt]!;
      items.push(
        h(
          'li',
          {},
          h('b', {}, lane.key),
          `: the host crashed at step ${step.path} (${step.label}${step.crash ? `, ${step.crash.by} via ${step.crash.via}` : ''})`,
        ),
      );
    }
    if (lane.counters.failures > 0)
      items.push(
        h(
          'li',
          { class: 'failure-note' },
          `${lane.key}: ${lane.counters.failures} expectation(s) of the scenario failed`,
        ),
      );
  }
  if (items.length === 0) items.push(h('li', {}, 'Every architecture answers alike; no violation, no crash.'));
  return h('ul', { class: 'findings' }, items);
}

function laneInfo(lane: Lane): HTMLElement {
  const c = lane.counters;
  const verdict = lane.run.ok
    ? h('span', { class: 'verdict ok' }, '✓ expectations held')
    : h('span', { class: 'verdict bad' }, `✗ ${c.failures} expectation(s) failed`);
  return h(
    'div',
    { class: 'lane-info' },
    h('div', { class: 'lane-name' }, lane.archName, ' ', h('span', { class: 'id' }, lane.key)),
    h(
      'div',
      { class: 'counters' },
      h(
        'span',
        {
          'data-counter': 'pipeline',
          title:
            Object.entries(lane.run.counters)
              .map(([k, v]) => `${k}: ${lane.run.bounds?.[k] === 'upper' ? `at most ${v}` : v}`)
              .join('\n') || 'no firmware or hypervisor steps',
        },
        'pipeline steps ',
        h('b', {}, `${lane.run.bounds ? 'at most ' : ''}${c.pipeline}`),
      ),
      h('span', { 'data-counter': 'violations' }, 'violations ', h('b', {}, c.violations)),
      h('span', { 'data-counter': 'iopte-revoked' }, 'IOPTE pages revoked ', h('b', {}, c.ioptesRevoked)),
    ),
    verdict,
  );
}

function laneCells(view: ScenarioView, lane: Lane, select: (i: number) => void): HTMLElement {
  return h(
    'div',
    { class: 'cells', style: `grid-template-columns: repeat(${view.columns.length}, minmax(14px, 1fr))` },
    view.columns.map((col, i) => {
      const step = lane.steps[i];
      const kind = kindOf(step);
      if (!step || !kind)
        return h('span', { class: 'cell empty', 'data-step': col.path, title: `${col.path}: not run` });
      const text = cellText(step);
      const mark = stepMark(step, kind);
      const title = [
        `step ${step.path} ${step.call}: ${text}`,
        step.expected ? `expected: ${step.expected}` : '',
        ...step.violations.map((v) => `violation ${v.kind}: ${v.message}`),
        step.crash ? `HOST CRASH: ${step.crash.fault} (${step.crash.mechanism})` : '',
        step.failure ? `FAILED: ${step.failure}` : '',
      ]
        .filter(Boolean)
        .join('\n');
      return h(
        'button',
        {
          type: 'button',
          class: `cell k-${kind} o-${mark.outcome}${col.differs ? ' differs' : ''}${step.verdict === 'fail' ? ' fail' : ''}`,
          'data-step': step.path,
          'data-label': step.label,
          'data-kind': kind,
          'data-outcome': mark.outcome,
          'data-violations': step.violations.length,
          'data-crash': step.crash ? 'true' : null,
          'data-verdict': step.verdict,
          'data-differs': col.differs ? 'true' : null,
          'aria-label': title,
          title,
          onclick: () => select(i),
        },
        h('span', { class: 'glyph', 'aria-hidden': 'true' }, mark.glyph),
        step.violations.length > 0 ? h('span', { class: 'violation', 'aria-hidden': 'true' }) : null,
      );
    }),
  );
}

function atStep(view: ScenarioView, lane: Lane, column: number, focus: Focus | undefined): HTMLElement {
  const step = lane.steps[column];
  const col = view.columns[column]!;
  const kind = kindOf(step);
  const pages = pagesAt(lane, column);
  const sofar = countersUpTo(lane, column);
  const detail = h(
    'div',
    { class: 'detail' },
    step
      ? [
          h(
            'div',
            { class: 'outcome' },
            `step ${step.path} → `,
            h('span', { class: `label k-${kind}`, title: KIND_TEXT[kind!] }, cellText(step).replace(/ !$/, '')),
          ),
          step.expected
            ? h(
                'div',
                { class: 'expected' },
                `expected: ${step.expected} ${step.verdict === 'pass' ? '✓' : step.verdict === 'fail' ? '✗' : ''}`,
              )
            : null,
          step.failure ? h('div', { class: 'failure-note' }, `✗ ${step.failure}`) : null,
          step.crash
            ? h(
                'div',
                { class: 'crash-note', 'data-crash': 'true' },
                `✖ HOST CRASH: ${step.crash.fault} (${step.crash.mechanism}), by ${step.crash.by} via ${step.crash.via}`,
              )
            : null,
          step.violations.length > 0
            ? h(
                'ul',
                { class: 'violations' },
                step.violations.map((v) => h('li', { 'data-violation': v.kind }, `▲ ${v.kind}: ${v.message}`)),
              )
            : null,
          h(
            'ul',
            { class: 'effects' },
            effectLines(step, lane.run.bounds).map((line) => h('li', {}, line)),
          ),
          h(
            'div',
            { class: 'counters' },
            `so far: violations ${sofar.violations} · IOPTE pages revoked ${sofar.ioptesRevoked} · pipeline steps ${lane.run.bounds ? 'at most ' : ''}${sofar.pipeline}`,
          ),
        ]
      : h('div', { class: 'outcome muted' }, `step ${col.path}: not run here`),
  );
  const maps = h(
    'div',
    { class: 'pagemaps' },
    pages === undefined || pages.pages.length === 0
      ? h('div', { class: 'nopages' }, 'no guest_memfd yet')
      : [
          pages.from !== col.path ? h('div', { class: 'nopages' }, `page maps as after step ${pages.from}`) : null,
          pages.pages.map((p) => pageMapFigure(p, focus?.get(p.ino))),
        ],
  );
  return h(
    'div',
    { class: 'at-step', 'data-at-step': col.path, 'data-label': step?.label ?? '', 'data-kind': kind ?? 'none' },
    detail,
    maps,
  );
}

function scenarioSection(view: ScenarioView, onActive: (state: SectionState) => void): SectionState {
  const n = view.columns.length;
  const range = h('input', {
    type: 'range',
    min: 0,
    max: Math.max(0, n - 1),
    step: 1,
    value: view.firstInteresting,
    'aria-label': 'step',
    'data-scrubber': 'true',
  });
  const prev = h('button', { type: 'button', 'data-action': 'prev', title: 'previous step (←)' }, '◀ prev');
  const next = h('button', { type: 'button', 'data-action': 'next', title: 'next step (→)' }, 'next ▶');
  const where = h('div', { class: 'where', 'aria-live': 'polite' });
  const colheads = h(
    'div',
    { class: 'colheads', style: `grid-template-columns: repeat(${n}, minmax(14px, 1fr))` },
    view.columns.map((c, i) =>
      h(
        'span',
        {
          class: `colhead${c.differs ? ' differs' : ''}`,
          'data-col': c.path,
          title: `${c.path} ${c.call}${c.differs ? ' — architectures differ' : ''}`,
          onclick: () => state.select(i),
        },
        c.differs ? `≠${c.path}` : c.path,
      ),
    ),
  );
  // The page maps zoom to the pages the scenario touched (the union over its lanes and steps); the toggle shows
  // the whole file. A 2 MiB range of a 64 MiB file is a sliver otherwise.
  const focus = focusOf(view);
  let whole = focus.size === 0;
  const zoom = h('input', {
    type: 'checkbox',
    'data-action': 'whole-file',
    ...(whole ? { checked: true, disabled: true } : {}),
  });
  const zoomLabel = h(
    'label',
    {
      class: 'zoom',
      title:
        focus.size === 0
          ? 'the scenario touches every page: the maps show the whole file'
          : 'the page maps show the pages this scenario touched; tick to show the whole file',
    },
    zoom,
    ' whole file',
  );
  const laneParts = view.lanes.map((lane) => {
    const slot = h('div', { class: 'at-step-slot' });
    const toggle = h(
      'button',
      {
        type: 'button',
        class: 'collapse',
        'data-action': 'collapse',
        'aria-expanded': 'true',
        title: 'hide or show this lane’s step detail and page maps',
      },
      '▾',
    );
    const el = h(
      'div',
      {
        class: `lane${lane.crashAt !== undefined ? ' crashed' : ''}${lane.run.ok ? '' : ' failed'}`,
        'data-lane': lane.key,
        'data-arch': lane.arch,
        'data-contract': lane.contract,
        'data-violations': lane.counters.violations,
        'data-failures': lane.counters.failures,
        'data-crashed': lane.crashAt !== undefined ? 'true' : null,
      },
      h(
        'div',
        { class: 'grid' },
        h('div', { class: 'lane-head' }, toggle, laneInfo(lane)),
        laneCells(view, lane, (i) => state.select(i)),
      ),
      slot,
    );
    toggle.addEventListener('click', () => {
      const collapsed = el.dataset.collapsed !== 'true';
      if (collapsed) el.dataset.collapsed = 'true';
      else delete el.dataset.collapsed;
      slot.hidden = collapsed;
      toggle.setAttribute('aria-expanded', String(!collapsed));
      toggle.textContent = collapsed ? '▸' : '▾';
    });
    return { lane, el, slot };
  });
  const contracts = [...new Set(view.lanes.map((l) => l.contract))];
  const section = h(
    'section',
    { class: 'scenario', 'data-scenario': view.info.id },
    h(
      'div',
      { class: 'scenario-head' },
      h('h2', {}, view.info.title),
      h('p', {}, view.info.situation),
      h('p', { class: 'source' }, `Source: ${view.info.source.join('; ')}`),
      verdictTable(view.comparison, view.info.id),
      findings(view),
      view.skipped.map((s) => h('div', { class: 'skipped' }, `${s.column}: not run (${s.reason})`)),
    ),
    n === 0
      ? h('p', { class: 'muted' }, 'Nothing ran for this scenario.')
      : [
          h('div', { class: 'scrubber' }, prev, range, next, zoomLabel, where),
          h(
            'div',
            { class: 'grid' },
            h('div', { class: 'muted', style: 'font-size:11px;align-self:end' }, 'steps →'),
            colheads,
          ),
          contracts.map((contract) => [
            h(
              'div',
              { class: 'contract', 'data-contract-group': contract },
              `contract ${contract}`,
              CONTRACT_TEXT[contract] ? h('span', { class: 'muted' }, ` — ${CONTRACT_TEXT[contract]}`) : null,
            ),
            laneParts.filter((p) => p.lane.contract === contract).map((p) => p.el),
          ]),
        ],
  );

  const state: SectionState = {
    view,
    section,
    selected: view.firstInteresting,
    select(column) {
      if (n === 0) return;
      state.selected = Math.max(0, Math.min(n - 1, column));
      const col = view.columns[state.selected]!;
      range.value = String(state.selected);
      prev.disabled = state.selected === 0;
      next.disabled = state.selected === n - 1;
      section.dataset.selected = col.path;
      fill(
        where,
        `Step ${col.path} (${state.selected + 1} of ${n}): `,
        h('span', { class: 'call' }, col.call),
        col.args ? h('code', {}, ` ${col.args}`) : null,
        col.kernel ? h('span', { class: 'muted' }, ` — ${col.kernel}`) : null,
        col.differs ? h('b', {}, ' · ≠ architectures differ here') : null,
        col.note ? h('div', { class: 'muted' }, col.note) : null,
      );
      for (const el of colheads.children) el.classList.toggle('selected', (el as HTMLElement).dataset.col === col.path);
      for (const part of laneParts) {
        for (const cell of part.el.querySelectorAll<HTMLElement>('.cell'))
          cell.classList.toggle('selected', cell.dataset.step === col.path);
        fill(part.slot, atStep(view, part.lane, state.selected, whole ? undefined : focus));
      }
      onActive(state);
    },
  };
  range.addEventListener('input', () => state.select(Number(range.value)));
  zoom.addEventListener('change', () => {
    whole = (zoom as HTMLInputElement).checked;
    state.select(state.selected);
  });
  prev.addEventListener('click', () => state.select(state.selected - 1));
  next.addEventListener('click', () => state.select(state.selected + 1));
  section.addEventListener('pointerdown', () => onActive(state));
  state.select(view.firstInteresting);
  return state;
}

/** The outcomes in order, each with its glyph and colour: the verdict's legend. */
export function verdictLegend(): HTMLElement {
  return h(
    'div',
    { class: 'verdict-legend', 'aria-label': 'verdict legend' },
    OUTCOMES.map((o, i) => [
      i > 0 ? h('span', { class: 'muted' }, ' < ') : null,
      h(
        'span',
        { class: `outcome o-${o}`, 'data-outcome': o },
        h('span', { class: 'glyph', 'aria-hidden': 'true' }, OUTCOME_TEXT[o].glyph),
        ` ${OUTCOME_TEXT[o].long}`,
      ),
    ]),
  );
}

/**
 * The verdict matrix: rows architectures, columns designs; each cell the worst outcome (glyph, colour, words), the
 * scenario and step that decided it and, for the whole comparison, the cost. Same vocabulary as the text output.
 */
export function verdictTable(comparison: Comparison, scenarioId?: string): HTMLElement {
  const m = verdictMatrix(comparison, scenarioId);
  const cell = (arch: string, contract: string, c: VerdictCell | undefined) =>
    c
      ? h(
          'td',
          {
            class: `outcome o-${c.outcome}`,
            'data-verdict-cell': `${arch}/${contract}`,
            'data-outcome': c.outcome,
            title: `${OUTCOME_TEXT[c.outcome].long}${c.path !== undefined ? ` — ${c.scenario} step ${c.path} (${c.call})` : ''}\n${COST_LEGEND}`,
          },
          h('span', { class: 'glyph', 'aria-hidden': 'true' }, OUTCOME_TEXT[c.outcome].glyph),
          ` ${OUTCOME_TEXT[c.outcome].short}`,
          c.path !== undefined
            ? h('span', { class: 'where' }, scenarioId === undefined ? ` ${c.scenario} @${c.path}` : ` @${c.path}`)
            : null,
          scenarioId === undefined
            ? h('div', { class: 'cost' }, costText(c.cost), c.failed > 0 ? h('b', {}, ` ✗${c.failed}`) : null)
            : null,
        )
      : h('td', { class: 'muted' }, '–');
  return h(
    'table',
    { class: `verdict${scenarioId === undefined ? '' : ' small'}`, 'data-verdict': scenarioId ?? 'all' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', {}, ''),
        m.contracts.map((c) => h('th', { title: CONTRACT_TEXT[c] ?? '' }, c)),
      ),
    ),
    h(
      'tbody',
      {},
      m.rows.map((r) =>
        h(
          'tr',
          { 'data-verdict-row': r.arch },
          h('th', { title: r.name }, r.arch),
          r.cells.map((c, i) => cell(r.arch, m.contracts[i]!, c)),
        ),
      ),
    ),
  );
}

function summaryText(comparison: Comparison): string {
  const runs = comparison.runs.filter((r) => !r.skipped);
  const failed = runs.filter((r) => !r.ok).length;
  const violations = runs.reduce((n, r) => n + r.steps.reduce((m, s) => m + s.violations.length, 0), 0);
  const crashes = runs.filter((r) => r.crashed).length;
  return `${comparison.scenarios.length} scenario(s) × ${comparison.archs.length} architecture(s) × ${comparison.contracts.length} contract(s): ${runs.length} runs · ${violations} invariant violation(s) · ${crashes} host crash(es) · ${failed === 0 ? 'every expectation of the scenarios held' : `${failed} run(s) with a failed expectation`}`;
}

/** Draw a comparison into `container` (replacing what was there). */
export function renderComparison(container: HTMLElement, comparison: Comparison): void {
  installKeyboard();
  const views = scenarioViews(comparison);
  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const sections: SectionState[] = [];
  const show = (index: number) => {
    sections.forEach((st, i) => {
      st.section.hidden = i !== index;
      const tab = tabs.children[i] as HTMLElement;
      tab.setAttribute('aria-selected', String(i === index));
    });
    active = sections[index];
  };
  for (const view of views) {
    const state = scenarioSection(view, (st) => (active = st));
    sections.push(state);
    const crashes = view.lanes.filter((l) => l.crashAt !== undefined).length;
    const violations = view.lanes.reduce((k, l) => k + l.counters.violations, 0);
    const failures = view.lanes.reduce((k, l) => k + l.counters.failures, 0);
    const index = sections.length - 1;
    tabs.append(
      h(
        'button',
        { type: 'button', role: 'tab', 'data-tab': view.info.id, title: view.info.title, onclick: () => show(index) },
        view.info.id,
        h(
          'span',
          { class: 'badge' },
          [
            crashes > 0 ? `✖${crashes}` : '',
            violations > 0 ? ` ▲${violations}` : '',
            failures > 0 ? ` ✗${failures}` : '',
          ]
            .join('')
            .trim(),
        ),
      ),
    );
  }
  const generation = Number(container.dataset.generation ?? '0') + 1;
  const verdict = h(
    'div',
    { class: 'verdict-block' },
    h('h2', {}, 'Verdict: the worst outcome of each architecture under each design'),
    verdictLegend(),
    verdictTable(comparison),
  );
  fill(
    container,
    verdict,
    h('div', { class: 'summary', 'data-summary': 'true' }, summaryText(comparison)),
    views.length > 1 ? tabs : null,
    sections.map((st) => st.section),
  );
  container.dataset.generation = String(generation);
  show(0);
}
