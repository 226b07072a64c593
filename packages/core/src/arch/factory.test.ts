import { describe, expect, it } from 'vitest';
import { isFrozenData } from './own.js';
import { defineBackendFactory, describeFactoryProblems, factoryCore, swProtected, type ArchBackend } from '../index.js';

interface NeutralOptions {
  variant?: 'quiet' | 'loud';
  trace?: boolean;
}

/** A neutral backend with options, as a backend package would write it. */
function createNeutral(options: NeutralOptions = {}): ArchBackend {
  if (options.variant !== undefined && options.variant !== 'quiet' && options.variant !== 'loud')
    throw new TypeError(`unknown variant ${String(options.variant)}`);
  const parts = [options.variant, options.trace ? 'trace' : undefined].filter(Boolean);
  return Object.freeze({ ...swProtected, id: parts.length > 0 ? `neutral:${parts.join('-')}` : 'neutral' });
}

describe('defineBackendFactory: variants', () => {
  it('the factory publishes its variants as a frozen record of frozen options', () => {
    const options = { variant: 'quiet' as const };
    const factory = defineBackendFactory(createNeutral, { quiet: options, trace: { trace: true } });
    expect(factory.variants).toEqual({ quiet: { variant: 'quiet' }, trace: { trace: true } });
    expect(Object.isFrozen(factory.variants)).toBe(true);
    expect(Object.isFrozen(factory.variants.quiet)).toBe(true);
    // A copy: the caller's object stays the caller's.
    expect(factory.variants.quiet).not.toBe(options);
    expect(Object.isFrozen(options)).toBe(false);
    expect(factory(factory.variants.trace).id).toBe('neutral:trace');
  });

  it('a factory without variants publishes none', () => {
    const factory = defineBackendFactory(createNeutral);
    expect(factory.variants).toEqual({});
    expect(Object.isFrozen(factory.variants)).toBe(true);
    expect(describeFactoryProblems(factory)).toEqual([]);
  });

  it('the factory is still the ready backend, and variants is not a backend member', () => {
    const factory = defineBackendFactory(createNeutral, { quiet: { variant: 'quiet' } });
    expect(factory.id).toBe('neutral');
    expect(factory.rules).toBe(swProtected.rules);
    expect(Object.keys(factory)).toContain('variants');
    expect('variants' in factory({ variant: 'quiet' })).toBe(false);
  });

  it("carries frozen copies of the ready backend's data (its own objects untouched), so createHost reads it once", () => {
    const pageSizes = [4096];
    const inputs: never[] = [];
    const ready = {
      ...swProtected,
      id: 'neutral',
      pageSizes,
      conversionPolicyInputs: { policy: swProtected.conversionPolicy, inputs },
    };
    const factory = defineBackendFactory(() => ready as ArchBackend);
    expect(factory.pageSizes).toEqual([4096]);
    expect(Object.isFrozen(factory.pageSizes)).toBe(true);
    expect(Object.isFrozen(factory.conversionPolicyInputs!.inputs)).toBe(true);
    // The declaration still names the factory's own policy (the host checks that it is the same function).
    expect(factory.conversionPolicyInputs!.policy).toBe(factory.conversionPolicy);
    expect(Object.isFrozen(pageSizes) || Object.isFrozen(inputs)).toBe(false);
    expect(isFrozenData(factory)).toBe(true);
    // Data already frozen throughout is kept as it is.
    expect(factory.rules).toBe(swProtected.rules);
  });

  it('refuses a variants value that is not a record, and a key that is not an id part', () => {
    expect(() => defineBackendFactory(createNeutral, [] as never)).toThrow(TypeError);
    expect(() => defineBackendFactory(createNeutral, null as never)).toThrow(/record/);
    expect(() => defineBackendFactory(createNeutral, { Quiet: { variant: 'quiet' } })).toThrow(/'Quiet'/);
    expect(() => defineBackendFactory(createNeutral, { 'a:b': {} })).toThrow(/id part/);
  });
});

/** A factory written by hand, without defineBackendFactory (a function's `name` cannot be assigned, only defined). */
function handMade(create: () => ArchBackend, fields: object): unknown {
  const factory = () => create();
  for (const [key, value] of Object.entries(fields)) Object.defineProperty(factory, key, { value, enumerable: true });
  return factory;
}

describe('describeFactoryProblems', () => {
  it('a factory whose every variant builds <id>:<key> has no problems', () => {
    const factory = defineBackendFactory(createNeutral, {
      quiet: { variant: 'quiet' },
      loud: { variant: 'loud' },
      trace: { trace: true },
    });
    expect(describeFactoryProblems(factory)).toEqual([]);
  });

  it('names a variant whose key is not the id it builds', () => {
    const factory = defineBackendFactory(createNeutral, { silent: { variant: 'quiet' }, loud: { variant: 'loud' } });
    expect(describeFactoryProblems(factory)).toEqual([
      "variants['silent'] builds id 'neutral:quiet', expected 'neutral:silent'",
    ]);
  });

  it('names a variant whose options throw or build no backend', () => {
    const factory = defineBackendFactory(createNeutral, { odd: { variant: 'odd' as never } });
    expect(describeFactoryProblems(factory)).toEqual(["variants['odd'] throws: unknown variant odd"]);
    const hollow = defineBackendFactory(
      (options?: { hollow?: boolean }) =>
        options?.hollow ? ({ id: 'x:hollow' } as unknown as ArchBackend) : swProtected,
      { hollow: { hollow: true } },
    );
    expect(describeFactoryProblems(hollow)[0]).toMatch(
      /^variants\['hollow'\] builds no ArchBackend v1: specificationVersion/,
    );
  });

  it('a plain backend, a broken one and a hand-made factory without variants', () => {
    expect(describeFactoryProblems(swProtected)).toEqual(['is a backend but not a factory (not callable)']);
    expect(describeFactoryProblems({ id: 'x' })[0]).toMatch(/^the ready backend: /);
    expect(describeFactoryProblems(handMade(() => swProtected, swProtected))).toEqual([
      expect.stringMatching(/^variants is not a record of options/),
    ]);
  });

  it("names a factory whose factory() is not its ready backend's id", () => {
    const drifting = handMade(() => ({ ...swProtected, id: 'other' }), { ...swProtected, variants: Object.freeze({}) });
    expect(describeFactoryProblems(drifting)).toEqual([
      "factory() builds id 'other', expected the ready backend's 'sw-protected'",
    ]);
  });
});

describe('factoryCore', () => {
  it("tells this core's factories from another copy's and from plain backends", () => {
    const factory = defineBackendFactory(() => swProtected);
    expect(factoryCore(factory)).toBe('this');
    expect(factoryCore(swProtected)).toBeUndefined();
    expect(factoryCore(null)).toBeUndefined();
    // A factory from a second copy carries the shared key with that copy's own value.
    const other = Object.assign(() => swProtected, { [Symbol.for('gmemlab.core.instance')]: Object.freeze({}) });
    expect(factoryCore(other)).toBe('another');
    // The brand is not one of the backend's fields.
    expect(Object.keys(factory)).not.toContain(Symbol.for('gmemlab.core.instance'));
    expect(
      Object.getOwnPropertySymbols(factory).every((s) => !Object.getOwnPropertyDescriptor(factory, s)!.enumerable),
    ).toBe(true);
  });
});
