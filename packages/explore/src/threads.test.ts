/**
 * The threaded search (threads.ts) against the serial one. From source there is no built worker, so these run the
 * chunks on this thread (`inThread`): the chunking, the workers' expansion and the in-order merge are the code
 * under test, and the result must equal the serial search's exactly. The demo's tests run the same search in real
 * worker threads (apps/demo/test/explore.test.ts).
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  swProtected,
  type AccessFault,
  type ArchBackend,
  type ConversionContext,
  type ReachedFrame,
} from '@gmemlab/core';
import { describe, expect, it } from 'vitest';
import {
  describeOutcome,
  modelProbe,
  Level,
  replay,
  search,
  snapshotOf,
  type SearchOptions,
  type SearchResult,
} from './search.js';
import { alphabet, perform, type Action, type Outcome } from './actions.js';
import { canonicalState } from './canonical.js';
import { createWorld, worldConfig } from './world.js';
import { exploreThreaded, searchThreaded, type Progress } from './threads.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { PROPERTY_NAMES } from './properties.js';
import { explore } from './explore.js';

const ref = { module: '@gmemlab/core', export: 'swProtected' };
const strip = (r: SearchResult) => ({ ...r, elapsedMs: 0 });
const both = async (options: Omit<SearchOptions, 'backend'>, chunk: number) => {
  const serial = search({ ...options, backend: swProtected });
  const threaded = await searchThreaded({ ...options, backend: ref, inThread: true, chunk, threads: 3 });
  return { serial, threaded };
};

describe('searchThreaded', () => {
  it('gives the serial search its result exactly, chunked small or large, under every contract', async () => {
    for (const [contract, chunk] of [
      ['vmm-driven', 1],
      ['gmem-registry', 1024],
      ['mirror', 37],
    ] as const) {
      const { serial, threaded } = await both({ contract, world: { maxAreas: 2 }, depth: 6 }, chunk);
      expect(serial.states).toBeGreaterThan(1000);
      expect(strip(threaded)).toEqual(strip(serial));
    }
  }, 300_000);

  it('stops where the serial search stops at a state limit, transitions counted up to the same one', async () => {
    for (const maxStates of [1, 700, 2_345]) {
      const { serial, threaded } = await both({ contract: 'vmm-driven', maxStates }, 16);
      expect(serial.exhaustive).toBe(false);
      expect(strip(threaded)).toEqual(strip(serial));
    }
  }, 300_000);

  it('keeps fingerprints as the serial search does: from the start, from a switch part-way, on the fork paths', async () => {
    for (const options of [
      { visited: 'fingerprint' as const },
      { exactUpTo: 500 },
      { visited: 'fingerprint' as const, forkFrom: 3 },
    ]) {
      const { serial, threaded } = await both({ contract: 'mirror', depth: 7, ...options }, 64);
      expect(serial.fingerprints).toBeDefined();
      expect(strip(threaded)).toEqual(strip(serial));
    }
  }, 300_000);

  it('reports levels as the serial search does, and refuses bad options before starting', async () => {
    const reports: number[][] = [];
    const result = await searchThreaded({
      backend: ref,
      contract: 'gmem-registry',
      depth: 4,
      inThread: true,
      onLevel: (levels) => reports.push([...levels]),
    });
    expect(reports.at(-1)).toEqual(result.levels);
    expect(reports.map((r) => r.length)).toEqual([2, 3, 4, 5]);
    for (const threads of [0, -1, 1.5, Number.NaN])
      await expect(searchThreaded({ backend: ref, contract: 'mirror', threads })).rejects.toThrow(/threads/);
    for (const chunk of [0, -3, 2.5, Number.NaN])
      await expect(searchThreaded({ backend: ref, contract: 'mirror', chunk, inThread: true })).rejects.toThrow(
        /chunk must be a positive integer/,
      );
    await expect(searchThreaded({ backend: ref, contract: 'mirror', depth: -1 })).rejects.toThrow(/depth/);
    await expect(
      searchThreaded({ backend: { module: '@gmemlab/core', export: 'nothing' }, contract: 'mirror' }),
    ).rejects.toThrow(/not an ArchBackend/);
  });

  it('exploreThreaded makes the same run as explore, and says how many threads searched', async () => {
    const options = { contract: 'gmem-registry' as const, depth: 6 };
    const run = await exploreThreaded({ ...options, backend: ref, inThread: true });
    const serial = explore({ ...options, backend: swProtected });
    expect(run.result).toEqual(serial.result);
    expect(run.traces).toEqual(serial.traces);
    expect({ ...run.stats, elapsedMs: 0, searchMs: 0, statesPerSecond: 0, threads: undefined }).toEqual({
      ...serial.stats,
      elapsedMs: 0,
      searchMs: 0,
      statesPerSecond: 0,
    });
    expect(run.stats.threads).toBe(1);
  }, 120_000);
});

/** The key of a checkpoint written by hand (the file tests below): a small search's, with its action ids. */
const smallKey = (alphabet: string[]) => ({
  arch: 'sw-protected',
  contract: 'mirror' as const,
  world: { pages: 1, vm2Pages: 1, maxAreas: 1 },
  exactUpTo: 0,
  alphabet,
  probe: 'a probe',
});

describe('searchThreaded with a checkpoint', () => {
  it("a checkpoint's model probe: the same for the same model, another for a backend that answers otherwise within two actions", () => {
    const config = worldConfig();
    const actions = alphabet(config);
    const probe = modelProbe(config, swProtected, 'gmem-registry', actions);
    expect(probe).toMatch(/^[0-9a-f]{64}$/);
    expect(modelProbe(config, swProtected, 'gmem-registry', actions)).toBe(probe);
    // The same id, a policy that refuses a conversion to private under a DMA mapping (map-file, then to-private):
    // nothing but the probe tells the two apart.
    const refusing: ArchBackend = Object.freeze({
      ...swProtected,
      conversionPolicy: ({ to }: ConversionContext) => (to === 'private' ? 'refuse' : 'tolerate'),
    });
    expect(modelProbe(config, refusing, 'gmem-registry', actions)).not.toBe(probe);
    // Its premise: the two differ after two actions (the first of them alone leaves the same state).
    const after = (backend: ArchBackend, ids: string[]) => {
      const world = replay(
        config,
        backend,
        'gmem-registry',
        actions,
        ids.map((id) => actions.findIndex((a) => a.id === id)),
      );
      return canonicalState(world, snapshotOf(world));
    };
    expect(after(refusing, ['map-file:0'])).toBe(after(swProtected, ['map-file:0']));
    expect(after(refusing, ['map-file:0', 'to-private:0'])).not.toBe(
      after(swProtected, ['map-file:0', 'to-private:0']),
    );
  });

  it('the model probe sees what a call did, not only the state it left: two refusals with other errnos differ', () => {
    const config = worldConfig();
    const base = alphabet(config);
    // One more action at the end of the alphabet, in two builds: IOMMU_IOAS_UNMAP of a range no area holds
    // (ENOENT), or of length 0 (EINVAL). Both refused, both leave the world as it was.
    const unmap = (length: number): Action => ({
      id: 'unmap-odd',
      actor: 'vmm',
      kind: 'unmap',
      enabled: () => true,
      step: () => ({ call: 'ioas.unmap', iova: '0x40000', length }),
    });
    const one = [...base, unmap(0x1000)];
    const other = [...base, unmap(0)];
    const outcome = (actions: Action[]) => {
      const world = createWorld(config, swProtected, 'mirror');
      const before = canonicalState(world, snapshotOf(world));
      const done = perform(world, actions.at(-1)!);
      expect(canonicalState(world, snapshotOf(world))).toBe(before);
      return done.kind === 'errno' ? done.error.errno : done.kind;
    };
    expect(outcome(one)).toBe('ENOENT');
    expect(outcome(other)).toBe('EINVAL');
    expect(modelProbe(config, swProtected, 'mirror', one)).not.toBe(modelProbe(config, swProtected, 'mirror', other));
    expect(modelProbe(config, swProtected, 'mirror', one)).toBe(modelProbe(config, swProtected, 'mirror', [...one]));
  });

  it('the probe describes a fault by every field but frame numbers and bytes', () => {
    const fault: Outcome = {
      kind: 'fault',
      access: {
        ok: false,
        fault: 'iommu-fault',
        address: 0x1000,
        fatal: false,
        logged: true,
        mechanism: 'IOMMU page walk',
        done: 0,
        reached: [{ address: 0x1000, pfn: 7, owner: { kind: 'free' } }],
      },
    };
    const described = describeOutcome(fault);
    const changed = (change: Record<string, unknown>): string =>
      describeOutcome({ kind: 'fault', access: { ...(fault.access as AccessFault), ...change } as AccessFault });
    for (const change of [
      { fault: 'memory-fault' },
      { address: 0x2000 },
      { fatal: true },
      { logged: false },
      { mechanism: 'RMP check' },
      { done: 4096 },
      { exit: { reason: 'KVM_EXIT_MEMORY_FAULT', gpa: 0, size: 4096, flags: 8 } },
      { reached: [] },
      { reached: [{ address: 0x1000, pfn: 7, owner: { kind: 'shmem', ino: 1, offset: 0 } }] },
    ])
      expect(changed(change), JSON.stringify(change)).not.toBe(described);
    // Frame numbers are names (the canonical form renames them): another pfn is the same outcome.
    expect(changed({ reached: [{ address: 0x1000, pfn: 9, owner: { kind: 'free' } }] })).toBe(described);
    // An access that succeeded: its bytes are left out, the pages it reached are not.
    const ok = (data: number, reached: ReachedFrame[] = []): string =>
      describeOutcome({ kind: 'ok', value: undefined, access: { ok: true, data: new Uint8Array([data]), reached } });
    expect(ok(1)).toBe(ok(2));
    expect(ok(1, [{ address: 0, pfn: 1, owner: { kind: 'free' } }])).not.toBe(ok(1));
  });

  it('a search stopped after any level and resumed from its checkpoint gives the uninterrupted result', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-checkpoint-'));
    const options = { backend: ref, contract: 'mirror' as const, depth: 8, visited: 'fingerprint' as const };
    const whole = await searchThreaded({ ...options, inThread: true });
    // Run again with a checkpoint, keeping a copy of the file as each level ends.
    const file = join(dir, 'search.ckpt');
    const copies: string[] = [];
    const written: Array<[number, number, number]> = [];
    const checkpointed = await searchThreaded({
      ...options,
      inThread: true,
      checkpoint: file,
      onLevel: (levels) => {
        if (!existsSync(file)) return;
        const copy = join(dir, `after-${levels.length - 2}.ckpt`);
        copyFileSync(file, copy);
        copies.push(copy);
      },
      // Called once the level's file is in place: its level and the bytes it holds.
      onCheckpoint: (level, bytes) => written.push([level, bytes, statSync(file).size]),
    });
    expect(written.length).toBeGreaterThan(4);
    for (const [i, [level, bytes, size]] of written.entries()) {
      expect(level).toBe(i + 1);
      expect(bytes).toBe(size);
    }
    expect(strip(checkpointed)).toEqual(strip(whole));
    expect(copies.length).toBeGreaterThan(4);
    // Resumed with another chunk size, and by forks or by replays (the fork threshold is not part of the key: the
    // two give the same worlds).
    for (const [i, copy] of copies.entries()) {
      const forkFrom = i % 2 === 0 ? 0 : Infinity;
      const resumed = await searchThreaded({ ...options, inThread: true, checkpoint: copy, chunk: 7, forkFrom });
      expect(strip(resumed), copy).toEqual(strip(whole));
    }
    // Another search's checkpoint, or a damaged file, is refused before anything runs.
    await expect(
      searchThreaded({ ...options, contract: 'vmm-driven', inThread: true, checkpoint: copies[0]! }),
    ).rejects.toThrow(/not a checkpoint of this search: contract "mirror", this search's "vmm-driven"/);
    await expect(
      searchThreaded({ ...options, world: { maxAreas: 2 }, inThread: true, checkpoint: copies[0]! }),
    ).rejects.toThrow(/not a checkpoint of this search: world/);
    const damaged = join(dir, 'damaged.ckpt');
    writeFileSync(damaged, readFileSync(copies[0]!).subarray(0, 200));
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(
      /not a checkpoint of this search/,
    );
    // A byte of the body changed, or of the header: the checksum (it covers the whole file).
    const last = readFileSync(copies.at(-1)!);
    const flipped = Buffer.from(last);
    flipped[flipped.length - 40]! ^= 1;
    writeFileSync(damaged, flipped);
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(/checksum/);
    const inHeader = Buffer.from(last);
    inHeader[10]! ^= 1;
    writeFileSync(damaged, inHeader);
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(/checksum/);
    // A header edited and given a new checksum (a file written by something else): its fields are checked.
    const rewrite = (edit: (header: Record<string, unknown>) => void): void => {
      const size = last.readUInt32LE(0);
      const header = JSON.parse(last.subarray(4, 4 + size).toString('utf8')) as Record<string, unknown>;
      edit(header);
      const text = Buffer.from(JSON.stringify(header), 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32LE(text.length, 0);
      const contents = Buffer.concat([length, text, last.subarray(4 + size, last.length - 32)]);
      writeFileSync(damaged, Buffer.concat([contents, createHash('sha256').update(contents).digest()]));
    };
    // A version-3 file (886012d's build wrote its fork threshold in the key): read, the threshold ignored.
    expect(JSON.parse(last.subarray(4, 4 + last.readUInt32LE(0)).toString('utf8'))).toMatchObject({ version: 4 });
    rewrite((header) => void Object.assign(header, { version: 3, forkFrom: 12 }));
    expect(strip(await searchThreaded({ ...options, inThread: true, checkpoint: damaged }))).toEqual(strip(whole));
    rewrite((header) => void ((header.levels as number[])[1]! += 1));
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(/disagree/);
    // Another build's actions (traces index them) or initial state: refused, not replayed as other actions.
    rewrite((header) => void (header.alphabet as string[]).reverse());
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(
      /its actions are not this build's/,
    );
    rewrite((header) => void (header.probe = `${String(header.probe).slice(1)}0`));
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(
      /its model is not this build's/,
    );
    rewrite((header) => void (header.version = 1));
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(
      /written in format version 1, this build reads versions 3, 4 and 5/,
    );
    // A file of the build before the probe (version 2: the initial state's fingerprint in its key) is named by its
    // version, not said to be of another model.
    rewrite((header) => {
      header.version = 2;
      header.initial = [1, 2];
      delete header.probe;
    });
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(
      /written in format version 2, this build reads versions 3, 4 and 5 \(resume it with the build that wrote it\)/,
    );
    // A version 1 file (no checksum at its end) is named by its version, not called damaged.
    const old = (() => {
      const size = last.readUInt32LE(0);
      const header = JSON.parse(last.subarray(4, 4 + size).toString('utf8')) as Record<string, unknown>;
      const text = Buffer.from(JSON.stringify({ ...header, version: 1 }), 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32LE(text.length, 0);
      return Buffer.concat([length, text, last.subarray(4 + size, last.length - 32)]);
    })();
    writeFileSync(damaged, old);
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(
      /written in format version 1/,
    );
    // What the search would use without looking: a property's trace, a count, a step of a frontier trace.
    rewrite((header) => {
      (header.properties as Record<string, unknown>)['no-dma-after-free'] = { holds: false, vacuous: true, trace: 'x' };
    });
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(
      /a bad trace or witness for no-dma-after-free/,
    );
    rewrite((header) => {
      (header.counts as Record<string, unknown>)['no-dma-after-free'] = { premise: -1, violated: 0 };
    });
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(
      /no counts for no-dma-after-free/,
    );
    const stepped = Buffer.from(last.subarray(0, last.length - 32));
    stepped[4 + last.readUInt32LE(0)] = 255;
    writeFileSync(damaged, Buffer.concat([stepped, createHash('sha256').update(stepped).digest()]));
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(
      /a frontier trace names action 255, past its alphabet/,
    );
    // Every level's file was written whole and renamed: no temporary file is left beside it.
    expect(readdirSync(dir).filter((name) => name.endsWith('.partial'))).toEqual([]);
    // Going back is refused: a depth below the checkpoint's level, a state limit it has passed, exact forms.
    await expect(searchThreaded({ ...options, depth: 2, inThread: true, checkpoint: copies.at(-1)! })).rejects.toThrow(
      /past this search's depth 2/,
    );
    await expect(
      searchThreaded({ ...options, maxStates: 50, inThread: true, checkpoint: copies.at(-1)! }),
    ).rejects.toThrow(/this search stops at 50/);
    await expect(
      searchThreaded({ ...options, visited: 'exact', inThread: true, checkpoint: copies.at(-1)! }),
    ).rejects.toThrow(/visited states as fingerprints from the start, this search's never \(--visited exact\)/);
    await expect(searchThreaded({ ...options, inThread: true, checkpoint: dir })).rejects.toThrow(/cannot be read/);
    await expect(
      searchThreaded({ ...options, inThread: true, checkpoint: join(dir, 'missing', 'x.ckpt') }),
    ).rejects.toThrow(/its folder does not exist/);
  }, 300_000);

  it('a search stopped part-way through a level, after any chunk, goes on from there to the uninterrupted result', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-checkpoint-'));
    const options = { backend: ref, contract: 'mirror' as const, depth: 8, visited: 'fingerprint' as const };
    const whole = await searchThreaded({ ...options, inThread: true });
    // A checkpoint after every chunk merged (chunks of 5 states), each file kept with what the search said of it.
    const file = join(dir, 'search.ckpt');
    const copies: Array<{ copy: string; level: number; within: Progress | undefined }> = [];
    const checkpointed = await searchThreaded({
      ...options,
      inThread: true,
      checkpoint: file,
      chunk: 5,
      checkpointEvery: 0,
      onCheckpoint: (level, bytes, within) => {
        expect(bytes).toBe(statSync(file).size);
        const copy = join(dir, `${copies.length}.ckpt`);
        copyFileSync(file, copy);
        copies.push({ copy, level, within });
      },
    });
    // Writing the files changes nothing in the search.
    expect(strip(checkpointed)).toEqual(strip(whole));
    const version = (copy: string) => {
      const bytes = readFileSync(copy);
      return (JSON.parse(bytes.subarray(4, 4 + bytes.readUInt32LE(0)).toString('utf8')) as { version: number }).version;
    };
    // Each level's expansion: a file after each chunk but the last (5, 10, ... of its states), then the level's end.
    for (let level = 1; level < whole.levels.length - 1; level++) {
      const files = copies.filter((c) => c.level === level);
      const states = whole.levels[level]!;
      const chunks = Math.ceil(states / 5);
      expect(files.map((c) => c.within?.expanded)).toEqual([
        undefined,
        ...Array.from({ length: chunks - 1 }, (_, i) => (i + 1) * 5),
      ]);
      for (const c of files) {
        if (c.within) expect(c.within.states).toBe(states);
        expect(version(c.copy)).toBe(c.within ? 5 : 4);
      }
    }
    const within = copies.filter((c) => c.within);
    expect(within.length).toBeGreaterThan(20);
    // Resumed from a part-way file of each level, halfway through its expansion (with another chunk size: the level
    // under way keeps the file's, else its chunks would not line up with those merged), by forks or by replays: the
    // uninterrupted result, the resume said with how far the level went.
    const picked = [...new Set(within.map((c) => c.level))].map((level) => {
      const files = within.filter((c) => c.level === level);
      return files[Math.floor(files.length / 2)]!;
    });
    expect(picked.map((c) => c.level)).toEqual(Array.from({ length: whole.levels.length - 2 }, (_, i) => i + 1));
    for (const [i, c] of picked.entries()) {
      const resumed: unknown[][] = [];
      const result = await searchThreaded({
        ...options,
        inThread: true,
        checkpoint: c.copy,
        chunk: 7,
        forkFrom: i % 2 === 0 ? 0 : Infinity,
        onResume: (level, levels, states, transitions, violated, progress) =>
          resumed.push([level, levels.length, states, progress]),
      });
      expect(strip(result), c.copy).toEqual(strip(whole));
      expect(resumed).toEqual([[c.level, c.level + 1, expect.any(Number), c.within]]);
      // The states visited then: the levels so far and the part of the next found by the chunks merged.
      const before = whole.levels.slice(0, c.level + 1).reduce((a, b) => a + b, 0);
      expect(resumed[0]![2]).toBeGreaterThanOrEqual(before);
      expect(resumed[0]![2]).toBeLessThanOrEqual(before + whole.levels[c.level + 1]!);
    }
    // A file part-way through finding level L + 1 is past a search of depth L; one of depth L + 1 finishes that level.
    const last = within.at(-1)!;
    await expect(
      searchThreaded({ ...options, depth: last.level, inThread: true, checkpoint: last.copy }),
    ).rejects.toThrow(
      new RegExp(`part-way through finding level ${last.level + 1}, past this search's depth ${last.level}`),
    );
    const shallower = await searchThreaded({ ...options, depth: last.level + 1, inThread: true });
    const finished = await searchThreaded({ ...options, depth: last.level + 1, inThread: true, checkpoint: last.copy });
    expect(strip(finished)).toEqual(strip(shallower));
    // A part-way file edited and given a new checksum: its fields must agree with one another.
    const damaged = join(dir, 'damaged.ckpt');
    const bytes = readFileSync(within[Math.floor(within.length / 2)]!.copy);
    const rewrite = (
      edit: (header: Record<string, any>) => void,
      body = bytes.subarray(4 + bytes.readUInt32LE(0), bytes.length - 32),
    ): void => {
      const header = JSON.parse(bytes.subarray(4, 4 + bytes.readUInt32LE(0)).toString('utf8')) as Record<string, any>;
      edit(header);
      const text = Buffer.from(JSON.stringify(header), 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32LE(text.length, 0);
      const contents = Buffer.concat([length, text, body]);
      writeFileSync(damaged, Buffer.concat([contents, createHash('sha256').update(contents).digest()]));
    };
    const refused = (why: RegExp) =>
      expect(searchThreaded({ ...options, inThread: true, checkpoint: damaged })).rejects.toThrow(why);
    rewrite(() => {});
    expect(strip(await searchThreaded({ ...options, inThread: true, checkpoint: damaged }))).toEqual(strip(whole));
    rewrite((header) => void (header.version = 4));
    await refused(/its version and its fields disagree/);
    rewrite((header) => void delete header.within);
    await refused(/its version and its fields disagree/);
    rewrite((header) => void (header.within = null));
    await refused(/bad counts/);
    rewrite((header) => void (header.within.merged = 0));
    await refused(/its level's expansion so far disagrees with its frontier/);
    rewrite((header) => void (header.within.merged = Math.ceil(header.frontier.count / header.within.chunk)));
    await refused(/its level's expansion so far disagrees with its frontier/);
    rewrite((header) => void (header.within.chunk = 0.5));
    await refused(/bad counts/);
    // A chunk of no states would never end the level.
    rewrite((header) => void (header.within.chunk = 0));
    await refused(/its level's expansion so far disagrees with its frontier/);
    rewrite((header) => void (header.within.next.length = header.level));
    await refused(/its level's expansion so far disagrees with its frontier/);
    // One state more in the next level than the visited count allows; the visited count raised too: the size.
    rewrite((header) => void (header.within.next.count += 1));
    await refused(/its levels, frontier and visited count disagree/);
    rewrite((header) => {
      header.within.next.count += 1;
      header.visited += 1;
    });
    await refused(/its size does not match its header/);
    // A step of a next-level trace past the alphabet (the next level's traces follow the visited pairs).
    const header = JSON.parse(bytes.subarray(4, 4 + bytes.readUInt32LE(0)).toString('utf8')) as Record<string, any>;
    expect(header.within.next.count).toBeGreaterThan(0);
    const body = Buffer.from(bytes.subarray(4 + bytes.readUInt32LE(0), bytes.length - 32));
    body[header.frontier.count * (header.frontier.length + 8) + header.visited * 8] = 255;
    rewrite(() => {}, body);
    await refused(/a next level trace names action 255, past its alphabet/);
    expect(readdirSync(dir).filter((name) => name.endsWith('.partial'))).toEqual([]);
  }, 300_000);

  it('refuses a checkpoint interval that is not a number of milliseconds, before anything runs', async () => {
    for (const checkpointEvery of [-1, Number.NaN, '5' as unknown as number])
      await expect(
        searchThreaded({ backend: ref, contract: 'mirror', depth: 2, inThread: true, checkpointEvery }),
      ).rejects.toThrow(/checkpointEvery must be a number of milliseconds, 0 or more/);
  });

  it('a resumed run says how many states its checkpoint held, and rates only the states it found', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gmemlab-checkpoint-')), 'run.ckpt');
    const options = { backend: ref, contract: 'mirror' as const, visited: 'fingerprint' as const, inThread: true };
    const first = await exploreThreaded({ ...options, depth: 5, checkpoint: file });
    expect(first.stats.resumedFrom).toBeUndefined();
    const resumed = await exploreThreaded({ ...options, depth: 8, checkpoint: file });
    const whole = await exploreThreaded({ ...options, depth: 8 });
    expect(resumed.result).toEqual(whole.result);
    expect(resumed.stats.resumedFrom).toBe(first.result.states);
    const found = resumed.result.states - first.result.states;
    expect(found).toBeGreaterThan(0);
    expect(resumed.stats.statesPerSecond).toBe(
      resumed.stats.searchMs > 0 ? Math.round((found / resumed.stats.searchMs) * 1000) : found,
    );
  }, 120_000);

  it('a write that fails (the rename refused) ends the search with the error and leaves no temporary file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-checkpoint-'));
    const file = join(dir, 'search.ckpt');
    // onLevel runs before the level's file is written: the checkpoint's name is taken by a folder that is not empty,
    // so the rename over it fails once the temporary file is written and flushed.
    const search = searchThreaded({
      backend: ref,
      contract: 'mirror',
      depth: 3,
      visited: 'fingerprint',
      inThread: true,
      checkpoint: file,
      onLevel: () => {
        mkdirSync(join(file, 'taken'), { recursive: true });
      },
    });
    await expect(search).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(readdirSync(dir).sort()).toEqual(['search.ckpt']);
  });

  it('reads a file past 2 GiB (readFileSync refuses those): a sparse one is read, then refused for what it holds', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-checkpoint-'));
    const file = join(dir, 'large.ckpt');
    // A sparse file of 2 GiB + 1 page, read whole and hashed (a single hash update is limited to 2 GiB too).
    const fd = openSync(file, 'w');
    writeSync(fd, Buffer.from([2, 0, 0, 0, 0x7b, 0x7d]), 0, 6, 0);
    ftruncateSync(fd, 2 ** 31 + 4096);
    closeSync(fd);
    const key = smallKey(['a']);
    try {
      expect(() => readCheckpoint(file, key)).toThrow(/do not match their checksum/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('reads back what it wrote from arrays that are views at an offset, prints beyond the frontier ignored', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-checkpoint-'));
    const file = join(dir, 'views.ckpt');
    const properties = Object.fromEntries(PROPERTY_NAMES.map((n) => [n, { holds: true, vacuous: true }]));
    const counts = Object.fromEntries(PROPERTY_NAMES.map((n) => [n, { premise: 1, violated: 0 }]));
    const key = smallKey(['a', 'b', 'c']);
    // Three states of level 2, their traces at byte 5 of a larger buffer, 4 prints where 3 are the frontier's,
    // the visited pairs at word 3 of theirs.
    const traces = new Uint8Array(32).subarray(5);
    traces.set([0, 1, 2, 0, 1, 2]);
    const prints = new Uint32Array(16).subarray(2, 10);
    prints.set([0xdeadbeef, 1, 2, 3, 4, 5, 0xffffffff, 7]);
    const visited = new Uint32Array(20).subarray(3, 3 + 12);
    visited.set([9, 8, 7, 6, 5, 4, 3, 2, 1, 0x80000000, 11, 12]);
    writeCheckpoint(file, {
      ...key,
      level: 2,
      levels: [1, 2, 3],
      transitions: 10,
      properties: properties as never,
      counts: counts as never,
      fingerprintsFrom: 0,
      frontier: { length: 2, count: 3, traces, prints },
      visited,
    });
    const read = readCheckpoint(file, key);
    expect([...read.frontier.traces.subarray(0, 6)]).toEqual([0, 1, 2, 0, 1, 2]);
    expect([...read.frontier.prints]).toEqual([0xdeadbeef, 1, 2, 3, 4, 5]);
    expect([...read.visited]).toEqual([...visited]);
    expect(read.levels).toEqual([1, 2, 3]);
  });

  it('is not written while visited states are canonical forms (gigabytes); it is from the switch to fingerprints on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-checkpoint-'));
    const exact = join(dir, 'exact.ckpt');
    await searchThreaded({
      backend: ref,
      contract: 'mirror',
      depth: 5,
      visited: 'exact',
      inThread: true,
      checkpoint: exact,
    });
    expect(existsSync(exact)).toBe(false);
    const switched = join(dir, 'switched.ckpt');
    const whole = search({ backend: swProtected, contract: 'mirror', depth: 7, exactUpTo: 300 });
    const first = await searchThreaded({
      backend: ref,
      contract: 'mirror',
      depth: 5,
      exactUpTo: 300,
      inThread: true,
      checkpoint: switched,
    });
    expect(existsSync(switched)).toBe(true);
    expect(first.exhaustive).toBe(false);
    // A deeper bound goes on from the same checkpoint.
    const deeper = await searchThreaded({
      backend: ref,
      contract: 'mirror',
      depth: 7,
      exactUpTo: 300,
      inThread: true,
      checkpoint: switched,
    });
    expect(strip(deeper)).toEqual(strip(whole));
    // After every chunk too: nothing while the forms are exact; part-way files from the switch on, the first in the
    // level during whose expansion it came (new states per level 1, 9, 42, 131, 309: 183 visited before level 3's
    // states are expanded, 492 after), and each resumes to the uninterrupted result.
    const eager = join(dir, 'eager.ckpt');
    const everyChunk = { backend: ref, contract: 'mirror' as const, inThread: true, checkpointEvery: 0, chunk: 5 };
    await searchThreaded({ ...everyChunk, depth: 5, visited: 'exact', checkpoint: eager });
    expect(existsSync(eager)).toBe(false);
    const shallow = search({ backend: swProtected, contract: 'mirror', depth: 6, exactUpTo: 300 });
    const partWay: Array<{ copy: string; level: number }> = [];
    const run = await searchThreaded({
      ...everyChunk,
      depth: 6,
      exactUpTo: 300,
      checkpoint: eager,
      onCheckpoint: (level, _bytes, within) => {
        if (!within) return;
        const copy = join(dir, `eager-${partWay.length}.ckpt`);
        copyFileSync(eager, copy);
        partWay.push({ copy, level });
      },
    });
    expect(strip(run)).toEqual(strip(shallow));
    expect(partWay[0]!.level).toBe(3);
    for (const { copy } of [partWay[0]!, partWay.at(-1)!]) {
      const resumed = await searchThreaded({ ...everyChunk, chunk: 7, depth: 6, exactUpTo: 300, checkpoint: copy });
      expect(strip(resumed), copy).toEqual(strip(shallow));
    }
  }, 300_000);
});

describe('Level', () => {
  it('grows from arrays with no room left, as a level read back from a checkpoint has (an empty one has none)', () => {
    const level = new Level(3, false);
    level.traces = new Uint8Array(0);
    level.prints = new Uint32Array(0);
    for (let i = 0; i < 200; i++) level.push(Uint8Array.of(i % 7, 1), i % 5, Uint32Array.of(i, i + 1), '');
    expect(level.count).toBe(200);
    for (const i of [0, 1, 63, 64, 199]) {
      expect([...level.trace(i)]).toEqual([i % 7, 1, i % 5]);
      expect([...level.prints.subarray(i * 2, i * 2 + 2)]).toEqual([i, i + 1]);
    }
  });
});
