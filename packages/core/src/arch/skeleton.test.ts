import { describe, expect, it } from 'vitest';
import {
  archBackend,
  BackendOptionError,
  defineBackendFactory,
  defineOptions,
  describeBackendProblems,
  describeFactoryProblems,
  flag,
  oneOf,
  ruleTable,
  swProtected,
  variantId,
  whenHardwarePrivate,
  type PageAccessContext,
} from '../index.js';

const read = defineOptions(
  '@acme/cove',
  { variant: oneOf(['tio']), dma: oneOf(['block', 'land'], 'block'), huge: flag(), trace: flag(false) },
  [{ when: { variant: 'tio', huge: false }, message: "variant 'tio' needs huge IOPTEs" }],
);

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

describe('defineOptions', () => {
  it('fills in defaults, keeps "not given" apart from a value where there is no default, and freezes the result', () => {
    const values = read();
    expect(values).toEqual({ variant: undefined, dma: 'block', huge: undefined, trace: false });
    expect(Object.isFrozen(values)).toBe(true);
    expect(read({ variant: 'tio', dma: 'land', huge: true, trace: true })).toEqual({
      variant: 'tio',
      dma: 'land',
      huge: true,
      trace: true,
    });
    expect(read({ huge: false }).huge).toBe(false);
  });

  it('refuses a value outside the set with a BackendOptionError (a TypeError) naming the package, the option and the choices', () => {
    const error = thrown(() => read({ dma: 'maybe' as never }));
    expect(error).toBeInstanceOf(BackendOptionError);
    expect(error).toBeInstanceOf(TypeError);
    expect(BackendOptionError.isInstance(error)).toBe(true);
    expect((error as BackendOptionError).message).toBe("@acme/cove: unknown dma 'maybe'; expected 'block' or 'land'");
    expect((error as BackendOptionError).backend).toBe('@acme/cove');
    expect((error as BackendOptionError).options).toEqual(['dma']);
    expect(() => read({ variant: 'io' as never })).toThrow("@acme/cove: unknown variant 'io'; expected 'tio'");
    expect(() => read({ trace: 'yes' as never })).toThrow("@acme/cove: unknown trace 'yes'; expected false or true");
    expect(() => read({ huge: 1 as never })).toThrow('unknown huge 1; expected false or true');
  });

  it('refuses a combination the sources rule out, after the defaults are filled in', () => {
    const error = thrown(() => read({ variant: 'tio', huge: false })) as BackendOptionError;
    expect(error.message).toBe("@acme/cove: variant 'tio' needs huge IOPTEs");
    expect(error.options).toEqual(['variant', 'huge']);
    // huge not given reads as undefined, not false: no conflict.
    expect(read({ variant: 'tio' }).huge).toBeUndefined();
  });

  it('refuses options that are not an object', () => {
    for (const bad of [null, 'tio', 3, ['tio']]) expect(() => read(bad as never)).toThrow(BackendOptionError);
    expect(() => read('tio' as never)).toThrow("@acme/cove: options must be an object, not 'tio'");
  });

  it('refuses a name it does not know, naming the nearest valid one (a misspelt option built the default before)', () => {
    const error = thrown(() => read({ varaint: 'tio' } as never)) as BackendOptionError;
    expect(BackendOptionError.isInstance(error)).toBe(true);
    expect(error.message).toBe(
      "@acme/cove: unknown option 'varaint' (did you mean variant?); the options are variant, dma, huge, trace",
    );
    expect(error.options).toEqual(['varaint']);
    // Even with no value: the key itself is the mistake.
    expect(() => read({ Dma: undefined } as never)).toThrow("unknown option 'Dma' (did you mean dma?)");
    expect(() => defineOptions('@acme/plain', {})({ dma: 'land' } as never)).toThrow(
      "@acme/plain: unknown option 'dma'; it takes no options",
    );
    // Names it knows, given as undefined, read as not given.
    expect(read({ variant: undefined, dma: undefined })).toEqual(read());
  });

  it('a default must be one of the values', () => {
    expect(() => oneOf(['a', 'b'], 'c' as never)).toThrow(TypeError);
  });

  it('isInstance recognises the brand of any copy of the core, and nothing else', () => {
    const foreign = Object.assign(new TypeError('x'), { [Symbol.for('gmemlab.BackendOptionError')]: true });
    expect(BackendOptionError.isInstance(foreign)).toBe(true);
    expect(BackendOptionError.isInstance(new TypeError('x'))).toBe(false);
    expect(BackendOptionError.isInstance(undefined)).toBe(false);
  });
});

describe('variantId', () => {
  it('is the arch alone without parts, else <arch>:<parts joined by ->, leaving out false and undefined', () => {
    expect(variantId('cove', [])).toBe('cove');
    expect(variantId('cove', [undefined, false])).toBe('cove');
    expect(variantId('cove', ['tio'])).toBe('cove:tio');
    expect(variantId('cove', ['tio', false, 'dma-land', undefined])).toBe('cove:tio-dma-land');
  });

  it('refuses parts that are not lower-case id parts', () => {
    expect(() => variantId('Cove', [])).toThrow(TypeError);
    expect(() => variantId('cove', ['TIO'])).toThrow(/not an id part/);
    expect(() => variantId('cove', ['a:b'])).toThrow(/not an id part/);
  });
});

describe('ruleTable', () => {
  const table = ruleTable<{ tio: boolean; dma: 'block' | 'land' }>([
    { when: { tio: true }, topic: 'variant', rule: 'TIO.', source: '[S1]', evidence: [{ tag: 'S1', quote: 'tio' }] },
    { topic: 'conversion policy', rule: 'Tolerate.', source: '[S1]', evidence: [{ tag: 'S1', quote: 'tolerate' }] },
    { when: { dma: 'block' }, topic: 'device access to private', rule: 'Blocked.', source: '[S2]' },
    { when: { dma: ['land'] }, topic: 'device access to private', rule: 'Lands.', source: '[S2]' },
    { when: { tio: false, dma: ['block', 'land'] }, topic: 'page sizes', rule: '4K.', source: '[S3]' },
  ]);

  it('selects the rows whose settings match, in the table order', () => {
    expect(table.select({ tio: false, dma: 'block' }).map((r) => r.rule)).toEqual(['Tolerate.', 'Blocked.', '4K.']);
    expect(table.select({ tio: true, dma: 'land' }).map((r) => r.rule)).toEqual(['TIO.', 'Tolerate.', 'Lands.']);
  });

  it('publishes the rules without their condition, frozen down to the evidence, the same objects for every instance', () => {
    const [variant] = table.select({ tio: true, dma: 'block' });
    expect(variant).toEqual({
      topic: 'variant',
      rule: 'TIO.',
      source: '[S1]',
      evidence: [{ tag: 'S1', quote: 'tio' }],
    });
    expect(Object.keys(variant!)).toEqual(['topic', 'rule', 'source', 'evidence']);
    expect(Object.isFrozen(variant)).toBe(true);
    expect(Object.isFrozen(variant!.evidence)).toBe(true);
    expect(Object.isFrozen(variant!.evidence![0])).toBe(true);
    expect(Object.isFrozen(table.select({ tio: false, dma: 'land' }))).toBe(true);
    expect(table.select({ tio: true, dma: 'land' })[0]).toBe(variant);
    // A rule without evidence has no evidence field (not an empty one).
    expect('evidence' in table.select({ tio: false, dma: 'block' })[1]!).toBe(false);
    expect(Object.isFrozen(table.rows)).toBe(true);
  });

  it('copies what it is given: changing the rows afterwards changes nothing', () => {
    const evidence = [{ tag: 'S1', quote: 'q' }];
    const rows = [{ topic: 't', rule: 'r', source: '[S1]', evidence }];
    const own = ruleTable<{ x: boolean }>(rows);
    evidence[0]!.quote = 'changed';
    rows[0]!.rule = 'changed';
    expect(own.select({ x: true })[0]).toEqual({
      topic: 't',
      rule: 'r',
      source: '[S1]',
      evidence: [{ tag: 'S1', quote: 'q' }],
    });
  });

  it('refuses settings that lack a name a row holds for (a misspelt setting would silently drop the row)', () => {
    expect(() => table.select({ tio: true } as never)).toThrow(/'dma'/);
  });
});

describe('whenHardwarePrivate', () => {
  const context = (hardware: 'shared' | 'private', attribute: 'shared' | 'private' = 'private'): PageAccessContext => ({
    attribute,
    hardware,
    write: true,
    vmType: 'coco',
    stale: false,
  });
  const hook = whenHardwarePrivate(() => ({
    allow: false,
    fault: 'contained',
    fatal: false,
    logged: true,
    mechanism: 'blocked',
  }));

  it("asks the verdict only for frames the hardware holds; a page private only in KVM's view is ordinary memory", () => {
    expect(hook(context('private'))).toMatchObject({ allow: false, mechanism: 'blocked' });
    expect(hook(context('shared', 'private'))).toEqual({ allow: true });
    expect(hook(context('shared', 'shared'))).toEqual({ allow: true });
  });
});

describe('archBackend with the rest of the skeleton: a backend package in a few lines', () => {
  const readCove = defineOptions('@acme/cove', { variant: oneOf(['tio']) });
  const rules = ruleTable<{ tio: boolean }>([
    { when: { tio: true }, topic: 'variant', rule: 'TIO.', source: '[S1]', evidence: [{ tag: 'S1', quote: 'q' }] },
    { topic: 'conversion policy', rule: 'Tolerate.', source: '[S1]', evidence: [{ tag: 'S1', quote: 'q' }] },
  ]);
  const create = (options?: { variant?: 'tio' }) => {
    const { variant } = readCove(options);
    return archBackend({
      ...swProtected,
      id: variantId('cove', [variant]),
      name: 'CoVE',
      rules: rules.select({ tio: variant === 'tio' }),
    });
  };
  const cove = defineBackendFactory(create, { tio: { variant: 'tio' } });

  it('builds a frozen ArchBackend v1 that keeps the variant contract', () => {
    expect(describeBackendProblems(cove)).toEqual([]);
    expect(describeFactoryProblems(cove)).toEqual([]);
    const tio = cove(cove.variants.tio);
    expect(tio.specificationVersion).toBe('v1');
    expect(Object.keys(tio)[0]).toBe('specificationVersion');
    expect(Object.isFrozen(tio)).toBe(true);
    expect(tio.rules?.map((r) => r.topic)).toEqual(['variant', 'conversion policy']);
    expect(cove.rules?.map((r) => r.topic)).toEqual(['conversion policy']);
  });
});
