/**
 * A copy of an object graph that keeps its shape: every object reached is copied once (a Map from original to
 * copy), so references two objects share, and cycles, stay shared in the copy; class instances keep their
 * prototype, so the copy has the same methods. Host.fork() is built on it.
 *
 * What is not copied: primitives; objects the caller names as shared (a backend, which must be stateless);
 * frozen objects (immutable by contract: the model freezes only plain data, such as the lists of runs a
 * snapshot reuses); Error objects (never changed after they are thrown). A class may copy itself with a
 * `[cloneSelf]` method (the event stream does: a fork starts with no listeners).
 *
 * A function held as a field is the one thing a copy cannot carry over: a closure keeps pointing at the
 * original's state, so the copy would silently act on the original. The model keeps its state in fields and its
 * behaviour on prototypes; a function met anywhere in the graph throws an error naming where it was,
 * so that a closure added to the model later fails loudly instead of breaking fork().
 */

/** A class whose instances copy themselves implements `[cloneSelf](cloner)`, returning the copy. */
export const cloneSelf: unique symbol = Symbol.for('gmemlab.cloneSelf');

export interface SelfCloning {
  [cloneSelf](cloner: Cloner): object;
}

const objectPrototype = Object.prototype;
const arrayPrototype = Array.prototype;
const mapPrototype = Map.prototype;
const setPrototype = Set.prototype;

/** What an object is called in an error: its class name, or 'an object'. */
function describeHolder(holder: object): string {
  const name = (holder.constructor as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' && name !== 'Object' ? `a ${name}` : 'a plain object';
}

/** What fork() throws for something a copy cannot carry over (the original is left as it was). */
export class CloneError extends Error {
  constructor(message: string) {
    super(`cannot fork: ${message}`);
    this.name = 'CloneError';
  }
}

function functionError(holder: object, key: string): CloneError {
  const label = (holder as { label?: unknown }).label;
  const named = typeof label === 'string' ? ` labelled '${label}'` : '';
  return new CloneError(
    `${describeHolder(holder)}${named} holds a function in ${JSON.stringify(key)}; state kept in a closure would stay with the original. ` +
      'A consumer you registered must keep its state in fields and its hooks as class methods (an instance of a class, not an object literal); anything else is a gmemlab bug',
  );
}

/** Copies an object graph; one Cloner per copy, so that everything copied shares one map. */
export class Cloner {
  private readonly copies = new Map<object, object>();

  /** `shared` objects (or functions) stay themselves in the copy, and are not looked into. */
  constructor(shared: Iterable<object> = []) {
    for (const object of shared) this.copies.set(object, object);
  }

  /** The copy of `value` (the same copy every time it is asked for). */
  clone<T>(value: T): T {
    if (typeof value !== 'object' || value === null) {
      // A function is copied only as a shared object (a backend may be a callable factory).
      if (typeof value === 'function' && !this.copies.has(value))
        throw new CloneError(`a function (${value.name || 'anonymous'}) was reached directly`);
      return value;
    }
    const known = this.copies.get(value);
    if (known !== undefined) return known as T;
    return this.copy(value) as T;
  }

  /** @internal For the copiers `fieldCopier` compiles: the copy of field `key` of `holder`. */
  field(holder: object, key: string, value: unknown): unknown {
    if (typeof value !== 'object' || value === null) {
      if (typeof value === 'function' && !this.copies.has(value)) throw functionError(holder, key);
      return value;
    }
    const known = this.copies.get(value);
    return known !== undefined ? known : this.copy(value);
  }

  /** @internal Record `copy` as the copy of `original` (before its fields are copied: cycles come back to it). */
  remember(original: object, copy: object): void {
    this.copies.set(original, copy);
  }

  private copy(original: object): object {
    const copies = this.copies;
    if (Object.isFrozen(original)) {
      copies.set(original, original);
      return original;
    }
    const proto = Object.getPrototypeOf(original) as object | null;
    if (proto === arrayPrototype) {
      const source = original as unknown[];
      const array = source.slice();
      copies.set(original, array);
      for (let i = 0; i < array.length; i++) {
        const value = array[i];
        if (typeof value === 'object' ? value !== null : typeof value === 'function')
          array[i] = this.field(source, String(i), value);
      }
      return array;
    }
    if (proto === objectPrototype || proto === null) {
      // Plain records: one plan per set of field names (checked at the first record with them).
      const keys = Object.keys(original);
      const signature = proto === null ? `null:${keys.join(',')}` : keys.join(',');
      let plan = recordPlans.get(signature);
      if (plan === undefined) {
        checkPlainData(original, proto);
        plan = fieldCopier(keys, proto);
        recordPlans.set(signature, plan);
      }
      return plan(this, original);
    }
    let plan = plans.get(proto);
    if (plan === undefined) {
      plan = planFor(original, proto);
      plans.set(proto, plan);
    }
    switch (plan.kind) {
      case 'shared':
        copies.set(original, original);
        return original;
      case 'map': {
        const map = new Map<unknown, unknown>();
        copies.set(original, map);
        for (const [key, value] of original as Map<unknown, unknown>)
          map.set(this.field(original, 'a Map key', key), this.field(original, String(key), value));
        return map;
      }
      case 'set': {
        const set = new Set<unknown>();
        copies.set(original, set);
        for (const value of original as Set<unknown>) set.add(this.field(original, 'a Set element', value));
        return set;
      }
      case 'view': {
        const view = original as Uint8Array;
        // A view of part of a buffer would lose what it shares with the other views of that buffer.
        if (view.byteOffset !== 0 || view.byteLength !== view.buffer.byteLength)
          throw new CloneError('a view of part of an ArrayBuffer');
        const copy = view.slice();
        copies.set(original, copy);
        return copy;
      }
      case 'self': {
        const copy = (original as SelfCloning)[cloneSelf](this);
        copies.set(original, copy);
        return copy;
      }
      case 'fields': {
        // Every instance of a class has the fields its constructor defines (ES2022 class fields), in that order;
        // one that does not (a field added or deleted later) is copied the slow way, checked first.
        const keys = Object.keys(original);
        const expected = plan.keys;
        let same = keys.length === expected.length;
        for (let i = 0; same && i < keys.length; i++) same = keys[i] === expected[i];
        if (same) return plan.copy(this, original);
        checkPlainData(original, proto);
        return this.copyFields(original, proto, keys);
      }
    }
  }

  private copyFields(original: object, proto: object | null, keys: string[]): object {
    const copy = Object.create(proto) as Record<string, unknown>;
    this.copies.set(original, copy);
    const source = original as Record<string, unknown>;
    for (const key of keys) copy[key] = this.field(source, key, source[key]);
    return copy;
  }
}

/** How instances of one prototype are copied, decided at the first one met. */
type Plan =
  | { kind: 'shared' | 'map' | 'set' | 'view' | 'self' }
  | { kind: 'fields'; keys: string[]; copy: (cloner: Cloner, original: object) => object };
const plans = new WeakMap<object, Plan>();
/** Copiers of plain records, by their field names. */
const recordPlans = new Map<string, (cloner: Cloner, original: object) => object>();

function planFor(first: object, proto: object): Plan {
  if (first instanceof Error) return { kind: 'shared' };
  if (proto === mapPrototype) return { kind: 'map' };
  if (proto === setPrototype) return { kind: 'set' };
  if (ArrayBuffer.isView(first)) {
    if (first instanceof DataView) throw new CloneError('a DataView');
    return { kind: 'view' };
  }
  if (typeof (first as Partial<SelfCloning>)[cloneSelf] === 'function') return { kind: 'self' };
  checkPlainData(first, proto);
  const keys = Object.keys(first);
  return { kind: 'fields', keys, copy: fieldCopier(keys, proto) };
}

/**
 * A copier for instances of `proto` with exactly these fields, in this order: a generated constructor whose
 * prototype is `proto`, with one assignment per field. `new` gives every copy the same hidden class with its
 * fields in the object itself (as the class's own constructor does), and straight-line code keeps each access
 * monomorphic; a loop over the names, or Object.create() and assignments, is several times slower.
 */
function fieldCopier(keys: readonly string[], proto: object | null): (cloner: Cloner, original: object) => object {
  const lines = keys.map((key, i) => {
    const k = JSON.stringify(key);
    return `v = o[${k}]; this[${k}] = (typeof v === 'object' ? v !== null : typeof v === 'function') ? c.field(o, keys[${i}], v) : v;`;
  });
  const body = `c.remember(o, this); let v; ${lines.join(' ')}`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- generated from field names only (JSON-quoted)
  const Copy = new Function('keys', `return function Copy(c, o) { ${body} };`)(keys) as {
    new (cloner: Cloner, original: object): object;
    prototype: object | null;
  };
  if (proto === null) {
    // `new` cannot make an object without a prototype: make it, then fill it as the constructor would.
    return (cloner, original) => {
      const copy = Object.create(null) as object;
      Copy.call(copy, cloner, original);
      return copy;
    };
  }
  Copy.prototype = proto;
  return (cloner, original) => new Copy(cloner, original);
}

/**
 * An object copied field by field must hold its state in plain data properties: no getters or setters of its
 * own (they may close over state), no hidden (non-enumerable or symbol-keyed) fields, no built-in internals.
 */
function checkPlainData(object: object, proto: object | null): void {
  if (proto !== objectPrototype && proto !== null) {
    for (
      let p: object | null = proto;
      p !== null && p !== objectPrototype;
      p = Object.getPrototypeOf(p) as object | null
    ) {
      if (
        p === mapPrototype ||
        p === setPrototype ||
        p === arrayPrototype ||
        p === WeakMap.prototype ||
        p === WeakSet.prototype ||
        p === Promise.prototype ||
        p === Date.prototype ||
        p === RegExp.prototype
      ) {
        throw new CloneError(
          `${describeHolder(object)} is a built-in (or subclass of one) whose contents cannot be copied`,
        );
      }
    }
  }
  if (Object.getOwnPropertySymbols(object).length > 0)
    throw new CloneError(`${describeHolder(object)} has symbol-keyed properties`);
  for (const key of Object.getOwnPropertyNames(object)) {
    const descriptor = Object.getOwnPropertyDescriptor(object, key)!;
    if (descriptor.get || descriptor.set)
      throw new CloneError(`${describeHolder(object)} has an accessor property ${JSON.stringify(key)} of its own`);
    if (!descriptor.enumerable)
      throw new CloneError(`${describeHolder(object)} has a non-enumerable property ${JSON.stringify(key)}`);
  }
}
