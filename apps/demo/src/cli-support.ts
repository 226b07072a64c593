/** What the `gmemlab` commands share: the usage error, the --contract parser, the progress line, the output. */
import { writeFileSync } from 'node:fs';
import { CONTRACTS, type Contract } from '@gmemlab/core';
import { DESIGNS, isDesign, TODAY, type Design } from './run/designs.js';
import { InputError } from './errors.js';

/** A usage or input error: one line on stderr, exit code 2. */
export class UsageError extends InputError {}

/** --contract: 'all' (or absent), or a comma list of contract names. */
export function contractsOf(value: string | undefined): Design[] {
  // The RFC as posted first, then the registry, then its mirroring refinement: the order of the thread; then
  // today's path (run/designs.ts).
  if (value === undefined || value === 'all') return [...DESIGNS];
  const list = value.split(',').map((s) => s.trim());
  for (const c of list)
    if (!isDesign(c)) throw new UsageError(`--contract: unknown contract '${c}'; known: ${DESIGNS.join(', ')}, all`);
  return list as Design[];
}

/** A progress line on stderr for runs longer than a second, only on a terminal. */
export function progress(label: string): {
  update(done: number, total: number): void;
  note(text: string): void;
  end(): void;
} {
  const started = Date.now();
  let shown = false;
  const show = (text: string) => {
    if (process.stderr.isTTY !== true || Date.now() - started < 1000) return;
    shown = true;
    process.stderr.write(`\r\x1b[K${label} ${text}`);
  };
  return {
    update(done, total) {
      show(`${done}/${total}`);
    },
    note: show,
    end() {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}

/** --contract for `gmemlab explore`: the explorer's world is in-place conversion, so 'today' is not offered. */
export function exploreContractsOf(value: string | undefined): Contract[] {
  if (value === undefined || value === 'all')
    return [...CONTRACTS].sort((a, b) => DESIGNS.indexOf(a) - DESIGNS.indexOf(b));
  const list = value.split(',').map((s) => s.trim());
  for (const c of list) {
    if (c === TODAY)
      throw new UsageError(
        `--contract: '${TODAY}' is not explored (the explorer's world converts in place); known: ${CONTRACTS.join(', ')}, all`,
      );
    if (!(CONTRACTS as readonly string[]).includes(c))
      throw new UsageError(`--contract: unknown contract '${c}'; known: ${CONTRACTS.join(', ')}, all`);
  }
  return list as Contract[];
}

/** A command's output: to `--out FILE`, else stdout; always ending in one newline. */
export function emit(text: string, out?: string): void {
  if (out) writeFileSync(out, text.endsWith('\n') ? text : `${text}\n`);
  else process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}
