/**
 * A million-line log replays in bounded memory: the log is streamed line by line, and what it keeps grows with
 * the steps it replays, not with the lines it reads. Checked in a child whose V8 heap is capped at 32 MiB (reading
 * the 48 MB log whole and splitting it into lines fails there with an out-of-memory crash), with its heap sampled
 * through process.memoryUsage.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, PACKAGE, requireBuild } from './support.js';

requireBuild();
/** A kvm_set_user_memory line as QEMU prints it (accel/kvm/trace-events). */
const memslotLine = (as: number, slot: number, rest: string) =>
  `kvm_set_user_memory AddrSpace#${as} Slot#${slot} ${rest}`;
const dir = mkdtempSync(join(tmpdir(), 'gmemlab-replay-large-'));
const LINES = 1_000_000;
const HEAP_MIB = 32;

/** A QEMU trace log of `LINES` lines: one memslot, then vCPU exits and VM ioctls, a conversion every 1000th line. */
function generate(file: string, everyLineConverts = false): void {
  const fd = openSync(file, 'w');
  let buffer: string[] = [
    memslotLine(
      0,
      0,
      'flags=0x4 gpa=0x0 size=0x40000000 ua=0x7f0000000000 guest_memfd=25 guest_memfd_offset=0x0 ret=0',
    ),
  ];
  for (let i = 1; i < LINES; i++) {
    if (everyLineConverts || i % 1000 === 0)
      buffer.push(
        `kvm_convert_memory start 0x${((i % 256) * 0x200000).toString(16)} size 0x200000 ${i % 2 ? 'shared_to_private' : 'private_to_shared'}`,
      );
    else if (i % 3) buffer.push(`kvm_run_exit cpu_index ${i % 8}, reason 39`);
    else
      buffer.push(
        `4242@1733300000.${String(i % 1_000_000).padStart(6, '0')}:kvm_vm_ioctl type 0xc008aeba, arg 0x7ffd5b1a0e40`,
      );
    if (buffer.length >= 10_000) {
      writeSync(fd, `${buffer.join('\n')}\n`);
      buffer = [];
    }
  }
  if (buffer.length > 0) writeSync(fd, `${buffer.join('\n')}\n`);
  closeSync(fd);
}

describe('a 1,000,000-line log', () => {
  const big = join(dir, 'big.log');
  generate(big);

  it(`is read within a ${HEAP_MIB} MiB heap, its heap sampled while it reads`, () => {
    const script = `
      import { replayLog } from ${JSON.stringify(join(PACKAGE, 'dist', 'index.js'))};
      let peak = 0;
      const sample = () => { peak = Math.max(peak, process.memoryUsage().heapUsed); };
      const timer = setInterval(sample, 10);
      const started = Date.now();
      const r = await replayLog(${JSON.stringify(big)});
      clearInterval(timer); sample();
      console.log(JSON.stringify({ ms: Date.now() - started, lines: r.lines, steps: r.document.steps.length, unknown: Object.fromEntries(r.counts.unknown), peakHeap: peak, rss: process.memoryUsage().rss }));`;
    const r = spawnSync(process.execPath, [`--max-old-space-size=${HEAP_MIB}`, '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout) as {
      ms: number;
      lines: number;
      steps: number;
      unknown: Record<string, number>;
      peakHeap: number;
      rss: number;
    };
    expect(m.lines).toBe(LINES);
    // The VM, the guest_memfd, the memfd and its mapping, the memslot and its untraced private attributes, then
    // one step per conversion line and (every one here is to shared) the untraced guest_memfd punch after it.
    expect(m.steps).toBe(6 + 999 * 2);
    expect(
      m.unknown['QEMU event kvm_run_exit (not one the replay reads)']! +
        m.unknown['QEMU event kvm_vm_ioctl (not one the replay reads)']!,
    ).toBe(LINES - 1000);
    // The bound is the old space: --max-old-space-size makes the child die out of memory past it (reading the
    // whole file and splitting it does, even at 64 MiB). heapUsed also counts the young generation, which that flag
    // does not bound and whose garbage waits for the next scavenge, so it is checked against twice the cap.
    expect(m.peakHeap).toBeLessThan(2 * HEAP_MIB * 1024 * 1024);
    console.log(
      `1M-line log: ${m.ms} ms, peak heap ${(m.peakHeap / 2 ** 20).toFixed(1)} MiB, rss ${(m.rss / 2 ** 20).toFixed(1)} MiB`,
    );
  }, 120_000);

  it('replays end to end through the CLI (text report) with the same heap cap', () => {
    const started = Date.now();
    const r = spawnSync(
      process.execPath,
      [
        `--max-old-space-size=${HEAP_MIB}`,
        BIN,
        'replay',
        big,
        '--arch',
        'tdx',
        '--contract',
        'today',
        '--format',
        'text',
      ],
      { encoding: 'utf8', timeout: 180_000, maxBuffer: 256 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1' } },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /^gmemlab replay: 1000000 lines: 1000 replayed, 0 understood with no model call, 999000 not understood$/m,
    );
    expect(r.stdout).toContain('big.log');
    expect(r.stdout).toMatch(/1 runs, every expectation held/);
    console.log(`1M-line log through the CLI: ${Date.now() - started} ms`);
  }, 180_000);

  it('a million replayable lines over --max-steps stop at the bound: one line, exit 2', () => {
    const all = join(dir, 'all.log');
    generate(all, true);
    const started = Date.now();
    const r = spawnSync(
      process.execPath,
      [`--max-old-space-size=${HEAP_MIB}`, BIN, 'replay', all, '--max-steps', '10000'],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('all.log:6665: the log replays as more than 10000 steps');
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 120_000);
});
