/**
 * @gmemlab/core/testing: the conformance kit a backend package runs against itself, and the shared helpers
 * scenario tests use. See "Writing a backend" in the package README.
 */
export { checkBackendShape } from './shape.js';
export {
  conformanceCases,
  describeBackendConformance,
  unsafeByDesign,
  type ConformanceCase,
  type ConformanceHarness,
} from './conformance.js';
export { describeFactoryConformance, factoryCase } from './factory.js';
export { createScenario, type ScenarioOptions } from './scenario.js';
