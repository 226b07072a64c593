/**
 * @gmemlab/demo as a library: load scenarios, load backends by name, run and compare, render reports. The
 * `gmemlab` bin is a thin layer over these.
 */
export {
  loadScenario,
  parseScenario,
  parseScenarioText,
  ScenarioError,
  type Scenario,
  type Step,
  type CallStep,
  type RepeatStep,
  type ExpectCase,
  type Outcome,
} from './scenario/load.js';
export { scenarioJsonSchema } from './scenario/schema.js';
export { CALLS, CALL_NAMES, type CallSpec, type ArgSpec, type HandleKind } from './scenario/calls.js';
export { runScenario, type RunOptions } from './run/runner.js';
export { labelOf } from './format/labels.js';
export { compare } from './run/compare.js';
export type {
  Comparison,
  RunResult,
  StepRecord,
  StepResult,
  StepEffects,
  AccessSummary,
  ViolationSummary,
  ScenarioInfo,
  PageMap,
} from './run/types.js';
export {
  loadBackends,
  selectArchs,
  loadEntry,
  runningCore,
  BackendError,
  BUILTIN_PACKAGES,
  DEFAULT_ARCHS,
  type LoadedBackend,
  type BackendSet,
  type BackendCopy,
  type CoreInfo,
} from './backends.js';
export { renderCompareText, renderRunText } from './format/text.js';
export { renderCompareMarkdown, renderRunMarkdown } from './format/markdown.js';
export { renderCompareHtml, renderRunHtml } from './format/html.js';
export { main, program } from './cli.js';
export { InputError } from './errors.js';
export { BUILTIN_SCENARIOS } from './library.js';
export {
  startServer,
  LOOPBACK,
  MAX_BODY,
  MAX_RUNS,
  MAX_WORKERS,
  type ServeOptions,
  type RunningServer,
} from './serve/server.js';
export {
  replayLog,
  scenarioFileText,
  ReplayError,
  LOG_FORMATS,
  type ReplayResult,
  type ReplayOptions,
  type LogFormat,
} from './replay/replay.js';
export { TRANSLATION } from './replay/translate.js';
export { QEMU_EVENTS, QEMU_SOURCES } from './replay/qemu.js';
export { STRACE_SOURCE } from './replay/strace.js';
