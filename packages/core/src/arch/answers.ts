/**
 * What crosses the public surface inward — a backend's or a registry consumer's answers — is checked where it is
 * asked, never trusted. An answer that decides whether a call may go on (a conversion policy, a consumer's
 * response, a hypervisor refusal, an access verdict) fails the call with EIO naming the backend or consumer and
 * the hook, before anything changed: in the kernel a callback breaking its contract is a WARN and -EIO, not a
 * user error. An answer that only feeds counters (pipeline steps) cannot stop an operation that must complete
 * (truncation, release): it is reported (Host.observerErrors()) and ignored.
 */
import { PAGE_SIZE } from '../constants.js';
import type { AccessVerdict } from '../access.js';
import { GmemError, fail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import type { ConversionRequest, MappingConsumer } from '../registry/registry.js';
import type { ArchBackend, ConsumerResponse, ConversionContext, PipelineStep } from './backend.js';

const RESPONSES: readonly ConsumerResponse[] = ['revoke', 'refuse', 'tolerate', 'split'];
const FAULTS = new Set(['sigbus', 'sigsegv', 'iommu-fault', 'contained', 'poison', 'machine-check', 'efault', 'einval', 'mmio', 'retry', 'memory-fault']);

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function') return 'a Promise (hooks are synchronous)';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Call `hook` and return its answer; an exception other than a GmemError becomes EIO naming `who`. */
function ask<T>(op: string, who: string, hook: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    if (GmemError.isInstance(error)) throw error;
    return fail('EIO', op, `${who}: ${hook} threw: ${error instanceof Error ? error.message : String(error)}`, { hint: `fix ${who}'s ${hook}` });
  }
}

function checkResponse(op: string, who: string, hook: string, answer: unknown): ConsumerResponse {
  if (!RESPONSES.includes(answer as ConsumerResponse)) {
    fail('EIO', op, `${who}: ${hook} returned ${describe(answer)}, expected one of ${RESPONSES.join(', ')}`, { hint: `fix ${who}'s ${hook}` });
  }
  return answer as ConsumerResponse;
}

/** A backend's conversionPolicy answer. */
export function checkPolicy(op: string, backend: ArchBackend, call: () => unknown): ConsumerResponse {
  const who = `backend ${backend.id}`;
  return checkResponse(op, who, 'conversionPolicy', ask(op, who, 'conversionPolicy', call));
}

/**
 * backend.conversionPolicy(context), checked as checkPolicy checks it. Asked once per area a conversion
 * touches, so it builds no closure or message unless the answer is wrong.
 */
export function askConversionPolicy(op: string, backend: ArchBackend, context: ConversionContext): ConsumerResponse {
  let answer: unknown;
  try {
    answer = backend.conversionPolicy(context);
  } catch (error) {
    return checkPolicy(op, backend, () => {
      throw error;
    });
  }
  return RESPONSES.includes(answer as ConsumerResponse) ? (answer as ConsumerResponse) : checkPolicy(op, backend, () => answer);
}

/** A registry consumer's conversionResponse answer. */
export function checkConsumerResponse(op: string, consumer: MappingConsumer, call: () => unknown): ConsumerResponse {
  const who = `consumer ${consumer.label}`;
  return checkResponse(op, who, 'conversionResponse', ask(op, who, 'conversionResponse', call));
}

/** consumer.conversionResponse(request), checked as checkConsumerResponse checks it, without a closure per ask. */
export function askConsumer(op: string, consumer: MappingConsumer, request: ConversionRequest): ConsumerResponse {
  let answer: unknown;
  try {
    answer = consumer.conversionResponse!(request);
  } catch (error) {
    return checkConsumerResponse(op, consumer, () => {
      throw error;
    });
  }
  return RESPONSES.includes(answer as ConsumerResponse) ? (answer as ConsumerResponse) : checkConsumerResponse(op, consumer, () => answer);
}

/** A byte offset answer (hypervisorRefusal): undefined, or a page-aligned integer inside [low, high). */
export function checkOffsetAnswer(op: string, backend: ArchBackend, hook: string, call: () => unknown, low: number, high: number): number | undefined {
  const who = `backend ${backend.id}`;
  const answer = ask(op, who, hook, call);
  if (answer === undefined) return undefined;
  if (typeof answer !== 'number' || !Number.isSafeInteger(answer) || answer % PAGE_SIZE !== 0 || answer < low || answer >= high) {
    fail('EIO', op, `${who}: ${hook} returned ${describe(answer)}, expected undefined or a page-aligned byte offset in [${low}, ${high})`, { hint: `fix ${who}'s ${hook}` });
  }
  return answer;
}

/** An access verdict (deviceAccess, hostKernelAccess). */
export function checkVerdict(op: string, backend: ArchBackend, hook: string, call: () => unknown): AccessVerdict {
  const who = `backend ${backend.id}`;
  const answer = ask(op, who, hook, call) as Record<string, unknown> | null;
  const bad = (why: string): never => fail('EIO', op, `${who}: ${hook} returned ${describe(answer)}: ${why}`, { hint: `fix ${who}'s ${hook}` });
  if (typeof answer !== 'object' || answer === null) return bad('not an object');
  if (answer.allow === true) {
    if (answer.poisons !== undefined && typeof answer.poisons !== 'boolean') bad('poisons is not a boolean');
    return answer as AccessVerdict;
  }
  if (answer.allow !== false) return bad('allow is not a boolean');
  if (!FAULTS.has(answer.fault as string)) bad('fault is not a FaultKind');
  if (typeof answer.fatal !== 'boolean' || typeof answer.logged !== 'boolean') bad('fatal and logged must be booleans');
  if (typeof answer.mechanism !== 'string') bad('mechanism is not a string');
  if (answer.lands !== undefined && typeof answer.lands !== 'boolean') bad('lands is not a boolean');
  return answer as AccessVerdict;
}

/**
 * Pipeline steps (removalPipeline, privateEntry): an array of { step: non-empty string, count: non-negative
 * integer }. A broken answer is reported and counts nothing; the operation goes on.
 */
export function checkPipeline(kernel: Kernel, hook: string, answer: unknown): readonly PipelineStep[] {
  const ok =
    Array.isArray(answer) &&
    answer.every((s) => typeof s === 'object' && s !== null && typeof s.step === 'string' && s.step !== '' && Number.isSafeInteger(s.count) && s.count >= 0 && (s.bound === undefined || s.bound === 'upper'));
  if (ok) return answer as PipelineStep[];
  kernel.reportObserverError({ source: `backend ${kernel.backend.id}`, hook, error: new Error(`returned ${describe(answer)}, expected an array of { step, count, bound?: 'upper' }`) });
  return [];
}

/**
 * A content answer (contentsOnRemoval, contentsOnPrivateEntry): 'keep' or 'zero'. It cannot stop the operation
 * it is asked in (a free, a guest fault already past its checks), so a broken answer is reported and read as
 * 'keep'.
 */
export function checkContents(kernel: Kernel, hook: string, answer: unknown): 'keep' | 'zero' {
  if (answer === undefined || answer === 'keep' || answer === 'zero') return answer ?? 'keep';
  kernel.reportObserverError({ source: `backend ${kernel.backend.id}`, hook, error: new Error(`returned ${describe(answer)}, expected 'keep' or 'zero'`) });
  return 'keep';
}

/**
 * A privateEntryRefusal answer: undefined (the page enters) or a fault verdict, checked as checkVerdict checks
 * one; a verdict that allows is wrong here. It decides whether the guest's fault goes on, so a broken answer
 * fails the access with EIO before anything changed.
 */
export function checkEntryRefusal(op: string, backend: ArchBackend, call: () => unknown): Extract<AccessVerdict, { allow: false }> | undefined {
  const who = `backend ${backend.id}`;
  let answer: unknown;
  const verdict = checkVerdict(op, backend, 'privateEntryRefusal', () => {
    answer = call();
    return answer === undefined ? { allow: true } : answer;
  });
  if (answer === undefined) return undefined;
  if (verdict.allow) fail('EIO', op, `${who}: privateEntryRefusal returned ${describe(answer)}: return undefined to let the page enter, or a fault`, { hint: `fix ${who}'s privateEntryRefusal` });
  return verdict;
}
