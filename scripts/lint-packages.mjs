#!/usr/bin/env node
/**
 * Pack every publishable package under packages/ (and apps/demo) with pnpm, from a scratch copy of the workspace at
 * the versions its pending changesets release (scripts/lib/versioned-copy.mjs: so workspace: ranges become the real
 * ones a release publishes, and a backend's peer floor on the next core is met by the core packed beside it), check each tarball (publint, @arethetypeswrong/cli, a LICENSE, no native binary without its exec bit),
 * then install all the tarballs together in a scratch npm project (one `npm install`, so @gmemlab/core resolves
 * from its tarball, not the registry) and run scripts/smoke-packages.mjs there. Run after a build:
 * `pnpm lint:packages`. Any problem fails the script.
 */
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  closeSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { versionedCopy } from './lib/versioned-copy.mjs';

const root = new URL('..', import.meta.url).pathname;
const bin = (name) => join(root, 'node_modules', '.bin', name);
const out = mkdtempSync(join(tmpdir(), 'gmemlab-pack-'));
const failed = [];
const started = Date.now();
const seconds = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`;

/** Problems with a tarball's files: no LICENSE or CHANGELOG.md, or an ELF binary without its exec bit (pack drops it). */
function tarballProblems(tarball, dir) {
  const problems = [];
  const entries = execFileSync('tar', ['tvzf', tarball], { encoding: 'utf8' }).trim().split('\n');
  const files = new Map(entries.map((line) => [line.split(/\s+/).slice(5).join(' '), line.slice(0, 10)]));
  if (!files.has('package/LICENSE')) problems.push('no LICENSE in the tarball');
  // changesets writes each package's CHANGELOG.md at `changeset version`; a user reading the tarball needs it.
  if (!files.has('package/CHANGELOG.md')) problems.push('no CHANGELOG.md in the tarball (add it to "files")');
  else if (
    execFileSync('tar', ['xzOf', tarball, 'package/LICENSE'], { encoding: 'utf8' }) !==
    readFileSync(join(root, 'LICENSE'), 'utf8')
  )
    problems.push('its LICENSE differs from the root LICENSE');
  const unpacked = join(out, dir, 'unpacked');
  mkdirSync(unpacked, { recursive: true });
  execFileSync('tar', ['xzf', tarball, '-C', unpacked]);
  for (const [path, mode] of files) {
    if (mode.startsWith('d')) continue;
    const magic = Buffer.alloc(4);
    const fd = openSync(join(unpacked, path), 'r');
    readSync(fd, magic, 0, 4, 0);
    closeSync(fd);
    if (magic.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])) && !mode.includes('x'))
      problems.push(`${path} is an ELF binary packed without its exec bit (${mode})`);
  }
  return problems;
}

const tarballs = [];
try {
  const copy = versionedCopy(root, join(out, 'workspace'));
  // Every package under packages/, and the demo app, which is published too (the `gmemlab` bin).
  const dirs = [
    ...readdirSync(join(root, 'packages'))
      .sort()
      .map((d) => join('packages', d)),
    join('apps', 'demo'),
  ];
  for (const rel of dirs) {
    const dir = rel.replace('/', '-');
    const cwd = join(copy, rel);
    const manifestPath = join(cwd, 'package.json');
    if (!existsSync(manifestPath)) continue;
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    if (manifest.private) continue;
    const dest = join(out, dir);
    execFileSync('pnpm', ['pack', '--pack-destination', dest], { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
    const tarball = join(
      dest,
      readdirSync(dest).find((f) => f.endsWith('.tgz')),
    );
    tarballs.push(tarball);
    console.log(`\n== ${manifest.name}@${manifest.version}`);
    for (const [tool, args] of [
      ['publint', ['run', tarball, '--strict']],
      ['attw', [tarball, '--profile', 'esm-only', '--format', 'ascii']],
    ]) {
      try {
        execFileSync(bin(tool), args, { cwd, stdio: 'inherit' });
      } catch {
        failed.push(`${manifest.name}: ${tool}`);
      }
    }
    for (const problem of tarballProblems(tarball, dir)) {
      console.error(`${manifest.name}: ${problem}`);
      failed.push(`${manifest.name}: ${problem}`);
    }
  }

  // Every tarball installed together in a scratch project, as a user would, then the smoke test from there.
  const scratch = join(out, 'scratch');
  mkdirSync(scratch);
  writeFileSync(
    join(scratch, 'package.json'),
    `${JSON.stringify({ name: 'gmemlab-smoke', version: '0.0.0', private: true, type: 'module' }, null, 2)}\n`,
  );
  const installStarted = Date.now();
  console.log(`\n== npm install of the ${tarballs.length} tarballs in a scratch project`);
  try {
    execFileSync(
      'npm',
      ['install', '--no-audit', '--no-fund', '--no-package-lock', '--prefer-offline', '--loglevel=error', ...tarballs],
      { cwd: scratch, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    console.log(`installed in ${seconds(installStarted)}`);
    copyFileSync(join(root, 'scripts', 'smoke-packages.mjs'), join(scratch, 'smoke.mjs'));
    const env = { ...process.env };
    delete env.GMEMLAB_HELPER; // the smoke test must use what the tarball provides
    const smokeStarted = Date.now();
    console.log('\n== smoke test of each main entry, from the scratch project');
    try {
      execFileSync(process.execPath, ['smoke.mjs'], { cwd: scratch, env, stdio: 'inherit', timeout: 60_000 });
      console.log(`smoke test passed in ${seconds(smokeStarted)}`);
    } catch {
      failed.push('smoke test');
    }
  } catch {
    failed.push('npm install of the tarballs');
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
console.log(`\nlint:packages took ${seconds(started)}`);
if (failed.length > 0) {
  console.error(`failed: ${failed.join(', ')}`);
  process.exit(1);
}
