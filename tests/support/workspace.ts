/** The workspace's packages and source files, for the architecture tests that read the tree. */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The repository's root. */
export const root = join(import.meta.dirname, '..', '..');

const SOURCE = /\.(ts|tsx|mts|cts|js|mjs|cjs)$/;
const BUILD_DIRS = ['node_modules', 'dist', 'coverage', '.turbo'];

/** The workspace packages, as pnpm-workspace.yaml lists them (its globs are `dir/*` or `dir`). */
export function workspacePackages(): string[] {
  const text = readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8');
  const block = text.split(/\n(?=\S)/).find((part) => part.startsWith('packages:')) ?? '';
  const out: string[] = [];
  for (const match of block.matchAll(/^\s*-\s*['"]?([^'"\n]+?)['"]?\s*$/gm)) {
    const pattern = match[1]!;
    if (pattern.endsWith('/*')) {
      const parent = join(root, pattern.slice(0, -2));
      for (const entry of readdirSync(parent))
        if (existsSync(join(parent, entry, 'package.json'))) out.push(join(parent, entry));
    } else if (existsSync(join(root, pattern, 'package.json'))) out.push(join(root, pattern));
  }
  return out.sort();
}

/**
 * The source files under `dir` (no declaration files, nothing under build output), less the directories named in
 * `skipDirs` and the files `keep` turns down.
 */
export function sourceFiles(
  dir: string,
  skipDirs: readonly string[] = [],
  keep: (path: string) => boolean = () => true,
): string[] {
  const skipped = new Set([...BUILD_DIRS, ...skipDirs]);
  const out: string[] = [];
  const walk = (at: string): void => {
    for (const entry of readdirSync(at)) {
      if (skipped.has(entry)) continue;
      const path = join(at, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (SOURCE.test(entry) && !entry.endsWith('.d.ts') && keep(path)) out.push(path);
    }
  };
  walk(dir);
  return out;
}
