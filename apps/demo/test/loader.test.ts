/**
 * The loader as a user's project meets it: the user's install of a built-in backend wins over gmemlab's own copy,
 * a config entry naming a built-in package replaces it, two different packages with one id clash, and a backend
 * whose @gmemlab/core is not the running one (or whose peer range refuses it) fails in one line naming both
 * cores and the fix. Projects are built in temp folders: a package is a folder under node_modules, a copy of the
 * running core is a symlink to it (one real path, so one module instance), another core is a real folder.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'dist', 'bin.js');
const repo = join(root, '..', '..');
const realCore = realpathSync(join(repo, 'packages', 'core'));
const coreVersion = (JSON.parse(readFileSync(join(realCore, 'package.json'), 'utf8')) as { version: string }).version;
const realTdx = join(repo, 'packages', 'tdx', 'dist', 'index.js');

function gmemlab(args: string[], cwd: string) {
  // Without NODE_PATH: pnpm's bin shims (vitest's included) set it to the workspace's hidden hoisted folder, which a
  // user's shell does not have, and Node's resolution from the project folder would find gmemlab's packages there.
  const { NODE_PATH: _, ...env } = process.env;
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...env, NO_COLOR: '1' },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function write(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}

/**
 * A package that is the TDX backend under another name or version: it imports @gmemlab/core as a backend does
 * (so the loader's core check and Node agree on which copy it gets), and re-exports the built TDX backend.
 */
function backendPackage(dir: string, name: string, version: string, peer: string): void {
  write(
    join(dir, 'package.json'),
    JSON.stringify({ name, version, type: 'module', main: 'index.js', peerDependencies: { '@gmemlab/core': peer } }),
  );
  write(
    join(dir, 'index.js'),
    `import '@gmemlab/core';\nimport tdx from ${JSON.stringify(realTdx)};\nexport default tdx;\n`,
  );
}

/** A project folder; `core` is 'running' (a symlink to the running core) or a version for a separate copy. */
function project(core: 'running' | string): string {
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-loader-'));
  mkdirSync(join(dir, 'node_modules', '@gmemlab'), { recursive: true });
  if (core === 'running') symlinkSync(realCore, join(dir, 'node_modules', '@gmemlab', 'core'), 'dir');
  else {
    write(
      join(dir, 'node_modules', '@gmemlab', 'core', 'package.json'),
      JSON.stringify({ name: '@gmemlab/core', version: core, type: 'module', main: 'index.js' }),
    );
    write(join(dir, 'node_modules', '@gmemlab', 'core', 'index.js'), 'export const PAGE_SIZE = 4096;\n');
  }
  return dir;
}

interface Row {
  id: string;
  package: string;
  version: string;
  copy: string;
  path: string;
  core: { version: string; path: string };
}
const rows = (stdout: string) => (JSON.parse(stdout) as { backends: Row[] }).backends;

/** One line on stderr (exit 2, no stack) containing every part. */
function expectOneLine(r: ReturnType<typeof gmemlab>, ...parts: string[]): void {
  expect(r.code, r.stderr).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  for (const p of parts) expect(lines[0]).toContain(p);
}

describe("the user's install wins", () => {
  it("a built-in id resolves to the project's package, with its version, path and core", () => {
    const dir = project('running');
    backendPackage(join(dir, 'node_modules', '@gmemlab', 'tdx'), '@gmemlab/tdx', '0.2.1-test', '>=0.1.0 <1.0.0');
    const r = gmemlab(['backends', '--format', 'json'], dir);
    expect(r.code, r.stderr).toBe(0);
    const tdx = rows(r.stdout).find((b) => b.id === 'tdx')!;
    expect(tdx).toMatchObject({
      package: '@gmemlab/tdx',
      version: '0.2.1-test',
      copy: 'project',
      path: realpathSync(join(dir, 'node_modules', '@gmemlab', 'tdx')),
    });
    expect(tdx.core).toEqual({ version: coreVersion, path: realCore });
    // The others are not installed there: gmemlab's own copies.
    expect(rows(r.stdout).find((b) => b.id === 'pkvm')).toMatchObject({
      copy: 'gmemlab',
      path: realpathSync(join(repo, 'packages', 'pkvm')),
    });
    const table = gmemlab(['backends'], dir);
    expect(table.stdout).toMatch(/^tdx\s+Intel TDX\s+@gmemlab\/tdx\s+0\.2\.1-test\s+project\s+\S+/m);
    // And the runs use it: compare on tdx exits as before.
    expect(gmemlab(['compare', 'rfc-as-posted', '--arch', 'tdx', '--format', 'json'], dir).code).toBe(0);
  });

  it("a config entry naming a built-in package replaces it (resolved from the config's folder), listed once", () => {
    const dir = project('running');
    backendPackage(join(dir, 'node_modules', '@gmemlab', 'tdx'), '@gmemlab/tdx', '0.2.2-test', '>=0.1.0 <1.0.0');
    write(join(dir, 'gmemlab.config.json'), JSON.stringify({ backends: ['@gmemlab/tdx'] }));
    const elsewhere = mkdtempSync(join(tmpdir(), 'gmemlab-cwd-'));
    const r = gmemlab(['backends', '--format', 'json', '--config', join(dir, 'gmemlab.config.json')], elsewhere);
    expect(r.code, r.stderr).toBe(0);
    const list = rows(r.stdout);
    expect(list.filter((b) => b.id === 'tdx')).toHaveLength(1);
    expect(list.map((b) => b.id)).toEqual(['sw-protected', 'tdx', 'sev-snp', 'arm-cca', 'pkvm']);
    expect(list[1]).toMatchObject({ version: '0.2.2-test', copy: 'project' });
  });

  it('two different packages claiming one id clash, and the message names both with their paths', () => {
    const dir = project('running');
    backendPackage(join(dir, 'node_modules', 'tdx-fork'), 'tdx-fork', '1.0.0', '>=0.1.0 <1.0.0');
    write(join(dir, 'gmemlab.config.json'), JSON.stringify({ backends: ['tdx-fork'] }));
    expectOneLine(
      gmemlab(['backends'], dir),
      `tdx-fork (${realpathSync(join(dir, 'node_modules', 'tdx-fork'))})`,
      "its id 'tdx' is already taken by @gmemlab/tdx (",
      realpathSync(join(repo, 'packages', 'tdx')),
    );
  });
});

describe('a config entry by path', () => {
  it('a path into the built-in package itself replaces it like its name does, no clash with itself', () => {
    const dir = project('running');
    backendPackage(join(dir, 'node_modules', '@gmemlab', 'tdx'), '@gmemlab/tdx', '0.2.3-test', '>=0.1.0 <1.0.0');
    write(join(dir, 'gmemlab.config.json'), JSON.stringify({ backends: ['./node_modules/@gmemlab/tdx/index.js'] }));
    const r = gmemlab(['backends', '--format', 'json'], dir);
    expect(r.code, r.stderr).toBe(0);
    const list = rows(r.stdout);
    expect(list.map((b) => b.id)).toEqual(['sw-protected', 'tdx', 'sev-snp', 'arm-cca', 'pkvm']);
    expect(list[1]).toMatchObject({
      version: '0.2.3-test',
      path: realpathSync(join(dir, 'node_modules', '@gmemlab', 'tdx')),
    });
    // gmemlab's own copy by path, with nothing installed in the project: the same package as the built-in.
    const bare = project('running');
    write(join(bare, 'gmemlab.config.json'), JSON.stringify({ backends: [realTdx] }));
    const own = gmemlab(['backends', '--format', 'json'], bare);
    expect(own.code, own.stderr).toBe(0);
    expect(rows(own.stdout).filter((b) => b.id === 'tdx')).toHaveLength(1);
  });

  it("a different module by path with a built-in's id clashes, and the message shows the module's own file", () => {
    const dir = project('running');
    write(join(dir, 'package.json'), JSON.stringify({ name: 'my-project', version: '1.0.0', type: 'module' }));
    write(
      join(dir, 'local', 'fork.js'),
      `import tdx from ${JSON.stringify(realTdx)};\nexport default Object.create(tdx);\n`,
    );
    write(join(dir, 'gmemlab.config.json'), JSON.stringify({ backends: ['./local/fork.js'] }));
    expectOneLine(
      gmemlab(['backends'], dir),
      `./local/fork.js (${realpathSync(join(dir, 'local', 'fork.js'))})`,
      "its id 'tdx' is already taken by @gmemlab/tdx (",
    );
  });
});

describe('where a package entry is looked for', () => {
  it("a missing package names every place looked: the config's folder, the current folder, gmemlab's own install", () => {
    const dir = project('running');
    write(join(dir, 'gmemlab.config.json'), JSON.stringify({ backends: ['no-such-backend'] }));
    const elsewhere = realpathSync(mkdtempSync(join(tmpdir(), 'gmemlab-cwd-')));
    expectOneLine(
      gmemlab(['backends', '--config', join(dir, 'gmemlab.config.json')], elsewhere),
      'no-such-backend: package not found',
      `looked from ${dir}, ${elsewhere}, then gmemlab's own install ${join(root, 'dist')}`,
    );
  });
});

describe('one core per process', () => {
  it('a backend on another core fails in one line naming both versions and paths, and the version to install', () => {
    const dir = project('0.1.9');
    backendPackage(join(dir, 'node_modules', '@gmemlab', 'tdx'), '@gmemlab/tdx', '0.2.1-test', '>=0.1.0 <1.0.0');
    const other = realpathSync(join(dir, 'node_modules', '@gmemlab', 'core'));
    for (const command of [['backends'], ['compare', '--arch', 'sev-snp']]) {
      expectOneLine(
        gmemlab(command, dir),
        '@gmemlab/tdx 0.2.1-test',
        `@gmemlab/core 0.1.9 (${other})`,
        `@gmemlab/core ${coreVersion} (${realCore})`,
        `npm install @gmemlab/core@${coreVersion}`,
      );
    }
  });

  it('the same version in a second copy: the fix is npm dedupe', () => {
    const dir = project(coreVersion);
    backendPackage(join(dir, 'node_modules', '@gmemlab', 'tdx'), '@gmemlab/tdx', '0.2.1-test', '>=0.1.0 <1.0.0');
    expectOneLine(
      gmemlab(['backends'], dir),
      `runs on @gmemlab/core ${coreVersion} (${realpathSync(join(dir, 'node_modules', '@gmemlab', 'core'))})`,
      "run 'npm dedupe'",
    );
  });

  it('a backend that bundled its own copy of the core (none to resolve from its folder) fails in one line', () => {
    // No @gmemlab/core anywhere above the project: the loader cannot resolve one from the backend's folder.
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-bundled-'));
    const pkg = join(dir, 'node_modules', 'bundled-backend');
    cpSync(join(realCore, 'dist'), join(pkg, 'vendor', 'core'), { recursive: true });
    write(
      join(pkg, 'package.json'),
      JSON.stringify({ name: 'bundled-backend', version: '1.0.0', type: 'module', main: 'index.js' }),
    );
    write(
      join(pkg, 'index.js'),
      `import { defineBackendFactory } from './vendor/core/index.js';\nimport tdx from ${JSON.stringify(realTdx)};\n` +
        `const { variants: _, ...fields } = tdx;\nexport default defineBackendFactory(() => Object.freeze({ ...fields, id: 'bundled', name: 'Bundled' }));\n`,
    );
    write(join(dir, 'gmemlab.config.json'), JSON.stringify({ backends: ['bundled-backend'] }));
    expectOneLine(
      gmemlab(['backends'], dir),
      'bundled-backend 1.0.0 was built by its own copy of @gmemlab/core',
      `not by gmemlab's @gmemlab/core ${coreVersion} (${realCore})`,
      'two cores in one process',
      '@gmemlab/core external',
    );
    // The same package built against the running core loads.
    write(
      join(pkg, 'index.js'),
      `import { defineBackendFactory } from ${JSON.stringify(join(realCore, 'dist', 'index.js'))};\nimport tdx from ${JSON.stringify(realTdx)};\n` +
        `const { variants: _, ...fields } = tdx;\nexport default defineBackendFactory(() => Object.freeze({ ...fields, id: 'bundled', name: 'Bundled' }));\n`,
    );
    const ok = gmemlab(['backends', '--format', 'json'], dir);
    expect(ok.code, ok.stderr).toBe(0);
    expect(rows(ok.stdout).map((b) => b.id)).toContain('bundled');
  });

  it('a backend whose peer range does not accept the running core fails, naming the range', () => {
    const dir = project('running');
    backendPackage(join(dir, 'node_modules', '@gmemlab', 'tdx'), '@gmemlab/tdx', '0.9.0-test', '>=0.9.0 <1.0.0');
    expectOneLine(
      gmemlab(['backends'], dir),
      "@gmemlab/tdx 0.9.0-test needs @gmemlab/core '>=0.9.0 <1.0.0'",
      `runs on @gmemlab/core ${coreVersion}`,
    );
    // Another core the range refuses as well: the fix is another backend release, not a core install.
    const two = project('0.0.1');
    backendPackage(join(two, 'node_modules', '@gmemlab', 'tdx'), '@gmemlab/tdx', '0.9.0-test', '>=0.9.0 <1.0.0');
    expectOneLine(
      gmemlab(['backends'], two),
      'two cores in one process',
      `whose peer range accepts @gmemlab/core ${coreVersion}`,
    );
  });
});

describe('gmemlab new-backend', () => {
  it('writes a complete package: ESM exports with types, files, the peer floor, NodeNext tsconfig, the kit as its test', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'gmemlab-new-')), 'gmemlab-cove');
    const r = gmemlab(['new-backend', dir, '--package', '@acme/gmemlab-cove'], tmpdir());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("@acme/gmemlab-cove: backend 'cove'");
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    expect(pkg).toMatchObject({
      name: '@acme/gmemlab-cove',
      type: 'module',
      peerDependencies: { '@gmemlab/core': '>=0.2.0 <1.0.0' },
    });
    expect(pkg.exports['.']).toEqual({
      types: './dist/index.d.ts',
      import: './dist/index.js',
      default: './dist/index.js',
    });
    expect(pkg.files).toEqual(expect.arrayContaining(['dist', 'README.md', 'CHANGELOG.md']));
    expect(pkg.scripts).toMatchObject({ test: expect.stringContaining('vitest run'), prepack: 'tsup' });
    expect(JSON.parse(readFileSync(join(dir, 'tsconfig.json'), 'utf8')).compilerOptions).toMatchObject({
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
    });
    const index = readFileSync(join(dir, 'src', 'index.ts'), 'utf8');
    expect(index).toContain("id: variantId('cove', [variant]),");
    expect(index).toMatch(/evidence: \[\{ tag: 'S1', quote: /);
    expect(readFileSync(join(dir, 'src', 'cove.test.ts'), 'utf8')).toContain(
      'describeFactoryConformance(cove, { describe, it })',
    );
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toContain('## Sources');
  });

  it('refuses a folder that is not empty, and an id that is not one, writing nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-new-'));
    write(join(dir, 'keep.txt'), 'x');
    expectOneLine(gmemlab(['new-backend', dir], tmpdir()), 'the folder exists and is not empty');
    const fresh = join(dir, 'fresh');
    expectOneLine(gmemlab(['new-backend', fresh, '--id', 'Bad:id'], tmpdir()), "--id: 'Bad:id' is not a backend id");
    expect(() => readFileSync(join(fresh, 'package.json'))).toThrow();
  });
});
