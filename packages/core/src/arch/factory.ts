/**
 * The shape every backend package exports (vercel/ai's `createMistral` / `mistral` pair, folded into one value):
 * a factory that is also the ready backend. `tdx` can be passed to createHost as it is; `tdx({ variant })` builds
 * a variant. The function carries the ready backend's fields, so a loader that imports the package's default
 * export gets an ArchBackend either way.
 *
 * The factory also names its published variants (`tdx.variants.connect` is the options of 'tdx:connect'), so a
 * command line or a loader can list and build them by id without knowing the package.
 */
import { describeBackendProblems, type ArchBackend } from './backend.js';

/**
 * Which copy of @gmemlab/core made a factory: the key is shared by every copy (Symbol.for), the value is this module
 * instance's own object, so a loader can tell a backend built by a copy bundled into its package (a second core in
 * the process, whose constants and checks are not the running core's) from one built by the core it runs on. Not
 * enumerable: a factory's fields stay the ArchBackend's.
 */
const CORE_BRAND = Symbol.for('gmemlab.core.instance');
const THIS_CORE: object = Object.freeze({});

/**
 * 'this' when `value` is a factory made by this copy of @gmemlab/core's defineBackendFactory, 'another' when made by
 * another copy (a backend that bundled its own core, or a second install), undefined when not made by any
 * (a plain ArchBackend object, or a factory from a core before 0.2). Added in core 0.2.
 */
export function factoryCore(value: unknown): 'this' | 'another' | undefined {
  if ((typeof value !== 'function' && typeof value !== 'object') || value === null) return undefined;
  const brand = (value as { [CORE_BRAND]?: unknown })[CORE_BRAND];
  if (brand === undefined) return undefined;
  return brand === THIS_CORE ? 'this' : 'another';
}

/** One part of a backend id: lower-case letters, digits and '-', as in 'tdx', 'connect', 'refuse-dma-mapped'. */
const ID_PART = /^[a-z0-9][a-z0-9-]*$/;

export type BackendFactory<Options> = ((options?: Options) => ArchBackend) &
  ArchBackend & {
    /**
     * The published variants by key, each with the options that build it (a frozen record, `{}` when the package
     * publishes none). Contract: `factory(factory.variants[key]).id` is `'<factory.id>:<key>'`, which
     * `describeFactoryProblems` checks. Other option combinations may exist; these are the ones a user picks by
     * id ('tdx:connect'). Added in core 0.2.
     */
    readonly variants: Readonly<Record<string, Options>>;
  };

/**
 * Make a backend factory: `create()` is the ready backend, `create(options)` a variant. `variants` names the
 * options of each published variant; key `k` must build the id `<ready id>:<k>` (check it in your tests with
 * `describeFactoryProblems`, or with the kit's `describeFactoryConformance`). Throws a TypeError when `variants`
 * is not a record or a key is not a lower-case id part.
 */
export function defineBackendFactory<Options>(
  create: (options?: Options) => ArchBackend,
  // NoInfer: the options type is the create function's, never narrowed to the literals of the variants given.
  variants: Readonly<Record<string, NoInfer<Options>>> = {},
): BackendFactory<Options> {
  if (typeof variants !== 'object' || variants === null || Array.isArray(variants))
    throw new TypeError('defineBackendFactory: variants must be a record of options by variant key');
  for (const key of Object.keys(variants)) {
    if (!ID_PART.test(key))
      throw new TypeError(
        `defineBackendFactory: variant key '${key}' is not an id part (lower-case letters, digits and '-')`,
      );
  }
  const ready = create();
  const factory = (options?: Options) => create(options);
  // The factory's fields are frozen copies of the ready backend's data (its hooks as they are): a factory is then
  // frozen data, which createHost copies and checks once per process rather than once per host (arch/own.ts).
  const copies = new Map<object, unknown>();
  for (const key of Object.keys(ready) as Array<keyof ArchBackend>) {
    Object.defineProperty(factory, key, { value: frozenCopy(ready[key], copies), enumerable: true });
  }
  Object.defineProperty(factory, 'variants', { value: freezeVariants(variants), enumerable: true });
  Object.defineProperty(factory, CORE_BRAND, { value: THIS_CORE });
  return Object.freeze(factory) as unknown as BackendFactory<Options>;
}

/**
 * Plain data frozen all the way down: arrays and plain objects that are not frozen, or hold something that is not,
 * are copied and frozen (an object reached twice is copied once); data already frozen throughout is kept as it is;
 * anything else (a function, a class instance) is kept as it is.
 */
function frozenCopy(value: unknown, copies: Map<object, unknown>): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const known = copies.get(value);
  if (known !== undefined) return known;
  const proto = Object.getPrototypeOf(value) as object | null;
  const array = Array.isArray(value) && proto === Array.prototype;
  if (!array && proto !== Object.prototype && proto !== null) return value;
  // Marked first, so that a cycle comes back to the original (kept if nothing in it needs a copy).
  copies.set(value, value);
  const entries = Object.entries(value);
  const fields = entries.map(([, field]) => frozenCopy(field, copies));
  if (Object.isFrozen(value) && fields.every((field, i) => field === entries[i]![1])) return value;
  const copy: Record<string, unknown> | unknown[] = array
    ? []
    : proto === null
      ? (Object.create(null) as Record<string, unknown>)
      : {};
  entries.forEach(([key], i) => ((copy as Record<string, unknown>)[key] = fields[i]));
  copies.set(value, copy);
  return Object.freeze(copy);
}

/** A frozen copy, so the published options cannot change under a caller (or be changed by one). */
function freezeVariants<Options>(variants: Readonly<Record<string, Options>>): Readonly<Record<string, Options>> {
  const copy: Record<string, Options> = {};
  for (const [key, options] of Object.entries(variants)) {
    copy[key] = typeof options === 'object' && options !== null ? (Object.freeze({ ...options }) as Options) : options;
  }
  return Object.freeze(copy);
}

/**
 * Brand-free runtime check of a backend factory, for loaders and tests (the companion of describeBackendProblems):
 * it is the ready backend and callable, `factory()` builds the ready backend's id, and every published variant
 * builds a valid backend with id `<ready id>:<key>`. Returns what is wrong, or [].
 */
export function describeFactoryProblems(value: unknown): string[] {
  const problems = describeBackendProblems(value);
  if (problems.length > 0) return problems.map((problem) => `the ready backend: ${problem}`);
  if (typeof value !== 'function') return ['is a backend but not a factory (not callable)'];
  const factory = value as BackendFactory<unknown>;
  const built = (what: string, options?: unknown): ArchBackend | undefined => {
    try {
      const backend: unknown = factory(options);
      const found = describeBackendProblems(backend);
      if (found.length === 0) return backend as ArchBackend;
      problems.push(`${what} builds no ArchBackend v1: ${found.join('; ')}`);
    } catch (error) {
      problems.push(`${what} throws: ${error instanceof Error ? error.message : String(error)}`);
    }
    return undefined;
  };
  const plain = built('factory()');
  if (plain !== undefined && plain.id !== factory.id)
    problems.push(`factory() builds id '${plain.id}', expected the ready backend's '${factory.id}'`);
  const variants: unknown = factory.variants;
  if (typeof variants !== 'object' || variants === null || Array.isArray(variants)) {
    problems.push(
      'variants is not a record of options (a factory made by defineBackendFactory of core 0.2 or later has one)',
    );
    return problems;
  }
  if (!Object.isFrozen(variants)) problems.push('variants is not frozen');
  for (const [key, options] of Object.entries(variants)) {
    if (!ID_PART.test(key))
      problems.push(`variant key '${key}' is not an id part (lower-case letters, digits and '-')`);
    const backend = built(`variants['${key}']`, options);
    const expected = `${factory.id}:${key}`;
    if (backend !== undefined && backend.id !== expected)
      problems.push(`variants['${key}'] builds id '${backend.id}', expected '${expected}'`);
  }
  return problems;
}
