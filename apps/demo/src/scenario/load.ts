/**
 * Reading scenario files: YAML or JSON, validated against the schema, then checked statically (every handle is
 * created before it is used and is of the kind the call needs; every name in an expression has a value). Any
 * problem is one line naming the file, the step and the field; nothing runs.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { CALLS, type ArgSpec, type HandleKind } from './calls.js';
import { ExprError, KERNEL_CONSTANTS, namesIn, parseExpr, staticValue, type Expr } from './expr.js';
import { callSchemas, Expect, RepeatStep, ScenarioHeaderFields, ScenarioSchema } from './schema.js';
import { nearest } from '../util/nearest.js';
import { InputError } from '../errors.js';
import { DEFAULT_MAX_STEPS } from './limits.js';

export type Outcome = {
  ok?: true;
  errno?: string;
  errorOffset?: Expr;
  fault?: string;
  fatal?: boolean;
  reaches?: string[];
  bytes?: Expr;
  hostDown?: true;
  violations?: string[];
};
export interface ExpectCase {
  arch?: string[];
  contract?: string[];
  outcome: Outcome;
}

export interface CallStep {
  kind: 'call';
  /** '3' or '5.2' (inside a repeat). */
  path: string;
  call: string;
  on?: string;
  as?: string;
  note?: string;
  args: Record<string, unknown>;
  expect?: ExpectCase[];
}
export interface RepeatStep {
  kind: 'repeat';
  path: string;
  times: Expr;
  /** The count, known before the run (checked against the scenario's call limit). */
  count?: bigint;
  counter: string;
  note?: string;
  steps: Step[];
}
export type Step = CallStep | RepeatStep;

export interface Scenario {
  /** The file it came from ('' for an in-memory scenario). */
  file: string;
  /** A short id: the file name without extension. */
  id: string;
  title: string;
  situation: string;
  source: string[];
  contracts?: string[];
  host: {
    conversion?: 'in-place' | 'separate';
    inPlaceConversion?: boolean;
    registerUserRanges?: boolean;
    gmemOnlyMemslots?: boolean;
  };
  lets: Array<[string, Expr]>;
  steps: Step[];
  /** The scenario as written (plain data), to echo back in reports and replays. */
  raw: unknown;
}

export { DEFAULT_MAX_STEPS };

export interface LoadOptions {
  /** The most calls the scenario may make, repeats multiplied out (default DEFAULT_MAX_STEPS). */
  maxSteps?: number;
}

/** A problem with a scenario file: one line, with the file, the step and the field. */
export class ScenarioError extends InputError {
  override readonly name = 'ScenarioError';
}

const RECEIVER_DEFAULT_NAMES: Record<string, string> = {
  vm: 'vm',
  gmem: 'gmem',
  memfd: 'memfd',
  mapping: 'mapping',
  iommufd: 'iommufd',
  ioas: 'ioas',
  device: 'device',
  pin: 'pin',
  fault: 'fault',
};

/** The most helpful issue first: a misspelt field explains a missing one. */
function firstIssue(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue {
  return issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let at = input;
  for (const key of path)
    at = typeof at === 'object' && at !== null ? (at as Record<PropertyKey, unknown>)[key] : undefined;
  return at;
}

function issueLine(issue: z.core.$ZodIssue, keys: string[] = [], input?: unknown): string {
  const path = issue.path.map(String);
  const field = path.length > 0 ? `field '${path.join('.')}'` : 'the step';
  if (input !== undefined && path.length > 0 && valueAt(input, issue.path) === undefined) return `${field} is missing`;
  if (issue.code === 'unrecognized_keys') {
    const unknown = issue.keys[0]!;
    const hint = nearest(unknown, keys);
    return `${path.length > 0 ? `${field}: ` : ''}'${unknown}' is not a known field${hint ? ` (did you mean '${hint}'?)` : ''}`;
  }
  if (issue.code === 'invalid_union' && 'errors' in issue && issue.errors.length > 0) {
    // Report the branch that got furthest (the longest path), which is the one the author meant.
    const deepest = issue.errors.flat().sort((a, b) => b.path.length - a.path.length)[0];
    if (deepest && deepest.path.length > 0)
      return issueLine({ ...deepest, path: [...issue.path, ...deepest.path] } as z.core.$ZodIssue, keys, input);
  }
  // zod's own words for an integer past 2^53 - 1 say nothing of why: the number is not exact in YAML or JSON.
  if (/expected int to be <=9007199254740991/.test(issue.message))
    return `${field}: a number above 2^53 - 1 is not exact as a YAML or JSON number: quote it ('0x7fffffffffffffff') to have it read exactly`;
  return `${field}: ${issue.message}`;
}

const toList = <T>(v: T | T[] | undefined): T[] | undefined =>
  v === undefined ? undefined : Array.isArray(v) ? v : [v];

function outcomeOf(raw: Record<string, unknown>): Outcome {
  const out: Outcome = {};
  if (raw.ok !== undefined) out.ok = true;
  if (raw.errno !== undefined) out.errno = raw.errno as string;
  if (raw.errorOffset !== undefined) out.errorOffset = exprOf(raw.errorOffset);
  if (raw.fault !== undefined) out.fault = raw.fault as string;
  if (raw.fatal !== undefined) out.fatal = raw.fatal as boolean;
  if (raw.reaches !== undefined) out.reaches = toList(raw.reaches as string | string[]);
  if (raw.bytes !== undefined) out.bytes = exprOf(raw.bytes);
  if (raw.hostDown !== undefined) out.hostDown = true;
  if (raw.violations !== undefined) out.violations = raw.violations as string[];
  return out;
}

function shorthand(value: string): Outcome {
  if (value === 'ok') return { ok: true };
  if (value === 'host-down') return { hostDown: true };
  if (/^E[A-Z0-9]+$/.test(value)) return { errno: value };
  return { fault: value };
}

function expectOf(raw: unknown): ExpectCase[] {
  const items = Array.isArray(raw) ? raw : [raw];
  return items.map((item) => {
    if (typeof item === 'string') return { outcome: shorthand(item) };
    const { arch, contract, ...rest } = item as Record<string, unknown>;
    return {
      ...(arch !== undefined ? { arch: toList(arch as string) } : {}),
      ...(contract !== undefined ? { contract: toList(contract as string) } : {}),
      outcome: outcomeOf(rest),
    };
  });
}

const exprOf = (value: unknown): Expr =>
  typeof value === 'number' ? { kind: 'num', value: BigInt(value) } : parseExpr(String(value));

function argOf(spec: ArgSpec, value: unknown): unknown {
  if (spec.type === 'num' || spec.type === 'byte') return exprOf(value);
  if (spec.type === 'flags') return (Array.isArray(value) ? value : [value]).map(exprOf);
  return value;
}

interface Scope {
  handles: Map<string, HandleKind>;
  lets: Set<string>;
  counters: Set<string>;
  /** The lets' values, known before the run (a let names only numbers, constants and earlier lets). */
  values: Map<string, bigint>;
}

/** Check an expression's value where it is known before the run: division by zero and 64-bit range, up front. */
function checkValue(expr: Expr, scope: Scope, fail: (m: string) => never, source: string): bigint | undefined {
  try {
    return staticValue(expr, scope.values, source);
  } catch (error) {
    if (error instanceof ExprError)
      return fail(error.message.includes(`'${source}'`) ? error.message : `${error.message} in '${source}'`);
    throw error;
  }
}

/** Parse and check a scenario given as data; `where` prefixes every error ('file.yaml'). */
export function parseScenario(data: unknown, where: string, file = '', options: LoadOptions = {}): Scenario {
  const fail = (message: string): never => {
    throw new ScenarioError(`${where}: ${message}`);
  };
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    fail('a scenario is a mapping with title, situation, source and steps');
  const top = data as Record<string, unknown>;
  // The header first, then each step on its own, so an error names its step.
  const headerKeys = [...Object.keys(ScenarioHeaderFields), 'steps'];
  for (const key of Object.keys(top)) {
    if (!headerKeys.includes(key)) {
      const hint = nearest(key, headerKeys);
      fail(`'${key}' is not a scenario field${hint ? ` (did you mean '${hint}'?)` : ''}`);
    }
  }
  const header = ScenarioSchema.omit({ steps: true }).safeParse(
    Object.fromEntries(Object.entries(top).filter(([k]) => k !== 'steps')),
  );
  if (!header.success) fail(issueLine(firstIssue(header.error.issues), headerKeys, top));
  if (!Array.isArray(top.steps) || top.steps.length === 0) fail("'steps' must be a non-empty list");

  const scope: Scope = { handles: new Map(), lets: new Set(), counters: new Set(), values: new Map() };
  const lets: Array<[string, Expr]> = [];
  for (const [name, value] of Object.entries((top.let as Record<string, unknown>) ?? {})) {
    const expr = exprOf(value);
    checkNames(expr, scope, (m) => fail(`let ${name}: ${m}`));
    if (KERNEL_CONSTANTS.has(name)) fail(`let ${name}: the name is a kernel constant`);
    const known = checkValue(expr, scope, (m) => fail(`let ${name}: ${m}`), String(value));
    if (known !== undefined) scope.values.set(name, known);
    lets.push([name, expr]);
    scope.lets.add(name);
  }

  const steps = parseSteps(top.steps as unknown[], '', scope, fail);
  // Bound the run before it starts: every repeat's count is known now, so the calls it makes are too.
  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  const calls = callCount(steps);
  if (calls > maxSteps)
    fail(
      `the scenario makes ${calls.toLocaleString('en-US')} calls (repeats multiplied out), over the limit of ${maxSteps.toLocaleString('en-US')}; raise it with --max-steps if you mean it`,
    );
  const h = header.data as Record<string, unknown>;
  return {
    file,
    id: file ? basename(file).replace(/\.(ya?ml|json)$/, '') : String(h.title),
    title: h.title as string,
    situation: (h.situation as string).trim().replace(/\s+/g, ' '),
    source: toList(h.source as string | string[])!,
    ...(h.contracts ? { contracts: h.contracts as string[] } : {}),
    host: (h.host as Scenario['host']) ?? {},
    lets,
    steps,
    raw: data,
  };
}

/** How many calls the steps make, repeats multiplied out (a bigint: a repeat of repeats can be huge). */
function callCount(steps: readonly Step[]): bigint {
  let n = 0n;
  for (const step of steps) n += step.kind === 'call' ? 1n : (step.count ?? 0n) * callCount(step.steps);
  return n;
}

function checkNames(expr: Expr, scope: Scope, fail: (m: string) => never): void {
  for (const name of namesIn(expr)) {
    if (scope.lets.has(name) || scope.counters.has(name) || KERNEL_CONSTANTS.has(name)) continue;
    const kind = scope.handles.get(name);
    // A number handle is its value; a mapping handle is the mapping's user address.
    if (kind === 'number' || kind === 'mapping') continue;
    if (kind !== undefined) fail(`'${name}' is a ${kind} handle, not a number`);
    const hint = nearest(name, [
      ...scope.lets,
      ...scope.counters,
      ...[...scope.handles].filter(([, k]) => k === 'number').map(([n]) => n),
      ...KERNEL_CONSTANTS.keys(),
    ]);
    fail(
      `'${name}' is not a let, a numeric or mapping handle, a repeat counter or a kernel constant${hint ? ` (did you mean '${hint}'?)` : ''}`,
    );
  }
}

function parseSteps(list: unknown[], prefix: string, scope: Scope, failFile: (m: string) => never): Step[] {
  return list.map((raw, i) => {
    const path = `${prefix}${i + 1}`;
    const fail = (m: string): never => failFile(`step ${path}: ${m}`);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      return fail("a step is a mapping with 'call' (or 'repeat')");
    const step = raw as Record<string, unknown>;
    if ('repeat' in step) {
      const parsed = RepeatStep.safeParse(step);
      // Inner steps are checked below with their own numbers; only the repeat's own fields are judged here.
      if (!parsed.success) {
        const own = parsed.error.issues.find((issue) => issue.path[0] !== 'steps');
        if (own) fail(issueLine(own, Object.keys(RepeatStep.shape), step));
      }
      if (!Array.isArray(step.steps) || step.steps.length === 0) fail("a repeat needs a non-empty 'steps' list");
      const times = exprOf(step.repeat);
      checkNames(times, scope, fail);
      const count = checkValue(times, scope, (m) => fail(`repeat: ${m}`), String(step.repeat));
      if (count === undefined)
        fail(
          `repeat: '${String(step.repeat)}' must be known before the run: a number, a kernel constant or a let (not a handle or a counter)`,
        );
      if (count! < 0n) fail(`repeat: '${String(step.repeat)}' is ${count}; a repeat runs zero or more times`);
      const counter = (step.as as string | undefined) ?? 'i';
      const added = !scope.counters.has(counter);
      scope.counters.add(counter);
      const steps = parseSteps(step.steps as unknown[], `${path}.`, scope, failFile);
      if (added) scope.counters.delete(counter);
      return {
        kind: 'repeat',
        path,
        times,
        count: count!,
        counter,
        ...(step.note !== undefined ? { note: step.note as string } : {}),
        steps,
      };
    }
    if (typeof step.call !== 'string') return fail("a step needs 'call' (one of the model's calls) or 'repeat'");
    const spec = CALLS[step.call];
    if (!spec) {
      const hint = nearest(step.call, Object.keys(CALLS));
      return fail(`unknown call '${step.call}'${hint ? ` (did you mean '${hint}'?)` : ''}`);
    }
    const schema = callSchemas[step.call]!;
    const parsed = schema.safeParse(step);
    if (!parsed.success)
      fail(`${step.call}: ${issueLine(firstIssue(parsed.error.issues), Object.keys(schema.shape), step)}`);

    // The receiver: named, or the handle named like its kind, or the only handle of that kind.
    let on: string | undefined;
    if (spec.receiver !== 'host') {
      const wanted = spec.receiver;
      if (typeof step.on === 'string') {
        const kind = scope.handles.get(step.on);
        if (kind === undefined) fail(`${step.call}: on: '${step.on}' is not a handle created by an earlier step`);
        if (kind !== wanted) fail(`${step.call}: on: '${step.on}' is a ${kind}, the call needs a ${wanted}`);
        on = step.on;
      } else {
        const same = [...scope.handles].filter(([, k]) => k === wanted).map(([n]) => n);
        on = same.includes(RECEIVER_DEFAULT_NAMES[wanted]!)
          ? RECEIVER_DEFAULT_NAMES[wanted]
          : same.length === 1
            ? same[0]
            : undefined;
        if (on === undefined)
          fail(
            same.length === 0
              ? `${step.call}: no ${wanted} exists yet (create one with 'as: ${wanted}')`
              : `${step.call}: which ${wanted}? there are ${same.join(', ')}: say it with 'on:'`,
          );
      }
    } else if (step.on !== undefined) fail(`${step.call}: on: host calls take no 'on'`);

    const args: Record<string, unknown> = {};
    for (const [name, argSpec] of Object.entries(spec.args)) {
      const value = step[name];
      if (value === undefined) continue;
      if (argSpec.type === 'handle') {
        const kind = scope.handles.get(value as string);
        if (kind === undefined)
          fail(`${step.call}: field '${name}': '${String(value)}' is not a handle created by an earlier step`);
        if (!argSpec.kinds.includes(kind!))
          fail(
            `${step.call}: field '${name}': '${String(value)}' is a ${kind}, expected ${argSpec.kinds.join(' or ')}`,
          );
      }
      args[name] = argOf(argSpec, value);
      const exprs = (Array.isArray(args[name]) ? args[name] : [args[name]]) as unknown[];
      const sources = (Array.isArray(value) ? value : [value]) as unknown[];
      exprs.forEach((e, k) => {
        if (typeof e !== 'object' || e === null || !('kind' in e)) return;
        const where = (m: string): never => fail(`${step.call}: field '${name}': ${m}`);
        checkNames(e as Expr, scope, where);
        checkValue(e as Expr, scope, where, String(sources[k]));
      });
    }
    let expect: ExpectCase[] | undefined;
    if (step.expect !== undefined) {
      // Already validated with the step; parsed again here only to normalise.
      Expect.parse(step.expect);
      expect = expectOf(step.expect);
      for (const c of expect) {
        for (const e of [c.outcome.errorOffset, c.outcome.bytes])
          if (e) checkNames(e, scope, (m) => fail(`${step.call}: expect: ${m}`));
      }
    }
    if (typeof step.as === 'string') {
      if (!spec.returns) fail(`${step.call}: as: the call returns nothing to name`);
      if (scope.lets.has(step.as) || scope.counters.has(step.as) || KERNEL_CONSTANTS.has(step.as))
        fail(`${step.call}: as: '${step.as}' is already a let, a counter or a constant`);
      scope.handles.set(step.as, spec.returns!);
    }
    return {
      kind: 'call',
      path,
      call: step.call,
      ...(on !== undefined ? { on } : {}),
      ...(typeof step.as === 'string' ? { as: step.as } : {}),
      ...(typeof step.note === 'string' ? { note: step.note } : {}),
      args,
      ...(expect ? { expect } : {}),
    } satisfies CallStep;
  });
}

/** Parse YAML or JSON text; errors carry the file name and, for syntax errors, the line. */
export function parseScenarioText(text: string, file: string, options: LoadOptions = {}): Scenario {
  const name = file || '<scenario>';
  if (/\.json$/i.test(file)) {
    // A .json file is read as JSON, so a truncated or malformed one gets JSON's error, with its line and column.
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (error) {
      const message = (error as Error).message;
      const at = /position (\d+)/.exec(message);
      const offset = at ? Number(at[1]) : text.length;
      const before = text.slice(0, offset);
      const line = before.split('\n').length;
      const col = offset - before.lastIndexOf('\n');
      throw new ScenarioError(
        `${name}:${line}:${col}: not valid JSON: ${message
          .replace(/ in JSON at position \d+.*$/, '')
          .replace(/, ".*" is not valid JSON$/s, '')
          .replace(/^Unexpected end of JSON input$/, 'the file ends in the middle of a value (truncated?)')}`,
      );
    }
    return parseScenario(data, name, file, options);
  }
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const error = doc.errors[0]!;
    // With prettyErrors off the parser leaves linePos empty: count lines up to the error's offset ourselves.
    const offset = error.pos[0];
    const before = text.slice(0, offset);
    const line = before.split('\n').length;
    const col = offset - before.lastIndexOf('\n');
    throw new ScenarioError(`${name}:${line}:${col}: ${error.message.split('\n')[0]}`);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // The yaml package refuses to expand aliases past the count (a 'billion laughs' file); say so in one line.
    if (/alias/i.test((error as Error).message))
      throw new ScenarioError(
        `${name}: too many YAML alias expansions (over 100: a scenario does not need them; is it an alias bomb?)`,
      );
    throw new ScenarioError(`${name}: ${(error as Error).message.split('\n')[0]}`);
  }
  return parseScenario(data, name, file, options);
}

/** Read and parse a scenario file. */
export function loadScenario(file: string, options: LoadOptions = {}): Scenario {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ScenarioError(
      `${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a scenario file' : String((error as Error).message)}`,
    );
  }
  if (text.length > 4 * 1024 * 1024)
    throw new ScenarioError(`${file}: larger than 4 MiB; a scenario is a list of steps`);
  return parseScenarioText(text, file, options);
}
