/**
 * @gmemlab/explore: exhaustive bounded exploration of the gmemlab model of guest_memfd, memslots, iommufd and the
 * mapping registry. A small world, every actor (an adversarial VMM, the guest, a device, a second VM), a
 * breadth-first search over canonical states, named properties with witnesses, and the shortest counterexample
 * of each violation written as a scenario that `gmemlab run` replays. See README.md.
 */
export { explore, type ExploreOptions, type ExploreResult, type ExploreRun, type PropertyResult } from './explore.js';
export { exploreMany, loadBackendRef, type BackendRef, type ExploreJob, type ExploreManyOptions } from './parallel.js';
export { exploreThreaded, searchThreaded, type Progress, type ThreadedSearchOptions } from './threads.js';
export { CheckpointError } from './checkpoint.js';
export {
  search,
  replay,
  deepEqual,
  type SearchOptions,
  type SearchResult,
  type PropertyOutcome,
  type PropertyCounts,
} from './search.js';
export { randomWalks, shrink, prng, type RandomWalkOptions } from './random.js';
export {
  PROPERTIES,
  PROPERTY_NAMES,
  before,
  checkTransition,
  checkState,
  type PropertyName,
  type PropertyDefinition,
  type Findings,
} from './properties.js';
export { alphabet, perform, DATA, type Action, type ActionKind, type Actor, type Outcome } from './actions.js';
export { CALLS as EXPLORER_CALLS, execute } from './calls.js';
export { canonicalState, type Snapshot } from './canonical.js';
export { scenarioOf, describeWorld, type ScenarioObject, type ScenarioOptions } from './scenario.js';
export {
  DEFAULT_WORLD,
  worldConfig,
  createWorld,
  setupSteps,
  iovaOf,
  iovaSlots,
  type WorldConfig,
  type World,
  type Handles,
  type AreaHandle,
  type ScenarioStep,
} from './world.js';
export { mergeDifferences, type MergeCheckOptions } from './soundness.js';
