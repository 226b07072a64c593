/**
 * The published declarations of @gmemlab/core hold no internals (ARCHITECTURE.md: the Kernel and the objects'
 * internals are off the surface). The build strips what is marked `@internal` (tsup.config.ts: stripInternal);
 * this reads what it published, packages/core/dist/**\/*.d.ts, and fails on
 * - any `@internal` left in the text (a tag the stripping missed, e.g. on a constructor parameter);
 * - a declaration of an internal type (INTERNAL below: the Kernel, the inode, area and pages objects, the
 *   structures state is kept in), which a public member would pull into the bundle by naming it;
 * - any change of the API report, core-surface.api.txt beside this file: every name each entry point exports
 *   and every name the declarations declare. A change of the surface is then a reviewed diff of that file:
 *   GMEMLAB_WRITE_SURFACE=1 npx vitest run architecture/public-surface rewrites it.
 * Run after `pnpm build` (as every test here that reads a package's dist).
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const dist = join(root, 'packages/core/dist');
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
  if (ts.isVariableStatement(statement)) return statement.declarationList.declarations.flatMap((d) => (ts.isIdentifier(d.name) ? [d.name.text] : []));
  if ((ts.isClassDeclaration(statement) || ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement) || ts.isFunctionDeclaration(statement) || ts.isEnumDeclaration(statement)) && statement.name) {
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
    } else if (ts.canHaveModifiers(statement) && ts.getModifiers(statement)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)) {
      names.push(...namesOf(statement));
    }
  }
  return names;
}

function report(): string {
  const lines = ['# @gmemlab/core: the published surface (tests/architecture/public-surface.test.ts; rewrite with GMEMLAB_WRITE_SURFACE=1)'];
  for (const [entry, file] of Object.entries(ENTRIES)) {
    lines.push('', `## exports of '${entry}'`, ...[...new Set(exportedNames(parse(join(dist, file))))].sort());
  }
  const declared = new Set(declarationFiles(dist).flatMap((file) => declaredNames(parse(file))));
  lines.push('', '## declared in the published declarations', ...[...declared].sort());
  return `${lines.join('\n')}\n`;
}

describe('the published declarations of @gmemlab/core', () => {
  const built = existsSync(join(dist, ENTRIES['.']));

  it('are built (run pnpm build first)', () => {
    expect(built, `${relative(root, dist)} has no declarations`).toBe(true);
  });

  it.runIf(built)('hold no @internal text', () => {
    const offenders = declarationFiles(dist).flatMap((file) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .map((line, i) => [line, i] as const)
        .filter(([line]) => line.includes('@internal'))
        .map(([line, i]) => `${relative(dist, file)}:${i + 1}: ${line.trim()}`),
    );
    expect(offenders).toEqual([]);
  });

  it.runIf(built)('declare no internal type', () => {
    const offenders = declarationFiles(dist).flatMap((file) => declaredNames(parse(file)).filter((name) => INTERNAL.includes(name)).map((name) => `${relative(dist, file)}: ${name}`));
    expect(offenders).toEqual([]);
  });

  it.runIf(built)('are what the API report says (core-surface.api.txt)', () => {
    const now = report();
    if (process.env.GMEMLAB_WRITE_SURFACE === '1') writeFileSync(REPORT, now);
    expect(existsSync(REPORT), 'no API report: run with GMEMLAB_WRITE_SURFACE=1 once').toBe(true);
    expect(now, 'the published surface changed: review, then rewrite the report with GMEMLAB_WRITE_SURFACE=1').toBe(readFileSync(REPORT, 'utf8'));
  });

  it('the checks see what they look for (a declaration of Kernel and an @internal tag are found)', () => {
    const source = ts.createSourceFile('x.d.ts', 'interface Kernel { a: number }\ndeclare class Vm {\n  /** @internal */ x: number;\n}\nexport { Vm as V, Kernel as K };\n', ts.ScriptTarget.Latest, true);
    expect(declaredNames(source).filter((name) => INTERNAL.includes(name))).toEqual(['Kernel']);
    expect(exportedNames(source)).toEqual(['V', 'K']);
  });
});
