/**
 * No import circle inside any workspace package (STYLE.md: "a lower layer does not import a higher one, not even
 * for a type"). Every relative import counts: value, type-only (`import type`, `export type ... from`), re-export
 * and dynamic `import()`, as the TypeScript compiler's own pre-processor lists them (ts.preProcessFile), so a
 * type-only circle that a later edit turns into a runtime one is caught before it is.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { root, sourceFiles, workspacePackages } from '../support/workspace.js';

/** The file a relative specifier names, as TypeScript's NodeNext/bundler resolution finds it (./x.js -> ./x.ts). */
function resolveRelative(from: string, specifier: string, files: ReadonlySet<string>): string | undefined {
  const base = resolve(dirname(from), specifier);
  const stem = base.replace(/\.(js|mjs|cjs|jsx)$/, '');
  const candidates = [
    base,
    `${stem}.ts`,
    `${stem}.tsx`,
    `${stem}.mts`,
    `${stem}.cts`,
    `${base}.ts`,
    `${base}.tsx`,
    `${base}.js`,
    `${base}.mjs`,
    join(base, 'index.ts'),
    join(base, 'index.js'),
  ];
  return candidates.find((candidate) => files.has(candidate));
}

/** Each file's relative imports inside the package, in source order. */
function importGraph(packageDir: string): Map<string, string[]> {
  const files = sourceFiles(packageDir);
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets: string[] = [];
    for (const { fileName } of info.importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const target = resolveRelative(file, fileName, known);
      if (target !== undefined && !targets.includes(target)) targets.push(target);
    }
    graph.set(file, targets);
  }
  return graph;
}

/**
 * The circles of a graph: Tarjan's strongly connected components of more than one file (or a file importing
 * itself), each shown as one closed path through it, found by breadth-first search inside the component.
 */
export function importCircles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let counter = 0;
  const visit = (node: string): void => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, index.get(next)!));
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) components.push(component);
    }
  };
  for (const node of [...graph.keys()].sort()) if (!index.has(node)) visit(node);
  return components.map((component) => {
    const members = new Set(component);
    const start = [...component].sort()[0]!;
    // Shortest path start -> ... -> start inside the component.
    const previous = new Map<string, string>();
    const queue = [start];
    let found = false;
    while (queue.length > 0 && !found) {
      const node = queue.shift()!;
      for (const next of graph.get(node) ?? []) {
        if (!members.has(next)) continue;
        if (next === start) {
          previous.set(start, node);
          found = true;
          break;
        }
        if (!previous.has(next)) {
          previous.set(next, node);
          queue.push(next);
        }
      }
    }
    const path = [start];
    for (let node = previous.get(start)!; node !== start; node = previous.get(node)!) path.unshift(node);
    path.unshift(start);
    const others = component.filter((file) => !path.includes(file)).sort();
    return others.length > 0 ? [...path, `(and ${others.length} more in the same circle: ${others.join(', ')})`] : path;
  });
}

/**
 * Circles known today in packages this change may not touch, each with its owner. A listed circle that is gone
 * fails the test too, so the entry is removed with the fix; a new circle is never added here.
 */
const KNOWN_CIRCLES: Record<string, string[]> = {};

describe('no import circle inside a workspace package', () => {
  it('finds the circle in a small graph (the checker itself)', () => {
    const graph = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a', 'd']],
      ['d', []],
    ]);
    expect(importCircles(graph)).toEqual([['a', 'b', 'c', 'a']]);
    expect(
      importCircles(
        new Map([
          ['a', ['b']],
          ['b', []],
        ]),
      ),
    ).toEqual([]);
  });

  it('resolves the specifiers the workspace uses (a known import is an edge)', () => {
    const core = join(root, 'packages/core');
    const graph = importGraph(core);
    expect(graph.get(join(core, 'src/host.ts'))).toContain(join(core, 'src/events.ts'));
    // A type-only import is an edge too (kernel.ts imports events.ts only as `import type`).
    expect(readFileSync(join(core, 'src/kernel.ts'), 'utf8')).toContain(
      "import type { EventStream } from './events.js';",
    );
    expect(graph.get(join(core, 'src/kernel.ts'))).toContain(join(core, 'src/events.ts'));
  });

  for (const dir of workspacePackages()) {
    const name = relative(root, dir);
    it(name, () => {
      const circles = importCircles(importGraph(dir)).map((circle) =>
        circle.map((file) => file.replaceAll(`${dir}/`, '')).join(' -> '),
      );
      expect(circles, `import circles in ${name}:\n${circles.join('\n')}`).toEqual(KNOWN_CIRCLES[name] ?? []);
    });
  }
});
