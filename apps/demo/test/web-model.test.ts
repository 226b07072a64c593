/**
 * What the web view draws, derived from a Comparison (src/web/model.ts), without a browser.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadBackends, selectArchs } from '../src/backends.js';
import { BUILTIN_SCENARIOS } from '../src/library.js';
import { compare } from '../src/run/compare.js';
import type { StepRecord } from '../src/run/types.js';
import { loadScenario } from '../src/scenario/load.js';
import { complement, intersect, kindOf, merge, pagesAt, runsText, scenarioView, type Lane } from '../src/web/model.js';
import { FIXTURES, PACKAGE } from './support.js';

async function comparison() {
  const backends = selectArchs(await loadBackends({ cwd: FIXTURES }), 'tdx,sev-snp');
  const scenarios = [
    loadScenario(join(BUILTIN_SCENARIOS, 'rfc-as-posted.yaml')),
    loadScenario(join(FIXTURES, 'registry-then-punch.yaml')),
  ];
  return compare(scenarios, backends, ['vmm-driven', 'gmem-registry'], { pageMaps: true });
}

describe('scenarioView', () => {
  it("one lane per architecture x design, in design-major order, for every scenario (the design is the kernel's)", async () => {
    const c = await comparison();
    for (const info of c.scenarios) {
      const view = scenarioView(c, info);
      expect(view.lanes.map((l) => l.key)).toEqual([
        'tdx/vmm-driven',
        'sev-snp/vmm-driven',
        'tdx/gmem-registry',
        'sev-snp/gmem-registry',
      ]);
      expect(view.skipped).toEqual([]);
    }
  });

  it('a column per step, each lane with the step of its run at that column', async () => {
    const c = await comparison();
    const view = scenarioView(c, c.scenarios[0]!);
    for (const lane of view.lanes) expect(lane.steps.map((s) => s?.path)).toEqual(view.columns.map((col) => col.path));
  });

  it('columns where the architectures answer differently are marked, as in the text matrix', async () => {
    const c = await comparison();
    const view = scenarioView(c, c.scenarios[0]!);
    view.columns.forEach((col, i) => {
      const labels = new Set(view.lanes.map((l) => l.steps[i]!.label));
      expect(col.differs, col.path).toBe(labels.size > 1);
    });
    expect(view.columns.some((col) => col.differs)).toBe(true);
  });

  it('the crash, the violations and the counters of each lane', async () => {
    const c = await comparison();
    const [tdx, snp] = scenarioView(c, c.scenarios[0]!).lanes as [Lane, Lane];
    expect(tdx.crashAt).toBeDefined();
    expect(kindOf(tdx.steps[tdx.crashAt!])).toBe('crash');
    expect(tdx.counters.violations).toBeGreaterThan(0);
    expect(snp.crashAt).toBeUndefined();
    expect(tdx.counters.pipeline).toBe(Object.values(tdx.run.counters).reduce((a, b) => a + b, 0));
    const registry = scenarioView(c, c.scenarios[1]!).lanes.find((l) => l.key === 'tdx/gmem-registry')!;
    expect(registry.counters.ioptesRevoked).toBeGreaterThan(0);
  });

  it('opens on the first step where the story turns: a violation, a crash, a failure or a difference', async () => {
    const c = await comparison();
    const view = scenarioView(c, c.scenarios[0]!);
    const firstViolation = view.lanes[0]!.steps.findIndex((s) => (s?.violations.length ?? 0) > 0);
    expect(view.firstInteresting).toBe(firstViolation);
  });
});

describe('kindOf', () => {
  const step = (result: StepRecord['result'], extra: Partial<StepRecord> = {}): StepRecord => ({
    path: '1',
    call: 'x',
    kernel: 'x',
    args: '',
    result,
    label: '',
    effects: {
      invalidations: [],
      zapped: { stage2: 0, hostPte: 0, iopte: 0 },
      revoked: [],
      pipeline: {},
      hardware: { enter: 0, leave: 0 },
    },
    violations: [],
    verdict: 'none',
    ...extra,
  });
  it('names what a cell shows, most severe first', () => {
    expect(kindOf(step({ kind: 'ok' }))).toBe('ok');
    expect(kindOf(step({ kind: 'errno', errno: 'EAGAIN', message: '' }))).toBe('errno');
    expect(kindOf(step({ kind: 'fault', access: { ok: false, fault: 'memory-fault' } }))).toBe('exit');
    expect(kindOf(step({ kind: 'fault', access: { ok: false, fault: 'iommu-fault' } }))).toBe('fault');
    expect(kindOf(step({ kind: 'fault', access: { ok: false, fault: 'machine-check', fatal: true } }))).toBe('crash');
    expect(
      kindOf(
        step({
          kind: 'ok',
          access: { ok: true, reached: [{ address: 0, pfn: 1, owner: 'a free frame', ownerKind: 'free' }] },
        }),
      ),
    ).toBe('stale');
    expect(kindOf(step({ kind: 'host-down', message: '' }))).toBe('host-down');
    expect(kindOf(undefined)).toBeUndefined();
  });
});

describe('pagesAt', () => {
  it('a column without its own page maps shows the latest earlier ones (steps inside a repeat)', () => {
    const pages = [
      {
        ino: 1,
        vm: 'vm:1',
        npages: 4,
        attribute: [[0, 4, 'shared']],
        hardware: [],
        populated: [],
        pinned: [],
        poisoned: [],
        stage2: [],
        hostPte: [],
        iopte: [],
      },
    ] as never;
    const lane = { steps: [{ path: '1', pages }, { path: '2.1' }, undefined] } as unknown as Lane;
    expect(pagesAt(lane, 1)).toEqual({ pages, from: '1' });
    expect(pagesAt(lane, 2)).toEqual({ pages, from: '1' });
    expect(pagesAt({ steps: [{ path: '1' }] } as unknown as Lane, 0)).toBeUndefined();
  });
});

describe('runs', () => {
  it('merge sorts and joins overlapping runs of several owners', () => {
    expect(
      merge([
        [10, 20],
        [0, 5],
        [4, 8],
        [20, 30],
      ]),
    ).toEqual([
      [0, 8],
      [10, 30],
    ]);
  });
  it('intersect: where two layers overlap', () => {
    expect(
      intersect(
        [
          [0, 10],
          [20, 30],
        ],
        [[5, 25]],
      ),
    ).toEqual([
      [5, 10],
      [20, 25],
    ]);
    expect(intersect([[0, 2 ** 28]], [[2 ** 28 - 1, 2 ** 28]])).toEqual([[2 ** 28 - 1, 2 ** 28]]);
  });
  it('complement: the holes of a 1 TiB file are runs, not pages', () => {
    const TiB = 2 ** 28; // pages
    expect(
      complement(
        [
          [0, 512],
          [TiB - 1, TiB],
        ],
        TiB,
      ),
    ).toEqual([[512, TiB - 1]]);
    expect(complement([], 8)).toEqual([[0, 8]]);
  });
  it('runsText for data attributes', () => {
    expect(
      runsText([
        [0, 512, 'private'],
        [512, 1024, { state: 'live', owner: 'ioas:1/area:1' }],
        [1024, 2048, true],
      ]),
    ).toBe('0-512:private,512-1024:live|ioas:1/area:1,1024-2048');
  });
});

describe('the browser bundle', () => {
  it('src/web imports no Node module and no @gmemlab package at run time (types only)', () => {
    const dir = join(PACKAGE, 'src', 'web');
    const seen: string[] = [];
    const walk = (file: string, from: string) => {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^import\s+(type\s+)?[^'"]*from\s+'([^']+)'/gm)) {
        const [, typeOnly, spec] = m as unknown as [string, string | undefined, string];
        if (typeOnly) continue;
        expect(spec, `${from} imports ${spec}`).toMatch(/^\.\.?\//);
        const target = join(dirname(file), spec.replace(/\.js$/, '.ts'));
        if (!seen.includes(target)) {
          seen.push(target);
          walk(target, target.slice(PACKAGE.length + 1));
        }
      }
    };
    walk(join(dir, 'main.ts'), 'src/web/main.ts');
    expect(seen.length).toBeGreaterThan(3);
  });
});
