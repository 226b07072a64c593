/**
 * Real strace output, replayed: a recording kept as a fixture (strace 6.1 of a small memfd program), the same
 * program traced live where gcc and strace work, and, where the machine has /dev/kvm, the project's own kernel
 * helper (@gmemlab/linux) traced while it makes a VM, a guest_memfd, a mapping, a punch hole and a memslot.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLinuxHost, helperPath, isAvailable } from '@gmemlab/linux';
import { describe, expect, it } from 'vitest';
import { replayLog } from '../src/index.js';
import { FIXTURES } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'gmemlab-replay-recorded-'));
const SOURCE = join(FIXTURES, 'replay', 'memfd-discard.c');
const calls = (doc: Record<string, unknown>) => (doc.steps as Array<{ call: string }>).map((s) => s.call);
const MEMFD_CALLS = [
  'host.memfdCreate',
  'memfd.mmap',
  'memfd.fallocate',
  'mapping.madvise',
  'mapping.munmap',
  'memfd.close',
];

/** Why strace cannot record here, or undefined when it can (strace runs, and ptrace is allowed). */
function straceProblem(): string | undefined {
  const v = spawnSync('strace', ['-o', '/dev/null', 'true'], { encoding: 'utf8' });
  if (v.error) return `no strace here (${(v.error as NodeJS.ErrnoException).code})`;
  if (v.status !== 0) return `strace cannot trace here: ${v.stderr.trim().split('\n')[0]}`;
  return undefined;
}
const noStrace = straceProblem();
const gcc = spawnSync('gcc', ['--version']);
const noGcc = gcc.error ? 'no gcc here' : undefined;
const kvm = await isAvailable({ flags: 0x3 });

describe('a recorded strace (strace 6.1, Debian 12)', () => {
  it('replays the memfd calls and skips the loader and libc ones, by kind', async () => {
    const r = await replayLog(join(FIXTURES, 'replay', 'strace-6.1-memfd-discard.strace'));
    expect(calls(r.document)).toEqual(MEMFD_CALLS);
    expect(r.document.let).toEqual({ SIZE_memfd1: '0x200000' });
    const steps = r.document.steps as Array<Record<string, unknown>>;
    // madvise(p + 8192, 4096, MADV_REMOVE): offset 8 KiB into the mapping, advice 9.
    expect(steps[3]).toMatchObject({ on: 'm1', offset: '0x2000', length: '0x1000', advice: '0x9' });
    expect(steps[2]).toMatchObject({ on: 'memfd1', mode: '0x3', offset: '0x0', length: '0x1000' });
    expect(
      r.counts.skipped.get('mmap of anonymous memory (followed: replayed when KVM or a device uses it)'),
    ).toBeGreaterThan(0);
    expect(r.counts.unknown.get('not an strace line')).toBe(2);
  });
});

describe('a live strace of the same program', () => {
  it.skipIf(noStrace !== undefined || noGcc !== undefined)(
    `replays the same calls${(noStrace ?? noGcc) ? ` (skipped: ${noStrace ?? noGcc})` : ''}`,
    async () => {
      const program = join(dir, 'plain');
      const build = spawnSync('gcc', ['-O1', '-o', program, SOURCE], { encoding: 'utf8' });
      expect(build.status, build.stderr).toBe(0);
      const log = join(dir, 'live.strace');
      const traced = spawnSync('strace', ['-f', '-tt', '-o', log, program], { encoding: 'utf8' });
      expect(traced.status, traced.stderr).toBe(0);
      const r = await replayLog(log);
      expect(calls(r.document)).toEqual(MEMFD_CALLS);
    },
  );
});

describe("a live strace of gmemlab's kernel helper on /dev/kvm", () => {
  const reason = !kvm.available ? kvm.reason : noStrace;
  it.skipIf(reason !== undefined)(`replays what the helper did${reason ? ` (skipped: ${reason})` : ''}`, async () => {
    const log = join(dir, 'helper.strace');
    const wrapper = join(dir, 'traced-helper');
    const real = helperPath();
    expect(existsSync(real)).toBe(true);
    writeFileSync(wrapper, `#!/bin/sh\nexec strace -f -tt -o '${log}' '${real}' "$@"\n`);
    chmodSync(wrapper, 0o755);
    const saved = process.env.GMEMLAB_HELPER;
    process.env.GMEMLAB_HELPER = wrapper;
    try {
      const host = await createLinuxHost();
      const vm = await host.createVm();
      const gmem = await vm.createGuestMemfd({ size: 16384, flags: 0x3 });
      const mem = await gmem.mmap({ length: 16384, shared: true });
      await gmem.fallocate(0x3, 0, 4096);
      await vm.setUserMemoryRegion2({
        slot: 1,
        flags: 4,
        guestPhysAddr: 0x100000,
        memorySize: 16384,
        userspaceAddr: mem.address(),
        guestMemfd: gmem,
      });
      await host.dispose();
    } finally {
      if (saved === undefined) delete process.env.GMEMLAB_HELPER;
      else process.env.GMEMLAB_HELPER = saved;
    }
    const r = await replayLog(log);
    const c = calls(r.document);
    for (const call of ['host.createVm', 'vm.createGuestMemfd', 'gmem.mmap', 'gmem.fallocate'])
      expect(c).toContain(call);
    expect(c.indexOf('vm.createGuestMemfd')).toBeLessThan(c.indexOf('gmem.fallocate'));
    // strace prints KVM_SET_USER_MEMORY_REGION2's argument as an address: counted, not replayed.
    expect([...r.counts.skipped.keys()].some((k) => k.startsWith('KVM_SET_USER_MEMORY_REGION2'))).toBe(true);
  });
});
