/**
 * A scratch copy of the workspace at the versions its pending changesets release: the working tree with its built
 * dist folders (no node_modules, no .git), `pnpm install --offline --frozen-lockfile`, then `changeset version`.
 * Packing or publishing from the copy gives what a release gives (pnpm rewrites `workspace:` ranges on pack, so a
 * backend's `workspace:>=0.2.0 <1.0.0` peer range and the demo's `workspace:^` dependencies become real ranges
 * against the real versions). The source tree is never touched. Build the packages first.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Run a command in `cwd`, its output shown only when it fails; bounded by `timeout` ms. */
export function run(command, args, cwd, options = {}) {
  try {
    return execFileSync(command, args, {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: options.timeout ?? 300_000,
      maxBuffer: 256 * 1024 * 1024,
      env: { ...process.env, CI: 'true', ...options.env },
    });
  } catch (error) {
    const out = `${error.stdout ?? ''}${error.stderr ?? ''}`.trim().split('\n').slice(-25).join('\n');
    throw new Error(
      `${command} ${args.join(' ')} (in ${cwd}) failed${error.signal ? ` (${error.signal})` : ''}:\n${out}`,
    );
  }
}

/** Copy `root` to `dest` (without node_modules, .git, .turbo) and install it offline from the store. */
export function workspaceCopy(root, dest) {
  mkdirSync(dest, { recursive: true });
  execFileSync(
    'sh',
    [
      '-c',
      `tar -C "$0" --exclude=node_modules --exclude=.git --exclude=.turbo -cf - . | tar -C "$1" -xf -`,
      root,
      dest,
    ],
    { stdio: 'inherit' },
  );
  run(
    'pnpm',
    ['install', '--offline', '--frozen-lockfile', '--ignore-scripts', '--config.confirmModulesPurge=false'],
    dest,
  );
  return dest;
}

/** `changeset version` in a workspace copy: the pending changesets become versions and CHANGELOG.md entries. */
export function applyChangesets(dest) {
  return run(join(dest, 'node_modules', '.bin', 'changeset'), ['version'], dest);
}

/** A workspace copy at the versions its pending changesets release. */
export function versionedCopy(root, dest) {
  workspaceCopy(root, dest);
  applyChangesets(dest);
  return dest;
}

/** The publishable packages of a workspace copy: every non-private package under packages/, and apps/demo. */
export function publicPackages(dir) {
  const dirs = [
    ...readdirSync(join(dir, 'packages'))
      .sort()
      .map((d) => join('packages', d)),
    join('apps', 'demo'),
  ];
  return dirs
    .filter((rel) => existsSync(join(dir, rel, 'package.json')))
    .map((rel) => ({ rel, manifest: JSON.parse(readFileSync(join(dir, rel, 'package.json'), 'utf8')) }))
    .filter((p) => !p.manifest.private);
}
