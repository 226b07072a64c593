import { describe, expectTypeOf, it } from 'vitest';
import {
  defineBackendFactory,
  swProtected,
  type ArchBackend,
  type BackendFactory,
  type BackendRule,
} from '../index.js';

describe('public types: rules and variants', () => {
  it('rules are an optional read-only list of { topic, rule, source, evidence? }', () => {
    expectTypeOf<ArchBackend['rules']>().toEqualTypeOf<readonly BackendRule[] | undefined>();
    expectTypeOf<BackendRule>().toEqualTypeOf<{
      topic: string;
      rule: string;
      source: string;
      evidence?: readonly { tag: string; quote: string }[];
    }>();
  });

  it("a factory's variants are a read-only record of its options", () => {
    const factory = defineBackendFactory(
      (options?: { variant?: 'x' }) => ({ ...swProtected, id: options?.variant ? 'n:x' : 'n' }),
      { x: { variant: 'x' } },
    );
    expectTypeOf(factory.variants).toEqualTypeOf<Readonly<Record<string, { variant?: 'x' }>>>();
    expectTypeOf<BackendFactory<{ variant?: 'x' }>['variants']>().toEqualTypeOf<
      Readonly<Record<string, { variant?: 'x' }>>
    >();
    const make = (options?: { variant?: 'x' }) => ({ ...swProtected, id: options?.variant ? 'n:x' : 'n' });
    // @ts-expect-error: a variant's options are the factory's options
    defineBackendFactory(make, { x: { variant: 'y' } });
  });
});
