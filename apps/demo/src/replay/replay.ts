/**
 * `gmemlab replay <log>`: a VMM's own log (QEMU's trace log, or strace output) read line by line, in bounded
 * memory, into the scenario document the rest of the demo runs (compare, every format, the verdict matrix), and
 * optionally written out as a scenario file (`--emit-scenario`) that `gmemlab run` replays the same way.
 */
import { createReadStream, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { stringify } from 'yaml';
import { DEFAULT_MAX_STEPS, parseScenario, type Scenario } from '../scenario/load.js';
import { isQemuLine, QemuReader } from './qemu.js';
import { isStraceLine, StraceReader } from './strace.js';
import { QEMU_HOST, ReplayError, Translator, type ReplayCounts } from './translate.js';

export { ReplayError } from './translate.js';

export type LogFormat = 'qemu' | 'strace';
export const LOG_FORMATS = ['auto', 'qemu', 'strace'] as const;

/** The longest line read: a trace line is short; a longer one means a binary file or a broken log. */
export const MAX_LINE = 1024 * 1024;
/** How many lines may pass before the format is known (auto). */
const SNIFF_LINES = 1000;

export interface ReplayOptions {
  input?: (typeof LOG_FORMATS)[number];
  maxSteps?: number;
}

export interface ReplayResult {
  format: LogFormat;
  lines: number;
  counts: ReplayCounts;
  assumptions: string[];
  /** The scenario document (plain data, as a scenario file holds it). */
  document: Record<string, unknown>;
  scenario: Scenario;
}

/**
 * The file's lines, decoded as UTF-8, one at a time; binary, over-long and cut-off lines are errors. Each line is
 * decoded from its own bytes, so that no string kept from it (a step's note) holds on to the chunk it was read in.
 */
async function* lines(file: string): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let carry: Buffer = Buffer.alloc(0);
  let number = 0;
  const name = basename(file);
  const decode = (bytes: Buffer): string => {
    if (bytes.includes(0)) throw new ReplayError(`${name}:${number}: a NUL byte (a binary file?): a trace log is text`);
    try {
      return decoder.decode(bytes);
    } catch {
      throw new ReplayError(`${name}:${number}: not UTF-8 text (a binary file?): a trace log is text`);
    }
  };
  const stream = createReadStream(file, { highWaterMark: 256 * 1024 });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const bytes = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
      let at = 0;
      for (let nl = bytes.indexOf(10); nl >= 0; nl = bytes.indexOf(10, at)) {
        number++;
        if (nl - at > MAX_LINE)
          throw new ReplayError(`${name}:${number}: a line longer than ${MAX_LINE} bytes: not a trace log`);
        const end = nl > at && bytes[nl - 1] === 13 ? nl - 1 : nl;
        const line = decode(bytes.subarray(at, end));
        at = nl + 1;
        yield line;
      }
      carry = Buffer.from(bytes.subarray(at));
      if (carry.length > MAX_LINE)
        throw new ReplayError(
          `${name}:${number + 1}: a line longer than ${MAX_LINE} bytes: not a trace log (a binary file?)`,
        );
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ReplayError(`${file}: no such file`);
    if (code === 'EISDIR') throw new ReplayError(`${file}: is a folder, not a log`);
    throw error;
  } finally {
    stream.destroy();
  }
  number++;
  if (carry.length > 0) {
    const rest = decode(carry);
    // A log cut in the middle of a line may carry a cut number (size=0x20 of size=0x200000): refuse it.
    throw new ReplayError(
      `${name}:${number}: the log ends in the middle of a line (no newline after '${rest.slice(0, 60)}'): truncated? A cut line may carry a cut number`,
    );
  }
}

/** Read a log and translate it into a scenario. Throws ReplayError (one line) for a log it cannot replay. */
export async function replayLog(file: string, options: ReplayOptions = {}): Promise<ReplayResult> {
  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  let format: LogFormat | undefined =
    options.input === 'qemu' || options.input === 'strace' ? options.input : undefined;
  let translator: Translator | undefined;
  let reader: QemuReader | StraceReader | undefined;
  const start = (f: LogFormat) => {
    format = f;
    translator = new Translator({
      file,
      format: f,
      maxSteps,
      sources: f === 'qemu' ? QemuReader.sources() : StraceReader.sources(),
      ...(f === 'qemu' ? { host: QEMU_HOST } : {}),
    });
    reader = f === 'qemu' ? new QemuReader(translator) : new StraceReader(translator);
  };
  if (format) start(format);
  const waiting: string[] = [];
  let count = 0;
  const feed = (text: string, number: number) => {
    translator!.line = number;
    reader!.line(text);
  };
  for await (const text of lines(file)) {
    count++;
    if (!reader) {
      waiting.push(text);
      if (isQemuLine(text)) start('qemu');
      else if (isStraceLine(text)) start('strace');
      else if (waiting.length >= SNIFF_LINES)
        throw new ReplayError(
          `${basename(file)}: neither a QEMU trace event the replay reads nor an strace call in the first ${SNIFF_LINES} lines; name the format with --input qemu|strace`,
        );
      if (reader) waiting.splice(0).forEach((w, i) => feed(w, i + 1));
      continue;
    }
    feed(text, count);
  }
  if (count === 0) throw new ReplayError(`${basename(file)}: the log is empty`);
  if (!reader)
    throw new ReplayError(
      `${basename(file)}: neither a QEMU trace event the replay reads nor an strace call in its ${count} lines; name the format with --input qemu|strace`,
    );
  reader.finish();
  const t = translator!;
  if (t.steps.length === 0)
    throw new ReplayError(
      `${basename(file)}: none of its ${count} lines replays as a model call (${summary(t.counts, count).split('\n')[0]})`,
    );
  const document = t.document();
  const scenario = parseScenario(document, basename(file), file, { maxSteps });
  return { format: format!, lines: count, counts: t.counts, assumptions: [...t.assumptions], document, scenario };
}

const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));

/** What was read, replayed, skipped and not understood: the report's text (stderr, and the emitted file's header). */
export function summary(counts: ReplayCounts, lines: number): string {
  const skipped = [...counts.skipped.values()].reduce((a, b) => a + b, 0);
  const unknown = [...counts.unknown.values()].reduce((a, b) => a + b, 0);
  const out = [
    `${lines} lines: ${counts.replayed} replayed, ${skipped} understood with no model call, ${unknown} not understood`,
  ];
  for (const [kind, n] of sorted(counts.skipped)) out.push(`  skipped ${n} x ${kind}`);
  for (const [kind, n] of sorted(counts.unknown)) out.push(`  not understood ${n} x ${kind}`);
  return out.join('\n');
}

/** The JSON form of the counts, for --format json. */
export function countsJson(result: ReplayResult): unknown {
  return {
    file: result.scenario.file,
    format: result.format,
    lines: result.lines,
    replayed: result.counts.replayed,
    steps: (result.document.steps as unknown[]).length,
    skipped: Object.fromEntries(sorted(result.counts.skipped)),
    unknown: Object.fromEntries(sorted(result.counts.unknown)),
    assumptions: result.assumptions,
  };
}

/** The scenario file `--emit-scenario` writes: a header saying where it came from, then the document as YAML. */
export function scenarioFileText(result: ReplayResult): string {
  const header = [
    `Written by gmemlab replay from ${basename(result.scenario.file)} (${result.format === 'qemu' ? "QEMU's trace log" : 'strace output'}).`,
    ...(result.document.source as string[]).slice(1).map((s) => `Parser follows: ${s}`),
    ...summary(result.counts, result.lines).split('\n'),
    ...result.assumptions.map((a) => `Assumed: ${a}`),
  ];
  return `${header.map((h) => `# ${h}`.trimEnd()).join('\n')}\n${stringify(result.document, { lineWidth: 0 })}`;
}

export function writeScenarioFile(result: ReplayResult, out: string): void {
  writeFileSync(out, scenarioFileText(result));
}
