/**
 * The README's commands, run exactly as written (from the repository root, through pnpm and the root script), and
 * their stdout parsed: nothing but the report on stdout (issue 17). GMEMLAB_NO_BUILD=1 skips the root script's
 * build step (the packages are built before the tests run; a second turbo beside the one running the tests would
 * rewrite dist/ under the other test files).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, PACKAGE, requireBuild } from './support.js';

requireBuild();
const ROOT = join(PACKAGE, '..', '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const DEMO_README = readFileSync(join(PACKAGE, 'README.md'), 'utf8');
const sh = (command: string) =>
  spawnSync('sh', ['-c', command], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, GMEMLAB_NO_BUILD: '1', NO_COLOR: '1' },
    maxBuffer: 256 * 1024 * 1024,
  });
const hasJq = spawnSync('sh', ['-c', 'command -v jq']).status === 0;

/** `pnpm -s gmemlab ...` commands the README shows in backticks. */
const commands = [...README.matchAll(/`(pnpm -s gmemlab [^`]+)`/g)].map((m) => m[1]!);

describe("the README's commands", () => {
  it('include a json command for scripts', () => {
    expect(commands.some((c) => /--format json/.test(c))).toBe(true);
  });

  it.each(commands)(
    '%s: stdout is the report alone, and parses',
    (command) => {
      // The exact command when jq is there; else the part before the pipe, parsed here.
      const piped = command.includes(' | jq') && hasJq;
      const r = sh(piped ? command : command.split(' | ')[0]!);
      expect(r.status, r.stderr).toBe(0);
      if (/--format json/.test(command)) {
        const parsed = JSON.parse(r.stdout) as { contracts: string[] } & { verdict: { contracts: string[] } };
        const verdict = piped && command.endsWith('| jq .verdict') ? parsed : parsed.verdict;
        expect(verdict.contracts).toEqual(['vmm-driven', 'gmem-registry', 'mirror']);
      } else {
        expect(r.stdout.split('\n')[0]).toMatch(/^Verdict: /);
      }
    },
    120_000,
  );

  it("the first command, without -s: after pnpm's own banner, the first line is the verdict (no build log)", () => {
    const first = /pnpm install && (pnpm gmemlab compare)\b/.exec(README)![1]!;
    const r = sh(first);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    // pnpm's banner: an empty line, '> gmemlab@ gmemlab <dir>', '> node scripts/gmemlab.mjs compare', an empty line.
    const start = lines.findIndex((l) => l.startsWith('Verdict: '));
    expect(start).toBeGreaterThan(-1);
    for (const l of lines.slice(0, start)) expect(l === '' || l.startsWith('> ')).toBe(true);
    expect(r.stdout).not.toMatch(/turbo|Packages in scope|cache (hit|miss)/);
  }, 120_000);
});

describe('exit codes', () => {
  it('are documented once: the README quotes --help word for word', () => {
    const help = cli(['--help']).stdout;
    const line = /^Exit codes: .*$/m.exec(help)![0];
    expect(DEMO_README).toContain(`> ${line}`);
    expect(line).toMatch(/0 .*; 1 .*; 2 .*; 3 /);
    // The source quotes none of its own: one text, one place.
    expect(
      execFileSync('grep', ['-c', 'Exit codes: 0', join(PACKAGE, 'src', 'cli.ts')], { encoding: 'utf8' }).trim(),
    ).toBe('1');
  });
});
