// Compiles native/gmem-helper.c with the system C compiler into dist/gmem-helper. A missing compiler is not a
// build failure: dist/gmem-helper.unavailable records why, and isAvailable() reports it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'gmem-helper');
const marker = `${out}.unavailable`;
mkdirSync(dirname(out), { recursive: true });
rmSync(marker, { force: true });

const cc = process.env.CC || 'gcc';
if (process.platform !== 'linux') {
  writeFileSync(marker, `not built: the helper needs Linux (this is ${process.platform})\n`);
  console.log(`gmem-helper: skipped (${process.platform})`);
} else {
  const result = spawnSync(cc, ['-O2', '-Wall', '-Wextra', '-o', out, join(root, 'native', 'gmem-helper.c')], { encoding: 'utf8' });
  if (result.error || result.status !== 0) {
    const why = result.error ? `${cc} could not run (${result.error.code ?? result.error.message})` : `${cc} failed:\n${result.stderr}`;
    writeFileSync(marker, `not built: ${why}\n`);
    console.log(`gmem-helper: not built: ${why.split('\n')[0]}`);
  } else {
    console.log(`gmem-helper: built ${out}`);
  }
}
