/**
 * The built-in scenario library (the package's `scenarios/` folder) and how the commands name scenario files: a
 * path, or the id of a built-in one.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadScenario, ScenarioError, type LoadOptions, type Scenario } from './scenario/load.js';

// src/library.ts and the built dist/*.js both sit one folder below the package root.
const here = dirname(fileURLToPath(import.meta.url));
export const BUILTIN_SCENARIOS = join(here, '..', 'scenarios');

export function builtinScenarioFiles(): string[] {
  return readdirSync(BUILTIN_SCENARIOS)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort()
    .map((f) => join(BUILTIN_SCENARIOS, f));
}

/** A file path, or the id of a built-in scenario ('rfc-as-posted'). */
export function scenarioFile(spec: string): string {
  if (existsSync(spec)) return spec;
  const builtin = builtinScenarioFiles().find((f) => f.replace(/^.*\//, '').replace(/\.(ya?ml|json)$/, '') === spec);
  if (builtin) return builtin;
  throw new ScenarioError(`${spec}: no such file, and no built-in scenario by that name (see 'gmemlab scenarios')`);
}

/** The scenarios named (files or built-in ids), or the whole built-in library when none is. */
export function loadAll(specs: readonly string[], options: LoadOptions = {}): Scenario[] {
  const files = specs.length > 0 ? specs.map(scenarioFile) : builtinScenarioFiles();
  return files.map((f) => loadScenario(f, options));
}
