// Build time, inside the monorepo: compiles native/gmem-helper.c with the system C compiler ($CC, default gcc) into
// dist/gmem-helper, so tests do not wait for the first-use build (src/native.ts, which is what an installed package
// relies on; the tarball ships no binary). A missing compiler is not a build failure: the first use tries again
// and isAvailable() says why it cannot. Same flags as HELPER_CFLAGS in src/native.ts.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'gmem-helper');
const temporary = `${out}.${process.pid}.tmp`;
mkdirSync(dirname(out), { recursive: true });
rmSync(`${out}.unavailable`, { force: true }); // written by earlier versions of this script

const cc = process.env.CC || 'gcc';
if (process.platform !== 'linux') {
  rmSync(out, { force: true });
  console.log(`gmem-helper: skipped (${process.platform})`);
} else {
  const result = spawnSync(cc, ['-O2', '-Wall', '-Wextra', '-o', temporary, join(root, 'native', 'gmem-helper.c')], {
    encoding: 'utf8',
  });
  if (result.error || result.status !== 0) {
    rmSync(temporary, { force: true });
    rmSync(out, { force: true });
    const why = result.error
      ? `${cc} could not run (${result.error.code ?? result.error.message})`
      : `${cc} failed:\n${result.stderr}`;
    console.log(`gmem-helper: not built (isAvailable() will say why): ${why.split('\n')[0]}`);
  } else {
    chmodSync(temporary, 0o755);
    renameSync(temporary, out);
    console.log(`gmem-helper: built ${out}`);
  }
}
