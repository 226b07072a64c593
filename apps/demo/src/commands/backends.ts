/** `gmemlab backends`: the backends gmemlab loads, which copy of each, its version, path and core. */
import { Option, type Command } from 'commander';
import { emit } from '../cli-support.js';
import { backendsFor, configOption } from './options.js';

export async function backendsCommand(options: { config?: string; format: string }): Promise<void> {
  const set = await backendsFor(options);
  const rows = set.loaded.map((b) => ({
    id: b.id,
    name: b.name,
    package: b.package,
    version: b.version,
    copy: b.copy,
    path: b.path,
    core: b.core,
    variants: b.variants.map((v) => `${b.id}:${v}`),
  }));
  if (options.format === 'json') return emit(JSON.stringify({ config: set.config ?? null, backends: rows }, null, 2));
  // copy: 'project' (the user's install, which wins), 'gmemlab' (the demo's own), 'core' (the neutral backend).
  const cells = [
    ['id', 'name', 'package', 'version', 'copy', 'core', 'variants', 'path'],
    ...rows.map((r) => [
      r.id,
      r.name,
      r.package,
      r.version,
      r.copy,
      r.core.version,
      r.variants.join(', ') || '-',
      r.path,
    ]),
  ];
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  emit(
    cells
      .map((c) =>
        c
          .map((v, i) => v.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + (set.config ? `\n(config: ${set.config})` : ''),
  );
}

export function register(cli: Command): void {
  cli
    .command('backends')
    .description(
      'the backends gmemlab loads (built-in, and those of gmemlab.config.json): which copy, its version, path and core',
    )
    .addOption(configOption())
    .addOption(new Option('-f, --format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(backendsCommand);
}
