/**
 * Runs a scenario on one backend and contract: each step's result (ok, errno with errorOffset, the access fault or
 * guest exit, host down), what the kernel did meanwhile (invalidations and their cause, entries zapped, areas
 * revoked, firmware steps, hardware-state changes), the invariant violations that appeared at that step, the
 * fatal fault if one took the host down, and whether the scenario's expectation held. Steps inside a repeat are
 * folded into one record each, with counts per outcome.
 */
import { createHost, GmemError, HostCrashedError, PAGE_SIZE, type AccessResult, type ArchBackend, type Device, type FrameOwner, type GmemEvent, type Host, type Violation } from '@gmemlab/core';
import { hostOptionsFor, skipReason, type Design } from './designs.js';
import { CALLS } from '../scenario/calls.js';
import { iterate } from '../scenario/repeat.js';
import { evaluate, formatSize, toArg, type Expr } from '../scenario/expr.js';
import type { CallStep, ExpectCase, Outcome, Scenario, Step } from '../scenario/load.js';
import type { AccessSummary, RunResult, StepEffects, StepRecord, StepResult, ViolationSummary } from './types.js';
import { stepOutcome, worse, type Outcome as Verdict } from './verdict.js';

export interface RunOptions {
  /** Attach page maps after each top-level step (default true). */
  pageMaps?: boolean;
}

const describeOwner = (owner: FrameOwner): string => {
  switch (owner.kind) {
    case 'free':
      return 'a free frame';
    case 'guest_memfd':
      return `guest_memfd ino ${owner.ino} of ${owner.vm} at 0x${owner.offset.toString(16)} (${owner.attribute}${owner.hardware === 'private' ? ', hardware-private' : ''})`;
    case 'shmem':
      return `shmem ino ${owner.ino} at 0x${owner.offset.toString(16)}`;
    case 'anonymous':
      return `anonymous memory of ${owner.mapping}`;
    case 'pinned':
      return `a page of ino ${owner.ino} truncated under a pin (${owner.holder})`;
  }
};

/** The first `max` distinct byte values of `data`, in order of appearance, in one pass that stops early. */
function distinctBytes(data: Uint8Array, max: number): number[] {
  if (data.length === 0) return [];
  // A large read of one repeated byte (an accept, a bounce buffer) is the common case: compare 4 bytes at a time.
  if (data.byteOffset % 4 === 0) {
    const words = new Uint32Array(data.buffer, data.byteOffset, data.length >>> 2);
    const first = data[0]! * 0x01010101;
    let i = 0;
    while (i < words.length && words[i] === first) i++;
    let j = i * 4;
    while (j < data.length && data[j] === data[0]) j++;
    if (j === data.length) return [data[0]!];
  }
  const seen = new Uint8Array(256);
  const out: number[] = [];
  for (let i = 0; i < data.length && out.length < max; i++) {
    const b = data[i]!;
    if (seen[b] === 0) {
      seen[b] = 1;
      out.push(b);
    }
  }
  return out;
}

function summarizeAccess(result: AccessResult): AccessSummary {
  const summary: AccessSummary = { ok: result.ok };
  if (!result.ok) {
    Object.assign(summary, { fault: result.fault, fatal: result.fatal, logged: result.logged, mechanism: result.mechanism, address: result.address, done: result.done });
    if (result.exit) summary.exit = { gpa: result.exit.gpa, size: result.exit.size, flags: result.exit.flags };
  } else if (result.data) {
    summary.bytes = distinctBytes(result.data, 4);
  }
  if (result.reached && result.reached.length > 0) {
    summary.reached = result.reached.slice(0, 8).map((r) => ({ address: r.address, pfn: r.pfn, owner: describeOwner(r.owner), ownerKind: r.owner.kind }));
  }
  return summary;
}

/**
 * Whether a DMA that completed went through an IOPTE the model reports as unsafe: per page, the area the IOVA page
 * falls in and the file page it maps, against the open 'unsafe-iopte' violations (area label, inode, file range).
 * A DMA to a shared page of an area whose other pages are private is not counted (kernel-contract §9.5 I2).
 */
export function throughUnsafeIopte(dma: { device: Pick<Device, 'ioas'>; iova: number; length: number }, open: readonly Violation[]): boolean {
  const unsafe = open.filter((v) => v.kind === 'unsafe-iopte' && v.offset !== undefined && v.length !== undefined);
  if (unsafe.length === 0 || !(dma.length > 0)) return false;
  const last = Math.floor((dma.iova + dma.length - 1) / PAGE_SIZE);
  for (let page = Math.floor(dma.iova / PAGE_SIZE); page <= last; page++) {
    const area = dma.device.ioas.areaAt(page);
    if (!area) continue;
    const at = (area.first + page - area.iova / PAGE_SIZE) * PAGE_SIZE;
    if (unsafe.some((v) => v.owner === area.label && v.ino === area.inode.ino && at >= v.offset! && at < v.offset! + v.length!)) return true;
  }
  return false;
}

const isAccessResult = (value: unknown): value is AccessResult =>
  typeof value === 'object' && value !== null && typeof (value as { ok?: unknown }).ok === 'boolean' && !('install' in value);

/** The compact outcome shown in tables. */
export function labelOf(result: StepResult): string {
  const stale = (a: AccessSummary | undefined) => {
    const kinds = [...new Set(a?.reached?.map((r) => (r.ownerKind === 'guest_memfd' ? 'guest page' : r.ownerKind === 'free' ? 'free frame' : r.ownerKind)) ?? [])];
    return kinds.length > 0 ? ` (stale: ${kinds.join(', ')})` : '';
  };
  switch (result.kind) {
    case 'ok':
      return `ok${stale(result.access)}`;
    case 'errno':
      return result.errorOffset === undefined ? result.errno : `${result.errno} @${formatSize(result.errorOffset)}`;
    case 'fault':
      return `${result.access.fault === 'memory-fault' ? 'MEMORY_FAULT exit' : result.access.fault}${result.access.fatal ? ' FATAL' : ''}${stale(result.access)}`;
    case 'host-down':
      return 'host down';
    case 'error':
      return 'ERROR';
  }
}

export function outcomeLabel(outcome: Outcome, lookup: (name: string) => bigint | undefined = () => undefined): string {
  const parts: string[] = [];
  if (outcome.ok) parts.push('ok');
  if (outcome.errno) parts.push(outcome.errorOffset ? `${outcome.errno} @${formatSize(safeEval(outcome.errorOffset, lookup))}` : outcome.errno);
  if (outcome.fault) parts.push(`${outcome.fault === 'memory-fault' ? 'MEMORY_FAULT exit' : outcome.fault}${outcome.fatal ? ' FATAL' : ''}`);
  if (outcome.hostDown) parts.push('host down');
  if (outcome.reaches) parts.push(`reaches ${outcome.reaches.join('/')}`);
  if (outcome.bytes) parts.push(`bytes 0x${safeEval(outcome.bytes, lookup).toString(16).padStart(2, '0')}`);
  for (const v of outcome.violations ?? []) parts.push(`+${v}`);
  return parts.join(' ') || 'anything';
}

const safeEval = (expr: Expr, lookup: (name: string) => bigint | undefined): bigint => {
  try {
    return evaluate(expr, lookup);
  } catch {
    return -1n;
  }
};

/** Whether a case's selectors match: 'tdx' matches 'tdx' and 'tdx:connect'; 'tdx:connect' only itself. */
export function caseMatches(c: ExpectCase, arch: string, contract: string): boolean {
  const family = arch.split(':')[0];
  if (c.arch && !c.arch.some((a) => a === arch || (!a.includes(':') && a === family))) return false;
  if (c.contract && !c.contract.includes(contract)) return false;
  return true;
}

/** Why the result does not meet the outcome, or undefined when it does. */
function mismatch(outcome: Outcome, result: StepResult, fresh: readonly ViolationSummary[], lookup: (name: string) => bigint | undefined): string | undefined {
  const got = labelOf(result);
  if (result.kind === 'error') return `the call threw: ${result.message}`;
  if (outcome.ok && result.kind !== 'ok') return `expected ok, got ${got}`;
  if (outcome.errno) {
    if (result.kind !== 'errno' || result.errno !== outcome.errno) return `expected ${outcome.errno}, got ${got}`;
    if (outcome.errorOffset) {
      const want = Number(evaluate(outcome.errorOffset, lookup));
      if (result.errorOffset !== want) return `expected errorOffset ${formatSize(want)}, got ${result.errorOffset === undefined ? 'none' : formatSize(result.errorOffset)}`;
    }
  }
  if (outcome.fault) {
    if (result.kind !== 'fault' || result.access.fault !== outcome.fault) return `expected ${outcome.fault}, got ${got}`;
    if (outcome.fatal !== undefined && result.access.fatal !== outcome.fatal) return `expected ${outcome.fatal ? 'a fatal' : 'a non-fatal'} ${outcome.fault}, got ${got}`;
  }
  if (outcome.hostDown && result.kind !== 'host-down') return `expected host down, got ${got}`;
  const access = result.kind === 'ok' ? result.access : result.kind === 'fault' ? result.access : undefined;
  if (outcome.reaches) {
    const kinds = new Set(access?.reached?.map((r) => r.ownerKind));
    const missing = outcome.reaches.filter((k) => !kinds.has(k));
    if (missing.length > 0) return `expected the access to reach ${missing.join(', ')}, it reached ${kinds.size > 0 ? [...kinds].join(', ') : 'nothing stale'}`;
  }
  if (outcome.bytes) {
    const want = Number(evaluate(outcome.bytes, lookup));
    if (!access?.bytes || access.bytes.length !== 1 || access.bytes[0] !== want) return `expected every byte read to be 0x${want.toString(16)}, read ${access?.bytes ? access.bytes.map((b) => `0x${b.toString(16)}`).join(', ') : 'nothing'}`;
  }
  const wanted = new Set(outcome.violations ?? []);
  const appeared = new Set(fresh.map((v) => v.kind));
  const unexpected = [...appeared].filter((k) => !wanted.has(k));
  const absent = [...wanted].filter((k) => !appeared.has(k));
  if (unexpected.length > 0) return `violation not expected: ${fresh.find((v) => unexpected.includes(v.kind))!.message}`;
  if (absent.length > 0) return `expected violation ${absent.join(', ')} did not appear`;
  return undefined;
}

const emptyEffects = (): StepEffects => ({ invalidations: [], zapped: { stage2: 0, hostPte: 0, iopte: 0 }, revoked: [], pipeline: {}, hardware: { enter: 0, leave: 0 } });

function addEvents(effects: StepEffects, events: readonly GmemEvent[]): void {
  for (const e of events) {
    switch (e.type) {
      case 'invalidate-begin':
        if (effects.invalidations.length < 64) effects.invalidations.push({ cause: e.cause, ino: e.ino, offset: e.offset, length: e.length });
        break;
      case 'zap':
        if (e.target === 'stage2') effects.zapped.stage2 += e.end - e.start;
        else if (e.target === 'host-pte') effects.zapped.hostPte += e.end - e.start;
        else effects.zapped.iopte += e.end - e.start;
        break;
      case 'revoke':
        if (effects.revoked.length < 64) effects.revoked.push({ area: `ioas:${e.ioas}/area:${e.area}`, iova: e.iova, length: e.length, cause: e.cause });
        break;
      case 'pipeline':
        effects.pipeline[e.step] = (effects.pipeline[e.step] ?? 0) + e.count;
        break;
      case 'hardware':
        effects.hardware[e.change === 'enter' ? 'enter' : 'leave'] += e.length / 4096;
        break;
      default:
        break;
    }
  }
}

function mergeEffects(into: StepEffects, from: StepEffects): void {
  for (const i of from.invalidations) if (into.invalidations.length < 64) into.invalidations.push(i);
  for (const r of from.revoked) if (into.revoked.length < 64) into.revoked.push(r);
  into.zapped.stage2 += from.zapped.stage2;
  into.zapped.hostPte += from.zapped.hostPte;
  into.zapped.iopte += from.zapped.iopte;
  for (const [k, v] of Object.entries(from.pipeline)) into.pipeline[k] = (into.pipeline[k] ?? 0) + v;
  into.hardware.enter += from.hardware.enter;
  into.hardware.leave += from.hardware.leave;
}

const violationKey = (v: Violation) => `${v.kind}|${v.owner ?? ''}|${v.ino ?? ''}|${v.offset ?? ''}|${v.length ?? ''}`;

/** The arguments as written, for display. */
function argsText(step: CallStep, raw: Record<string, unknown>): string {
  return Object.keys(CALLS[step.call]!.args)
    .filter((name) => raw[name] !== undefined)
    .map((name) => {
      const value = raw[name];
      if (Array.isArray(value)) return `${name}=${value.join('|')}`;
      // Bytes read as YAML integers (0x5a -> 90) are shown in hex again.
      if (CALLS[step.call]!.args[name]!.type === 'byte' && typeof value === 'number') return `${name}=0x${value.toString(16).padStart(2, '0')}`;
      return `${name}=${String(value)}`;
    })
    .join(' ');
}

/** Raw step objects by path, to show arguments as the author wrote them. */
function rawSteps(raw: unknown): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  const walk = (list: unknown, prefix: string) => {
    if (!Array.isArray(list)) return;
    list.forEach((s, i) => {
      const path = `${prefix}${i + 1}`;
      out.set(path, s as Record<string, unknown>);
      if (s && typeof s === 'object' && 'steps' in s) walk((s as { steps: unknown }).steps, `${path}.`);
    });
  };
  walk((raw as { steps?: unknown }).steps, '');
  return out;
}

export function runScenario(scenario: Scenario, backend: ArchBackend, contract: Design, options: RunOptions = {}): RunResult {
  const started = performance.now();
  const base = { scenario: { id: scenario.id, title: scenario.title, file: scenario.file }, arch: backend.id, archName: backend.name, contract };
  // A scenario describes what the VMM, guest and devices do; the design is the kernel's, so every scenario runs
  // under every design asked for (its `contracts:` only picks `run`'s default).
  // A scenario belongs to one world: in-place conversion (the three designs) or today's path (run/designs.ts).
  const skipped = skipReason(contract, scenario.host);
  if (skipped !== undefined) return { ...base, skipped, steps: [], ok: true, failures: 0, violationKinds: [], counters: {}, elapsedMs: 0 };
  const host: Host = createHost({ backend, ...hostOptionsFor(contract, scenario.host) });
  const raws = rawSteps(scenario.raw);
  const handles = new Map<string, unknown>();
  const counters = new Map<string, bigint>();
  const lets = new Map<string, bigint>();
  const lookup = (name: string): bigint | undefined => {
    const value = counters.get(name) ?? lets.get(name) ?? handles.get(name);
    if (typeof value === 'bigint') return value;
    // A mapping stands for its user address (e.g. a memslot's userspaceAddr).
    if (typeof value === 'object' && value !== null && typeof (value as { address?: unknown }).address === 'number') return BigInt((value as { address: number }).address);
    return undefined;
  };
  for (const [name, expr] of scenario.lets) lets.set(name, evaluate(expr, lookup));

  const log: GmemEvent[] = [];
  const unsubscribe = host.events.subscribe((event) => {
    if (event.type !== 'call' && event.type !== 'access') log.push(event);
  });
  let known = new Set<string>();
  const steps: StepRecord[] = [];
  const allKinds = new Set<string>();

  /** Run one call once: its result, effects, new violations, crash, verdict. */
  const once = (step: CallStep) => {
    const spec = CALLS[step.call]!;
    log.length = 0;
    const wasDown = host.crashed !== undefined;
    let result: StepResult;
    let dma: { device: Device; iova: number; length: number } | undefined;
    try {
      const receiver = spec.receiver === 'host' ? host : handles.get(step.on!);
      if (receiver === undefined) throw new MissingHandle(`'${step.on}' does not exist: the step that creates it failed`);
      const args: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(step.args)) {
        const argSpec = spec.args[name]!;
        if (argSpec.type === 'num' || argSpec.type === 'byte') args[name] = toArg(evaluate(value as Expr, lookup));
        else if (argSpec.type === 'flags') args[name] = toArg((value as Expr[]).reduce((acc, e) => acc | evaluate(e, lookup), 0n));
        else if (argSpec.type === 'handle') {
          args[name] = handles.get(value as string);
          if (args[name] === undefined) throw new MissingHandle(`'${String(value)}' does not exist: the step that creates it failed`);
        } else args[name] = value;
      }
      if (/^device\.dma/.test(step.call)) dma = { device: receiver as Device, iova: Number(args.iova), length: Number(args.length) };
      const value = spec.run(receiver, args);
      if (isAccessResult(value)) result = value.ok ? { kind: 'ok', access: summarizeAccess(value) } : { kind: 'fault', access: summarizeAccess(value) };
      else result = { kind: 'ok', ...(typeof value === 'number' ? { value: `0x${value.toString(16)}` } : {}) };
      if (step.as !== undefined && !(result.kind === 'fault')) handles.set(step.as, typeof value === 'number' ? BigInt(value) : value);
      if (step.as !== undefined && result.kind === 'fault') handles.delete(step.as);
    } catch (error) {
      if (step.as !== undefined) handles.delete(step.as);
      if (GmemError.isInstance(error)) result = { kind: 'errno', errno: error.errno, ...(error.errorOffset !== undefined ? { errorOffset: error.errorOffset } : {}), message: error.message };
      else if (HostCrashedError.isInstance(error)) result = { kind: 'host-down', message: error.message };
      else result = { kind: 'error', message: error instanceof Error ? error.message : String(error) };
    }
    const effects = emptyEffects();
    addEvents(effects, log);
    const current = host.checkInvariants();
    const fresh: ViolationSummary[] = current
      .filter((v) => !known.has(violationKey(v)))
      .map((v) => ({ kind: v.kind, message: v.message, ...(v.owner ? { owner: v.owner } : {}), ...(v.ino !== undefined ? { ino: v.ino } : {}), ...(v.offset !== undefined ? { offset: v.offset } : {}), ...(v.length !== undefined ? { length: v.length } : {}) }));
    known = new Set(current.map(violationKey));
    for (const v of fresh) allKinds.add(v.kind);
    const crash = !wasDown && host.crashed ? host.crashed : undefined;
    const outcome = stepOutcome({ result, call: step.call, ...(crash ? { crash } : {}) }, dma !== undefined && result.kind === 'ok' && throughUnsafeIopte(dma, current));
    const chosen = step.expect?.find((c) => caseMatches(c, backend.id, contract));
    let failure: string | undefined;
    if (chosen) failure = mismatch(chosen.outcome, result, fresh, lookup);
    // No expectation for this architecture and design: the step is reported as what happened (its violations
    // included), never as a failure; only a model error (an exception that is not the kernel's answer) fails.
    else if (result.kind === 'error') failure = `the call threw: ${result.message}`;
    return { result, effects, fresh, crash, chosen, failure, outcome };
  };

  const record = (step: CallStep): StepRecord => ({
    path: step.path,
    call: step.call,
    kernel: CALLS[step.call]!.kernel,
    ...(step.on !== undefined ? { on: step.on } : {}),
    ...(step.as !== undefined ? { as: step.as } : {}),
    ...(step.note !== undefined ? { note: step.note } : {}),
    args: argsText(step, raws.get(step.path) ?? {}),
    result: { kind: 'ok' },
    label: '',
    effects: emptyEffects(),
    violations: [],
    verdict: 'none',
  });

  const apply = (rec: StepRecord, step: CallStep, r: ReturnType<typeof once>, iteration?: number) => {
    rec.result = r.result;
    rec.label = labelOf(r.result);
    if (rec.outcome === undefined || worse(r.outcome, rec.outcome)) rec.outcome = r.outcome;
    mergeEffects(rec.effects, r.effects);
    for (const v of r.fresh) if (rec.violations.length < 32) rec.violations.push(v);
    if (r.crash) rec.crash = r.crash;
    if (r.chosen) rec.expected = outcomeLabel(r.chosen.outcome, lookup);
    if (r.failure !== undefined) {
      if (rec.verdict !== 'fail') rec.failure = iteration === undefined ? r.failure : `iteration ${iteration}: ${r.failure}`;
      rec.verdict = 'fail';
    } else if (rec.verdict === 'none' && r.chosen) rec.verdict = 'pass';
    if (rec.outcomes) rec.outcomes[rec.label] = (rec.outcomes[rec.label] ?? 0) + 1;
  };

  const runRepeat = (list: readonly Step[], records: Map<string, StepRecord>, iteration: number) => {
    for (const step of list) {
      if (step.kind === 'call') {
        let rec = records.get(step.path);
        if (!rec) {
          rec = { ...record(step), times: 0, outcomes: {} };
          records.set(step.path, rec);
        }
        rec.times! += 1;
        apply(rec, step, once(step), iteration);
      } else {
        iterate(counters, step.counter, Number(evaluate(step.times, lookup)), (i) => runRepeat(step.steps, records, i));
      }
    }
  };

  for (const step of scenario.steps) {
    if (step.kind === 'call') {
      const rec = record(step);
      apply(rec, step, once(step));
      steps.push(rec);
    } else {
      const records = new Map<string, StepRecord>();
      iterate(counters, step.counter, Number(evaluate(step.times, lookup)), (i) => runRepeat(step.steps, records, i));
      const ordered = [...records.values()].sort((a, b) => comparePaths(a.path, b.path));
      if (step.note && ordered[0]) ordered[0].note = ordered[0].note ? `${step.note}; ${ordered[0].note}` : step.note;
      steps.push(...ordered);
    }
    if (options.pageMaps !== false && steps.length > 0) steps[steps.length - 1]!.pages = host.pageMaps();
  }
  unsubscribe();
  const failures = steps.filter((s) => s.verdict === 'fail').length;
  return {
    ...base,
    steps,
    ok: failures === 0,
    failures,
    violationKinds: [...allKinds],
    ...(host.crashed ? { crashed: host.crashed } : {}),
    counters: host.pipelineCounters(),
    ...(Object.keys(host.pipelineBounds()).length > 0 ? { bounds: host.pipelineBounds() } : {}),
    elapsedMs: Math.round(performance.now() - started),
  };
}

class MissingHandle extends Error {}

function comparePaths(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}
