/**
 * `gmemlab replay`: QEMU trace logs and strace output read into scenarios, run like scenarios, written out as
 * scenario files that `gmemlab run` replays the same way; bad logs refused in one line.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GUEST_MEMFD_FLAG_MMAP } from '@gmemlab/core';
import { replayLog, ReplayError, QEMU_EVENTS, TRANSLATION } from '../src/index.js';
import { compileEvent } from '../src/replay/qemu.js';
import type { Comparison } from '../src/run/types.js';
import { cli, FIXTURES, requireBuild } from './support.js';

requireBuild();
/** A kvm_set_user_memory line as QEMU prints it (accel/kvm/trace-events). */
const memslotLine = (as: number, slot: number, rest: string) =>
  `kvm_set_user_memory AddrSpace#${as} Slot#${slot} ${rest}`;
const QEMU = join(FIXTURES, 'replay', 'qemu-today.trace');
const STRACE = join(FIXTURES, 'replay', 'strace-7.2.strace');
const dir = mkdtempSync(join(tmpdir(), 'gmemlab-replay-'));
let n = 0;
function log(text: string | Buffer, name = `log-${++n}.log`): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}
const calls = (doc: Record<string, unknown>) => (doc.steps as Array<{ call: string }>).map((s) => s.call);

/** One line on stderr, exit 2, no stack. */
function expectOneLine(r: { status: number; stderr: string }, ...parts: string[]) {
  expect(r.status).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  for (const p of parts) expect(lines[0]).toContain(p);
}

describe('QEMU trace log (constructed fixture, trace-events format strings)', () => {
  it('translates each event it reads into the scenario calls, in order', async () => {
    const r = await replayLog(QEMU);
    expect(r.format).toBe('qemu');
    const attrs = TRANSLATION.vmSetMemoryAttributes.call;
    expect(calls(r.document)).toEqual([
      'host.openIommufd',
      'iommufd.createIoas',
      'host.createVm',
      'vm.createGuestMemfd',
      'host.memfdCreate',
      'memfd.mmap',
      'vm.setUserMemoryRegion2',
      attrs, // untraced: kvm_set_phys_mem makes the guest_memfd slot private
      'ioas.attachDevice',
      'vm.guestRead',
      attrs,
      ...Array<string>(16).fill('ioas.map'),
      'gmem.fallocate', // untraced: ram_block_discard_guest_memfd_range, after VFIO's maps
      'vm.guestRead',
      attrs,
      'ioas.unmap',
      'mapping.madvise',
      'device.detach',
      'ioas.destroy',
      'iommufd.close',
    ]);
    // The guest_memfd's size is what its memslot covers (QEMU traces no KVM_CREATE_GUEST_MEMFD).
    expect(r.document.let).toMatchObject({ SIZE_gmem1: '0x800000' });
    const steps = r.document.steps as Array<Record<string, unknown>>;
    expect(steps[6]).toMatchObject({
      slot: '0x0',
      flags: '0x4',
      guestPhysAddr: '0x0',
      memorySize: '0x800000',
      userspaceAddr: 'm1',
      guestMemfd: 'gmem1',
      guestMemfdOffset: '0x0',
      expect: 'ok',
    });
    // KVM_SET_MEMORY_ATTRIBUTES of the whole slot, then of GPA [2 MiB, +64 KiB): per VM (today's path).
    expect(steps[7]).toMatchObject({ on: 'vm', address: '0x0', size: '0x800000', attributes: '0x8' });
    expect(steps[29]).toMatchObject({ on: 'vm', address: '0x200000', size: '0x10000', attributes: '0x8' });
    expect(steps[7]!.expect).toBeUndefined();
    expect(steps[10]).toMatchObject({ attributes: '0' });
    expect(steps[12]).toMatchObject({
      call: 'ioas.map',
      mapping: 'm1',
      offset: '0x201000',
      length: '0x1000',
      iova: '0x201000',
      expect: 'ok',
    });
    expect(steps[27]).toMatchObject({
      call: 'gmem.fallocate',
      on: 'gmem1',
      mode: '0x3',
      offset: '0x200000',
      length: '0x10000',
    });
    expect(steps[27]!.expect).toBeUndefined();
    expect(String(steps[27]!.note)).toMatch(/^line 20: .*ram_block_discard_guest_memfd_range/);
    expect(r.assumptions).toContain(
      'untraced: kvm_set_phys_mem sets guest_memfd RAM private (kvm_set_memory_attributes_private over each guest_memfd memslot it adds)',
    );
    expect(r.assumptions.some((a) => /ram_block_discard_guest_memfd_range/.test(a))).toBe(true);
    expect(r.document.host).toEqual({ conversion: 'separate' });
    expect(steps[9]).toMatchObject({ gpa: '0x200000', length: '0x1000', intent: 'shared' });
    expect(steps[28]).toMatchObject({ gpa: '0x200000', length: '0x1000', intent: 'private' });
    expect(String(steps[6]!.note)).toMatch(/^line 15: kvm_set_user_memory/);
  });

  it('counts what it does not replay, by kind', async () => {
    const r = await replayLog(QEMU);
    expect(r.lines).toBe(47);
    expect(r.counts.replayed).toBe(29);
    expect(Object.fromEntries(r.counts.unknown)).toEqual({
      'not a QEMU trace line': 12,
      'QEMU event kvm_run_exit (not one the replay reads)': 2,
    });
    expect([...r.counts.skipped.keys()].some((k) => k.startsWith('ram_block_attributes_state_change'))).toBe(true);
    expect(
      r.counts.skipped.get(
        [...r.counts.skipped.keys()].find((k) => k.startsWith('ram_block_attributes_state_change'))!,
      ),
    ).toBe(2);
  });

  it('reads each event by its format string, with and without the pid@time prefix', () => {
    const event = compileEvent(
      QEMU_EVENTS.find((e) => e.line.startsWith('kvm_set_user_memory'))!.line,
      'accel/kvm/trace-events',
    );
    const line = memslotLine(
      1,
      7,
      'flags=0x4 gpa=0x100000000 size=0x40000000 ua=0x7f5a00000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=-22',
    );
    const m = event.pattern.exec(line)!;
    expect(m.slice(1)).toEqual(['1', '7', '4', '100000000', '40000000', '7f5a00000000', '-1', '0', '-22']);
    expect(event.pattern.exec(memslotLine(1, 7, 'flags=0x4'))).toBeNull();
    // Every event of the table compiles, with one capture per argument the format prints.
    for (const e of QEMU_EVENTS) expect(compileEvent(e.line, e.file).kinds.length).toBeGreaterThan(0);
  });

  it('a line that does not match its event format string is one line, exit 2', () => {
    const r = cli([
      'replay',
      log(`kvm_convert_memory start 0x1000 size 0x1000 shared_to_private\n${memslotLine(0, 0, 'flags=zz')}\n`),
    ]);
    expectOneLine(r, ':2:', 'kvm_set_user_memory', 'format string');
  });
});

describe('strace output (constructed fixture, strace 7.2 format)', () => {
  it('follows fds from /dev/kvm to the VM to the guest_memfd, joins unfinished/resumed pairs', async () => {
    const r = await replayLog(STRACE);
    expect(r.format).toBe('strace');
    expect(calls(r.document)).toEqual([
      'host.createVm',
      'vm.createGuestMemfd',
      'gmem.mmap',
      'gmem.fallocate',
      'host.memfdCreate',
      'memfd.mmap',
      'vm.setUserMemoryRegion2',
      'mapping.madvise',
      'memfd.fallocate',
      'host.openIommufd',
      'mapping.munmap',
      'gmem.close',
    ]);
    const steps = r.document.steps as Array<Record<string, unknown>>;
    expect(steps[0]).toMatchObject({ type: 'default' });
    // The fallocate left <unfinished ...> on line 14 is replayed from its resumed line 16.
    expect(steps[3]).toMatchObject({ on: 'gmem1', mode: '0x3', offset: '0x0', length: '0x1000' });
    expect(String(steps[3]!.note)).toMatch(/^line 16: fallocate = 0/);
    expect(steps[6]).toMatchObject({
      slot: '0x1',
      guestPhysAddr: '0x100000',
      memorySize: '0x200000',
      userspaceAddr: 'm2',
    });
    // Sizes: the memfd's from ftruncate, the guest_memfd's from its furthest use (strace prints no size).
    expect(r.document.let).toEqual({
      SIZE_gmem1: '0x4000',
      FLAGS_gmem1: `0x${GUEST_MEMFD_FLAG_MMAP.toString(16)}`,
      SIZE_memfd1: '0x200000',
    });
    const skipped = Object.fromEntries(r.counts.skipped);
    expect(
      skipped['KVM_SET_USER_MEMORY_REGION2 (strace prints its argument as an address, not its fields: not replayable)'],
    ).toBe(1);
    expect(skipped['IOMMU_IOAS_MAP (strace prints its argument as an address, not its fields: not replayable)']).toBe(
      1,
    );
    expect(Object.fromEntries(r.counts.unknown)).toEqual({ 'not an strace line': 5 });
  });

  it('reads [pid N] prefixes, -ttt and -r times, -T durations and raw ioctl numbers', async () => {
    const file = log(
      [
        '[pid  7] 1733300000.000001 openat(AT_FDCWD, "/dev/kvm", O_RDWR|O_CLOEXEC) = 3 <0.000010>',
        '     0.000100 ioctl(3, 0xae01, 0x2) = 4',
        '[pid  7] ioctl(4, _IOC(_IOC_READ|_IOC_WRITE, 0xae, 0xd4, 0x40), 0x7ffd0000) = 5',
        '[pid  8] fallocate(5, FALLOC_FL_KEEP_SIZE, 0, 8192 <unfinished ...>',
        '[pid  7] ioctl(4, 0xc040aed4, 0x7ffd0000) = 6',
        '[pid  8] <... fallocate resumed>) = 0',
        '[pid  7] close(6) = 0',
        '[pid  9] fallocate(5, FALLOC_FL_KEEP_SIZE, 0, 4096 <unfinished ...>',
      ].join('\n') + '\n',
    );
    const r = await replayLog(file);
    expect(calls(r.document)).toEqual([
      'host.createVm',
      'vm.createGuestMemfd',
      'vm.createGuestMemfd',
      'gmem.fallocate',
      'gmem.close',
    ]);
    // KVM_CREATE_VM type 2 is SEV: no private memory (svm_vm_init: has_private_mem only for KVM_X86_SNP_VM).
    expect((r.document.steps as Array<Record<string, unknown>>)[0]).toMatchObject({ type: 'default' });
    expect((r.document.steps as Array<Record<string, unknown>>)[3]).toMatchObject({
      call: 'gmem.fallocate',
      expect: 'ok',
    });
    expect((r.document.steps as Array<Record<string, unknown>>)[4]).toMatchObject({ on: 'gmem2' });
    expect(r.counts.unknown.get('fallocate left <unfinished ...> at the end of the log (its result is unknown)')).toBe(
      1,
    );
  });

  it('an ioctl on an fd the log never opened is one line naming the line, exit 2', () => {
    expectOneLine(
      cli(['replay', log('12 read(0, "", 1) = 0\n12 ioctl(9, KVM_CREATE_GUEST_MEMFD, 0x7ffd0000) = 5\n')]),
      ':2:',
      'fd 9 was never opened',
    );
  });
});

describe('a replay runs like a scenario', () => {
  it('--emit-scenario writes a scenario that gmemlab run replays with the same result', () => {
    for (const fixture of [QEMU, STRACE]) {
      const out = join(dir, `emitted-${++n}.yaml`);
      const replay = cli([
        'replay',
        fixture,
        '--arch',
        'all',
        '--contract',
        'all',
        '--format',
        'json',
        '--emit-scenario',
        out,
      ]);
      expect(replay.status).toBe(0);
      const run = cli(['run', out, '--arch', 'all', '--contract', 'all', '--format', 'json']);
      expect(run.status).toBe(0);
      const a = JSON.parse(replay.stdout) as Comparison & { replay: { steps: number } };
      const b = JSON.parse(run.stdout) as Comparison;
      const shape = (c: Comparison) =>
        c.runs.map((r) => ({
          arch: r.arch,
          contract: r.contract,
          ok: r.ok,
          violations: r.violationKinds,
          steps: r.steps.map((s) => [s.call, s.label, s.outcome, s.note]),
        }));
      expect(shape(b)).toEqual(shape(a));
      // A cell is null where the scenario does not run under that design (today's path runs in the 'today' column only).
      expect(b.verdict!.rows.map((r) => r.cells.map((c) => c?.outcome ?? null))).toEqual(
        a.verdict!.rows.map((r) => r.cells.map((c) => c?.outcome ?? null)),
      );
      const ran = a.runs.filter((r) => r.steps.length > 0);
      expect(new Set(ran.map((r) => r.arch)).size).toBe(a.archs.length);
      expect(a.archs.length).toBeGreaterThanOrEqual(4);
      for (const r of ran) expect(r.steps).toHaveLength(a.replay.steps);
    }
  });

  it("after a conversion to private, the guest's shared access exits with KVM_EXIT_MEMORY_FAULT on every architecture", () => {
    const r = cli(['replay', QEMU, '--arch', 'all', '--format', 'json']);
    const c = JSON.parse(r.stdout) as Comparison;
    const ran = c.runs.filter((run) => run.steps.length > 0);
    expect(new Set(ran.map((run) => run.arch)).size).toBe(c.archs.length);
    for (const run of ran) {
      const reads = run.steps.filter((s) => s.call === 'vm.guestRead');
      // The slot starts private (kvm_set_phys_mem), so the log's first exit, a shared access, is the model's too;
      // after the conversion to shared, the private access exits again.
      expect(
        reads[0]!.result.kind === 'fault' && reads[0]!.result.access.exit !== undefined,
        `${run.arch}/${run.contract}`,
      ).toBe(true);
      expect(
        reads[1]!.result.kind === 'fault' && reads[1]!.result.access.exit !== undefined,
        `${run.arch}/${run.contract}`,
      ).toBe(true);
    }
  });

  it.each(['table', 'text', 'markdown', 'html'])('prints %s, with the counts on stderr only', (format) => {
    const r = cli(['replay', QEMU, '--arch', 'tdx', '--format', format]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('qemu-today.trace');
    expect(r.stdout).not.toContain('not understood');
    expect(r.stderr).toMatch(
      /^gmemlab replay: 47 lines: 29 replayed, 4 understood with no model call, 14 not understood$/m,
    );
  });
});

describe('bad logs: one line, exit 2', () => {
  it('a binary file', () => {
    expectOneLine(
      cli(['replay', log(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00, 0x0a]))]),
      'NUL byte',
    );
    expectOneLine(cli(['replay', log(Buffer.from([0x6b, 0x76, 0x6d, 0xff, 0xfe, 0x0a]))]), 'not UTF-8');
  });
  it('a log cut in the middle of a line', () => {
    expectOneLine(
      cli([
        'replay',
        log(
          `kvm_convert_memory start 0x1000 size 0x1000 shared_to_private\n${memslotLine(0, 0, 'flags=0x4 gpa=0x0 size=0x20')}`,
        ),
      ]),
      ':2:',
      'truncated',
    );
  });
  it('an empty log, and one in neither format', () => {
    expectOneLine(cli(['replay', log('')]), 'empty');
    expectOneLine(cli(['replay', log('hello\nworld\n')]), 'neither a QEMU trace event', '--input');
  });
  it('a size larger than any process can map', () => {
    expectOneLine(
      cli([
        'replay',
        log(
          memslotLine(
            0,
            0,
            'flags=0x4 gpa=0x0 size=0xfffffffffffff000 ua=0x7f0000000000 guest_memfd=25 guest_memfd_offset=0x0 ret=0\n',
          ),
        ),
      ]),
      ':1:',
      'lies about a size',
    );
  });
  it('an ftruncate to a size past loff_t that the log says worked names its line', () => {
    expectOneLine(
      cli(['replay', log('memfd_create("ram", 0) = 5\nftruncate(5, 99999999999999999999999) = 0\n')]),
      ':2:',
      'past loff_t',
      'lies about a size',
    );
  });
  it('a step the model decides otherwise than the log names the log line it stands for (stderr), exit 1', () => {
    const r = cli([
      'replay',
      log(
        `${memslotLine(0, 0, 'flags=0x0 gpa=0x800 size=0x200000 ua=0x7f0000000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0')}\n`,
      ),
      '--arch',
      'tdx',
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^gmemlab replay: step \d+ vm\.setUserMemoryRegion2 expected ok, got EINVAL; it stands for line 1: kvm_set_user_memory/m,
    );
  });
  it('fallocate and mmap on an fd the log never opened are counted, not refused (it may be a disk image)', async () => {
    const r = await replayLog(
      log(
        'memfd_create("ram", 0) = 5\nfallocate(9, FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE, 0, 4096) = 0\nmmap(NULL, 4096, PROT_READ, MAP_SHARED, 9, 0) = 0x7f0000000000\n',
      ),
    );
    expect(r.counts.skipped.get('fallocate on an fd this log never opened')).toBe(1);
    expect(r.counts.skipped.get('mmap of an fd this log never opened (followed as memory of unknown kind)')).toBe(1);
  });
  it('more steps than --max-steps', () => {
    expectOneLine(cli(['replay', QEMU, '--max-steps', '5']), 'more than 5 steps', '--max-steps');
  });
  it('a line over 1 MiB', () => {
    expectOneLine(cli(['replay', log(`kvm_run_exit ${'x'.repeat(1024 * 1024 + 10)}\n`)]), 'longer than');
  });
  it('a missing file', () => {
    expectOneLine(cli(['replay', join(dir, 'nope.log')]), 'no such file');
  });
  it('a length that lies gets the model errno at its step', async () => {
    const file = log(
      '12 openat(AT_FDCWD, "/dev/kvm", O_RDWR) = 3\n12 ioctl(3, KVM_CREATE_VM, 0) = 4\n12 ioctl(4, KVM_CREATE_GUEST_MEMFD, 0x7ffd) = 5\n12 fallocate(5, FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE, 4096, 18446744073709551615) = -1 EINVAL (Invalid argument)\n',
    );
    const r = cli(['replay', file, '--arch', 'tdx', '--contract', 'gmem-registry', '--format', 'json']);
    expect(r.status).toBe(0);
    const step = (JSON.parse(r.stdout) as Comparison).runs[0]!.steps.at(-1)!;
    expect(step.call).toBe('gmem.fallocate');
    expect(step.result).toMatchObject({ kind: 'errno', errno: 'EINVAL' });
    await expect(replayLog(join(dir, 'nope.log'))).rejects.toBeInstanceOf(ReplayError);
  });
});

describe('the logged results are the expectations (a disagreement with the logged kernel is exit 1)', () => {
  const KVM = [
    'openat(AT_FDCWD, "/dev/kvm", O_RDWR|O_CLOEXEC) = 3',
    'ioctl(3, KVM_CREATE_VM, 0) = 4',
    'mmap(NULL, 8388608, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000',
  ];
  const slot0 =
    'ioctl(4, KVM_SET_USER_MEMORY_REGION, {slot=0, flags=0, guest_phys_addr=0, memory_size=2097152, userspace_addr=0x7f0000000000}) = 0';
  const run = (lines: string[]) => cli(['replay', log(`${lines.join('\n')}\n`), '--arch', 'tdx', '--format', 'json']);

  it('strace: KVM_SET_USER_MEMORY_REGION = -1 EEXIST where the model overlaps too holds; where it does not, fails', async () => {
    const overlapping = [
      ...KVM,
      slot0,
      'ioctl(4, KVM_SET_USER_MEMORY_REGION, {slot=1, flags=0, guest_phys_addr=0x100000, memory_size=4096, userspace_addr=0x7f0000200000}) = -1 EEXIST (File exists)',
    ];
    const r = await replayLog(log(`${overlapping.join('\n')}\n`));
    expect((r.document.steps as Array<Record<string, unknown>>).map((s) => s.expect)).toEqual([
      undefined,
      undefined,
      undefined,
      'ok',
      'EEXIST',
    ]);
    expect(run(overlapping).status).toBe(0);
    const apart = [
      ...KVM,
      slot0,
      'ioctl(4, KVM_SET_USER_MEMORY_REGION, {slot=1, flags=0, guest_phys_addr=0x400000, memory_size=4096, userspace_addr=0x7f0000200000}) = -1 EEXIST (File exists)',
    ];
    expect(run(apart).status).toBe(1);
  });

  it('strace: fallocate = -1 EOPNOTSUPP and madvise = -1 EINVAL, where the model succeeds, fail', () => {
    const memfd = ['memfd_create("ram", MFD_CLOEXEC) = 5', 'ftruncate(5, 2097152) = 0'];
    expect(run([...memfd, 'fallocate(5, FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE, 0, 4096) = 0']).status).toBe(0);
    expect(
      run([
        ...memfd,
        'fallocate(5, FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE, 0, 4096) = -1 EOPNOTSUPP (Operation not supported)',
      ]).status,
    ).toBe(1);
    const mapped = [...memfd, 'mmap(NULL, 2097152, PROT_READ|PROT_WRITE, MAP_SHARED, 5, 0) = 0x7f0000000000'];
    expect(run([...mapped, 'madvise(0x7f0000000000, 4096, MADV_DONTNEED) = 0']).status).toBe(0);
    expect(run([...mapped, 'madvise(0x7f0000000000, 4096, MADV_DONTNEED) = -1 EINVAL (Invalid argument)']).status).toBe(
      1,
    );
  });

  it('QEMU: kvm_set_user_memory ret=-22 where the model accepts the slot fails; ret=0 where the model refuses it fails', async () => {
    const good = memslotLine(
      0,
      0,
      'flags=0x0 gpa=0x0 size=0x200000 ua=0x7f0000000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0',
    );
    const r = await replayLog(log(`${good}\n`));
    expect((r.document.steps as Array<Record<string, unknown>>).at(-1)).toMatchObject({
      call: 'vm.setUserMemoryRegion2',
      expect: 'ok',
    });
    expect(run([good]).status).toBe(0);
    expect(
      run([
        memslotLine(
          0,
          0,
          'flags=0x0 gpa=0x0 size=0x200000 ua=0x7f0000000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=-22',
        ),
      ]).status,
    ).toBe(1);
    // A GPA off a page boundary: the kernel's EINVAL (kvm_set_memory_region), against a log that says it worked.
    expect(
      run([
        memslotLine(
          0,
          0,
          'flags=0x0 gpa=0x800 size=0x200000 ua=0x7f0000000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0',
        ),
      ]).status,
    ).toBe(1);
    expect(
      run([
        memslotLine(
          0,
          0,
          'flags=0x0 gpa=0x800 size=0x200000 ua=0x7f0000000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=-22',
        ),
      ]).status,
    ).toBe(0);
  });

  it("QEMU: an iommufd event's (-1) carries no expectation (the trace prints the ioctl's -1, not errno)", async () => {
    const r = await replayLog(
      log(
        [
          'iommufd_backend_connect fd=20 owned=1 users=1',
          'iommufd_backend_alloc_ioas  iommufd=20 ioas=2',
          memslotLine(
            0,
            0,
            'flags=0x0 gpa=0x0 size=0x200000 ua=0x7f0000000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0',
          ),
          'iommufd_backend_map_dma  iommufd=20 ioas=2 iova=0x0 size=0x1000 addr=0x7f0000000000 readonly=0 (-1)',
          'iommufd_backend_unmap_dma_non_exist  Unmap nonexistent mapping: iommufd=20 ioas=2 iova=0x100000 size=0x1000 (-1)',
        ].join('\n') + '\n',
      ),
    );
    const steps = r.document.steps as Array<Record<string, unknown>>;
    expect(steps.at(-2)).toMatchObject({ call: 'ioas.map' });
    expect(steps.at(-2)!.expect).toBeUndefined();
    expect(steps.at(-1)).toMatchObject({ call: 'ioas.unmap', expect: 'ENOENT' });
  });
});

describe('KVM_CREATE_VM types (strace)', () => {
  it.each([
    [0, 'default'],
    [1, 'coco'],
    [2, 'default'],
    [3, 'default'],
    [4, 'coco'],
    [5, 'coco'],
  ])('type %i is a %s VM', async (type, kind) => {
    const r = await replayLog(log(`openat(AT_FDCWD, "/dev/kvm", O_RDWR) = 3\nioctl(3, KVM_CREATE_VM, ${type}) = 4\n`));
    expect((r.document.steps as Array<Record<string, unknown>>)[0]).toMatchObject({
      call: 'host.createVm',
      type: kind,
    });
    expect(r.assumptions.some((a) => /KVM_CREATE_VM type/.test(a))).toBe(false);
  });

  it('any other type (an arm64 IPA size) is a default VM, and the report says why', async () => {
    const r = await replayLog(log('openat(AT_FDCWD, "/dev/kvm", O_RDWR) = 3\nioctl(3, KVM_CREATE_VM, 0x28) = 4\n'));
    expect((r.document.steps as Array<Record<string, unknown>>)[0]).toMatchObject({ type: 'default' });
    expect(r.assumptions.find((a) => /KVM_CREATE_VM type 0x28/.test(a))).toMatch(/IPA size/);
  });
});

describe('QEMU: MAP_FILE of an fd the log never traced opening (memory-backend-memfd RAM)', () => {
  const head = [
    'iommufd_backend_connect fd=20 owned=1 users=1',
    'iommufd_backend_alloc_ioas  iommufd=20 ioas=2',
    memslotLine(0, 0, 'flags=0x0 gpa=0x0 size=0x200000 ua=0x7f0000000000 guest_memfd=-1 guest_memfd_offset=0x0 ret=0'),
  ];
  it('is the memory of the memslot at that IOVA = GPA, stated as an assumption', async () => {
    const r = await replayLog(
      log(
        `${[...head, 'iommufd_backend_map_file_dma  iommufd=20 ioas=2 iova=0x100000 size=0x1000 fd=33 start=1048576 readonly=0 (0)'].join('\n')}\n`,
      ),
    );
    const steps = r.document.steps as Array<Record<string, unknown>>;
    expect(steps.at(-1)).toMatchObject({
      call: 'ioas.mapFile',
      fd: 'memfd1',
      start: '0x100000',
      length: '0x1000',
      iova: '0x100000',
      expect: 'ok',
    });
    expect(r.assumptions.some((a) => /MAP_FILE of an fd QEMU never traced opening/.test(a))).toBe(true);
    expect(
      cli([
        'replay',
        log(
          `${[...head, 'iommufd_backend_map_file_dma  iommufd=20 ioas=2 iova=0x100000 size=0x1000 fd=33 start=1048576 readonly=0 (0)'].join('\n')}\n`,
        ),
        '--arch',
        'tdx',
      ]).status,
    ).toBe(0);
  });
  it('with no memslot there, is one line, exit 2', () => {
    expectOneLine(
      cli([
        'replay',
        log(
          `${[...head, 'iommufd_backend_map_file_dma  iommufd=20 ioas=2 iova=0x10000000 size=0x1000 fd=33 start=0 readonly=0 (0)'].join('\n')}\n`,
        ),
      ]),
      ':4:',
      'fd 33 was never seen',
      'no memslot',
    );
  });
});
