/**
 * gmemlab explore on the four architectures, by running the explorer (never by hard-coding its answers): what
 * issue 10 asks of each contract, every counterexample and witness replayed by the demo's runner, determinism, the
 * canonical form's merges checked on TDX, and the command as a user runs it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CONTRACTS, type ArchBackend, type Contract } from '@gmemlab/core';
import {
  alphabet,
  createWorld,
  explore,
  exploreMany,
  exploreThreaded,
  EXPLORER_CALLS,
  mergeDifferences,
  perform,
  PROPERTY_NAMES,
  search,
  worldConfig,
  type BackendRef,
  type ExploreRun,
  type PropertyName,
} from '@gmemlab/explore';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackends, selectArchs } from '../src/backends.js';
import { runScenario } from '../src/run/runner.js';
import { CALLS } from '../src/scenario/calls.js';
import { parseScenario } from '../src/scenario/load.js';
import type { Comparison, StepRecord } from '../src/run/types.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'dist', 'bin.js');
const require = createRequire(import.meta.url);
const ARCHS = ['tdx', 'sev-snp', 'arm-cca', 'pkvm'] as const;
const backends = new Map(selectArchs(await loadBackends(), ARCHS.join(',')).map((b) => [b.id, b]));
const ref = (arch: string): BackendRef => ({ module: require.resolve(`@gmemlab/${arch}`) });

/** What the last step of a replayed counterexample must show, per property. */
const SHOWS: Record<PropertyName, (last: StepRecord) => boolean> = {
  'no-dma-after-free': (last) =>
    last.result.kind !== 'errno' &&
    last.result.kind !== 'host-down' &&
    last.result.kind !== 'error' &&
    (last.result.access?.reached?.length ?? 0) > 0,
  'no-fatal-fault': (last) => last.crash !== undefined,
  'no-stale-stage2': (last) => last.violations.some((v) => v.kind === 'stale-spte'),
  'no-private-leak': (last) =>
    /^(device\.dma|mapping\.)/.test(last.call) &&
    (last.result.kind === 'ok' || (last.result.kind === 'fault' && last.result.access.fatal === true)),
  'failed-call-changes-nothing': (last) => last.result.kind === 'errno',
  'refuse-means-refuse': (last) => last.call === 'gmem.setMemoryAttributes2' && last.result.kind === 'ok',
};

function replay(run: ExploreRun, which: 'trace' | 'witness', name: PropertyName) {
  const backend = backends.get(run.result.arch) as ArchBackend;
  const scenario = parseScenario(
    JSON.parse(JSON.stringify(run.result.properties[name][which])),
    `${run.result.arch} ${run.result.contract} ${name} ${which}`,
  );
  return runScenario(scenario, backend, run.result.contract, { pageMaps: false });
}

describe('the default world, every architecture under every contract', () => {
  let runs: ExploreRun[] = [];
  const of = (arch: string, contract: Contract) =>
    runs.find((r) => r.result.arch === arch && r.result.contract === contract)!;

  beforeAll(async () => {
    runs = await exploreMany(ARCHS.flatMap((arch) => CONTRACTS.map((contract) => ({ backend: ref(arch), contract }))));
  }, 300_000);

  it('every search is complete before the bound', () => {
    expect(runs).toHaveLength(ARCHS.length * CONTRACTS.length);
    for (const run of runs) expect(run.result.exhaustive, `${run.result.arch} ${run.result.contract}`).toBe(true);
  });

  it.each(ARCHS)("'vmm-driven' (the RFC as posted): no-dma-after-free is violated on %s", (arch) => {
    expect(of(arch, 'vmm-driven').result.properties['no-dma-after-free'].holds).toBe(false);
  });

  it("'vmm-driven': no-fatal-fault is violated on TDX (a DMA to a page the TD holds is a host machine check)", () => {
    const p = of('tdx', 'vmm-driven');
    expect(p.result.properties['no-fatal-fault'].holds).toBe(false);
    expect(p.traces['no-fatal-fault'].traceNote).toMatch(/machine-check/);
  });

  for (const contract of CONTRACTS.filter((c) => c !== 'vmm-driven')) {
    it.each(ARCHS)(`'${contract}': every property holds on %s, and none is vacuous`, (arch) => {
      const { properties } = of(arch, contract).result;
      for (const name of PROPERTY_NAMES)
        expect(properties[name], `${arch} ${contract} ${name}`).toMatchObject({ holds: true, vacuous: false });
    });
  }

  it('every counterexample replays with the runner, every expectation holds, and its last step shows the violation', () => {
    let replayed = 0;
    for (const run of runs) {
      for (const name of PROPERTY_NAMES) {
        if (!run.result.properties[name].trace) continue;
        const result = replay(run, 'trace', name);
        const label = `${run.result.arch} ${run.result.contract} ${name}`;
        expect(result.ok, `${label}: ${result.steps.find((s) => s.verdict === 'fail')?.failure}`).toBe(true);
        expect(SHOWS[name](result.steps.at(-1)!), label).toBe(true);
        replayed++;
      }
    }
    expect(replayed).toBeGreaterThanOrEqual(ARCHS.length + 1);
  });

  it('every witness replays with the runner, every expectation holding', () => {
    for (const run of runs) {
      for (const name of PROPERTY_NAMES) {
        if (!run.result.properties[name].witness) continue;
        const result = replay(run, 'witness', name);
        expect(
          result.ok,
          `${run.result.arch} ${run.result.contract} ${name}: ${result.steps.find((s) => s.verdict === 'fail')?.failure}`,
        ).toBe(true);
      }
    }
  });

  it('one search spread over two worker threads makes the run the serial search makes', async () => {
    const reported: number[][] = [];
    for (const contract of ['vmm-driven', 'mirror'] as const) {
      // Directly, and as exploreMany spreads a single job over its workers (reporting each level as it ends).
      const threaded =
        contract === 'vmm-driven'
          ? await exploreThreaded({ backend: ref('tdx'), contract, threads: 2 })
          : (
              await exploreMany([{ backend: ref('tdx'), contract }], {
                workers: 2,
                onLevel: (levels) => reported.push([...levels]),
              })
            )[0]!;
      const first = of('tdx', contract);
      if (contract === 'mirror') expect(reported.at(-1)).toEqual(first.stats.levels);
      expect(threaded.stats.threads).toBe(2);
      expect(threaded.result).toEqual(first.result);
      expect(threaded.traces).toEqual(first.traces);
      expect(threaded.stats.levels).toEqual(first.stats.levels);
      expect(threaded.stats.transitions).toBe(first.stats.transitions);
      expect(threaded.stats.counts).toEqual(first.stats.counts);
    }
  }, 120_000);

  it('a worker whose backend throws, or that ends, fails the threaded search with an error the caller catches', async () => {
    // Backends by module: one whose hook throws after a while (the core turns it into EIO), one whose hook ends
    // its worker thread (process.exit in a worker stops that thread: an 'exit' and no 'error').
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-threads-'));
    const tdxEntry = pathToFileURL(require.resolve('@gmemlab/tdx')).href;
    const module = (name: string, body: string) => {
      const file = join(dir, `${name}.mjs`);
      writeFileSync(
        file,
        `import { isMainThread } from 'node:worker_threads';\nimport { tdx } from ${JSON.stringify(tdxEntry)};\nlet calls = 0;\n` +
          `export default { ...tdx, id: 'tdx:${name}', deviceMayReach(context) { ${body} return tdx.deviceMayReach(context); } };\n`,
      );
      return file;
    };
    const throwing = module('throwing', "if (++calls > 2000) throw new Error('deviceMayReach blew up');");
    const exiting = module('exiting', 'if (!isMainThread && ++calls > 500) process.exit(0);');
    await expect(
      exploreThreaded({ backend: { module: throwing }, contract: 'vmm-driven', depth: 8, threads: 2 }),
    ).rejects.toThrow(/a search worker failed: .*deviceMayReach blew up/);
    await expect(
      exploreMany([{ backend: { module: exiting }, contract: 'vmm-driven', depth: 8 }], { workers: 2 }),
    ).rejects.toThrow(/a search worker exited \(code 0\) with chunks unanswered/);
  }, 120_000);

  it('the same configuration gives the same counts and traces, in a worker thread or on this one', () => {
    const again = explore({ backend: backends.get('pkvm')!, contract: 'vmm-driven' });
    const first = of('pkvm', 'vmm-driven');
    expect(again.result).toEqual(first.result);
    expect(again.traces).toEqual(first.traces);
    expect(again.stats.levels).toEqual(first.stats.levels);
  });
});

describe('refuse-means-refuse with a hypervisor that refuses (pkvm:refuse-dma-mapped, pKVM-IA#92)', () => {
  it.each(CONTRACTS)('holds under %s, and a conversion under a live DMA mapping is attempted', async (contract) => {
    const [run] = await exploreMany([{ backend: { ...ref('pkvm'), variant: 'refuse-dma-mapped' }, contract }], {
      workers: 0,
    });
    expect(run!.result.arch).toBe('pkvm:refuse-dma-mapped');
    expect(run!.result.properties['refuse-means-refuse']).toMatchObject({ holds: true, vacuous: false });
  });
});

describe('the canonical form on TDX', () => {
  it("states it merges under 'vmm-driven' (crashes, stale IOPTEs, leaks) agree on everything a property can see, one action ahead", () => {
    const tdx = backends.get('tdx')!;
    const merges: Array<[readonly string[], readonly string[]]> = [];
    search({ backend: tdx, contract: 'vmm-driven', onMerge: (a, b) => merges.push([a, b]) });
    // A sample: every merge of every architecture's searches was checked while developing, and none differed.
    for (const [a, b] of merges.filter((_, i) => i % 50 === 0))
      expect(
        mergeDifferences({ backend: tdx, contract: 'vmm-driven' }, a, b),
        `${a.join(' ')} ~ ${b.join(' ')}`,
      ).toEqual([]);
  });
});

describe("the explorer's moves are the demo's calls (one vocabulary: explore makes its calls from scenario steps)", () => {
  it("every call the explorer makes is in the demo's call table, and every action's step has only that call's arguments", () => {
    for (const call of EXPLORER_CALLS) expect(Object.keys(CALLS), call).toContain(call);
    const config = worldConfig({ pages: 2, maxAreas: 2 });
    const actions = alphabet(config);
    const steps = new Map<string, Record<string, unknown>>();
    // Three worlds between them enable every action but copy:1 (a copy of the second area needs a third slot): a
    // fresh one, one area and an mmap, and an mmap with two areas, a device, two pins and a pending fault.
    const worlds = [
      [],
      ['map-file:0', 'mmap'],
      ['mmap', 'map-file:1', 'map-user:0', 'attach', 'pin:0', 'pin:1', 'resolve:0:shared'],
    ].map((trace) => {
      const world = createWorld(config, backends.get('tdx')!, 'gmem-registry');
      for (const id of trace)
        perform(
          world,
          actions.find((a) => a.id === id)!,
        );
      return world;
    });
    for (const world of worlds)
      for (const action of actions) if (action.enabled(world)) steps.set(action.id, action.step(world));
    expect([...steps.keys()].sort()).toEqual(
      actions
        .map((a) => a.id)
        .filter((id) => id !== 'copy:1')
        .sort(),
    );
    for (const [id, step] of steps) {
      const spec = CALLS[step.call as string];
      expect(spec, id).toBeDefined();
      for (const field of Object.keys(step))
        if (!['call', 'on', 'as', 'note', 'expect'].includes(field))
          expect(Object.keys(spec!.args), `${id}: ${field}`).toContain(field);
    }
  });
});

describe('gmemlab explore, the command', () => {
  const gmemlab = (args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1' },
      timeout: 120_000,
    });

  it("--format json prints { results: [...] } in the issue's shape, and --out-dir writes scenarios that gmemlab run replays", () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-explore-'));
    const r = gmemlab(['explore', '--arch', 'pkvm', '--contract', 'vmm-driven', '--format', 'json', '--out-dir', dir]);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout) as { results: Array<Record<string, unknown>> };
    expect(Object.keys(json)).toEqual(['results']);
    const [result] = json.results;
    expect(Object.keys(result!)).toEqual(['arch', 'contract', 'states', 'depth', 'exhaustive', 'properties']);
    expect(result).toMatchObject({ arch: 'pkvm', contract: 'vmm-driven', exhaustive: true });
    const properties = result!.properties as Record<string, Record<string, unknown>>;
    expect(Object.keys(properties)).toEqual([...PROPERTY_NAMES]);
    for (const p of Object.values(properties))
      for (const key of Object.keys(p)) expect(['holds', 'vacuous', 'trace', 'witness']).toContain(key);
    const file = join(dir, 'pkvm_vmm-driven_no-dma-after-free.yaml');
    expect(readdirSync(dir)).toContain('pkvm_vmm-driven_no-dma-after-free.yaml');
    expect(parse(readFileSync(file, 'utf8'))).toEqual(properties['no-dma-after-free']!.trace);
    const replayed = gmemlab(['run', file, '--arch', 'pkvm', '--contract', 'vmm-driven']);
    expect(replayed.status, replayed.stdout).toBe(0);
    expect(replayed.stdout).toMatch(/every expectation held/);
  });

  it('the table says complete or stopped at the bound, and names each violation with its length', () => {
    const r = gmemlab(['explore', '--arch', 'sev-snp', '--contract', 'vmm-driven', '--depth', '3']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/sev-snp\s+vmm-driven\s+[\d,]+\s+3\s+stopped at bound/);
    const complete = gmemlab(['explore', '--arch', 'sev-snp', '--contract', 'vmm-driven']);
    expect(complete.stdout).toMatch(
      /sev-snp\s+vmm-driven\s+[\d,]+\s+\d+\s+complete.*VIOLATED no-dma-after-free \(4 steps\)/,
    );
  });

  it('--max-states stops a larger world at a state limit and says so; the premise counts show what each property was checked on', () => {
    const r = gmemlab([
      'explore',
      '--arch',
      'sev-snp',
      '--contract',
      'vmm-driven',
      '--pages',
      '2',
      '--areas',
      '2',
      '--max-states',
      '400',
      '--workers',
      '0',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/sev-snp\s+vmm-driven\s+400\s+\d+\s+stopped at state limit/);
    const premises = /sev-snp vmm-driven: (.*)/.exec(r.stdout.slice(r.stdout.indexOf('Premises met')));
    expect(premises).not.toBeNull();
    expect(premises![1]).toMatch(
      /^no-dma-after-free [\d,]+, no-fatal-fault [\d,]+, no-stale-stage2 [\d,]+, no-private-leak [\d,]+, failed-call-changes-nothing [1-9][\d,]*, refuse-means-refuse [\d,]+$/,
    );
    expect(gmemlab(['explore', '--max-states', '0']).status).toBe(2);
  });

  it('--workers 2 on a single run spreads its search over two threads: the same results as on one thread', () => {
    const args = ['explore', '--arch', 'pkvm', '--contract', 'mirror'];
    const one = gmemlab([...args, '--workers', '0', '--format', 'json']);
    const two = gmemlab([...args, '--workers', '2', '--format', 'json']);
    expect(two.status, two.stderr).toBe(0);
    expect(JSON.parse(two.stdout)).toEqual(JSON.parse(one.stdout));
    const table = gmemlab([...args, '--workers', '2']);
    expect(table.stdout).toMatch(/1 run, [\d,]+ states in .* on 2 worker threads \([\d,]+ states\/s per thread\)/);
  }, 240_000);

  // The checkpoint tests' search: small, its visited states fingerprints from the start (so every level is written).
  const checkpointed = [
    'explore',
    '--arch',
    'sev-snp',
    '--contract',
    'mirror',
    '--visited',
    'fingerprint',
    '--format',
    'json',
  ];

  it('--checkpoint: a search stopped at a depth goes on from its file to the result of a search run whole', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gmemlab-ckpt-')), 'run.ckpt');
    const args = checkpointed;
    const first = gmemlab([...args, '--workers', '2', '--checkpoint', file, '--depth', '6']);
    expect(first.status, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout).results[0].exhaustive).toBe(false);
    // Not on a terminal, a checkpointed search logs each level as it ends; the resumed one from where it went on.
    const logged = (stderr: string) =>
      [
        ...stderr.matchAll(
          /^explore: level (\d+) done: [\d,]+ new, [\d,]+ states, [\d,]+ transitions, \d+ s; violated so far: none$/gm,
        ),
      ].map((m) => Number(m[1]));
    expect(logged(first.stderr)).toEqual([1, 2, 3, 4, 5, 6]);
    // Each checkpoint is said once it is written, with its level (every level: fingerprints from the start).
    const written = (stderr: string, path = file) =>
      [...stderr.matchAll(/^explore: checkpoint written at level (\d+): (.+), ([\d.]+) (KiB|MiB)$/gm)].map((m) => {
        expect(m[2]).toBe(path);
        return { level: Number(m[1]), bytes: Number(m[3]) * 2 ** (m[4] === 'KiB' ? 10 : 20) };
      });
    const saved = (stderr: string, path = file) => written(stderr, path).map((w) => w.level);
    expect(saved(first.stderr)).toEqual([1, 2, 3, 4, 5, 6]);
    // The size said is the file's (to the 0.1 KiB printed).
    expect(Math.abs(written(first.stderr).at(-1)!.bytes - statSync(file).size)).toBeLessThanOrEqual(52);
    const resumed = gmemlab([...args, '--workers', '2', '--checkpoint', file]);
    const whole = gmemlab([...args, '--workers', '0']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(logged(resumed.stderr)).toEqual([7, 8, 9, 10, 11]);
    // No checkpoint after the expansion that found nothing: the search is over.
    expect(saved(resumed.stderr)).toEqual([7, 8, 9, 10, 11]);
    // The expansion of the last level finds nothing: said so, not logged as that level again.
    expect(resumed.stderr).toMatch(
      /^explore: level 11 expanded: no new states, [\d,]+ states, [\d,]+ transitions, \d+ s; violated so far: none$/m,
    );
    // The resumed search says where it starts, with what the file holds.
    expect(resumed.stderr).toMatch(
      new RegExp(
        `^explore: resumed from ${file.replaceAll('.', '\\.')} at level 6: [\\d,]+ states, [\\d,]+ transitions; violated so far: none$`,
        'm',
      ),
    );
    expect(JSON.parse(resumed.stdout)).toEqual(JSON.parse(whole.stdout));
    expect(JSON.parse(whole.stdout).results[0].exhaustive).toBe(true);
    // Resumed again, from the file of the complete search (its last level, 11): the expansion finds nothing, and
    // is said so, after the line that says where it started.
    const again = gmemlab([...args, '--workers', '2', '--checkpoint', file]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(
      /^explore: resumed from .+ at level 11: [\d,]+ states, [\d,]+ transitions; violated so far: none\nexplore: level 11 expanded: no new states, /m,
    );
    expect(logged(again.stderr)).toEqual([]);
    expect(JSON.parse(again.stdout)).toEqual(JSON.parse(whole.stdout));
    // The table's closing line: the states the file held are not counted as found in this run, nor in its rate.
    const table = gmemlab([
      ...args.filter((a) => a !== '--format' && a !== 'json'),
      '--workers',
      '2',
      '--checkpoint',
      file,
    ]);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toMatch(
      /^1 run, ([\d,]+) states, 0 of them found in this run \(the checkpoint held \1\) in [\d.]+ (ms|s) on 2 worker threads \(0 states\/s per thread\)\.$/m,
    );
    expect(table.stdout).toMatch(/^sev-snp +mirror +[\d,]+ +11 +complete +[\d.]+ (ms|s) +0 +all 6 hold$/m);
    // A level the state limit cuts short is logged as such, not as done.
    const limited = gmemlab([...args, '--workers', '2', '--checkpoint', `${file}.limited`, '--max-states', '500']);
    expect(limited.status, limited.stderr).toBe(0);
    expect(limited.stderr).toMatch(/^explore: level \d+ stopped at the state limit: [\d,]+ new, 500 states, /m);
    expect(limited.stderr).not.toMatch(/done: [\d,]+ new, 500 states/);
    // A level cut short is not written: the file holds the last complete level.
    const cut = Number(/level (\d+) stopped at the state limit/.exec(limited.stderr)![1]);
    expect(Math.max(...saved(limited.stderr, `${file}.limited`))).toBe(cut - 1);
    // Visited states kept exact (auto mode, under a million states): no checkpoint is written, and none is said.
    const exact = gmemlab([
      ...args.filter((a) => a !== '--visited' && a !== 'fingerprint'),
      '--workers',
      '1',
      '--checkpoint',
      `${file}.auto`,
    ]);
    expect(exact.status, exact.stderr).toBe(0);
    expect(exact.stderr).toMatch(/^explore: level 1 done/m);
    expect(exact.stderr).not.toMatch(/checkpoint written/);
    expect(existsSync(`${file}.auto`)).toBe(false);
    // A property violated: named in the line of the level whose expansion found it, and in every later one
    // (vmm-driven: no-dma-after-free in 4 actions, so from the line of level 4 on).
    const violating = gmemlab([
      'explore',
      '--arch',
      'sev-snp',
      '--contract',
      'vmm-driven',
      '--visited',
      'fingerprint',
      '--depth',
      '5',
      '--workers',
      '1',
      '--checkpoint',
      `${file}.vmm`,
      '--format',
      'json',
    ]);
    expect(violating.status, violating.stderr).toBe(0);
    expect(JSON.parse(violating.stdout).results[0].properties['no-dma-after-free'].holds).toBe(false);
    const lines = [...violating.stderr.matchAll(/^explore: level (\d+) done: .*; violated so far: (.+)$/gm)];
    expect(lines.map((m) => Number(m[1]))).toEqual([1, 2, 3, 4, 5]);
    for (const [, level, violated] of lines)
      expect(violated!.split(', ').includes('no-dma-after-free'), `level ${level}: ${violated}`).toBe(
        Number(level) >= 4,
      );
    const two = gmemlab(['explore', '--arch', 'sev-snp,tdx', '--contract', 'mirror', '--checkpoint', file]);
    expect(two.status).toBe(2);
    expect(two.stderr).toMatch(/--checkpoint: one run only/);
    const other = gmemlab(['explore', '--arch', 'tdx', '--contract', 'mirror', '--checkpoint', file]);
    expect(other.status).toBe(2);
    expect(other.stderr).toMatch(/not a checkpoint of this search: architecture "sev-snp", this search's "tdx"/);
  }, 240_000);

  it('--checkpoint-every: files written part-way through a level, said with how far it went; a search resumed from one', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gmemlab-ckpt-')), 'run.ckpt');
    const args = checkpointed;
    // After every chunk (0 minutes), and a state limit that cuts a level short: the file holds that level part-way.
    const limited = gmemlab([
      ...args,
      '--workers',
      '2',
      '--checkpoint',
      file,
      '--checkpoint-every',
      '0',
      '--max-states',
      '600',
    ]);
    expect(limited.status, limited.stderr).toBe(0);
    const cut = Number(/^explore: level (\d+) stopped at the state limit/m.exec(limited.stderr)![1]);
    const partWay = [
      ...limited.stderr.matchAll(
        /^explore: checkpoint written part-way through level (\d+) \(([\d,]+) of the ([\d,]+) states of level (\d+) expanded\): (.+), [\d.]+ KiB$/gm,
      ),
    ].map((m) => ({
      level: Number(m[1]),
      expanded: Number(m[2]!.replaceAll(',', '')),
      states: Number(m[3]!.replaceAll(',', '')),
      of: Number(m[4]),
      path: m[5],
    }));
    expect(partWay.length).toBeGreaterThan(3);
    for (const w of partWay) {
      expect(w.of).toBe(w.level - 1);
      expect(w.path).toBe(file);
      expect(w.expanded).toBeGreaterThan(0);
      expect(w.expanded).toBeLessThan(w.states);
    }
    // Within a level, further each time; the last file written is of the level the limit cut short.
    for (const [i, w] of partWay.entries())
      if (i > 0 && partWay[i - 1]!.level === w.level) expect(w.expanded).toBeGreaterThan(partWay[i - 1]!.expanded);
    const last = [...limited.stderr.matchAll(/^explore: checkpoint written (.*)$/gm)].at(-1)![1]!;
    expect(last).toMatch(new RegExp(`^part-way through level ${cut} `));
    // Resumed without the limit: said from where, and the search run whole is its result.
    const resumed = gmemlab([...args, '--workers', '2', '--checkpoint', file]);
    expect(resumed.status, resumed.stderr).toBe(0);
    const from = partWay.at(-1)!;
    expect(resumed.stderr).toMatch(
      new RegExp(
        `^explore: resumed from ${file.replaceAll('.', '\\.')} part-way through level ${cut} \\(${from.expanded.toLocaleString('en-US')} of the ${from.states.toLocaleString('en-US')} states of level ${cut - 1} expanded\\): [\\d,]+ states, [\\d,]+ transitions; violated so far: none$`,
        'm',
      ),
    );
    // The level it went on with is then done, and said so.
    expect(resumed.stderr).toMatch(new RegExp(`^explore: level ${cut} done: `, 'm'));
    const whole = gmemlab([...args, '--workers', '0']);
    expect(JSON.parse(resumed.stdout)).toEqual(JSON.parse(whole.stdout));
    // The same states and transitions as a search run whole (the JSON has no transition count): checkpointed at each
    // level and every minute, which this search of seconds never reaches, so no file is written part-way.
    const fresh = gmemlab([...args, '--workers', '2', '--checkpoint', `${file}.whole`, '--checkpoint-every', '1']);
    expect(fresh.status, fresh.stderr).toBe(0);
    expect(fresh.stderr).not.toMatch(/part-way/);
    const end = (stderr: string) =>
      /^explore: level \d+ expanded: no new states, ([\d,]+ states, [\d,]+ transitions)/m.exec(stderr)?.[1];
    expect(end(resumed.stderr)).toBeDefined();
    expect(end(resumed.stderr)).toBe(end(fresh.stderr));
    // Without --checkpoint, or not a whole number of minutes: refused, nothing run.
    const alone = gmemlab([...args, '--checkpoint-every', '5']);
    expect(alone.status).toBe(2);
    expect(alone.stderr).toMatch(/--checkpoint-every: with --checkpoint only/);
    for (const bad of ['-1', '1.5', 'ten', '1441']) {
      const r = gmemlab([...args, '--checkpoint', `${file}.bad`, '--checkpoint-every', bad]);
      expect(r.status, bad).toBe(2);
      expect(r.stderr).toMatch(/--checkpoint-every.*an integer from 0 to 1440 is needed/);
      expect(existsSync(`${file}.bad`)).toBe(false);
    }
  }, 240_000);

  it('--visited fingerprint finds what the exact search finds and states the chance that two states were merged', () => {
    const args = ['explore', '--arch', 'sev-snp', '--contract', 'vmm-driven', '--workers', '0'];
    const exact = gmemlab([...args, '--visited', 'exact', '--format', 'json']);
    const prints = gmemlab([...args, '--visited', 'fingerprint', '--format', 'json']);
    expect(prints.status, prints.stderr).toBe(0);
    // The same results, and the fingerprint run says that it used them, with the estimated risk.
    const [printed] = (JSON.parse(prints.stdout) as { results: Array<Record<string, unknown>> }).results;
    const [kept] = (JSON.parse(exact.stdout) as { results: Array<Record<string, unknown>> }).results;
    expect(kept).not.toHaveProperty('fingerprints');
    expect(printed).toMatchObject({ fingerprints: { from: 0, collisionBound: expect.any(Number) } });
    const { fingerprints, ...rest } = printed!;
    expect(fingerprints).toBeDefined();
    expect(rest).toEqual(kept);
    const table = gmemlab([...args, '--visited', 'fingerprint']);
    expect(table.stdout).toMatch(/Visited states kept as 64-bit fingerprints/);
    expect(table.stdout).toMatch(/sev-snp vmm-driven: from 0 states on; \d\.\de-\d+/);
    expect(gmemlab([...args]).stdout).not.toMatch(/fingerprints/);
    const bad = gmemlab([...args, '--visited', 'sometimes']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--visited.*sometimes.*auto, exact, fingerprint/);
  }, 240_000); // two CLI searches: ~10 s quiet, 86 s beside two CPU hogs (past the file's 60 s)

  it('--format html replays each counterexample on every architecture: its own lane shows the violation', () => {
    const r = gmemlab(['explore', '--arch', 'tdx,sev-snp', '--contract', 'vmm-driven', '--format', 'html']);
    expect(r.status, r.stderr).toBe(0);
    const data = /<script type="application\/json" id="gmemlab-data">([\s\S]*?)<\/script>/.exec(r.stdout);
    expect(data).not.toBeNull();
    const comparison = JSON.parse(data![1]!) as Comparison;
    const ids = comparison.scenarios.map((s) => s.id);
    expect(ids).toContain('tdx_vmm-driven_no-fatal-fault');
    expect(ids).toContain('sev-snp_vmm-driven_no-dma-after-free');
    // On the architecture it was found on, every expectation of the trace holds, the last step's violation too.
    const own = comparison.runs.find(
      (run) => run.scenario.id === 'tdx_vmm-driven_no-fatal-fault' && run.arch === 'tdx',
    )!;
    expect(own.ok).toBe(true);
    expect(own.crashed).toBeDefined();
    // The same VMM on SEV-SNP: the DMA is contained, so the trace's machine-check expectation fails there.
    const other = comparison.runs.find(
      (run) => run.scenario.id === 'tdx_vmm-driven_no-fatal-fault' && run.arch === 'sev-snp',
    )!;
    expect(other.crashed).toBeUndefined();
    expect(other.steps.at(-1)!.label).toBe('contained');
  });

  it('--help exits 0 with its usage', () => {
    const r = gmemlab(['explore', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: gmemlab explore/);
    for (const option of [
      '--arch',
      '--contract',
      '--depth',
      '--pages',
      '--format',
      '--out-dir',
      '--random-walks',
      '--seed',
    ])
      expect(r.stdout).toContain(option);
  });

  it('an unknown contract is one line on stderr naming the known ones', () => {
    const r = gmemlab(['explore', '--contract', 'nope']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/--contract: unknown contract 'nope'; known: gmem-registry, vmm-driven, mirror, all/),
    ]);
  });

  it('a bad option is a usage error (exit 2)', () => {
    expect(gmemlab(['explore', '--contract', 'nope']).status).toBe(2);
    expect(gmemlab(['explore', '--pages', '0']).status).toBe(2);
    expect(gmemlab(['explore', '--arch', 'nope']).status).toBe(2);
  });
});
