/**
 * `gmemlab new-backend` on ids that used to write code that does not compile (a reserved word, or a name the
 * template itself declares or imports), and its refusals: a file given as the folder, a one-letter id, a built-in
 * id. The generated sources are typechecked with the workspace's tsc against the built @gmemlab/core, as a
 * stranger's `npm test` would.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { TEMPLATE_NAMES, templateNames, writeBackend } from '../src/new-backend.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'dist', 'bin.js');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function gmemlab(args: string[]) {
  const { NODE_PATH: _, ...env } = process.env;
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: tmpdir(),
    encoding: 'utf8',
    env: { ...env, NO_COLOR: '1' },
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectOneLine(r: ReturnType<typeof gmemlab>, ...parts: string[]): void {
  expect(r.code, r.stderr).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  for (const p of parts) expect(lines[0]).toContain(p);
}

// Inside apps/demo, so the generated packages resolve @gmemlab/core and vitest as a stranger's install would.
const work = mkdtempSync(join(root, '.scaffold-check-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('names the template derives from an id', () => {
  // Reserved words, names the template imports or declares, and ids whose camelCase is one of them.
  const hostile = [
    'new',
    'default',
    'delete',
    'import',
    'class',
    'blocked',
    'define-backend-factory',
    'describe',
    'it',
    'arguments',
    'cove',
  ];

  it('the exported name is never a reserved word nor a name the template uses, and no two derived names meet', () => {
    for (const id of hostile) {
      const names = templateNames(id);
      expect(TEMPLATE_NAMES.has(names.factory), id).toBe(false);
      expect(new Set(Object.values(names)).size, id).toBe(4);
      for (const n of Object.values(names)) expect(TEMPLATE_NAMES.has(n), `${id}: ${n}`).toBe(false);
    }
    expect(templateNames('new').factory).toBe('newBackend');
    expect(templateNames('define-backend-factory').factory).toBe('defineBackendFactoryBackend');
    expect(templateNames('cove').factory).toBe('cove'); // the README's example keeps its plain name
  });

  it('the generated src/ of every such id typechecks against the built core', () => {
    for (const id of hostile) writeBackend(join(work, id), { id, packageName: `gmemlab-${id}` });
    const config = JSON.parse(readFileSync(join(work, 'cove', 'tsconfig.json'), 'utf8')) as {
      compilerOptions: Record<string, unknown>;
    };
    const { outDir: _o, rootDir: _r, ...compilerOptions } = config.compilerOptions;
    writeFileSync(
      join(work, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { ...compilerOptions, noEmit: true },
        include: hostile.map((id) => `${id}/src`),
      }),
    );
    const r = spawnSync(process.execPath, [tsc, '-p', join(work, 'tsconfig.json')], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.stdout + r.stderr, 'tsc').toBe('');
    expect(r.status).toBe(0);
    expect(readFileSync(join(work, 'new', 'src', 'index.ts'), 'utf8')).toContain(
      'export const newBackend = defineBackendFactory(createNewBackend',
    );
  }, 120_000);
});

describe('new-backend refusals', () => {
  it('a file given as the folder: one line, not ENOTDIR', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gmemlab-new-')), 'afile');
    writeFileSync(file, 'x');
    expectOneLine(gmemlab(['new-backend', file]), 'afile: is a file, not a folder');
    expect(readFileSync(file, 'utf8')).toBe('x');
  });

  it('an id breaking the rule states the rule: at least 2 characters, no trailing or doubled -', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'gmemlab-new-')), 'x');
    for (const id of ['a', 'cove-', 'co--ve'])
      expectOneLine(
        gmemlab(['new-backend', dir, '--id', id]),
        `--id: '${id}' is not a backend id`,
        'at least 2 characters',
        "single '-'",
        'not at the end',
      );
    expect(() => readFileSync(join(dir, 'package.json'))).toThrow();
  });

  it('a built-in id is refused with the reason', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'gmemlab-new-')), 'x');
    expectOneLine(
      gmemlab(['new-backend', dir, '--id', 'tdx']),
      "'tdx' is the id of the built-in @gmemlab/tdx",
      'could never load beside it',
    );
    expectOneLine(gmemlab(['new-backend', dir, '--id', 'sw-protected']), '@gmemlab/core');
  });

  it('the next steps say to install the package into the project, and that compare reports what happened', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'gmemlab-new-')), 'gmemlab-cove');
    const r = gmemlab(['new-backend', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('in your project, npm install the package');
    expect(r.stdout).toContain(
      'compare --arch cove reports what happened, except where a scenario expects something of every architecture',
    );
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toContain('Install the package into the project first');
  });
});
