/**
 * The kit for a backend package's factory: the variants it publishes are what their keys say
 * (`factory(factory.variants[k]).id === '<id>:<k>'`), and the ready backend and every published variant pass the
 * conformance kit. Asserts with plain thrown Errors, like the rest of the kit.
 */
import type { BackendFactory } from '../arch/factory.js';
import { describeFactoryProblems } from '../arch/factory.js';
import { describeBackendConformance, type ConformanceCase, type ConformanceHarness } from './conformance.js';

/** The factory's own case as a plain `{ name, run }`: it throws listing every problem describeFactoryProblems finds. */
export function factoryCase<Options>(factory: BackendFactory<Options>): ConformanceCase {
  return {
    name: 'publishes its variants: each builds <id>:<key> and is an ArchBackend v1',
    run() {
      const problems = describeFactoryProblems(factory);
      if (problems.length > 0)
        throw new Error(
          `conformance: the backend factory '${factory.id}' breaks its contract:\n  ${problems.join('\n  ')}`,
        );
    },
  };
}

/**
 * Run the factory's case, then the conformance kit on the ready backend and on each published variant. Option
 * combinations that are not published variants can be run with describeBackendConformance as before.
 */
export function describeFactoryConformance<Options>(
  factory: BackendFactory<Options>,
  harness: ConformanceHarness,
): void {
  harness.describe(`backend factory: ${factory.id}`, () => {
    const c = factoryCase(factory);
    harness.it(c.name, () => c.run());
  });
  describeBackendConformance(factory, harness);
  for (const options of Object.values(factory.variants)) describeBackendConformance(factory(options), harness);
}
