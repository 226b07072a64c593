/**
 * The built-in scenario library (apps/demo/scenarios) as a specification: every file validates, the whole library
 * holds every expectation on the default architectures, the neutral backend and the backend variants under both
 * contracts, and the RFC argument the library makes is checked by running it, not by comparing with a copy of its
 * output.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CONTRACTS,
  IOPTE_SPLIT_STEP,
  registersWithGmem,
  swProtected,
  type ArchBackend,
  type Contract,
} from '@gmemlab/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BUILTIN_SCENARIOS,
  compare,
  DEFAULT_ARCHS,
  loadBackends,
  loadScenario,
  runScenario,
  selectArchs,
  type Comparison,
  type RunResult,
  type Scenario,
} from '../src/index.js';
import { evaluate } from '../src/scenario/expr.js';
import { DESIGNS, skipReason } from '../src/run/designs.js';

// Backends come through the demo's loader, as the CLI gets them (ARCHITECTURE.md: nothing imports a backend
// statically).
const backends = await loadBackends({ cwd: BUILTIN_SCENARIOS });
/** A built-in package's default export: the ready backend, which is also its factory of variants. */
function factory(id: string): ArchBackend & ((options: object) => ArchBackend) {
  const loaded = backends.loaded.find((b) => b.id === id);
  if (!loaded || typeof loaded.backend !== 'function') throw new Error(`backend ${id} is not a loaded factory`);
  return loaded.backend as ArchBackend & ((options: object) => ArchBackend);
}
const [tdx, sevSnp, armCca, pkvm] = ['tdx', 'sev-snp', 'arm-cca', 'pkvm'].map(factory) as [
  ReturnType<typeof factory>,
  ReturnType<typeof factory>,
  ReturnType<typeof factory>,
  ReturnType<typeof factory>,
];

/** The total of the pipeline counters whose step name contains `name` ('TDH.MEM.PAGE.AUG', 'rmp_make_shared'). */
const count = (counters: Record<string, number>, name: string): number =>
  Object.entries(counters)
    .filter(([step]) => step.includes(name))
    .reduce((n, [, value]) => n + value, 0);
const SCHEMA_LINE = '# yaml-language-server: $schema=../scenario.schema.json';

/** The scenarios issue 9 asks for, by id. */
const REQUIRED = [
  'rfc-as-posted',
  'registry-contract',
  'memory-unplug',
  'pinned-page-blocks-conversion',
  'td-boot-storm',
  'swiotlb-boot',
  'partial-conversion-in-2m-iopte',
  'gmem-closed-under-area',
  'tdx-two-step',
  'tdx-two-step-forgotten',
  'example-walkthrough',
];

/** Calls that only build the set-up; every other step states what it expects. */
const SET_UP = new Set([
  'host.createVm',
  'vm.createGuestMemfd',
  'vm.setUserMemoryRegion2',
  'host.openIommufd',
  'iommufd.createIoas',
  'ioas.mapFile',
  'ioas.attachDevice',
  'gmem.mmap',
  'host.memfdCreate',
  'memfd.mmap',
]);

const files = readdirSync(BUILTIN_SCENARIOS)
  .filter((f) => /\.(ya?ml|json)$/.test(f))
  .sort()
  .map((f) => join(BUILTIN_SCENARIOS, f));

const library: Scenario[] = files.map((f) => loadScenario(f));
const byId = (id: string): Scenario => {
  const found = library.find((s) => s.id === id);
  if (!found) throw new Error(`no built-in scenario '${id}'`);
  return found;
};

/** A scenario's `let` values, evaluated as the runner does. */
function letsOf(scenario: Scenario): Map<string, bigint> {
  const values = new Map<string, bigint>();
  for (const [name, expr] of scenario.lets)
    values.set(
      name,
      evaluate(expr, (n) => values.get(n)),
    );
  return values;
}
const letOf = (scenario: Scenario, name: string): number => {
  const value = letsOf(scenario).get(name);
  if (value === undefined) throw new Error(`${scenario.id} has no let ${name}`);
  return Number(value);
};

/** Why a run failed, one line per failing step, for assertion messages. */
const failuresOf = (runs: readonly RunResult[]): string[] =>
  runs
    .filter((r) => !r.ok)
    .flatMap((r) =>
      r.steps
        .filter((s) => s.verdict === 'fail')
        .map((s) => `${r.scenario.id} ${r.arch}/${r.contract} step ${s.path} ${s.call}: ${s.failure}`),
    );

const runOf = (comparison: Comparison, id: string, arch: string, contract: Contract): RunResult => {
  const run = comparison.runs.find((r) => r.scenario.id === id && r.arch === arch && r.contract === contract);
  if (!run) throw new Error(`no run of ${id} on ${arch}/${contract}`);
  return run;
};

const stepsOf = (run: RunResult, call: string) => run.steps.filter((s) => s.call === call);

describe('every built-in scenario validates', () => {
  it('the library has the scenarios issue 9 lists', () => {
    expect(library.map((s) => s.id)).toEqual(expect.arrayContaining(REQUIRED));
  });

  it.each(files.map((f) => [f.replace(/^.*\//, ''), f] as const))(
    '%s: schema comment, title, situation, source, and an expectation on every step past the set-up',
    (_name, file) => {
      const text = readFileSync(file, 'utf8');
      expect(text.split('\n')[0]).toBe(SCHEMA_LINE);
      const scenario = loadScenario(file);
      expect(scenario.title.length).toBeGreaterThan(0);
      expect(scenario.situation.length).toBeGreaterThan(80);
      expect(scenario.source.length).toBeGreaterThan(0);
      const walk = (steps: Scenario['steps']): string[] =>
        steps.flatMap((step) =>
          step.kind === 'repeat'
            ? walk(step.steps)
            : SET_UP.has(step.call) || step.expect
              ? []
              : [`step ${step.path} ${step.call}`],
        );
      expect(walk(scenario.steps)).toEqual([]);
      // Issue 17: where the architectures differ (a list of cases that names some), an 'ok' for any arch does not close the
      // list: a backend the scenario does not name (a third party's) gets no expectation there and is reported as
      // what happened, never as a failure. (A catch-all that is the kernel's own answer whatever the hardware — a
      // KVM_EXIT_MEMORY_FAULT, the stale IOPTEs a punch leaves under vmm-driven — stays.)
      const open = (steps: Scenario['steps']): string[] =>
        steps.flatMap((step) => {
          if (step.kind === 'repeat') return open(step.steps);
          const cases = step.expect ?? [];
          const bareOk = cases.some((c) => !c.arch && !c.contract && c.outcome.ok);
          return cases.some((c) => c.arch) && bareOk ? [`step ${step.path} ${step.call}`] : [];
        });
      expect(open(scenario.steps)).toEqual([]);
    },
  );
});

describe('the whole library holds every expectation', () => {
  let defaults: Comparison;
  let neutral: Comparison;
  beforeAll(() => {
    defaults = compare(library, selectArchs(backends, DEFAULT_ARCHS.join(',')), DESIGNS, { pageMaps: false });
    neutral = compare(library, selectArchs(backends, 'sw-protected'), DESIGNS, { pageMaps: false });
  }, 120_000);

  it(`on ${DEFAULT_ARCHS.join(', ')} under every design (what 'gmemlab compare' runs)`, () => {
    expect(failuresOf(defaults.runs)).toEqual([]);
    expect(defaults.exitCode).toBe(0);
    // A scenario is the VMM's, guest's and devices' actions; the design is the kernel's: every in-place scenario
    // runs under all three designs, every today's-path scenario (conversion 'separate') in the 'today' column.
    const ran = defaults.runs.filter((r) => !r.skipped);
    const separate = library.filter((s) => s.host.conversion === 'separate').length;
    expect(separate).toBeGreaterThan(0);
    expect(ran.length).toBe(((library.length - separate) * CONTRACTS.length + separate) * DEFAULT_ARCHS.length);
    for (const r of defaults.runs)
      expect(r.skipped === undefined, `${r.scenario.id} ${r.contract}`).toBe(
        skipReason(r.contract as (typeof DESIGNS)[number], library.find((s) => s.id === r.scenario.id)!.host) ===
          undefined,
      );
  });

  it("on the neutral backend 'sw-protected' (what --arch all adds)", () => {
    expect(failuresOf(neutral.runs)).toEqual([]);
    expect(neutral.exitCode).toBe(0);
  });

  it('shows violations: the library is not a list of things that go well', () => {
    const kinds = new Set(defaults.runs.flatMap((r) => r.violationKinds));
    expect([...kinds].sort()).toEqual(['stale-iopte', 'unsafe-iopte']);
  });

  describe('the RFC argument', () => {
    it('under vmm-driven, memory unplug leaves stale IOPTEs on every architecture, and the stale DMA lands in the second VM', () => {
      for (const arch of [...DEFAULT_ARCHS, 'sw-protected']) {
        const run = runOf(arch === 'sw-protected' ? neutral : defaults, 'memory-unplug', arch, 'vmm-driven');
        const punches = stepsOf(run, 'gmem.fallocate');
        expect(punches.length, arch).toBeGreaterThan(0);
        for (const punch of punches)
          expect(
            punch.violations.map((v) => v.kind),
            `${arch} step ${punch.path}`,
          ).toContain('stale-iopte');
        // The first stale write reaches the other VM's shared page, whatever the architecture.
        const stale = stepsOf(run, 'device.dmaWrite').find(
          (s) => s.result.kind === 'ok' && s.result.access?.reached?.some((r) => r.ownerKind === 'guest_memfd'),
        );
        expect(stale, arch).toBeDefined();
      }
    });

    it('under gmem-registry, the same unplug revokes the area: every later DMA faults in the IOMMU and nothing stale is reached', () => {
      for (const arch of DEFAULT_ARCHS) {
        const run = runOf(defaults, 'memory-unplug', arch, 'gmem-registry');
        const punch = stepsOf(run, 'gmem.fallocate')[0]!;
        expect(punch.effects.revoked.length, arch).toBeGreaterThan(0);
        const after = stepsOf(run, 'device.dmaWrite').filter((s) => Number(s.path) > Number(punch.path));
        expect(after.length).toBeGreaterThan(0);
        for (const dma of after) {
          expect(dma.label, `${arch} step ${dma.path}`).toBe('iommu-fault');
        }
      }
    });

    it('copy-revoked-with-pages: a punch revokes the IOMMU_IOAS_COPY in the other IOAS with the original, whole, on every architecture', () => {
      for (const arch of DEFAULT_ARCHS) {
        for (const contract of ['gmem-registry', 'mirror'] as const) {
          const run = runOf(defaults, 'copy-revoked-with-pages', arch, contract);
          const punch = stepsOf(run, 'gmem.fallocate')[0]!;
          // The registry's one consumer is the pages object: both areas over it go, the copy included.
          expect(punch.effects.revoked.map((r) => r.area).sort(), `${arch}/${contract}`).toEqual([
            'ioas:1/area:1',
            'ioas:2/area:1',
          ]);
          expect(
            stepsOf(run, 'device.dmaWrite')
              .slice(-2)
              .map((s) => s.label),
            `${arch}/${contract}`,
          ).toEqual(['iommu-fault', 'iommu-fault']);
          expect(stepsOf(run, 'device.dmaRead').at(-1)!.label, `${arch}/${contract}`).toBe('iommu-fault');
        }
        const posted = runOf(defaults, 'copy-revoked-with-pages', arch, 'vmm-driven');
        expect(
          stepsOf(posted, 'gmem.fallocate')[0]!.violations.map((v) => v.owner),
          arch,
        ).toEqual(['ioas:1/area:1', 'ioas:2/area:1']);
      }
    });

    it('under gmem-registry and mirror, no built-in scenario breaks an invariant or crashes the host, on any default architecture or the neutral one', () => {
      const registering = [...defaults.runs, ...neutral.runs].filter(
        (r) => r.contract !== 'today' && registersWithGmem(r.contract as Contract) && !r.skipped,
      );
      expect(new Set(registering.map((r) => r.contract))).toEqual(new Set(['gmem-registry', 'mirror']));
      for (const run of registering) {
        expect(run.violationKinds, `${run.scenario.id} on ${run.arch}/${run.contract}`).toEqual([]);
        expect(run.crashed, `${run.scenario.id} on ${run.arch}/${run.contract}`).toBeUndefined();
      }
    });

    it('TDX takes a machine check in rfc-as-posted, and not when the registry contract runs the same actions', () => {
      const posted = runOf(defaults, 'rfc-as-posted', 'tdx', 'vmm-driven');
      expect(posted.crashed?.fault).toBe('machine-check');
      const conversion = stepsOf(posted, 'gmem.setMemoryAttributes2')[0]!;
      expect(conversion.violations.map((v) => v.kind)).toEqual(['unsafe-iopte']);
      const crash = posted.steps.find((s) => s.crash);
      expect(crash?.call).toBe('device.dmaWrite');

      const registry = runOf(defaults, 'registry-contract', 'tdx', 'gmem-registry');
      expect(registry.crashed).toBeUndefined();
      expect(registry.violationKinds).toEqual([]);
      // The registry revoked the IOPTEs over the converted pages, so the same write is an IO page fault.
      const converted = stepsOf(registry, 'gmem.setMemoryAttributes2')[0]!;
      expect(converted.effects.revoked.map((r) => r.cause)).toEqual(['to-private']);
      expect(stepsOf(registry, 'device.dmaWrite').at(-1)!.label).toBe('iommu-fault');
      // The two files run the same actions: same calls, in the same order.
      expect(registry.steps.map((s) => s.call)).toEqual(posted.steps.map((s) => s.call));
    });

    it('only TDX crashes, and only under vmm-driven: the other architectures contain the stale DMA', () => {
      const crashed = defaults.runs.filter((r) => r.crashed).map((r) => `${r.arch}/${r.contract}`);
      expect(new Set(crashed)).toEqual(new Set(['tdx/vmm-driven']));
      for (const arch of ['sev-snp', 'arm-cca']) {
        const dma = stepsOf(runOf(defaults, 'rfc-as-posted', arch, 'vmm-driven'), 'device.dmaWrite').at(-1)!;
        expect(dma.result.kind, arch).toBe('fault');
        expect(dma.result.kind === 'fault' && dma.result.access.fatal, arch).toBe(false);
      }
      // Android pKVM never hands the guest a page a live IOPTE maps [P-d, P-h]: the DMA lands in a host page, and
      // the guest's private fault is what fails (EINVAL from KVM_RUN).
      const pkvmRun = runOf(defaults, 'rfc-as-posted', 'pkvm', 'vmm-driven');
      expect(stepsOf(pkvmRun, 'device.dmaWrite').at(-1)!.result.kind).toBe('ok');
      const read = stepsOf(pkvmRun, 'vm.guestRead').at(-1)!;
      expect(read.result.kind === 'fault' && read.result.access.fault).toBe('einval');
    });

    it('a VMM that does both TDX steps is safe under either contract; forgetting the first is fatal only without the registry', () => {
      for (const contract of CONTRACTS) {
        const right = runOf(defaults, 'tdx-two-step', 'tdx', contract);
        expect(right.violationKinds, contract).toEqual([]);
        expect(right.crashed, contract).toBeUndefined();
      }
      expect(runOf(defaults, 'tdx-two-step-forgotten', 'tdx', 'vmm-driven').crashed?.fault).toBe('machine-check');
      expect(runOf(defaults, 'tdx-two-step-forgotten', 'tdx', 'gmem-registry').crashed).toBeUndefined();
      expect(runOf(defaults, 'tdx-two-step-forgotten', 'tdx', 'mirror').crashed).toBeUndefined();
    });

    it('mirror-round-trip: on TDX the mirror costs the device fewer IO faults than the registry, and is as safe; elsewhere the modes cost the same', () => {
      /** DMA writes that did not land (host down after a crash is not an IO fault). */
      const ioFaults = (run: RunResult) =>
        stepsOf(run, 'device.dmaWrite').reduce((n, step) => {
          const outcomes = step.outcomes ?? { [step.label]: 1 };
          return (
            n +
            Object.entries(outcomes)
              .filter(([label]) => label !== 'ok' && label !== 'host down')
              .reduce((m, [, times]) => m + times, 0)
          );
        }, 0);
      const tdxRegistry = runOf(defaults, 'mirror-round-trip', 'tdx', 'gmem-registry');
      const tdxMirror = runOf(defaults, 'mirror-round-trip', 'tdx', 'mirror');
      expect(ioFaults(tdxMirror)).toBeLessThan(ioFaults(tdxRegistry));
      expect(ioFaults(tdxMirror)).toBeGreaterThan(0);
      expect(tdxMirror.violationKinds).toEqual([]);
      expect(tdxMirror.crashed).toBeUndefined();
      expect(runOf(defaults, 'mirror-round-trip', 'tdx', 'vmm-driven').crashed?.fault).toBe('machine-check');
      for (const arch of ['sev-snp', 'arm-cca', 'pkvm']) {
        const costs = CONTRACTS.map((contract) => ioFaults(runOf(defaults, 'mirror-round-trip', arch, contract)));
        expect(new Set(costs).size, `${arch}: ${costs.join(', ')}`).toBe(1);
      }
    });
  });

  describe('the workloads count what their own numbers say', () => {
    it('the TD boot storm: PAGE.AUG once per 4K accept and once per return to private, REMOVE and an IPI per vCPU once per return to shared', () => {
      const storm = byId('td-boot-storm');
      const accepts = letOf(storm, 'ACCEPTS');
      const flips = letOf(storm, 'FLIPS1') + letOf(storm, 'FLIPS2') + letOf(storm, 'FLIPS3');
      // the prior-art performance figures: ~2710 accepts; GFNs hit 974, 476 and 156 times.
      expect(accepts).toBeGreaterThanOrEqual(2600);
      expect(accepts).toBeLessThanOrEqual(2800);
      expect([letOf(storm, 'FLIPS1'), letOf(storm, 'FLIPS2'), letOf(storm, 'FLIPS3')]).toEqual([974, 476, 156]);
      for (const contract of CONTRACTS) {
        const counters = runOf(defaults, 'td-boot-storm', 'tdx', contract).counters;
        // Each hot GFN is accepted once before it starts flipping.
        expect(count(counters, 'TDH.MEM.PAGE.AUG'), contract).toBe(accepts + 3 + flips);
        expect(count(counters, 'TDG.MEM.PAGE.ACCEPT'), contract).toBe(accepts + 3 + flips);
        expect(count(counters, 'TDH.MEM.PAGE.REMOVE'), contract).toBe(flips);
        expect(count(counters, 'IPI'), contract).toBe(flips * letOf(storm, 'VCPUS'));
      }
    });

    it('SWIOTLB at boot: 6% of RAM inside [64 MiB, 1 GiB], every page of it leaving the private state once', () => {
      const swiotlb = byId('swiotlb-boot');
      const ram = letOf(swiotlb, 'RAM');
      const size = letOf(swiotlb, 'SWIOTLB');
      const sixPercent = Math.min(Math.max(Math.floor((ram * 6) / 100), 64 * 2 ** 20), 2 ** 30);
      expect(size).toBeLessThanOrEqual(sixPercent);
      expect(sixPercent - size).toBeLessThan(2 * 2 ** 20);
      const pages = size / 4096;
      for (const contract of CONTRACTS) {
        expect(count(runOf(defaults, 'swiotlb-boot', 'tdx', contract).counters, 'TDH.MEM.PAGE.REMOVE'), contract).toBe(
          pages,
        );
        expect(count(runOf(defaults, 'swiotlb-boot', 'sev-snp', contract).counters, 'rmp_make_shared'), contract).toBe(
          pages,
        );
      }
    });

    it('the example walkthrough counts what apps/example printed: TDX removes 512 pages with 4 vCPUs, 4608 steps', () => {
      const counters = runOf(defaults, 'example-walkthrough', 'tdx', 'gmem-registry').counters;
      const removal = [
        'TDH.MEM.RANGE.BLOCK',
        'TDH.MEM.TRACK',
        'IPI',
        'TDH.MEM.PAGE.REMOVE',
        'TDH.PHYMEM.PAGE.WBINVD',
        'page clear',
      ].reduce((n, step) => n + count(counters, step), 0);
      expect(count(counters, 'TDH.MEM.PAGE.AUG')).toBe(512);
      expect(removal).toBe(512 * 5 + 512 * 4);
    });
  });
});

describe('the library on the backend variants', () => {
  // The variants, built by calling each loaded package's factory with its options. The CLI's --arch tdx:connect
  // needs the packages' `variants` records (LoadedBackend.build), which this branch does not have yet.
  const variants: ArchBackend[] = [
    tdx({ variant: 'connect' }),
    tdx({ dmaToPrivate: 'poison' }),
    tdx({ pwMceErratum: false }),
    sevSnp({ variant: 'tio' }),
    armCca({ variant: 'da' }),
    pkvm({ unshare: 'refuse-dma-mapped' }),
    pkvm({ hostAbort: 'hyp-bug' }),
    pkvm({ variant: 'upstream' }),
  ];

  it('the variants have the ids the scenarios select', () => {
    expect(variants.map((b) => b.id)).toEqual([
      'tdx:connect',
      'tdx:dma-poison',
      'tdx:no-erratum',
      'sev-snp:tio',
      'arm-cca:da',
      'pkvm:refuse-dma-mapped',
      'pkvm:hyp-bug',
      'pkvm:upstream',
    ]);
  });

  // One test per variant (each the whole library under every design): sized so a busy machine stays within its
  // timeout, and a failure names its variant (issue 17: the single test of all of them took over 120 s beside two
  // CPU hogs).
  it.each(variants.map((b) => [b.id, b] as const))(
    'every expectation holds on %s, under every contract (pkvm:upstream: vmm-driven only)',
    (_id, backend) => {
      // pkvm:upstream under gmem-registry (and mirror, which registers the same way) is left out on purpose: its conversion policy tolerates IOPTEs over pages it
      // says no device may reach (no IOMMU isolation upstream [P-a]), so the registry reports 'unsafe-iopte' where the
      // scenarios expect none. A finding for the backend, not an expectation the library encodes.
      const runs: RunResult[] = [];
      for (const scenario of library) {
        for (const contract of CONTRACTS) {
          if (backend.id === 'pkvm:upstream' && registersWithGmem(contract)) continue;
          runs.push(runScenario(scenario, backend, contract, { pageMaps: false }));
        }
      }
      expect(failuresOf(runs)).toEqual([]);
    },
    180_000,
  );

  it('SEV-TIO: a conversion inside a 2 MiB IOPTE splits it under the registry, and nowhere else', () => {
    const scenario = byId('partial-conversion-in-2m-iopte');
    const split = (backend: ArchBackend, contract: Contract) =>
      runScenario(scenario, backend, contract, { pageMaps: false }).counters[IOPTE_SPLIT_STEP] ?? 0;
    expect(split(sevSnp({ variant: 'tio' }), 'gmem-registry')).toBe(1);
    expect(split(sevSnp({ variant: 'tio' }), 'mirror')).toBe(split(sevSnp({ variant: 'tio' }), 'gmem-registry'));
    expect(split(sevSnp({ variant: 'tio' }), 'vmm-driven')).toBe(0);
    expect(split(sevSnp, 'gmem-registry')).toBe(0);
    expect(split(swProtected, 'gmem-registry')).toBe(0);
  });

  it('pkvm:refuse-dma-mapped refuses the conversion of a DMA-mapped page with EAGAIN at its offset, in both contracts', () => {
    for (const contract of CONTRACTS) {
      const run = runScenario(byId('example-walkthrough'), pkvm({ unshare: 'refuse-dma-mapped' }), contract, {
        pageMaps: false,
      });
      const conversion = stepsOf(run, 'gmem.setMemoryAttributes2')[0]!;
      expect(conversion.result, contract).toMatchObject({ kind: 'errno', errno: 'EAGAIN', errorOffset: 0 });
    }
  });
});
