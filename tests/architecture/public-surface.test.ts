/**
 * The published declarations hold no internals (ARCHITECTURE.md: the Kernel and the objects' internals are off the
 * surface). The build strips what is marked `@internal` (tsup.base.ts: stripInternal); this reads what was
 * published and fails on
 * - any `@internal` left in the declarations of any published package (a tag the stripping missed, e.g. on a
 *   constructor parameter, or a package whose build does not strip);
 * - in @gmemlab/core, a declaration of an internal type (INTERNAL below: the Kernel, the inode, area and pages
 *   objects, the structures state is kept in), which a public member would pull into the bundle by naming it, or
 *   any mention of one, in a signature or in prose (a file comment about the Kernel left over when the Kernel was
 *   stripped);
 * - any change of core's API report, core-surface.api.txt beside this file: every name each entry point exports,
 *   and the text of every declaration published (classes and interfaces with their members, parameters and
 *   modifiers: a public `emit`, a writable `dead` or an extra parameter shows up), printed without comments. A
 *   change of the surface is then a reviewed diff of that file:
 *   GMEMLAB_WRITE_SURFACE=1 npx vitest run architecture/public-surface rewrites it.
 * Run after `pnpm build` (as every test here that reads a package's dist).
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const dist = join(root, 'packages/core/dist');

/** The dist directories of every published workspace package (not `private`), by package name. */
function publishedDists(): Array<{ name: string; dist: string }> {
  const out: Array<{ name: string; dist: string }> = [];
  for (const group of ['packages', 'apps']) {
    for (const entry of readdirSync(join(root, group))) {
      const manifest = join(root, group, entry, 'package.json');
      if (!existsSync(manifest)) continue;
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string; private?: boolean };
      if (pkg.private !== true) out.push({ name: pkg.name, dist: join(root, group, entry, 'dist') });
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
const REPORT = join(import.meta.dirname, 'core-surface.api.txt');
const ENTRIES = { '.': 'index.d.ts', './testing': 'testing/index.d.ts' } as const;

/** Types of the core's inside: never in the published declarations. */
const INTERNAL = [
  'Kernel',
  'HostKernel',
  'ObjectList',
  'GmemInode',
  'ShmemInode',
  'PageCacheInode',
  'PinRecord',
  'IoasArea',
  'IoptPages',
  'AreaPages',
  'AreaSource',
  'DeviceIoas',
  'GmemVm',
  'GmemBinding',
  'DmaArea',
  'MappingRegistry',
  'MappedFile',
  'PhysicalMemory',
  'FrameHolder',
  'FdTable',
  'AddressSpace',
  'Vma',
  'RangeMap',
  'RangeMapLayout',
  'RunCodec',
  'RunSlab',
  'IntervalIndex',
  'ShortList',
  'Cloner',
];

function declarationFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...declarationFiles(path));
    else if (entry.endsWith('.d.ts')) out.push(path);
  }
  return out.sort();
}

function parse(file: string): ts.SourceFile {
  return ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
}

/** The names one top-level statement declares. */
function namesOf(statement: ts.Statement): string[] {
  if (ts.isVariableStatement(statement))
    return statement.declarationList.declarations.flatMap((d) => (ts.isIdentifier(d.name) ? [d.name.text] : []));
  if (
    (ts.isClassDeclaration(statement) ||
      ts.isInterfaceDeclaration(statement) ||
      ts.isTypeAliasDeclaration(statement) ||
      ts.isFunctionDeclaration(statement) ||
      ts.isEnumDeclaration(statement)) &&
    statement.name
  ) {
    return [statement.name.text];
  }
  return [];
}

/** The names a declaration file declares at its top level. */
function declaredNames(source: ts.SourceFile): string[] {
  return source.statements.flatMap(namesOf);
}

/** The names an entry file exports (`export { a as X }`, `export declare ...`). */
function exportedNames(source: ts.SourceFile): string[] {
  const names: string[] = [];
  for (const statement of source.statements) {
    if (ts.isExportDeclaration(statement) && statement.exportClause && ts.isNamedExports(statement.exportClause)) {
      for (const element of statement.exportClause.elements) names.push(element.name.text);
    } else if (
      ts.canHaveModifiers(statement) &&
      ts.getModifiers(statement)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
    ) {
      names.push(...namesOf(statement));
    }
  }
  return names;
}

const printer = ts.createPrinter({ removeComments: true, newLine: ts.NewLineKind.LineFeed });

/**
 * The text of every declaration a declaration file holds, printed without comments (so with one layout whatever the
 * bundler's), keyed by name; imports and export lists are left out (the chunk files' names carry a hash).
 */
function declarationTexts(source: ts.SourceFile): Array<[name: string, text: string]> {
  return source.statements.flatMap((statement) => {
    const names = namesOf(statement);
    if (names.length === 0) return [];
    return [[names.join(', '), printer.printNode(ts.EmitHint.Unspecified, statement, source)] as [string, string]];
  });
}

function report(): string {
  const lines = [
    '# @gmemlab/core: the published surface (tests/architecture/public-surface.test.ts; rewrite with GMEMLAB_WRITE_SURFACE=1)',
  ];
  for (const [entry, file] of Object.entries(ENTRIES)) {
    lines.push('', `## exports of '${entry}'`, ...[...new Set(exportedNames(parse(join(dist, file))))].sort());
  }
  const declared = new Set(declarationFiles(dist).flatMap((file) => declaredNames(parse(file))));
  lines.push('', '## declared in the published declarations', ...[...declared].sort());
  const texts = new Map<string, string>();
  for (const file of declarationFiles(dist))
    for (const [name, text] of declarationTexts(parse(file))) texts.set(`${name}\n${text}`, text);
  const sorted = [...texts.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  lines.push('', '## the declarations, without comments (members, parameters and modifiers)');
  for (const key of sorted) lines.push('', texts.get(key)!);
  return `${lines.join('\n')}\n`;
}

/** Lines of the declaration files under `dir` that hold `@internal`, as `file:line: text`. */
function internalTags(dir: string): string[] {
  return declarationFiles(dir).flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .map((line, i) => [line, i] as const)
      .filter(([line]) => line.includes('@internal'))
      .map(([line, i]) => `${relative(root, file)}:${i + 1}: ${line.trim()}`),
  );
}

/** Where an internal type's name occurs as a word in the text of the declaration files under `dir`. */
function internalMentions(dir: string): string[] {
  const word = new RegExp(`\\b(${INTERNAL.join('|')})\\b`);
  return declarationFiles(dir).flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .map((line, i) => [line, i] as const)
      .filter(([line]) => word.test(line))
      .map(([line, i]) => `${relative(root, file)}:${i + 1}: ${line.trim()}`),
  );
}

describe('the published declarations of @gmemlab/core', () => {
  const built = existsSync(join(dist, ENTRIES['.']));

  it('are built (run pnpm build first)', () => {
    expect(built, `${relative(root, dist)} has no declarations`).toBe(true);
  });

  it.runIf(built)('declare no internal type', () => {
    const offenders = declarationFiles(dist).flatMap((file) =>
      declaredNames(parse(file))
        .filter((name) => INTERNAL.includes(name))
        .map((name) => `${relative(dist, file)}: ${name}`),
    );
    expect(offenders).toEqual([]);
  });

  it.runIf(built)('name no internal type, in a signature or in a comment', () => {
    expect(internalMentions(dist)).toEqual([]);
  });

  it.runIf(built)('are what the API report says (core-surface.api.txt)', () => {
    const now = report();
    if (process.env.GMEMLAB_WRITE_SURFACE === '1') writeFileSync(REPORT, now);
    expect(existsSync(REPORT), 'no API report: run with GMEMLAB_WRITE_SURFACE=1 once').toBe(true);
    expect(now, 'the published surface changed: review, then rewrite the report with GMEMLAB_WRITE_SURFACE=1').toBe(
      readFileSync(REPORT, 'utf8'),
    );
  });

  it('the checks see what they look for (a declaration of Kernel, an @internal tag, a member and a parameter)', () => {
    const text =
      'interface Kernel { a: number }\ndeclare class Vm {\n  /** @internal */ x: number;\n  /** A doc. */\n  dead: string | undefined;\n  fallocate(mode: number, viaMapping?: boolean): void;\n}\nexport { Vm as V, Kernel as K };\n';
    const source = ts.createSourceFile('x.d.ts', text, ts.ScriptTarget.Latest, true);
    expect(declaredNames(source).filter((name) => INTERNAL.includes(name))).toEqual(['Kernel']);
    expect(exportedNames(source)).toEqual(['V', 'K']);
    const vm = declarationTexts(source).find(([name]) => name === 'Vm')![1];
    expect(vm).toContain('dead: string | undefined;');
    expect(vm).toContain('fallocate(mode: number, viaMapping?: boolean): void;');
    expect(vm).not.toContain('A doc.');
  });
});

describe('the published declarations of every published package', () => {
  const packages = publishedDists();

  it('are found: core, the backends, linux, explore and the demo', () => {
    expect(packages.map((p) => p.name)).toEqual(
      expect.arrayContaining(['@gmemlab/core', '@gmemlab/explore', '@gmemlab/linux', '@gmemlab/tdx', '@gmemlab/demo']),
    );
  });

  it.each(packages)('$name: built, with no @internal text (its build strips what is marked)', ({ name, dist: dir }) => {
    expect(
      existsSync(dir) && declarationFiles(dir).length > 0,
      `${name}: ${relative(root, dir)} has no declarations (run pnpm build first)`,
    ).toBe(true);
    expect(internalTags(dir)).toEqual([]);
  });
});
