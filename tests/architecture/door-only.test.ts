/**
 * "A backend is asked only through `arch/door.ts`" (ARCHITECTURE.md, "Nothing inward is trusted"): no source file of
 * any workspace package calls a hook of ArchBackend on an object, except door.ts itself, the conformance kit
 * (core's `src/testing/`, which tests a backend's raw answers), test code, and the few tools in RAW_ANSWER_READERS
 * that show or check a backend's raw answers outside the model. door.test.ts proves each hook's one public path is
 * checked; this test keeps a second path from appearing. The hook names are read from door.ts's `HOOKS` (and
 * checked against the function members of ArchBackend in backend.ts), never copied here.
 *
 * The check is syntactic (ts.createSourceFile, no type checker: fast, and it needs no build). A call counts when
 * its callee is `x.hook`, `x?.hook`, `x['hook']` (or `.call` / `.apply` / `.bind` of one, or the first argument of
 * `Reflect.apply`), or a name bound to one
 * (`const f = x.hook`, `const { hook } = x`), where `x` is neither `this` (a class's own method of the same name)
 * nor a namespace import of door.ts (`door.privateEntry(kernel, ...)` is the door).
 */
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { root, sourceFiles, workspacePackages } from '../support/workspace.js';

const DOOR = 'packages/core/src/arch/door.ts';
const SPEC = 'packages/core/src/arch/backend.ts';
const KIT = 'packages/core/src/testing/';
const TEST_FILE = /\.test(-d)?\.[cm]?[jt]sx?$/;
/** Test directories: their files may ask a hook directly. */
const TEST_DIRS = ['test', 'tests'];

/**
 * Files outside the model that ask a backend directly, each with why it may. Each asks inside its own try and
 * uses the answer only to show or check it, never to decide what the model does. An entry that no longer asks
 * fails the test too, so the list only shrinks.
 */
const RAW_ANSWER_READERS: Record<string, string> = {
  'apps/demo/src/explain.ts': '`gmemlab explain` prints what a backend answers to each question the core asks it',
  'packages/explore/src/properties.ts': "the explorer checks a transition against the backend's own verdict for it",
};

function parse(file: string): ts.SourceFile {
  const kind = /\.[cm]?js$/.test(file) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  return ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true, kind);
}

/** Parentheses, `!`, `as` and `satisfies` around an expression, removed. */
function bare(node: ts.Expression): ts.Expression {
  while (
    ts.isParenthesizedExpression(node) ||
    ts.isNonNullExpression(node) ||
    ts.isAsExpression(node) ||
    ts.isSatisfiesExpression(node)
  )
    node = node.expression;
  return node;
}

/** The property names of door.ts's `HOOKS` object literal (`Object.freeze({...})` or a bare literal). */
export function hookNamesOfDoor(door: ts.SourceFile): string[] {
  let names: string[] | undefined;
  const visit = (node: ts.Node): void => {
    if (
      ts.isVariableDeclaration(node) &&
      ts.isIdentifier(node.name) &&
      node.name.text === 'HOOKS' &&
      node.initializer
    ) {
      let init = bare(node.initializer);
      if (ts.isCallExpression(init) && init.arguments.length === 1) init = bare(init.arguments[0]!);
      if (ts.isObjectLiteralExpression(init)) {
        names = init.properties.map((p) => {
          if (!ts.isPropertyAssignment(p) || !(ts.isIdentifier(p.name) || ts.isStringLiteral(p.name)))
            throw new Error(`HOOKS in ${DOOR}: a member that is not \`name: kind\`: ${p.getText()}`);
          return p.name.text;
        });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(door);
  if (!names) throw new Error(`no \`const HOOKS = ...({ ... })\` in ${DOOR}`);
  return names;
}

/** The function members of the ArchBackend interface (methods, and properties of a function type). */
function functionMembersOfSpec(spec: ts.SourceFile): string[] {
  const names: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isInterfaceDeclaration(node) && node.name.text === 'ArchBackend') {
      for (const member of node.members) {
        if (!member.name || !(ts.isIdentifier(member.name) || ts.isStringLiteral(member.name))) continue;
        if (
          ts.isMethodSignature(member) ||
          (ts.isPropertySignature(member) && member.type && ts.isFunctionTypeNode(member.type))
        )
          names.push(member.name.text);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(spec);
  return names;
}

/** Each call of a hook on an object in `source`, as `path:line: text`. */
export function hookCalls(source: ts.SourceFile, hooks: ReadonlySet<string>, path: string): string[] {
  const doorNamespaces = new Set<string>();
  for (const statement of source.statements) {
    if (!ts.isImportDeclaration(statement) || !ts.isStringLiteral(statement.moduleSpecifier)) continue;
    const bindings = statement.importClause?.namedBindings;
    if (/(^|\/)door(\.[cm]?[jt]s)?$/.test(statement.moduleSpecifier.text) && bindings && ts.isNamespaceImport(bindings))
      doorNamespaces.add(bindings.name.text);
  }
  /** The hook name `node` reads from an object that may be a backend, or undefined. */
  const hookRead = (expression: ts.Expression): string | undefined => {
    const node = bare(expression);
    let name: string | undefined;
    let receiver: ts.Expression | undefined;
    if (ts.isPropertyAccessExpression(node)) [name, receiver] = [node.name.text, node.expression];
    else if (ts.isElementAccessExpression(node) && ts.isStringLiteralLike(node.argumentExpression))
      [name, receiver] = [node.argumentExpression.text, node.expression];
    if (name === undefined || receiver === undefined || !hooks.has(name)) return undefined;
    const object = bare(receiver);
    if (object.kind === ts.SyntaxKind.ThisKeyword || (ts.isIdentifier(object) && doorNamespaces.has(object.text)))
      return undefined;
    return name;
  };
  // Names bound to a hook read from an object: `const f = x.hook`, `const { hook } = x`, `const { hook: f } = x`.
  const aliases = new Map<string, string>();
  const collect = (node: ts.Node): void => {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer) {
      const name = hookRead(node.initializer);
      if (name) aliases.set(node.name.text, name);
    }
    if (ts.isBindingElement(node) && ts.isIdentifier(node.name) && ts.isObjectBindingPattern(node.parent)) {
      const property = node.propertyName ?? node.name;
      if ((ts.isIdentifier(property) || ts.isStringLiteral(property)) && hooks.has(property.text))
        aliases.set(node.name.text, property.text);
    }
    ts.forEachChild(node, collect);
  };
  collect(source);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node)) {
      let callee = bare(node.expression);
      const reflect =
        ts.isPropertyAccessExpression(callee) &&
        callee.name.text === 'apply' &&
        ts.isIdentifier(bare(callee.expression)) &&
        (bare(callee.expression) as ts.Identifier).text === 'Reflect';
      // `Reflect.apply(x.hook, x, [context])`: the hook is the first argument.
      if (reflect) callee = node.arguments.length > 0 ? bare(node.arguments[0]!) : callee;
      else if (ts.isPropertyAccessExpression(callee) && ['call', 'apply', 'bind'].includes(callee.name.text))
        callee = bare(callee.expression);
      const name = hookRead(callee) ?? (ts.isIdentifier(callee) ? aliases.get(callee.text) : undefined);
      if (name) {
        const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
        found.push(`${path}:${line}: ${name}: ${node.getText(source).split('\n')[0]}`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const HOOK_NAMES = hookNamesOfDoor(parse(join(root, DOOR)));
const HOOKS = new Set(HOOK_NAMES);

describe('only arch/door.ts calls a backend hook', () => {
  it("the hook list is door.ts's HOOKS, and it names every function member of ArchBackend", () => {
    expect(HOOK_NAMES.length).toBeGreaterThan(0);
    expect([...HOOK_NAMES].sort()).toEqual(functionMembersOfSpec(parse(join(root, SPEC))).sort());
  });

  it('the checker finds the forms of a call, and leaves the door, `this` and presence tests alone', () => {
    const text = [
      "import * as door from '../arch/door.js';",
      'kernel.backend.deviceAccess(context);',
      'backend?.privateEntry?.(context);',
      "backend['hostKernelAccess'](context);",
      'backend.removalPipeline.call(backend, context);',
      'const ask = kernel.backend.conversionPolicy; ask(context);',
      'const { deviceMayReach } = backend; deviceMayReach(context);',
      'const { contentsOnRemoval: zero } = backend; zero(context);',
      'door.privateEntry(kernel, context);',
      'this.contentsOnRemoval(cause);',
      'if (backend.privateEntryRefusal) x();',
      'backend.notAHook(context);',
      'Reflect.apply(backend.contentsOnConversion, backend, [context]);',
      'Reflect.apply(ask, backend, [context]);',
    ].join('\n');
    const lines = hookCalls(ts.createSourceFile('probe.ts', text, ts.ScriptTarget.Latest, true), HOOKS, 'probe.ts').map(
      (f) => f.split(':').slice(1, 3).join(':'),
    );
    expect(lines).toEqual([
      '2: deviceAccess',
      '3: privateEntry',
      '4: hostKernelAccess',
      '5: removalPipeline',
      '6: conversionPolicy',
      '7: deviceMayReach',
      '8: contentsOnRemoval',
      '13: contentsOnConversion',
      '14: conversionPolicy',
    ]);
  });

  it('no source file outside door.ts, the conformance kit, tests and the raw-answer readers calls a hook', () => {
    const offenders: string[] = [];
    // The `tests` package is test code throughout (its support files included).
    for (const dir of workspacePackages().filter((d) => relative(root, d) !== 'tests')) {
      for (const file of sourceFiles(
        dir,
        TEST_DIRS,
        (path) => !TEST_FILE.test(path) && !relative(root, path).startsWith(KIT),
      )) {
        const path = relative(root, file);
        if (path === DOOR || path in RAW_ANSWER_READERS) continue;
        offenders.push(...hookCalls(parse(file), HOOKS, path));
      }
    }
    expect(
      offenders,
      `a backend hook called outside ${DOOR} (ask it through the door's function of the same name):\n${offenders.join('\n')}`,
    ).toEqual([]);
  });

  for (const [path, why] of Object.entries(RAW_ANSWER_READERS)) {
    it(`${path} still asks a backend directly (${why}); remove its entry when it stops`, () => {
      expect(hookCalls(parse(join(root, path)), HOOKS, path)).not.toEqual([]);
    });
  }
});
