/**
 * Hostile scenario files (issue 17): each gets one line on stderr and exit 2, from `validate` and from `compare`,
 * before anything runs; nothing hangs.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, requireBuild } from './support.js';

requireBuild();
const dir = mkdtempSync(join(tmpdir(), 'gmemlab-hostile-'));
const head = 'title: t\nsituation: s\nsource: [x]\n';
const withSize = (size: string) =>
  `${head}steps:\n  - call: host.createVm\n    as: vm\n  - call: vm.createGuestMemfd\n    size: ${size}\n`;
const bomb = [
  'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
  ...'bcdefg'.split('').map((x, i) => `${x}: &${x} [${Array(9).fill(`*${'abcdefg'[i]}`).join(',')}]`),
  head.trimEnd(),
  'steps: [*g]',
].join('\n');

const files: Array<[string, string, string, RegExp]> = [
  [
    'repeat: 1000000000',
    'repeat.yaml',
    `${head}steps:\n  - call: host.createVm\n    as: vm\n  - repeat: 1000000000\n    steps:\n      - call: vm.createGuestMemfd\n        size: 4KiB\n`,
    /makes 1,000,000,001 calls .* over the limit of 1,000,000; raise it with --max-steps/,
  ],
  ['a YAML alias bomb', 'bomb.yaml', bomb, /too many YAML alias expansions/],
  ['length: 1/0', 'div.yaml', withSize('1/0'), /field 'size': division by zero in '1\/0'/],
  [
    '99999999999999999999999999TiB',
    'huge.yaml',
    withSize('99999999999999999999999999TiB'),
    /'99999999999999999999999999TiB' is far larger than 2\^64 - 1/,
  ],
  [
    '0x7fffffffffffffff unquoted',
    'big.yaml',
    withSize('0x7fffffffffffffff'),
    /above 2\^53 - 1 is not exact .* quote it/,
  ],
  ['1XiB', 'unit.yaml', withSize('1XiB'), /'XiB' is not a unit in '1XiB' \(units: B, KiB, MiB, GiB, TiB, PiB, EiB\)/],
  [
    'a let dividing by zero',
    'let.yaml',
    `${head}let: { X: 4KiB / (1 - 1) }\nsteps:\n  - call: host.createVm\n`,
    /let X: division by zero/,
  ],
  [
    'a truncated .json',
    'trunc.json',
    '{"title": "t", "situation": "s", "source": ["x"], "steps": [{"call": "host.createVm"}',
    /^gmemlab: .*trunc\.json:1:\d+: not valid JSON: /,
  ],
];

describe('hostile scenario files', () => {
  it.each(files)(
    '%s: one line, exit 2, from validate and compare, nothing run',
    (_name, file, text, message) => {
      const path = join(dir, file);
      writeFileSync(path, text);
      for (const command of ['validate', 'compare']) {
        const started = Date.now();
        const r = cli([command, path]);
        expect(r.status, `${command}: ${r.stderr}`).toBe(2);
        expect(r.stdout).toBe('');
        expect(r.stderr.trimEnd().split('\n'), command).toHaveLength(1);
        expect(r.stderr).toMatch(message);
        expect(r.stderr).not.toMatch(/internal error/);
        expect(Date.now() - started).toBeLessThan(10_000);
      }
    },
    60_000,
  );

  it('1EiB is a unit (2^60 bytes, a u64); the model answers it with its errno', () => {
    const path = join(dir, 'eib.yaml');
    writeFileSync(path, withSize('1EiB'));
    expect(cli(['validate', path])).toMatchObject({ status: 0 });
    const r = cli(['compare', path, '--arch', 'tdx', '--format', 'json']);
    expect(r.status, r.stderr).toBe(0);
    const step = (JSON.parse(r.stdout) as { runs: Array<{ steps: Array<{ result: { kind: string } }> }> }).runs[0]!
      .steps[1]!;
    expect(step.result.kind).toBe('errno');
  });

  it('--max-steps raises the bound, and validate checks it too', () => {
    const path = join(dir, 'small-repeat.yaml');
    writeFileSync(
      path,
      `${head}steps:\n  - call: host.createVm\n    as: vm\n  - repeat: 20\n    steps:\n      - call: vm.createGuestMemfd\n        size: 4KiB\n`,
    );
    expect(cli(['validate', path, '--max-steps', '10']).stderr).toMatch(/makes 21 calls .* over the limit of 10/);
    expect(cli(['validate', path, '--max-steps', '21']).status).toBe(0);
    expect(cli(['compare', path, '--arch', 'tdx', '--max-steps', '21']).status).toBe(0);
    expect(cli(['validate', path, '--max-steps', 'lots']).status).toBe(2);
  });

  it('a repeat count must be known before the run', () => {
    const path = join(dir, 'handle-repeat.yaml');
    writeFileSync(
      path,
      `${head}steps:\n  - call: host.openIommufd\n    as: iommufd\n  - call: iommufd.createIoas\n    as: ioas\n  - call: host.createVm\n    as: vm\n  - call: vm.createGuestMemfd\n    size: 4KiB\n    as: gmem\n  - call: ioas.mapFile\n    fd: gmem\n    start: 0\n    length: 4KiB\n    flags: IOMMU_IOAS_MAP_READABLE\n    as: iova\n  - repeat: iova\n    steps:\n      - call: host.createVm\n`,
    );
    const r = cli(['validate', path]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/repeat: 'iova' must be known before the run/);
  });
});
