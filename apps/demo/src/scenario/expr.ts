/**
 * Numbers in scenarios: plain integers, or small expressions over sizes with units (`2MiB`, `4 KiB`), hex
 * (`0x1000`), kernel constant names (`FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE`), the scenario's `let` names,
 * numeric handles (`iova + 8MiB`) and repeat counters (`i * 4KiB`). Arithmetic is exact (bigint): + - * / | and
 * parentheses. Parsing happens at validation, so a typo fails before anything runs; evaluation at run time.
 */
import * as core from '@gmemlab/core';

export type Expr =
  | { kind: 'num'; value: bigint }
  | { kind: 'name'; name: string }
  | { kind: 'neg'; operand: Expr }
  | { kind: 'bin'; op: '+' | '-' | '*' | '/' | '|'; left: Expr; right: Expr };

const UNITS: Record<string, bigint> = {
  B: 1n,
  KiB: 1n << 10n,
  MiB: 1n << 20n,
  GiB: 1n << 30n,
  TiB: 1n << 40n,
  PiB: 1n << 50n,
  EiB: 1n << 60n,
};
const UNIT_NAMES = Object.keys(UNITS).join(', ');

/** Every number a scenario gives the model is a kernel argument: it fits in 64 bits (u64, or s64 when negative). */
export const U64_MAX = (1n << 64n) - 1n;
export const S64_MIN = -(1n << 63n);

/** Why `value` fits no kernel argument, or undefined when it fits. */
export function outOfRange(value: bigint, source: string): string | undefined {
  if (value > U64_MAX)
    return `'${source}' is ${value > 1n << 80n ? 'far ' : ''}larger than 2^64 - 1: no kernel argument holds it`;
  if (value < S64_MIN) return `'${source}' is below -2^63: no kernel argument holds it`;
  return undefined;
}

/** The kernel's constant names the model exports (numbers and bigints), usable in any numeric field. */
export const KERNEL_CONSTANTS: ReadonlyMap<string, bigint> = new Map(
  Object.entries(core)
    .filter(
      ([name, value]) =>
        /^[A-Z][A-Z0-9_]+$/.test(name) &&
        (typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value))),
    )
    .map(([name, value]) => [name, BigInt(value as number | bigint)]),
);

export class ExprError extends Error {}

type Token = { t: 'num'; v: bigint } | { t: 'name'; v: string } | { t: 'op'; v: string };

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  const re = /\s*(?:(0x[0-9a-fA-F_]+|\d[\d_]*)\s*(KiB|MiB|GiB|TiB|PiB|EiB|B)?\b|([A-Za-z_][A-Za-z0-9_]*)|([-+*/|()]))/y;
  const unit = /\s*(?:0x[0-9a-fA-F_]+|\d[\d_]*)\s*([A-Za-z]\w*)/y;
  let at = 0;
  while (at < source.length) {
    if (/^\s*$/.test(source.slice(at))) break;
    re.lastIndex = at;
    const m = re.exec(source);
    if (!m) {
      unit.lastIndex = at;
      const u = unit.exec(source);
      if (u) throw new ExprError(`'${u[1]}' is not a unit in '${source}' (units: ${UNIT_NAMES})`);
      throw new ExprError(`cannot read '${source.slice(at).trim()}' in '${source}'`);
    }
    at = re.lastIndex;
    if (m[1] !== undefined) {
      const digits = m[1].replaceAll('_', '');
      const value = BigInt(digits) * (m[2] ? UNITS[m[2]]! : 1n);
      const bad = outOfRange(value, m[0].trim());
      if (bad) throw new ExprError(bad);
      tokens.push({ t: 'num', v: value });
    } else if (m[3] !== undefined) tokens.push({ t: 'name', v: m[3] });
    else tokens.push({ t: 'op', v: m[4]! });
  }
  return tokens;
}

/** Parse an expression; throws ExprError with a one-line reason. */
export function parseExpr(source: string): Expr {
  const tokens = tokenize(source);
  let i = 0;
  const peek = () => tokens[i];
  const binary = (ops: string[], next: () => Expr) => () => {
    let left = next();
    for (let t = peek(); t?.t === 'op' && ops.includes(t.v); t = peek()) {
      i++;
      left = { kind: 'bin', op: t.v as '+', left, right: next() };
    }
    return left;
  };
  const primary = (): Expr => {
    const t = tokens[i++];
    if (!t) throw new ExprError(`'${source}' ends too early`);
    if (t.t === 'num') return { kind: 'num', value: t.v };
    if (t.t === 'name') return { kind: 'name', name: t.v };
    if (t.v === '-') return { kind: 'neg', operand: primary() };
    if (t.v === '(') {
      const inner = or();
      if (tokens[i++]?.v !== ')') throw new ExprError(`a ')' is missing in '${source}'`);
      return inner;
    }
    throw new ExprError(`unexpected '${t.v}' in '${source}'`);
  };
  const mul = binary(['*', '/'], primary);
  const add = binary(['+', '-'], mul);
  const or = binary(['|'], add);
  if (tokens.length === 0) throw new ExprError('an empty expression');
  const expr = or();
  if (i < tokens.length) throw new ExprError(`unexpected '${String(tokens[i]!.v)}' in '${source}'`);
  return expr;
}

/**
 * The value of an expression known before the run (only numbers, kernel constants and already-known names), or
 * undefined when it names a handle or a repeat counter. Throws ExprError (division by zero, out of 64 bits).
 */
export function staticValue(expr: Expr, known: ReadonlyMap<string, bigint>, source: string): bigint | undefined {
  if (namesIn(expr).some((n) => !known.has(n) && !KERNEL_CONSTANTS.has(n))) return undefined;
  const value = evaluate(expr, (n) => known.get(n));
  const bad = outOfRange(value, source);
  if (bad) throw new ExprError(bad);
  return value;
}

/** The names an expression refers to. */
export function namesIn(expr: Expr, out: string[] = []): string[] {
  if (expr.kind === 'name') out.push(expr.name);
  else if (expr.kind === 'neg') namesIn(expr.operand, out);
  else if (expr.kind === 'bin') {
    namesIn(expr.left, out);
    namesIn(expr.right, out);
  }
  return out;
}

export function evaluate(expr: Expr, lookup: (name: string) => bigint | undefined): bigint {
  switch (expr.kind) {
    case 'num':
      return expr.value;
    case 'name': {
      const value = lookup(expr.name) ?? KERNEL_CONSTANTS.get(expr.name);
      if (value === undefined) throw new ExprError(`'${expr.name}' has no value`);
      return value;
    }
    case 'neg':
      return -evaluate(expr.operand, lookup);
    case 'bin': {
      const a = evaluate(expr.left, lookup);
      const b = evaluate(expr.right, lookup);
      switch (expr.op) {
        case '+':
          return a + b;
        case '-':
          return a - b;
        case '*':
          return a * b;
        case '/':
          if (b === 0n) throw new ExprError('division by zero');
          return a / b;
        case '|':
          return a | b;
      }
    }
  }
}

/** A bigint as the model's calls take it: a number where exact, else the bigint (the model checks ranges). */
export function toArg(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

export { formatSize } from '../util/size.js';
