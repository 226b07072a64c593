/**
 * The backend skeleton: the parts every architecture package used to write for itself, written once, so that a
 * backend package holds only its policy (the hooks), its data (step names, rules, evidence) and its sources.
 *
 * - `defineOptions`: the options a factory accepts, each a closed set of values (`oneOf`, `flag`) with its default,
 *   plus the combinations the sources rule out; a wrong value or a ruled-out combination throws a
 *   `BackendOptionError` (a TypeError, recognisable across copies of the core with `BackendOptionError.isInstance`).
 * - `variantId`: the `<arch>` / `<arch>:<part>-<part>` id of an option combination (the id `defineBackendFactory`'s
 *   variants contract reads).
 * - `ruleTable`: the rules as frozen data, each row with the option values it holds for (`when`), selected per
 *   instance, instead of code that branches on the options a second time beside the hooks.
 * - `whenHardwarePrivate`: the one gate every access verdict starts with (a frame the hardware does not hold is
 *   ordinary memory).
 * - `archBackend`: the frozen `ArchBackend` v1 object.
 *
 * Nothing here is part of the specification (arch/backend.ts, arch/factory.ts): a backend may ignore it and write
 * the object by hand. Added in core 0.2.
 *
 * The options reader is a small validator rather than a schema library (the demo's zod): the core has no runtime
 * dependency, which every backend would inherit, and a backend's options are closed sets of strings and booleans.
 */
import type { AccessVerdict } from '../access.js';
import { nearestName } from '../util/args.js';
import type { ArchBackend, BackendRule, PageAccessContext } from './backend.js';

const OPTION_BRAND = Symbol.for('gmemlab.BackendOptionError');

/**
 * A backend factory was given options it does not accept: a value outside an option's set, a combination the
 * sources rule out, or options that are not an object. A TypeError, as a wrong argument type is in JavaScript;
 * nothing is built.
 */
export class BackendOptionError extends TypeError {
  readonly [OPTION_BRAND] = true;
  override readonly name = 'BackendOptionError';
  /** Who refused: the package, as the message starts ('@gmemlab/tdx'). */
  readonly backend: string;
  /** The options concerned, by name ([] when the options were not an object). */
  readonly options: readonly string[];

  constructor(backend: string, options: readonly string[], message: string) {
    super(`${backend}: ${message}`);
    this.backend = backend;
    this.options = Object.freeze([...options]);
  }

  /** True for a BackendOptionError from any copy of this package. */
  static isInstance(value: unknown): value is BackendOptionError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[OPTION_BRAND] === true;
  }
}

declare const VALUE: unique symbol;

/**
 * One option: the values it accepts and its default. `Out` is what the option reads as: the value type alone with
 * a default, `| undefined` without one (so a backend can tell "not given" from an explicit value).
 */
export interface OptionSpec<T, Out = T | undefined> {
  readonly values: readonly T[];
  readonly default: T | undefined;
  /** Type only: what the option reads as. */
  readonly [VALUE]?: Out;
}

/** An option taking one of the given strings; without `defaultValue` it reads as undefined when not given. */
export function oneOf<const V extends string>(values: readonly [V, ...V[]]): OptionSpec<V, V | undefined>;
export function oneOf<const V extends string>(values: readonly [V, ...V[]], defaultValue: NoInfer<V>): OptionSpec<V, V>;
export function oneOf<const V extends string>(
  values: readonly [V, ...V[]],
  defaultValue?: V,
): OptionSpec<V, V | undefined> {
  if (defaultValue !== undefined && !values.includes(defaultValue))
    throw new TypeError(`oneOf: the default '${defaultValue}' is not one of the values`);
  return Object.freeze({ values: Object.freeze([...values]), default: defaultValue });
}

/** A boolean option; without `defaultValue` it reads as undefined when not given. */
export function flag(): OptionSpec<boolean, boolean | undefined>;
export function flag(defaultValue: boolean): OptionSpec<boolean, boolean>;
export function flag(defaultValue?: boolean): OptionSpec<boolean, boolean | undefined> {
  return Object.freeze({ values: Object.freeze([false, true]), default: defaultValue });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type OptionSpecs = { readonly [name: string]: OptionSpec<any, any> };

/** What `defineOptions(…)(options)` returns: each option's value, its default filled in. */
export type OptionValues<S extends OptionSpecs> = {
  readonly [K in keyof S]: S[K] extends OptionSpec<infer _T, infer Out> ? Out : never;
};

/** What a factory accepts for `S`: each option optional, as written by a user. */
export type OptionInputs<S extends OptionSpecs> = {
  readonly [K in keyof S]?: S[K] extends OptionSpec<infer T, infer _Out> ? T : never;
};

/**
 * The specs of an options interface, for `satisfies`: every option of `O` has a spec whose values are `O`'s, so
 * the interface (which carries the documentation and the sources) and the specs cannot drift apart.
 */
export type OptionSpecsOf<O> = { readonly [K in keyof Required<O>]: OptionSpec<NonNullable<O[K]>, unknown> };

/** A combination the sources rule out: when every option named in `when` reads as the value given. */
export interface OptionConflict<S extends OptionSpecs> {
  readonly when: { readonly [K in keyof S]?: OptionValues<S>[K] };
  /** Why, with the source: "variant 'tio' needs huge IOPTEs (they follow the RMP [T2]); …". */
  readonly message: string;
}

/** Reads a factory's options: validated, defaults filled in, frozen. */
export type OptionReader<S extends OptionSpecs> = (options?: OptionInputs<S>) => OptionValues<S>;

/**
 * The options of a backend factory. The reader throws a BackendOptionError, naming `backend` (the package) and the
 * option, for a value outside an option's set (`unknown dmaToPrivate 'maybe'; expected 'machine-check' or
 * 'poison'`), for an option name it does not know (`unknown option 'varaint' (did you mean variant?)`: a misspelt
 * option would otherwise build the default backend without a word), for a combination in `conflicts` (checked after
 * the defaults are filled in), and for options that are not an object.
 */
export function defineOptions<const S extends OptionSpecs>(
  backend: string,
  specs: S,
  conflicts: readonly OptionConflict<S>[] = [],
): OptionReader<S> {
  const entries = Object.entries(specs);
  const names = entries.map(([name]) => name);
  const rules = Object.freeze(
    conflicts.map((conflict) =>
      Object.freeze({ when: Object.freeze({ ...conflict.when }), message: conflict.message }),
    ),
  );
  return (options) => {
    if (options === undefined) options = {};
    if (typeof options !== 'object' || options === null || Array.isArray(options))
      throw new BackendOptionError(backend, [], `options must be an object, not ${shown(options)}`);
    const given = options as Readonly<Record<string, unknown>>;
    // Own enumerable keys, as parseStruct reads a struct; a key whose value is undefined is refused too.
    for (const key of Object.keys(given)) {
      if (names.includes(key)) continue;
      const nearest = nearestName(key, names);
      const known = names.length === 0 ? 'it takes no options' : `the options are ${names.join(', ')}`;
      throw new BackendOptionError(
        backend,
        [key],
        `unknown option ${shown(key)}${nearest !== undefined ? ` (did you mean ${nearest}?)` : ''}; ${known}`,
      );
    }
    const values: Record<string, unknown> = {};
    for (const [name, spec] of entries) {
      const value = given[name];
      if (value === undefined) values[name] = spec.default;
      else if ((spec.values as readonly unknown[]).includes(value)) values[name] = value;
      else
        throw new BackendOptionError(
          backend,
          [name],
          `unknown ${name} ${shown(value)}; expected ${alternatives(spec.values)}`,
        );
    }
    for (const conflict of rules) {
      const names = Object.keys(conflict.when);
      if (names.every((name) => values[name] === (conflict.when as Record<string, unknown>)[name]))
        throw new BackendOptionError(backend, names, conflict.message);
    }
    return Object.freeze(values) as OptionValues<S>;
  };
}

function shown(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : Array.isArray(value) ? 'an array' : String(value);
}

function alternatives(values: readonly unknown[]): string {
  const each = values.map(shown);
  return each.length === 1 ? each[0]! : `${each.slice(0, -1).join(', ')} or ${each[each.length - 1]!}`;
}

/** One part of a backend id: lower-case letters, digits and '-' (as defineBackendFactory's variant keys). */
const ID_PART = /^[a-z0-9][a-z0-9-]*$/;

/**
 * The id of an option combination: `arch` alone when no part is given, else `<arch>:<parts joined by '-'>`
 * ('tdx:connect-dma-poison'). Parts that are undefined or false are left out, so a part can be written as
 * `option === 'poison' && 'dma-poison'`. defineBackendFactory's contract then holds when a published variant's key
 * is the part its options give.
 */
export function variantId(arch: string, parts: ReadonlyArray<string | false | undefined>): string {
  if (!ID_PART.test(arch))
    throw new TypeError(`variantId: '${arch}' is not an id part (lower-case letters, digits and '-')`);
  const given = parts.filter((part): part is string => typeof part === 'string');
  for (const part of given)
    if (!ID_PART.test(part))
      throw new TypeError(`variantId: '${part}' is not an id part (lower-case letters, digits and '-')`);
  return given.length > 0 ? `${arch}:${given.join('-')}` : arch;
}

/** When a rule holds: for each setting named, the value (or one of the values) it holds for. */
export type RuleCondition<V> = { readonly [K in keyof V]?: V[K] | readonly V[K][] };

/** A row of a rule table: a BackendRule and, optionally, the settings it holds for (absent: every instance). */
export type RuleRow<V> = BackendRule & { readonly when?: RuleCondition<V> };

export interface RuleTable<V> {
  /** The rows, in order, frozen: each rule as published and the settings it holds for. */
  readonly rows: readonly Readonly<{ when: RuleCondition<V>; rule: BackendRule }>[];
  /** The rules of an instance with these settings, in the table's order: a frozen array of frozen rules. */
  select(settings: V): readonly BackendRule[];
}

/**
 * The rules of a backend as data: one row per rule, in the order `backend.rules` lists them, each with the settings
 * (`when`: option values, or values the backend derives from them) under which the instance states it. A variant's
 * rules are the rows whose `when` matches, so they differ exactly where the settings do, and the hooks and the
 * rules read the same settings. Each rule is frozen once, here, evidence included.
 */
export function ruleTable<V extends object>(rows: readonly RuleRow<V>[]): RuleTable<V> {
  const frozen = Object.freeze(
    rows.map(({ when, ...rule }) => {
      const condition: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(when ?? {}))
        condition[name] = Array.isArray(value) ? Object.freeze([...value]) : value;
      return Object.freeze({ when: Object.freeze(condition) as RuleCondition<V>, rule: freezeRule(rule) });
    }),
  );
  return Object.freeze({
    rows: frozen,
    select(settings: V): readonly BackendRule[] {
      return Object.freeze(frozen.filter((row) => holds(row.when, settings)).map((row) => row.rule));
    },
  });
}

function holds<V extends object>(when: RuleCondition<V>, settings: V): boolean {
  for (const [name, wanted] of Object.entries(when)) {
    if (!(name in settings))
      throw new TypeError(`ruleTable: a rule holds for '${name}', which the settings do not have`);
    const value: unknown = (settings as Record<string, unknown>)[name];
    if (Array.isArray(wanted) ? !(wanted as readonly unknown[]).includes(value) : wanted !== value) return false;
  }
  return true;
}

/** A frozen copy of a rule: topic, rule, source and (when present) evidence, each entry frozen. */
function freezeRule(rule: BackendRule): BackendRule {
  const { topic, rule: text, source, evidence } = rule;
  return Object.freeze({
    topic,
    rule: text,
    source,
    ...(evidence ? { evidence: Object.freeze(evidence.map(({ tag, quote }) => Object.freeze({ tag, quote }))) } : {}),
  });
}

/**
 * An access verdict (`deviceAccess`, `hostKernelAccess`) that decides only for frames the hardware holds as the
 * guest's private memory: any other frame, a page private in KVM's view that the guest never faulted in included,
 * is ordinary memory and the access is allowed. The core asks these hooks only about a 'coco' VM's frames
 * (arch/hardware.ts), so the VM type needs no test.
 */
export function whenHardwarePrivate(
  verdict: (context: PageAccessContext) => AccessVerdict,
): (context: PageAccessContext) => AccessVerdict {
  return (context) => (context.hardware === 'private' ? verdict(context) : { allow: true });
}

/** The fields of an ArchBackend v1 but the version, which `archBackend` fills in. */
export type ArchBackendFields = Omit<ArchBackend, 'specificationVersion'>;

/** A frozen ArchBackend v1 from its fields (`specificationVersion: 'v1'` first, then the fields as given). */
export function archBackend(fields: ArchBackendFields): ArchBackend {
  return Object.freeze({ specificationVersion: 'v1' as const, ...fields });
}
