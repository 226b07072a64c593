/**
 * @gmemlab/linux as installed from its tarball: no helper binary, only native/gmem-helper.c. The first use builds
 * the helper with its exec bit, and a missing compiler is a one-sentence reason, never an exception. Runs on a copy
 * of the built package (dist without gmem-helper, native, package.json) in a temporary directory.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, cpSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const built = join(import.meta.dirname, '..', '..', 'packages', 'linux');
const gcc = spawnSync(process.env.CC || 'gcc', ['--version'], { stdio: 'ignore' }).status === 0;
let kvm = true;
try {
  accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
} catch {
  kvm = false;
}

type LinuxModule = typeof import('@gmemlab/linux');

describe('@gmemlab/linux without a prebuilt helper (as installed from its tarball)', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'gmemlab-helper-build-'));
  const pkg = join(scratch, 'package');
  const saved = {
    CC: process.env.CC,
    GMEMLAB_HELPER: process.env.GMEMLAB_HELPER,
    GMEMLAB_CACHE_DIR: process.env.GMEMLAB_CACHE_DIR,
  };
  let linux: LinuxModule;

  beforeAll(async () => {
    cpSync(join(built, 'package.json'), join(pkg, 'package.json'));
    cpSync(join(built, 'native'), join(pkg, 'native'), { recursive: true });
    cpSync(join(built, 'dist'), join(pkg, 'dist'), {
      recursive: true,
      filter: (source) => !source.includes('gmem-helper'),
    });
    delete process.env.GMEMLAB_HELPER;
    process.env.GMEMLAB_CACHE_DIR = join(scratch, 'cache');
    linux = (await import(pathToFileURL(join(pkg, 'dist', 'index.js')).href)) as LinuxModule;
  });

  afterAll(() => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    rmSync(scratch, { recursive: true, force: true });
  });

  it('without a C compiler: a clear reason from isAvailable(), a HelperError from createLinuxHost()', async () => {
    process.env.CC = join(scratch, 'no-such-compiler');
    try {
      const availability = await linux.isAvailable();
      expect(availability.available).toBe(false);
      if (!availability.available) {
        expect(availability.reason).not.toMatch(/\n\s+at /);
        if (kvm) expect(availability.reason).toMatch(/C compiler ".*no-such-compiler" was not found \(install gcc/);
      }
      const error = await linux.createLinuxHost().then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(linux.HelperError.isInstance(error)).toBe(true);
      expect((error as Error).message).toMatch(/was not found/);
      expect(existsSync(join(pkg, 'dist', 'gmem-helper'))).toBe(false);
    } finally {
      if (saved.CC === undefined) delete process.env.CC;
      else process.env.CC = saved.CC;
    }
  });

  it.skipIf(!gcc)('with gcc: the first use builds dist/gmem-helper, executable', async () => {
    const availability = await linux.isAvailable();
    if (kvm) expect(availability).toMatchObject({ available: true });
    const helper = join(pkg, 'dist', 'gmem-helper');
    if (!kvm) {
      // isAvailable() stops at /dev/kvm before building; createLinuxHost() builds, then fails to open /dev/kvm.
      await linux.createLinuxHost().catch(() => undefined);
    }
    expect(statSync(helper).mode & 0o755).toBe(0o755);
    expect(linux.helperPath()).toBe(helper);
  });
});
