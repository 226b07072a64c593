/**
 * @gmemlab/linux/differential: run one step list on @gmemlab/core's model and on the running kernel, and
 * compare them step by step. Needs @gmemlab/core (a peer dependency).
 */
export {
  runOnBoth,
  formatReport,
  DOCUMENTED_DIFFERENCES,
  KERNEL_MATCHING_MODEL_OPTIONS,
  type DocumentedDifference,
  type RunOptions,
  type SequenceReport,
  type StepReport,
  type Verdict,
} from './run.js';
export {
  describeOutcome,
  describeStep,
  materialize,
  type Address,
  type Bytes,
  type Num,
  type Outcome,
  type Step,
} from './steps.js';
export { CLOSED_FD, KernelSide, ModelSide, type Side } from './sides.js';
export { opOf, stepOfCall, unsupportedReason, STEP_OPS, type CallArgs } from './calls.js';
