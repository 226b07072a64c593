/**
 * The example's command line (issue 8 item 10): user errors are one clear line and exit code 2, never a stack
 * trace, and they are reported before the walkthrough runs; backends take short ids with variants.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../../apps/example/convert-under-dma.mjs', import.meta.url));
const run = (...args: string[]) =>
  spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 60_000 });

describe('apps/example command line', () => {
  it('--help prints the usage and exits 0', () => {
    const r = run('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/usage: pnpm example/);
  });

  for (const args of [
    ['--bogus'],
    ['--backend'],
    ['--backend', 'nosuch'],
    ['--backend', 'tdx:nope'],
    ['--backend', 'node:fs'],
  ]) {
    it(`${args.join(' ')}: one clear error, exit 2, no stack trace, nothing run`, () => {
      const r = run(...args);
      expect(r.status).toBe(2);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).not.toMatch(/=== contract/);
      expect(r.stderr.trim().length).toBeGreaterThan(0);
    });
  }

  it('names the known backends when a name is wrong, and says "not a backend" for a module that is not one', () => {
    expect(run('--backend', 'nosuch').stderr).toMatch(/the built-in backends are tdx, sev-snp, arm-cca, pkvm/);
    expect(run('--backend', 'node:fs').stderr).toMatch(/not a backend/);
    expect(run('--backend', 'tdx:nope').stderr).toMatch(
      /unknown variant 'nope' \(known: connect, dma-poison, no-erratum\)/,
    );
  });

  it('a short id with a variant runs that variant', () => {
    const r = run('--backend', 'sev-snp:tio');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^sev-snp:tio\s+gmem-registry/m);
  });
});
