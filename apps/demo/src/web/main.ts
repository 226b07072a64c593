/**
 * The web view's entry. Two ways in: an html report carries its comparison in <script id="gmemlab-data"> and
 * opens straight into it (no server, no fetch); under `gmemlab serve` the page asks the server for its scenarios
 * and backends, offers them as checkboxes, and POSTs /api/compare on Run. document.body.dataset.state says where
 * it is: loading, running, ready or error (tests wait on it).
 */
import type { Comparison } from '../run/types.js';
import { fill, h } from './dom.js';
import { patternDefs } from './page-map.js';
import { CSS } from './style.js';
import { legend, renderComparison } from './view.js';

/** A scenario the server offers, chosen by id (GET /api/scenarios). */
interface OfferedScenario {
  id: string;
  title: string;
  situation: string;
  source: string[];
  contracts?: string[];
}

interface BackendsAnswer {
  backends: Array<{ id: string; name: string; package: string; version: string; variants: string[] }>;
  defaults: string[];
  contracts: string[];
}

const INTRO =
  'The RFC lets iommufd map guest_memfd pages for device DMA and trusts the VMM to unmap a range before the guest converts it to private. ' +
  'Each lane below is one architecture under one contract (vmm-driven: the RFC as posted; gmem-registry: guest_memfd revokes every mapping itself; mirror: the same, and iommufd restores IOPTEs after a conversion to shared); each cell is one step of the scenario. ' +
  'Move the slider, or press ← and →, to see every guest_memfd at that step: what the file holds, and which translations (stage-2, host mmap, IOPTE) still reach its pages. ' +
  'An IOPTE left on a private page is the RFC’s risk; whether it is harmless, contained or fatal depends on the architecture — compare the lanes.';

function setState(state: 'loading' | 'running' | 'ready' | 'error'): void {
  document.body.dataset.state = state;
}

function shell(): { controls: HTMLElement; results: HTMLElement } {
  const style = document.createElement('style');
  style.textContent = CSS;
  document.head.append(style);
  const controls = h('div', { id: 'controls' });
  const results = h('div', { id: 'results', 'data-generation': 0 });
  const root = document.getElementById('app') ?? document.body.appendChild(h('div', { id: 'app' }));
  fill(
    root,
    patternDefs(),
    h(
      'main',
      {},
      h('h1', {}, 'gmemlab — guest_memfd, iommufd and confidential VMs, architecture by architecture'),
      h('p', { class: 'intro' }, INTRO),
      controls,
      legend(),
      results,
      h(
        'footer',
        {},
        'gmemlab models the kernel interfaces; it is not the kernel. Every rule cites its source: gmemlab explain <arch>.',
      ),
    ),
  );
  return { controls, results };
}

function report(comparison: Comparison, controls: HTMLElement, results: HTMLElement): void {
  fill(
    controls,
    h(
      'div',
      { class: 'report-note' },
      `Report made by ${comparison.tool}. To choose other scenarios or architectures, run `,
      h('code', {}, 'gmemlab serve'),
      '.',
    ),
  );
  renderComparison(results, comparison);
  setState('ready');
}

async function getJson<T>(url: string, init?: RequestInit): Promise<T> {
  const response = await fetch(url, init);
  const body = (await response.json().catch(() => ({}))) as T & { error?: string };
  if (!response.ok) throw new Error(body.error ?? `${url}: HTTP ${response.status}`);
  return body;
}

function checkboxes(
  name: string,
  legendText: string,
  items: Array<{ value: string; label: string | Node; title?: string; checked: boolean; className?: string }>,
): HTMLFieldSetElement {
  return h(
    'fieldset',
    { 'data-group': name },
    h('legend', {}, legendText),
    items.map((item) =>
      h(
        'label',
        { class: item.className ?? null, title: item.title ?? null },
        h('input', { type: 'checkbox', name, value: item.value, checked: item.checked }),
        ' ',
        item.label,
      ),
    ),
  );
}

async function interactive(controls: HTMLElement, results: HTMLElement): Promise<void> {
  const [scenarioAnswer, backends] = await Promise.all([
    getJson<{ scenarios: OfferedScenario[] }>('/api/scenarios'),
    getJson<BackendsAnswer>('/api/backends'),
  ]);
  const scenarios = scenarioAnswer.scenarios;
  const preferred = scenarios.some((s) => s.id === 'rfc-as-posted') ? 'rfc-as-posted' : scenarios[0]?.id;
  const archItems = backends.backends.flatMap((b) => [
    {
      value: b.id,
      label: `${b.name} (${b.id})`,
      title: `${b.package} ${b.version}`,
      checked: backends.defaults.includes(b.id),
    },
    ...b.variants.map((v) => ({
      value: v,
      label: v,
      title: `${b.name}, variant ${v}`,
      checked: false,
      className: 'variant',
    })),
  ]);
  const run = h('button', { type: 'button', class: 'primary', 'data-action': 'run' }, 'Run');
  const status = h('div', { class: 'status', role: 'status' });
  const form = h(
    'form',
    { class: 'controls', onsubmit: (e: Event) => e.preventDefault() },
    checkboxes(
      'scenario',
      'Scenarios',
      scenarios.map((s) => ({
        value: s.id,
        label: h('span', {}, h('b', {}, s.id), ` — ${s.title}`),
        title: s.situation,
        checked: s.id === preferred,
        className: 'scenario',
      })),
    ),
    checkboxes('arch', 'Architectures', archItems),
    checkboxes(
      'contract',
      'Contracts',
      backends.contracts.map((c) => ({ value: c, label: c, checked: true })),
    ),
    h('div', { class: 'actions' }, run, status),
  );
  fill(controls, form);

  const chosen = (name: string) =>
    [...form.querySelectorAll<HTMLInputElement>(`input[name=${name}]:checked`)].map((i) => i.value);
  const go = async () => {
    const body = { scenarios: chosen('scenario'), archs: chosen('arch'), contracts: chosen('contract') };
    if (body.scenarios.length === 0 || body.archs.length === 0 || body.contracts.length === 0) {
      status.className = 'status error';
      status.textContent = 'Choose at least one scenario, one architecture and one contract.';
      return;
    }
    run.disabled = true;
    status.className = 'status';
    status.textContent = 'running…';
    setState('running');
    try {
      const comparison = await getJson<Comparison>('/api/compare', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      renderComparison(results, comparison);
      status.textContent = `done: ${comparison.runs.length} runs`;
      setState('ready');
    } catch (error) {
      status.className = 'status error';
      status.textContent = (error as Error).message;
      setState('error');
    } finally {
      run.disabled = false;
    }
  };
  run.addEventListener('click', () => void go());
  // The default choice runs at once, so the page opens on the argument rather than on a form.
  await go();
}

function boot(): void {
  setState('loading');
  // Read the report's data before the shell replaces the page's content.
  const embedded = document.getElementById('gmemlab-data')?.textContent;
  const { controls, results } = shell();
  if (embedded !== undefined && embedded !== null) {
    try {
      report(JSON.parse(embedded) as Comparison, controls, results);
    } catch (error) {
      fill(
        results,
        h('p', { class: 'status error' }, `This report's data cannot be read: ${(error as Error).message}`),
      );
      setState('error');
    }
    return;
  }
  interactive(controls, results).catch((error: unknown) => {
    fill(controls, h('p', { class: 'status error' }, `Cannot reach the gmemlab server: ${(error as Error).message}`));
    setState('error');
  });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
