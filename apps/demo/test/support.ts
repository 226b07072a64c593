/**
 * Shared by the command-line, server and browser tests: the BUILT binary run as a user would run it.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Comparison } from '../src/run/types.js';

export const PACKAGE = join(dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = join(PACKAGE, 'dist', 'bin.js');
export const FIXTURES = join(PACKAGE, 'test', 'fixtures');
/** Screenshots and reports the tests write (gitignored). */
export const RESULTS = join(PACKAGE, 'test-results');

export function requireBuild(): void {
  for (const file of [BIN, join(PACKAGE, 'dist', 'web', 'app.js')]) {
    if (!existsSync(file))
      throw new Error(`${file} is missing: build @gmemlab/demo first (pnpm turbo run build --filter=@gmemlab/demo...)`);
  }
}

export function cli(
  args: readonly string[],
  options: { cwd?: string } = {},
): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? PACKAGE,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
    maxBuffer: 256 * 1024 * 1024,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** `gmemlab compare ... --format json`, parsed. */
export function cliCompare(args: readonly string[]): Comparison {
  const r = cli(['compare', ...args, '--format', 'json']);
  if (r.status !== 0 && r.status !== 1) throw new Error(`gmemlab compare exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Comparison;
}

export interface Served {
  url: string;
  port: number;
  child: ChildProcessWithoutNullStreams;
  /** Everything the server wrote so far. */
  output(): { stdout: string; stderr: string };
  /** SIGINT, then the exit code. */
  stop(): Promise<number | null>;
}

/** Start `gmemlab serve --port 0 ...args` and wait for the line naming its URL. */
export function serve(args: readonly string[] = []): Promise<Served> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    cwd: PACKAGE,
    env: { ...process.env, NO_COLOR: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gmemlab serve printed no URL in 15 s; stdout: ${stdout} stderr: ${stderr}`));
    }, 15_000);
    const look = () => {
      const m = /^gmemlab: serving (http:\/\/127\.0\.0\.1:(\d+)\/)$/m.exec(stdout);
      if (!m) return;
      clearTimeout(timer);
      child.stdout.off('data', look);
      resolve({
        url: m[1]!,
        port: Number(m[2]),
        child,
        output: () => ({ stdout, stderr }),
        stop: () => {
          if (child.exitCode === null) child.kill('SIGINT');
          return exited;
        },
      });
    };
    child.stdout.on('data', look);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gmemlab serve exited ${code} before serving; stderr: ${stderr}`));
    });
  });
}
