/**
 * Today's path as a fourth column (issue 20): the built-in `qemu-today` runs QEMU's kvm_convert_memory order on
 * separate backings in the 'today' column only, `qemu-in-place` runs the same guest under the three designs, and
 * the page maps show the double allocation between a conversion and the VMM's discard (kernel-contract §4.4).
 */
import { join } from 'node:path';
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
import { DESIGNS } from '../src/run/designs.js';
import { verdictMatrix } from '../src/run/verdict.js';
import { renderCompareText } from '../src/format/text.js';

const backends = await loadBackends({ cwd: BUILTIN_SCENARIOS });
const today = loadScenario(join(BUILTIN_SCENARIOS, 'qemu-today.yaml'));
const inPlace = loadScenario(join(BUILTIN_SCENARIOS, 'qemu-in-place.yaml'));
let c: Comparison;
beforeAll(() => {
  c = compare([today, inPlace], selectArchs(backends, DEFAULT_ARCHS.join(',')), DESIGNS, { pageMaps: true });
}, 120_000);

describe('qemu-today and qemu-in-place', () => {
  it("qemu-today runs only in the 'today' column, qemu-in-place only under the three designs, every expectation holding", () => {
    for (const r of c.runs) {
      const ran = r.skipped === undefined;
      expect(ran, `${r.scenario.id} ${r.contract}`).toBe(
        r.scenario.id === 'qemu-today' ? r.contract === 'today' : r.contract !== 'today',
      );
      if (ran) expect(r.failures, `${r.scenario.id} ${r.arch} ${r.contract}`).toBe(0);
    }
    expect(c.exitCode).toBe(0);
  });

  it('on every architecture the late DMA is an IOMMU fault and nothing is unsafe, in both worlds', () => {
    const m = verdictMatrix(c);
    expect(m.contracts).toEqual([...DESIGNS]);
    for (const row of m.rows) for (const cell of row.cells) expect(cell!.outcome, row.arch).toBe('iommu-fault');
    for (const r of c.runs) expect(r.violationKinds, `${r.scenario.id} ${r.arch} ${r.contract}`).toEqual([]);
  });

  it("a comparison without a today's-path scenario leaves the 'today' column out; one of only such scenarios keeps only it", () => {
    const archs = selectArchs(backends, 'tdx');
    expect(compare([inPlace], archs, DESIGNS, { pageMaps: false }).contracts).toEqual([
      'vmm-driven',
      'gmem-registry',
      'mirror',
    ]);
    expect(compare([today], archs, DESIGNS, { pageMaps: false }).contracts).toEqual(['today']);
    // Asked only for a column no scenario runs in, the runs stay, each saying why it did not run.
    const none = compare([inPlace], archs, ['today'], { pageMaps: false });
    expect(none.runs.map((r) => r.skipped !== undefined)).toEqual([true]);
  });

  it('the page map shows each converted page twice until QEMU discards the old side', () => {
    for (const arch of DEFAULT_ARCHS) {
      const run = c.runs.find((r) => r.scenario.id === 'qemu-today' && r.arch === arch && r.contract === 'today')!;
      const mapped = run.steps.filter((s) => s.call === 'ioas.map').at(-1)!;
      // After the to-shared conversion and VFIO's map, the guest's private page 0 is still in guest_memfd and the
      // memfd page behind the new IOPTE is allocated too.
      expect(mapped.pages![0]!.doubleAllocated, arch).toEqual([[0, 1, true]]);
      const punched = run.steps.find((s) => s.call === 'gmem.fallocate')!;
      expect(punched.pages![0]!.doubleAllocated ?? [], arch).toEqual([]);
      expect(punched.pages![0]!.sharedBacking!.map(([s, e]) => [s, e])).toEqual([[0, 16]]);
      const discarded = run.steps.find((s) => s.call === 'memfd.fallocate')!;
      expect(discarded.pages![0]!.sharedBacking ?? []).toEqual([]);
    }
  });

  it("the private pages' removal steps are counted where each architecture ends their hardware-private state: the conversion's zap (TDX [X-a], CCA [C-a]) or the punch (SEV-SNP [S-a], pKVM [P-d]); in place, at the conversion", () => {
    const at: Record<string, 'conversion' | 'punch'> = {
      tdx: 'conversion',
      'arm-cca': 'conversion',
      'sev-snp': 'punch',
      pkvm: 'punch',
    };
    for (const arch of DEFAULT_ARCHS) {
      const todayRun = c.runs.find((r) => r.scenario.id === 'qemu-today' && r.arch === arch && r.contract === 'today')!;
      const placeRun = c.runs.find(
        (r) => r.scenario.id === 'qemu-in-place' && r.arch === arch && r.contract === 'vmm-driven',
      )!;
      const punchAt = todayRun.steps.findIndex((s) => s.call === 'gmem.fallocate');
      // The conversion to shared: the last KVM_SET_MEMORY_ATTRIBUTES before VFIO maps the bounce buffer.
      const firstMap = todayRun.steps.findIndex((s) => s.call === 'ioas.map');
      const conversion = todayRun.steps
        .slice(0, firstMap)
        .filter((s) => s.call === 'vm.setMemoryAttributes')
        .at(-1)!;
      const punch = todayRun.steps[punchAt]!;
      const removing = at[arch] === 'conversion' ? conversion : punch;
      const other = at[arch] === 'conversion' ? punch : conversion;
      expect(Object.keys(removing.effects.pipeline).length, arch).toBeGreaterThan(0);
      expect(other.effects.pipeline, arch).toEqual({});
      expect(placeRun.failures).toBe(0);
    }
  });

  it("the text matrix with the 'today' column still fits 100 columns", () => {
    const text = renderCompareText(c);
    for (const line of text.split('\n')) expect(line.length, line).toBeLessThanOrEqual(100);
    expect(text).toMatch(/vmm-driven +gmem-registry +mirror +today/);
  });
});
