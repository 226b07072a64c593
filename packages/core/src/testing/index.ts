/**
 * @gmemlab/core/testing: the conformance kit a backend package runs against itself (filled in by the
 * architecture-packages issue). For now it offers the shared helpers scenario tests use.
 */
export { checkBackendShape } from './shape.js';
