/**
 * The explorer on the core's neutral backend and on backends defined here (architecture packages are the demo's
 * tests' business: no package imports a backend). Every expectation comes from running the explorer.
 */
import { CONTRACTS, swProtected, type ArchBackend, type ConversionContext } from '@gmemlab/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  alphabet,
  before,
  canonicalState,
  checkTransition,
  createWorld,
  deepEqual,
  DEFAULT_WORLD,
  execute,
  EXPLORER_CALLS,
  explore,
  iovaSlots,
  mergeDifferences,
  perform,
  PROPERTY_NAMES,
  randomWalks,
  search,
  setupSteps,
  worldConfig,
  type Snapshot,
  type World,
} from './index.js';
import { collisionBound } from './fingerprint.js';

/** A backend whose registry policy refuses every conversion to private under a DMA mapping. */
const refusing: ArchBackend = Object.freeze({
  ...swProtected,
  id: 'refusing',
  name: 'Refusing (test)',
  conversionPolicy: ({ to }: ConversionContext) => (to === 'private' ? 'refuse' : 'tolerate'),
});

function run(
  trace: readonly string[],
  backend: ArchBackend = swProtected,
  contract: (typeof CONTRACTS)[number] = 'gmem-registry',
): World {
  const config = worldConfig();
  const actions = alphabet(config);
  const world = createWorld(config, backend, contract);
  for (const id of trace) {
    const action = actions.find((a) => a.id === id)!;
    expect(action.enabled(world), id).toBe(true);
    perform(world, action);
  }
  return world;
}

const canonical = (world: World) => canonicalState(world, world.host.snapshot() as never);

describe('the world and its actions', () => {
  it('the default world is one page each and one area, and its setup is the scenario setup', () => {
    expect(DEFAULT_WORLD).toEqual({ pages: 1, vm2Pages: 1, maxAreas: 1 });
    expect(setupSteps(DEFAULT_WORLD).map((s) => s.call)).toEqual([
      'host.createVm',
      'vm.createGuestMemfd',
      'vm.setUserMemoryRegion2',
      'host.createVm',
      'vm.createGuestMemfd',
      'vm.setUserMemoryRegion2',
      'host.openIommufd',
      'iommufd.createIoas',
    ]);
    expect(() => worldConfig({ pages: 0 })).toThrow(/world.pages/);
  });

  it('each action is written once, as its scenario step: the call is made from the step, on the objects its names bind', () => {
    const config = worldConfig({ pages: 2, maxAreas: 2 });
    const actions = alphabet(config);
    // A world where every kind of move is enabled: an mmap, two areas, a device, a pin, a pending fault.
    const world = createWorld(config, swProtected, 'gmem-registry');
    for (const id of ['mmap', 'map-file:1', 'map-user:0', 'attach', 'pin:1', 'resolve:0:shared'])
      perform(
        world,
        actions.find((a) => a.id === id)!,
      );
    const enabled = actions.filter((a) => a.enabled(world));
    expect(new Set(enabled.map((a) => a.kind))).toEqual(
      new Set([
        'unmap',
        'punch',
        'close',
        'munmap',
        'pin',
        'unpin',
        'to-private',
        'to-shared',
        'host-access',
        'guest-access',
        'install',
        'dma',
        'vm2-access',
      ]),
    );
    for (const action of enabled) expect(EXPLORER_CALLS, action.id).toContain(action.step(world).call);
    // The step decides the call: an IOVA in the step is the IOVA the model is asked about.
    const unmap = actions.find((a) => a.id === 'unmap:1')!;
    const step = unmap.step(world);
    expect(step).toMatchObject({ call: 'ioas.unmap', iova: `0x${world.handles.areas[1]!.iova.toString(16)}` });
    const before = world.handles.areas.map((a) => a.iova);
    execute(world, step);
    expect(
      (world.host.snapshot() as { ioases: Array<{ areas: Array<{ iova: number }> }> }).ioases[0]!.areas.map(
        (a) => a.iova,
      ),
    ).toEqual([before[0]]);
    // A step naming a handle the actors do not hold, or a flag the explorer does not know, is refused before any call.
    expect(() => execute(world, { call: 'pin.unpin', on: 'pin0' })).toThrow(/the actors hold no 'pin0'/);
    expect(() => execute(world, { call: 'gmem.fallocate', mode: 'FALLOC_FL_NOPE', offset: 0, length: 4096 })).toThrow(
      /unknown flag 'FALLOC_FL_NOPE'/,
    );
    expect(() => execute(world, { call: 'gmem.truncate' })).toThrow(/no call 'gmem.truncate'/);
  });

  it('every actor has moves, each action id is unique, and a trace is a list of them', () => {
    const actions = alphabet(worldConfig({ pages: 2, maxAreas: 2 }));
    expect(new Set(actions.map((a) => a.id)).size).toBe(actions.length);
    expect(new Set(actions.map((a) => a.actor))).toEqual(new Set(['vmm', 'guest', 'device', 'vm2']));
    for (const id of [
      'map-file:1',
      'map-user:0',
      'unmap:1',
      'attach',
      'punch:1',
      'close',
      'mmap',
      'munmap',
      'pin:0',
      'unpin:0',
      'to-private:1',
      'to-shared:0',
      'host-read:0',
      'guest:1:shared',
      'resolve:0:private',
      'install',
      'dma-write:2',
      'vm2:0',
    ]) {
      expect(actions.map((a) => a.id)).toContain(id);
    }
  });
});

describe('an area of the whole file (map-file:all)', () => {
  const config = worldConfig({ pages: 2, maxAreas: 2 });
  const actions = alphabet(config);
  const byId = new Map(actions.map((a) => [a.id, a]));
  /** Run a trace in the 2-page, 2-area world; the findings of its last step. */
  function trace(ids: readonly string[], contract: (typeof CONTRACTS)[number] = 'vmm-driven') {
    const world = createWorld(config, swProtected, contract);
    let findings: ReturnType<typeof checkTransition> = { violated: [], witnessed: [] };
    for (const id of ids) {
      const action = byId.get(id)!;
      expect(action.enabled(world), id).toBe(true);
      const snapshot = world.host.snapshot() as Snapshot;
      const facts = before(world, action, snapshot);
      const outcome = perform(world, action);
      const after = world.host.snapshot() as Snapshot;
      findings = checkTransition(
        world,
        swProtected,
        contract,
        action,
        outcome,
        facts,
        after,
        deepEqual(after, snapshot),
      );
    }
    return { world, findings, names: (f: typeof findings.violated) => f.map(([p]) => p) };
  }

  it('exists only in a world of two pages or more, and the device has a DMA for every IOVA page an area can reach', () => {
    expect(alphabet(worldConfig()).some((a) => a.id === 'map-file:all')).toBe(false);
    expect(
      alphabet(worldConfig())
        .filter((a) => a.kind === 'dma')
        .map((a) => a.id),
    ).toEqual(['dma-read:1', 'dma-write:1']);
    expect(byId.get('map-file:all')!.step(createWorld(config, swProtected, 'vmm-driven'))).toMatchObject({
      call: 'ioas.mapFile',
      fd: 'gmem',
      start: 0,
      length: 2 * 4096,
    });
    // The farthest an area reaches: two one-page areas at IOVA pages 1 and 2, the first unmapped, then the whole
    // file, aligned to two pages, goes to pages 4-5 (iovaSlots says 5).
    const { world } = trace(['map-file:0', 'map-file:1', 'unmap:0', 'map-file:all']);
    expect(world.handles.areas.map((a) => [a.iova, a.pages])).toEqual([
      [0x2000, 1],
      [0x4000, 2],
    ]);
    expect(iovaSlots(config)).toBe(5);
    expect(actions.filter((a) => a.kind === 'dma').map((a) => a.slot)).toEqual([1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    // unmap and copy take the whole area.
    expect(byId.get('unmap:1')!.step(world)).toMatchObject({ iova: '0x4000', length: 2 * 4096 });
    expect(byId.get('copy:1')!.step(world)).toMatchObject({ srcIova: '0x4000', length: 2 * 4096 });
  });

  it("[RFC as posted] a punch of one page: a DMA at that page's IOVA reaches the freed frame, at the other page's it reaches the file's page", () => {
    const punched = trace(['map-file:all', 'attach', 'punch:1', 'dma-read:3']);
    expect(punched.world.handles.areas[0]).toMatchObject({ iova: 0x2000, pages: 2, truncated: [false, true] });
    expect(punched.names(punched.findings.violated)).toEqual(['no-dma-after-free']);
    expect(punched.names(punched.findings.witnessed)).toEqual(['no-dma-after-free']);
    const other = trace(['map-file:all', 'attach', 'punch:1', 'dma-read:2']);
    expect(other.findings).toEqual({ violated: [], witnessed: [] });
  });

  it("['gmem-registry'] the punch invalidates the area's mapping; the DMA at the punched page reaches nothing freed", () => {
    const punched = trace(['map-file:all', 'attach', 'punch:1', 'dma-read:3'], 'gmem-registry');
    expect(punched.names(punched.findings.violated)).toEqual([]);
    expect(punched.names(punched.findings.witnessed)).toEqual(['no-dma-after-free']);
  });

  it('the canonical form keeps the truncation per page of the area, where it invalidated the mapping', () => {
    const a = trace(['map-file:all', 'attach', 'punch:0']).world;
    const b = trace(['map-file:all', 'attach', 'punch:1']).world;
    expect(canonical(a)).not.toBe(canonical(b));
    expect(canonical(trace(['map-file:all', 'unmap:0']).world)).toBe(
      canonical(createWorld(config, swProtected, 'vmm-driven')),
    );
  });

  for (const contract of CONTRACTS) {
    it(`merged states agree one action ahead in the 2-page, 2-area world ('${contract}', a sample of the first 2,000 states' merges)`, () => {
      const merges: Array<[readonly string[], readonly string[]]> = [];
      search({
        backend: swProtected,
        contract,
        world: config,
        maxStates: 2000,
        onMerge: (x, y) => merges.push([x, y]),
      });
      const spanning = merges.filter(([x, y]) => x.includes('map-file:all') || y.includes('map-file:all'));
      expect(spanning.length).toBeGreaterThan(50);
      for (const [x, y] of spanning.filter((_, i) => i % 25 === 0))
        expect(
          mergeDifferences({ backend: swProtected, contract, world: config }, x, y),
          `${x.join(' ')} ~ ${y.join(' ')}`,
        ).toEqual([]);
    }, 120_000);
  }
});

describe('the canonical form', () => {
  it('[pfns] states that differ only in which frame each page got hash equal', () => {
    const a = run(['vm2:0', 'guest:0:shared']);
    const b = run(['guest:0:shared', 'vm2:0']);
    expect(a.host.snapshot()).not.toEqual(b.host.snapshot());
    expect(canonical(a)).toBe(canonical(b));
  });

  it('[area ids] an area unmapped and made again hashes like the first one', () => {
    const a = run(['map-file:0']);
    const b = run(['map-file:0', 'unmap:0', 'map-file:0']);
    expect(JSON.stringify(a.host.snapshot())).not.toBe(JSON.stringify(b.host.snapshot()));
    expect(canonical(a)).toBe(canonical(b));
  });

  it('[addresses] an mmap made again at a new address hashes like the first, while the VMM holds a live one', () => {
    const a = run(['mmap']);
    const b = run(['mmap', 'munmap', 'mmap']);
    expect(canonical(a)).toBe(canonical(b));
    expect(canonical(run(['mmap', 'munmap']))).not.toBe(canonical(a));
  });

  it('[counters, seq, bytes] firmware counts, mmu_invalidate_seq and bytes written do not split states', () => {
    const a = run(['mmap', 'host-read:0']);
    const b = run(['mmap', 'host-read:0', 'host-write:0', 'to-private:0', 'to-shared:0']);
    expect(canonical(a)).toBe(canonical(b));
  });

  it('keeps apart what a property can see: a stale IOPTE, its frame reused, a pending fault that must retry', () => {
    const live = run(['attach', 'map-file:0']);
    const stale = run(['attach', 'map-file:0', 'punch:0'], swProtected, 'vmm-driven');
    const reused = run(['attach', 'map-file:0', 'punch:0', 'vm2:0'], swProtected, 'vmm-driven');
    expect(new Set([canonical(live), canonical(stale), canonical(reused)]).size).toBe(3);
    const pending = run(['resolve:0:shared']);
    const retry = run(['resolve:0:shared', 'to-private:0']);
    expect(canonical(pending)).not.toBe(canonical(run(['to-private:0'])));
    expect(canonical(retry)).toContain('"retry"');
  });
});

describe('search', () => {
  // One search per contract on the neutral backend, shared by the tests below, with every merge it makes.
  const searches = new Map<
    string,
    { result: ReturnType<typeof search>; merges: Array<[readonly string[], readonly string[]]> }
  >();
  beforeAll(() => {
    for (const contract of CONTRACTS) {
      const merges: Array<[readonly string[], readonly string[]]> = [];
      searches.set(contract, {
        result: search({ backend: swProtected, contract, onMerge: (a, b) => merges.push([a, b]) }),
        merges,
      });
    }
  });

  it('is exhaustive in the default world on the neutral backend, with every property decided and none vacuous', () => {
    for (const contract of CONTRACTS) {
      const { result } = searches.get(contract)!;
      expect(result.exhaustive, contract).toBe(true);
      expect(result.depth).toBeLessThan(result.bound);
      expect(result.bound).toBe(30);
      expect(result.levels.reduce((a, b) => a + b, 0)).toBe(result.states);
      for (const name of PROPERTY_NAMES) expect(result.properties[name].vacuous, `${contract} ${name}`).toBe(false);
    }
  });

  it('counts, per property, the checked transitions that met its premise and that violated it: vacuous exactly when no premise, violated exactly when a count', () => {
    for (const contract of CONTRACTS) {
      const { result } = searches.get(contract)!;
      for (const name of PROPERTY_NAMES) {
        const { premise, violated } = result.counts[name];
        expect(premise === 0, `${contract} ${name}`).toBe(result.properties[name].vacuous);
        expect(violated > 0, `${contract} ${name}`).toBe(!result.properties[name].holds);
        expect(premise + violated).toBeLessThanOrEqual(result.transitions + result.states);
      }
    }
    // The RFC as posted lets a DMA reach a freed frame: on the neutral backend, at least once per path to it.
    expect(searches.get('vmm-driven')!.result.counts['no-dma-after-free'].violated).toBeGreaterThan(1);
    expect(searches.get('gmem-registry')!.result.counts['no-dma-after-free'].violated).toBe(0);
  });

  it('the same configuration twice gives the same counts and the same traces', () => {
    const strip = (r: ReturnType<typeof search>) => ({ ...r, elapsedMs: 0 });
    expect(strip(search({ backend: swProtected, contract: 'vmm-driven' }))).toEqual(
      strip(searches.get('vmm-driven')!.result),
    );
  });

  it('reports each level as it ends (onLevel), the last report being the result', () => {
    const reports: Array<{ levels: number[]; states: number; transitions: number; violated: string[] }> = [];
    const result = search({
      backend: swProtected,
      contract: 'gmem-registry',
      depth: 5,
      onLevel: (levels, states, transitions, violated) =>
        reports.push({ levels: [...levels], states, transitions, violated: [...violated] }),
    });
    expect(reports).toHaveLength(5);
    expect(reports.map((r) => r.levels.length)).toEqual([2, 3, 4, 5, 6]);
    const violatedAtEnd = PROPERTY_NAMES.filter((name) => !result.properties[name].holds);
    expect(reports.at(-1)).toEqual({
      levels: result.levels,
      states: result.states,
      transitions: result.transitions,
      violated: violatedAtEnd,
    });
    for (const r of reports) expect(r.states).toBe(r.levels.reduce((a, b) => a + b, 0));
    // A violation is reported from the level whose expansion found it on: the level after its shortest trace's
    // last-but-one state (vmm-driven: no-dma-after-free in 4 actions, found while level 3 is expanded).
    const seen: string[][] = [];
    const vmm = search({
      backend: swProtected,
      contract: 'vmm-driven',
      depth: 5,
      onLevel: (_levels, _states, _transitions, violated) => seen.push([...violated]),
    });
    const length = vmm.properties['no-dma-after-free'].trace!.length;
    expect(length).toBe(4);
    expect(seen[length - 2]).not.toContain('no-dma-after-free');
    expect(seen[length - 1]).toContain('no-dma-after-free');
    expect(seen.at(-1)).toEqual(PROPERTY_NAMES.filter((name) => !vmm.properties[name].holds));
  });

  it('[visited set] kept as fingerprints from the start, or from a switch part-way, the search finds what the exact one finds, and says it used them', () => {
    const strip = (r: ReturnType<typeof search>) => ({ ...r, elapsedMs: 0, fingerprints: undefined });
    for (const contract of ['vmm-driven', 'mirror'] as const) {
      const exact = searches.get(contract)!.result;
      expect(exact.fingerprints).toBeUndefined();
      const prints = search({ backend: swProtected, contract, visited: 'fingerprint' });
      expect(strip(prints)).toEqual(strip(exact));
      expect(prints.fingerprints).toEqual({ from: 0, collisionBound: collisionBound(exact.states) });
    }
    // 'auto' keeps canonical forms up to a number of states, then turns them into fingerprints and goes on.
    const exact = searches.get('mirror')!.result;
    const switched = search({ backend: swProtected, contract: 'mirror', exactUpTo: 500 });
    expect(strip(switched)).toEqual(strip(exact));
    expect(switched.fingerprints?.from).toBe(500);
    // States restarted from forks from the third action on (the fork paths), with fingerprints throughout.
    const forked = search({ backend: swProtected, contract: 'mirror', visited: 'fingerprint', forkFrom: 3 });
    expect(strip(forked)).toEqual(strip(exact));
    for (const bad of [null, 'sometimes', 1])
      expect(() => search({ backend: swProtected, contract: 'mirror', visited: bad as 'exact' })).toThrow(RangeError);
    for (const bad of [0, -1, 0.5, Number.NaN])
      expect(() => search({ backend: swProtected, contract: 'mirror', exactUpTo: bad })).toThrow(/exactUpTo/);
    expect(() =>
      explore({ backend: swProtected, contract: 'mirror', randomWalks: 1, visited: 'bogus' as 'exact' }),
    ).toThrow(RangeError);
    expect(() =>
      search({ backend: swProtected, contract: 'mirror', visited: 'fingerprint', onMerge: () => {} }),
    ).toThrow(/onMerge needs the canonical forms/);
    // Five searches of the default world, which a loaded machine slows several times.
  }, 600_000);

  it('a bound below the diameter stops there and says so', () => {
    const result = search({ backend: swProtected, contract: 'gmem-registry', depth: 3 });
    expect(result).toMatchObject({ exhaustive: false, depth: 3, bound: 3 });
    expect(result.levels).toHaveLength(4);
  });

  it("[refuse-means-refuse] a policy that refuses: the registry enforces it; under 'vmm-driven' nothing asks, and a conversion completes under the mapping", () => {
    const registry = search({ backend: refusing, contract: 'gmem-registry' }).properties['refuse-means-refuse'];
    expect(registry).toMatchObject({ holds: true, vacuous: false });
    const rfc = search({ backend: refusing, contract: 'vmm-driven', depth: 4 }).properties['refuse-means-refuse'];
    expect(rfc.holds).toBe(false);
    expect(rfc.trace!.at(-1)).toBe('to-private:0');
    expect(rfc.traceNote).toMatch(/conversionPolicy answers 'refuse'/);
  });

  it('merged states agree on everything a property can see, one action ahead (a sample of every merge of the searches)', () => {
    for (const contract of CONTRACTS) {
      const { merges } = searches.get(contract)!;
      expect(merges.length).toBeGreaterThan(100);
      // Every 40th merge keeps this to seconds; every one of them was checked while developing (none differed).
      for (const [a, b] of merges.filter((_, i) => i % 40 === 0))
        expect(mergeDifferences({ backend: swProtected, contract }, a, b), `${a.join(' ')} ~ ${b.join(' ')}`).toEqual(
          [],
        );
    }
  });
});

describe('explore: results as the JSON output gives them, traces as scenarios', () => {
  it('each property has holds and vacuous; a violation has its trace, a witness its scenario, with the setup and an expect on every step', () => {
    const run = explore({ backend: swProtected, contract: 'vmm-driven' });
    expect(Object.keys(run.result).sort()).toEqual(['arch', 'contract', 'depth', 'exhaustive', 'properties', 'states']);
    const p = run.result.properties['no-dma-after-free'];
    expect(p.holds).toBe(false);
    const trace = p.trace!;
    expect(trace.contracts).toEqual(['vmm-driven']);
    expect(trace.steps.slice(0, 8)).toEqual(setupSteps(DEFAULT_WORLD));
    expect(trace.steps.slice(8).every((s) => s.expect !== undefined)).toBe(true);
    // Qualified by the architecture and design it was found on: a replay elsewhere reports what happened there.
    expect(trace.steps.at(-1)).toMatchObject({
      call: 'device.dmaRead',
      expect: [{ arch: 'sw-protected', contract: 'vmm-driven', ok: true, reaches: ['free'] }],
    });
    expect(p.witness!.steps.at(-1)!.call).toMatch(/^device\.dma/);
  });
});

describe('random walks', () => {
  it('find and shrink a violation in a larger world, the same for the same seed', () => {
    const options = {
      backend: swProtected,
      contract: 'vmm-driven' as const,
      world: { pages: 2, maxAreas: 2 },
      walks: 150,
      depth: 25,
      seed: 3,
    };
    const first = randomWalks(options);
    expect(first.exhaustive).toBe(false);
    const found = first.properties['no-dma-after-free'];
    expect(found.holds).toBe(false);
    // Four actions is the shortest (a mapping, a device, a truncation, a DMA). This seed's walk shrinks to one
    // through an area of the whole file: placed at IOVA 0x2000 (aligned to its two pages), its first page punched,
    // a DMA at that page's IOVA.
    expect(found.trace).toEqual(['attach', 'map-file:all', 'punch:0', 'dma-read:2']);
    expect({ ...randomWalks(options), elapsedMs: 0 }).toEqual({ ...first, elapsedMs: 0 });
  });
});
