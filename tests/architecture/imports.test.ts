/**
 * The import rules of ARCHITECTURE.md: the core imports no other gmemlab package, a backend imports only the
 * core, and nothing imports a backend except through a loader.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const BACKENDS = ['tdx', 'sev-snp', 'arm-cca', 'pkvm'];

function sourceFiles(dir: string): string[] {
  let out: string[] = [];
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === 'dist') continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out = out.concat(sourceFiles(path));
    else if (/\.(ts|mts|mjs|js)$/.test(entry)) out.push(path);
  }
  return out;
}

/** Statically imported gmemlab package names of a file. */
function gmemlabImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const names = new Set<string>();
  for (const match of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"](@gmemlab\/[a-z0-9-]+)/g))
    names.add(match[1]!);
  return [...names];
}

function existing(dir: string): boolean {
  try {
    return statSync(join(root, dir)).isDirectory();
  } catch {
    return false;
  }
}

describe('import rules', () => {
  it('packages/core imports no other gmemlab package', () => {
    const offenders = sourceFiles(join(root, 'packages/core/src')).flatMap((f) =>
      gmemlabImports(f).map((i) => `${relative(root, f)} -> ${i}`),
    );
    expect(offenders).toEqual([]);
  });

  for (const backend of BACKENDS) {
    it.runIf(existing(`packages/${backend}`))(`packages/${backend} imports only @gmemlab/core`, () => {
      const offenders = sourceFiles(join(root, `packages/${backend}/src`)).flatMap((f) =>
        gmemlabImports(f)
          .filter((i) => i !== '@gmemlab/core' && !(i === '@gmemlab/core/testing' && f.endsWith('.test.ts')))
          .map((i) => `${relative(root, f)} -> ${i}`),
      );
      expect(offenders).toEqual([]);
    });
  }

  it.runIf(existing('packages/explore'))('packages/explore imports only @gmemlab/core', () => {
    const offenders = sourceFiles(join(root, 'packages/explore/src')).flatMap((f) =>
      gmemlabImports(f)
        .filter((i) => i !== '@gmemlab/core')
        .map((i) => `${relative(root, f)} -> ${i}`),
    );
    expect(offenders).toEqual([]);
  });

  it('no package or app imports a backend statically', () => {
    const dirs = ['packages', 'apps'].filter(existing);
    const offenders: string[] = [];
    for (const dir of dirs) {
      for (const file of sourceFiles(join(root, dir))) {
        const own = BACKENDS.find((b) => relative(root, file).startsWith(`packages/${b}/`));
        for (const imported of gmemlabImports(file)) {
          const target = imported.slice('@gmemlab/'.length);
          if (BACKENDS.includes(target) && target !== own) offenders.push(`${relative(root, file)} -> ${imported}`);
        }
      }
    }
    expect(offenders).toEqual([]);
  });
});
