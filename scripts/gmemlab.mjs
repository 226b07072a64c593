#!/usr/bin/env node
/**
 * `pnpm gmemlab ...`: build what the CLI needs — JavaScript only (GMEMLAB_JS_ONLY=1: no type declarations, which
 * only typecheck, pack and publish need) — then run it with the arguments given. The build is quiet — turbo's
 * log goes to stderr, and only when the build fails — so stdout carries nothing but the CLI's output and
 * `pnpm -s gmemlab compare --format json | jq .` parses. (pnpm itself prints a `> script` banner on stdout unless
 * run with -s; pnpm has no setting to make that the default for `run` only: pnpm/pnpm#4879.)
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const turbo = join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'turbo.cmd' : 'turbo');
// GMEMLAB_NO_BUILD=1: the packages are built already (the tests that run the README's commands set it, so as
// not to start a second turbo beside the one running them).
const build =
  process.env.GMEMLAB_NO_BUILD === '1'
    ? { status: 0 }
    : spawnSync(turbo, ['run', 'build', '--filter=@gmemlab/demo...', '--output-logs=errors-only'], {
        cwd: root,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, GMEMLAB_JS_ONLY: '1', TURBO_TELEMETRY_DISABLED: '1', TURBO_NO_UPDATE_NOTIFIER: '1' },
        maxBuffer: 64 * 1024 * 1024,
      });
if (build.status !== 0) {
  process.stderr.write(`${build.stdout ?? ''}${build.stderr ?? ''}`);
  process.stderr.write(
    `gmemlab: building the packages failed (${build.error ? build.error.message : `turbo exited ${build.status}`}); the log is above\n`,
  );
  process.exit(3);
}
// The CLI in this process: its exit code is the command's (0, 1, 2 or 3; see gmemlab --help).
await import(join(root, 'apps', 'demo', 'dist', 'bin.js'));
