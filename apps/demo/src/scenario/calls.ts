/**
 * The steps a scenario may take: @gmemlab/core's call table (packages/core/src/calls.ts), the model's public calls
 * by their API names. The schema, the static checks, the runner and the docs are all generated from it.
 */
export { CALLS, CALL_NAMES, type ArgSpec, type CallSpec, type HandleKind } from '@gmemlab/core';
