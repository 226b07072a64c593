/**
 * Code comments and READMEs cite `kernel-contract §x.y` and source tags ([T1e], GMEM-LATER, ...); docs/ must
 * define every one of them, and the docs' own relative links must resolve. The check itself is
 * scripts/check-doc-citations.mjs; this runs it on the repository and on a small fixture that must fail.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const script = join(root, 'scripts', 'check-doc-citations.mjs');

interface Result {
  problems: string[];
  stats: { files: number; sections: number; tags: number; links: number };
}

function check(at: string): Result {
  const run = spawnSync(process.execPath, [script, '--root', at, '--json'], { encoding: 'utf8' });
  if (run.error) throw run.error;
  return JSON.parse(run.stdout) as Result;
}

const fixtures: string[] = [];
afterAll(() => {
  for (const dir of fixtures) rmSync(dir, { recursive: true, force: true });
});

function fixture(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-doc-citations-'));
  fixtures.push(dir);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

describe('doc citations', () => {
  it('every section and tag cited in the repository is defined in docs/, and every docs link resolves', () => {
    const result = check(root);
    expect(result.problems).toEqual([]);
    // Guard against a scan that silently finds nothing.
    expect(result.stats.sections).toBeGreaterThan(50);
    expect(result.stats.tags).toBeGreaterThan(100);
  });

  it('reports a missing section, a missing tag and a broken link', () => {
    const dir = fixture({
      'docs/kernel-contract.md': '# Contract\n\n## §3 Operations\n\n### §3.5 Punch hole\n',
      'docs/sources.md':
        '# Sources\n\n| Tag | What |\n|---|---|\n| T1a | a message |\n| GMEM | a file |\n\n## Prior art (prior-art §7)\n',
      'docs/README.md':
        '[contract](kernel-contract.md#3-operations) [gone](missing.md) [bad anchor](sources.md#nowhere)\n',
      'packages/x/src/a.ts': [
        '// kernel-contract §3.5 and §3 resolve; §3.99 does not (see also prior-art §7, arch-behaviour §7)',
        '// [T1a] GMEM resolve; [Q-z] and GMEM-LATER and pKVM-IA#92 do not; SMMUv3 §3.25.1 is not ours',
        '',
      ].join('\n'),
    });
    const { problems } = check(dir);
    const text = problems.join('\n');
    expect(text).toContain('kernel-contract §3.99');
    expect(text).toContain('arch-behaviour §7');
    expect(text).toContain('[Q-z]');
    expect(text).toContain('GMEM-LATER');
    expect(text).toContain('pKVM-IA#92');
    expect(text).toContain('missing.md');
    expect(text).toContain('sources.md#nowhere');
    expect(text).not.toMatch(/§3\.5 |§3 |prior-art §7|\[T1a\]|tag GMEM |3\.25\.1|#3-operations/);
    expect(problems).toHaveLength(7);
  });
});
