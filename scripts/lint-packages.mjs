#!/usr/bin/env node
/**
 * Pack every publishable package under packages/ with pnpm (so workspace: ranges become real ones, as on
 * publish) and run publint and @arethetypeswrong/cli on each tarball. Run after a build: `pnpm lint:packages`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const bin = (name) => join(root, 'node_modules', '.bin', name);
const out = mkdtempSync(join(tmpdir(), 'gmemlab-pack-'));
const failed = [];
const started = Date.now();
try {
  for (const dir of readdirSync(join(root, 'packages')).sort()) {
    const cwd = join(root, 'packages', dir);
    const manifestPath = join(cwd, 'package.json');
    if (!existsSync(manifestPath)) continue;
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    if (manifest.private) continue;
    const dest = join(out, dir);
    execFileSync('pnpm', ['pack', '--pack-destination', dest], { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
    const tarball = join(dest, readdirSync(dest).find((f) => f.endsWith('.tgz')));
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
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
console.log(`\nlint:packages took ${((Date.now() - started) / 1000).toFixed(1)} s`);
if (failed.length > 0) {
  console.error(`failed: ${failed.join(', ')}`);
  process.exit(1);
}
