/** `gmemlab schema`: the JSON Schema of the scenario format. */
import type { Command } from 'commander';
import { emit } from '../cli-support.js';
import { scenarioJsonSchema } from '../scenario/schema.js';

export function schemaCommand(): void {
  emit(JSON.stringify(scenarioJsonSchema(), null, 2));
}

export function register(cli: Command): void {
  cli
    .command('schema')
    .description('print the JSON Schema of the scenario format (also published as @gmemlab/demo/scenario.schema.json)')
    .action(schemaCommand);
}
