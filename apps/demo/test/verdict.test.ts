/**
 * The verdict (issue 17): each (architecture, design) cell is the worst outcome over the scenarios run, read from
 * what the model returned; the text matrix fits 100 columns; every scenario runs under every design; a backend a
 * scenario does not name gets no expectation (reported, never FAIL); violations are grouped.
 */
import type { ArchBackend } from '@gmemlab/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BUILTIN_SCENARIOS,
  compare,
  DEFAULT_ARCHS,
  loadBackends,
  loadScenario,
  selectArchs,
  type Comparison,
} from '../src/index.js';
import { contractsOf } from '../src/cli-support.js';
import { matrixOf } from '../src/format/common.js';
import { renderCompareMarkdown } from '../src/format/markdown.js';
import { renderCompareText } from '../src/format/text.js';
import { OUTCOMES, runVerdict, stepOutcome, verdictMatrix, worse } from '../src/run/verdict.js';
import { skipReason, type Design } from '../src/run/designs.js';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cli, requireBuild } from './support.js';
import { DMA_SETUP, testScenario } from './worlds.js';
import { parseScenario, parseScenarioText } from '../src/scenario/load.js';
import { runScenario } from '../src/run/runner.js';
import { readFileSync } from 'node:fs';

const backends = await loadBackends({ cwd: BUILTIN_SCENARIOS });
const library = readdirSync(BUILTIN_SCENARIOS)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((f) => loadScenario(join(BUILTIN_SCENARIOS, f)));
const designs = contractsOf('all');

let all: Comparison;
beforeAll(() => {
  all = compare(library, selectArchs(backends, DEFAULT_ARCHS.join(',')), designs, { pageMaps: false });
}, 180_000);

const cellOf = (c: Comparison, arch: string, design: string, scenario?: string) => {
  const m = verdictMatrix(c, scenario);
  return m.rows.find((r) => r.arch === arch)!.cells[m.contracts.indexOf(design)]!;
};

describe('the verdict matrix', () => {
  it("columns are the three designs in the thread's order, then today's path; rows the architectures", () => {
    expect(all.verdict!.contracts).toEqual(['vmm-driven', 'gmem-registry', 'mirror', 'today']);
    expect(all.verdict!.rows.map((r) => r.arch)).toEqual([...DEFAULT_ARCHS]);
  });

  it('each cell is the worst step outcome over its runs, decided by the first step that reached it', () => {
    for (const row of all.verdict!.rows) {
      row.cells.forEach((cell, i) => {
        const runs = all.runs.filter((r) => r.arch === row.arch && r.contract === all.verdict!.contracts[i]);
        expect(cell!.runs).toBe(
          library.filter((s) => skipReason(all.verdict!.contracts[i] as Design, s.host) === undefined).length,
        );
        const outcomes = runs.flatMap((r) => r.steps.map((s) => s.outcome!));
        const worst = outcomes.reduce((w, o) => (worse(o, w) ? o : w), 'safe' as (typeof OUTCOMES)[number]);
        expect(cell!.outcome, `${row.arch}/${all.verdict!.contracts[i]}`).toBe(worst);
        if (worst !== 'safe') {
          const step = runs.find((r) => r.scenario.id === cell!.scenario)!.steps.find((s) => s.path === cell!.path)!;
          expect(step.outcome).toBe(worst);
        }
      });
    }
  });

  it('agrees with what the runner recorded: a crash is a host crash, a reached frame is stale DMA, an IOMMU fault is one', () => {
    for (const run of all.runs) {
      for (const s of run.steps) {
        if (s.crash) expect(s.outcome).toBe('host-crash');
        const access = s.result.kind === 'ok' || s.result.kind === 'fault' ? s.result.access : undefined;
        if (!s.crash && !s.outcomes && access?.reached?.length) expect(s.outcome).toBe('stale-reach');
        if (
          !s.outcomes &&
          s.result.kind === 'fault' &&
          s.result.access.fault === 'iommu-fault' &&
          !access?.reached?.length
        )
          expect(s.outcome).toBe('iommu-fault');
        if (!s.outcomes && s.result.kind === 'errno') expect(s.outcome).toBe('safe');
      }
      expect(runVerdict(run).outcome === 'host-crash').toBe(run.crashed !== undefined);
    }
  });

  it("the thread's argument, cell by cell: under vmm-driven TDX crashes and the others let stale DMA through; under the registry nothing worse than an I/O fault", () => {
    expect(cellOf(all, 'tdx', 'vmm-driven')).toMatchObject({ outcome: 'host-crash' });
    for (const arch of ['sev-snp', 'arm-cca', 'pkvm'])
      expect(cellOf(all, arch, 'vmm-driven').outcome).toBe('stale-reach');
    for (const arch of DEFAULT_ARCHS)
      for (const d of ['gmem-registry', 'mirror'])
        expect(['safe', 'contained', 'iommu-fault']).toContain(cellOf(all, arch, d).outcome);
    // rfc-as-posted on its own: SEV-SNP's RMP check contains the write, TDX machine-checks; Android pKVM refused to
    // donate the DMA-mapped page at the guest's fault (KVM_RUN fails with EINVAL, [P-d, P-h]), so the write lands in
    // a page that is still the host's: nothing worse than safe.
    expect(cellOf(all, 'tdx', 'vmm-driven', 'rfc-as-posted')).toMatchObject({
      outcome: 'host-crash',
      path: '12',
      call: 'device.dmaWrite',
    });
    expect(cellOf(all, 'sev-snp', 'vmm-driven', 'rfc-as-posted')).toMatchObject({ outcome: 'contained', path: '12' });
    expect(cellOf(all, 'pkvm', 'vmm-driven', 'rfc-as-posted')).toMatchObject({ outcome: 'safe' });
    expect(cellOf(all, 'tdx', 'gmem-registry', 'rfc-as-posted').outcome).toBe('iommu-fault');
  });

  it("the cost sums each run's firmware steps, IOPTE pages zapped and I/O faults", () => {
    const cell = cellOf(all, 'tdx', 'gmem-registry');
    const runs = all.runs.filter((r) => r.arch === 'tdx' && r.contract === 'gmem-registry');
    expect(cell.cost.steps).toBe(runs.reduce((n, r) => n + Object.values(r.counters).reduce((a, b) => a + b, 0), 0));
    expect(cell.cost.iopte).toBe(runs.reduce((n, r) => n + r.steps.reduce((m, s) => m + s.effects.zapped.iopte, 0), 0));
    expect(cell.cost.faults).toBeGreaterThan(0);
  });

  it('stepOutcome orders the vocabulary: a fatal fault is a crash, a contained fault below an IOMMU fault', () => {
    const fault = (fault: string, fatal = false) => ({
      call: 'device.dmaWrite',
      result: { kind: 'fault' as const, access: { ok: false, fault, fatal } },
    });
    expect(stepOutcome(fault('machine-check', true))).toBe('host-crash');
    expect(stepOutcome(fault('contained'))).toBe('contained');
    expect(stepOutcome(fault('iommu-fault'))).toBe('iommu-fault');
    expect(stepOutcome(fault('memory-fault'))).toBe('safe');
    expect(stepOutcome({ call: 'device.dmaWrite', result: { kind: 'ok' } }, true)).toBe('stale-reach');
    expect(stepOutcome({ call: 'vm.guestRead', result: { kind: 'ok' } }, true)).toBe('safe');
    expect(
      worse('contained', 'safe') &&
        worse('iommu-fault', 'contained') &&
        worse('stale-reach', 'iommu-fault') &&
        worse('host-crash', 'stale-reach'),
    ).toBe(true);
  });
});

describe('stale IOPTEs and unsafe IOPTEs in the verdict', () => {
  const archs = selectArchs(backends, DEFAULT_ARCHS.join(','));
  const copyRevoked = readFileSync(join(BUILTIN_SCENARIOS, 'copy-revoked-with-pages.yaml'), 'utf8');

  it('copy-revoked-with-pages under vmm-driven: the stale IOPTEs are violations of the punch; its DMAs reach only pages the file holds, so the cell is safe', () => {
    for (const arch of DEFAULT_ARCHS) {
      const cell = cellOf(all, arch, 'vmm-driven', 'copy-revoked-with-pages');
      expect(cell.outcome, arch).toBe('safe');
      const run = all.runs.find(
        (r) => r.arch === arch && r.contract === 'vmm-driven' && r.scenario.id === 'copy-revoked-with-pages',
      )!;
      const punch = run.steps.find((s) => s.call === 'gmem.fallocate')!;
      expect(punch.violations.map((v) => [v.kind, v.offset, v.length])).toEqual([
        ['stale-iopte', 4 * 2 ** 20, 4096],
        ['stale-iopte', 4 * 2 ** 20, 4096],
      ]);
      for (const s of run.steps.filter((x) => x.call.startsWith('device.dma'))) {
        expect(s.result.kind, `${arch} ${s.path}`).toBe('ok');
        expect(s.result.kind === 'ok' && s.result.access?.reached, `${arch} ${s.path}`).toBeUndefined();
      }
    }
  });

  it('a DMA through the punched page of that scenario reaches a free frame: stale DMA reached another owner, on every architecture, under vmm-driven only', () => {
    // The same scenario with one more DMA: the GPU writes at the start of its copy, the page the VMM punched.
    const text = copyRevoked.replace(
      /(  - call: device\.dmaWrite\n    on: gpu\n    iova: copyIova \+ 1MiB)/,
      '  - call: device.dmaWrite\n    on: gpu\n    iova: copyIova\n    length: 8\n    data: 0x33\n$1',
    );
    expect(text).not.toBe(copyRevoked);
    const scenario = parseScenarioText(text, 'copy-revoked-through-hole.yaml');
    for (const arch of archs) {
      const run = runScenario(scenario, arch, 'vmm-driven', { pageMaps: false });
      const hole = run.steps.find((s) => s.call === 'device.dmaWrite' && s.args.includes('0x33'))!;
      const access = hole.result.kind === 'ok' || hole.result.kind === 'fault' ? hole.result.access : undefined;
      expect(
        access?.reached?.map((r) => r.ownerKind),
        arch.id,
      ).toEqual(['free']);
      expect(hole.outcome, arch.id).toBe('stale-reach');
      expect(runVerdict(run)).toMatchObject({ outcome: 'stale-reach', path: hole.path });
      const registry = runScenario(scenario, arch, 'gmem-registry', { pageMaps: false });
      expect(registry.steps.find((s) => s.path === hole.path)!.outcome, arch.id).toBe('iommu-fault');
    }
  });

  it('the unsafe-iopte reading is per page: a DMA to the shared page of an area with one private page is safe; to the private page, stale DMA', () => {
    const tdx = archs.find((a) => a.id === 'tdx')!;
    const steps = (iova: string) => [
      ...DMA_SETUP,
      // Page 0 becomes private; TDX lets no device reach a private page, so its live IOPTE is 'unsafe-iopte'.
      { call: 'gmem.setMemoryAttributes2', offset: 0, size: '4KiB', attributes: 'KVM_MEMORY_ATTRIBUTE_PRIVATE' },
      { call: 'device.dmaRead', iova, length: 8 },
    ];
    const run = (iova: string) =>
      runScenario(testScenario(steps(iova), {}, 'per-page.yaml'), tdx, 'vmm-driven', { pageMaps: false });
    const shared = run('iova + 4KiB');
    expect(shared.steps.at(-2)!.violations.map((v) => [v.kind, v.offset, v.length])).toEqual([
      ['unsafe-iopte', 0, 4096],
    ]);
    expect(shared.steps.at(-1)!.result.kind).toBe('ok');
    expect(shared.steps.at(-1)!.outcome).toBe('safe');
    const straddling = run('iova + 4KiB - 4');
    expect(straddling.steps.at(-1)!.outcome).toBe('stale-reach');
    const priv = run('iova');
    expect(priv.steps.at(-1)!.outcome).toBe('stale-reach');
  });
});

describe('the text', () => {
  it('leads with the matrix, which fits one 100-column screen for the built-in library; timelines only with --details', () => {
    const text = renderCompareText(all);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^Verdict: /);
    for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(100);
    expect(text).not.toMatch(/ step +tdx\/vmm-driven/);
    const details = renderCompareText(all, undefined, { details: true });
    expect(details).toMatch(/ step +tdx\/vmm-driven/);
    expect(details.length).toBeGreaterThan(text.length);
  });

  it('one line per distinct violation (kind, area, range) with a count; its text does not contradict what the access reached', () => {
    const m = matrixOf(all, 'memory-unplug');
    const keys = m.violationGroups.map((g) => `${g.kind}|${g.owner}|${g.range}`);
    expect(new Set(keys).size).toBe(keys.length);
    const total = all.runs
      .filter((r) => r.scenario.id === 'memory-unplug')
      .reduce((n, r) => n + r.steps.reduce((k, s) => k + s.violations.length, 0), 0);
    expect(m.violationGroups.reduce((n, g) => n + g.count, 0)).toBe(total);
    expect(m.violationGroups.length).toBeLessThan(total);
    const text = renderCompareText(all);
    expect(text.match(/^ {2}violation /gm)!.length).toBe(
      all.scenarios.reduce((n, s) => n + matrixOf(all, s.id).violationGroups.length, 0),
    );
    // The stale-iopte text names no owner the access may contradict (it used to say 'freed memory' beside 'stale: pinned').
    for (const g of m.violationGroups) expect(g.message).not.toMatch(/freed memory/);
  });

  it('markdown leads with the verdict table in the same words', () => {
    const md = renderCompareMarkdown(all);
    expect(md.split('\n')[0]).toBe('## Verdict');
    expect(md).toMatch(/\| \*\*tdx\*\* \| ✖ host crash — /);
  });
});

describe('designs and expectations', () => {
  it('compare <scenario> --contract all runs the scenario under every design, and its expectations hold', () => {
    requireBuild();
    const r = cli(['compare', 'rfc-as-posted', '--contract', 'all', '--format', 'json']);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout) as Comparison;
    // An in-place scenario has no run in the 'today' column (today's kernel has no in-place conversion): the column
    // is left out of a comparison in which no scenario runs there.
    expect(new Set(json.runs.map((x) => x.contract))).toEqual(new Set(['vmm-driven', 'gmem-registry', 'mirror']));
    expect(json.runs.every((x) => !x.skipped && x.steps.length > 0)).toBe(true);
  });

  it("a backend the scenarios do not name (a third party's) is reported as what happened, never FAIL", () => {
    // SEV-SNP's rules under another id: it blocks the DMA the built-in scenarios expect other backends to land.
    const sev = selectArchs(backends, 'sev-snp')[0]!;
    const cove = Object.create(sev, { id: { value: 'cove' }, name: { value: 'a third-party backend' } }) as ArchBackend;
    const c = compare(library, [cove], designs, { pageMaps: false });
    const failures = c.runs.flatMap((r) =>
      r.steps.filter((s) => s.verdict === 'fail').map((s) => `${r.scenario.id}/${r.contract} ${s.path}: ${s.failure}`),
    );
    expect(failures).toEqual([]);
    expect(c.exitCode).toBe(0);
    // ...and what happened is still there: it contains the RFC's stale DMA.
    expect(cellOf(c, 'cove', 'vmm-driven', 'rfc-as-posted').outcome).toBe('contained');
  });
});
