import { describe, expect, it } from 'vitest';
import { defineBackendFactory, swProtected, type ArchBackend } from '../index.js';
import { describeFactoryConformance, factoryCase } from './index.js';

function createNeutral(options: { quiet?: boolean } = {}): ArchBackend {
  return Object.freeze({ ...swProtected, id: options.quiet ? 'neutral:quiet' : 'neutral' });
}

describeFactoryConformance(defineBackendFactory(createNeutral, { quiet: { quiet: true } }), { describe, it });

describe('the kit catches a factory that breaks its variant contract', () => {
  it('a variant published under a key its id does not have', () => {
    const misnamed = defineBackendFactory(createNeutral, { silent: { quiet: true } });
    expect(() => factoryCase(misnamed).run()).toThrow(
      /variants\['silent'\] builds id 'neutral:quiet', expected 'neutral:silent'/,
    );
  });

  it('runs the conformance kit on the ready backend and on every published variant', () => {
    const described: string[] = [];
    const harness = {
      describe: (name: string, body: () => void) => (described.push(name), body()),
      it: () => undefined,
    };
    describeFactoryConformance(defineBackendFactory(createNeutral, { quiet: { quiet: true } }), harness);
    expect(described).toEqual([
      'backend factory: neutral',
      'ArchBackend conformance: neutral',
      'ArchBackend conformance: neutral:quiet',
    ]);
  });
});
