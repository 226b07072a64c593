/**
 * Where the gmem-helper binary is, and building it where the package is installed, on first use.
 *
 * The package ships native/gmem-helper.c, not a binary. The first isAvailable() or createLinuxHost() compiles it
 * with the system C compiler ($CC, default gcc) into the package's dist/gmem-helper or, when the package directory
 * is not writable, into a cache directory ($GMEMLAB_CACHE_DIR, default $XDG_CACHE_HOME/gmemlab or
 * ~/.cache/gmemlab) under a name keyed by the source, architecture and compiler. Later uses find it there. Inside
 * the monorepo, the package build (scripts/build-helper.mjs) puts it in dist/gmem-helper ahead of time.
 * GMEMLAB_HELPER names a helper to use instead, and nothing is built.
 */
import { execFile, type ExecFileException } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants, accessSync, existsSync, readFileSync, statSync } from 'node:fs';
import { access, chmod, mkdir, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The compiler flags; scripts/build-helper.mjs uses the same. */
export const HELPER_CFLAGS = ['-O2', '-Wall', '-Wextra'];

const SOURCE = join('native', 'gmem-helper.c');

export type HelperBinary = { ok: true; path: string } | { ok: false; problem: string };

/** The package's directory: the nearest one above this module that holds native/gmem-helper.c. */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, SOURCE))) return dir;
    dir = dirname(dir);
  }
  return undefined;
}

function compiler(): string {
  return process.env.CC || 'gcc';
}

function cacheDir(): string {
  if (process.env.GMEMLAB_CACHE_DIR) return process.env.GMEMLAB_CACHE_DIR;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'gmemlab');
}

/** The places a helper built from this package's source may be, best first. */
function candidates(root: string): string[] {
  const key = createHash('sha256')
    .update(readFileSync(join(root, SOURCE)))
    .update(`\0${process.platform}\0${process.arch}\0${compiler()}\0${HELPER_CFLAGS.join(' ')}`)
    .digest('hex')
    .slice(0, 16);
  const places = [join(root, 'dist', 'gmem-helper')];
  try {
    places.push(join(cacheDir(), `gmem-helper-${key}`));
  } catch {
    // no home directory: only the package directory
  }
  return places;
}

/** An executable file at `path`, and for the package's own copy, not older than the source it was built from. */
function usable(path: string, root: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    const binary = statSync(path);
    if (!binary.isFile()) return false;
    return path !== join(root, 'dist', 'gmem-helper') || binary.mtimeMs >= statSync(join(root, SOURCE)).mtimeMs;
  } catch {
    return false;
  }
}

/**
 * Where the helper is, or where the first use will build it: GMEMLAB_HELPER, else the first built copy, else the
 * package's dist/gmem-helper.
 */
export function helperPath(): string {
  if (process.env.GMEMLAB_HELPER) return process.env.GMEMLAB_HELPER;
  const root = packageRoot();
  if (!root) return fileURLToPath(new URL('./gmem-helper', import.meta.url));
  const places = candidates(root);
  return places.find((path) => usable(path, root)) ?? places[0]!;
}

let built: Promise<HelperBinary> | undefined;

/** The helper binary, built now if no usable one exists. Never throws: a problem is a sentence saying what to do. */
export function ensureHelper(): Promise<HelperBinary> {
  if (!built) {
    built = locateOrBuild().catch((error: unknown): HelperBinary => ({
      ok: false,
      problem: `gmem-helper could not be built: ${error instanceof Error ? error.message : String(error)}`,
    }));
    // Only a success is kept: after installing gcc, the next call tries again.
    void built.then((binary) => {
      if (!binary.ok) built = undefined;
    });
  }
  return built;
}

async function locateOrBuild(): Promise<HelperBinary> {
  const override = process.env.GMEMLAB_HELPER;
  if (override) {
    try {
      await access(override, constants.X_OK);
      return { ok: true, path: override };
    } catch (error) {
      return {
        ok: false,
        problem: `GMEMLAB_HELPER=${override} is not an executable file (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      };
    }
  }
  if (process.platform !== 'linux')
    return { ok: false, problem: `gmem-helper needs Linux (this is ${process.platform})` };
  const root = packageRoot();
  if (!root)
    return {
      ok: false,
      problem: `gmem-helper cannot be built: ${SOURCE} is missing from the package (looked above ${fileURLToPath(import.meta.url)})`,
    };
  const places = candidates(root);
  const found = places.find((path) => usable(path, root));
  if (found) return { ok: true, path: found };

  const unwritable: string[] = [];
  for (const target of places) {
    try {
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      await access(dirname(target), constants.W_OK);
    } catch (error) {
      unwritable.push(`${dirname(target)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      continue;
    }
    return compile(join(root, SOURCE), target);
  }
  return {
    ok: false,
    problem: `gmem-helper cannot be built: no writable directory for it (${unwritable.join('; ')}); set GMEMLAB_CACHE_DIR to one`,
  };
}

/** Compile into a temporary name, make it executable, then rename it into place (atomic: parallel builds are fine). */
async function compile(source: string, target: string): Promise<HelperBinary> {
  const cc = compiler();
  const temporary = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const result = await new Promise<{ error: ExecFileException | null; stderr: string }>((resolve) => {
    execFile(
      cc,
      [...HELPER_CFLAGS, '-o', temporary, source],
      { timeout: 120_000, encoding: 'utf8' },
      (error, _stdout, stderr) => resolve({ error, stderr }),
    );
  });
  if (result.error) {
    await rm(temporary, { force: true });
    if (result.error.code === 'ENOENT') {
      return {
        ok: false,
        problem: `gmem-helper is not built and cannot be: the C compiler "${cc}" was not found (install gcc and the C library headers, e.g. apt-get install gcc libc6-dev, or set CC; or set GMEMLAB_HELPER to a built helper)`,
      };
    }
    const detail =
      result.stderr
        .trim()
        .split('\n')
        .filter((line) => /error/i.test(line))
        .slice(0, 3)
        .join(' | ') ||
      result.stderr.trim().split('\n').slice(0, 3).join(' | ') ||
      (result.error.killed
        ? `killed (${result.error.signal ?? 'timeout'})`
        : `exit code ${String(result.error.code)}, no message`);
    return {
      ok: false,
      problem: `gmem-helper could not be built: ${cc} ${HELPER_CFLAGS.join(' ')} -o ${target} ${source} failed: ${detail}`,
    };
  }
  try {
    await chmod(temporary, 0o755);
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    return {
      ok: false,
      problem: `gmem-helper was compiled but could not be installed at ${target}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    };
  }
  return { ok: true, path: target };
}
