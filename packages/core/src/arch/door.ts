/**
 * The one door from the core to a backend: every call of an ArchBackend hook is made here, by one function per
 * hook, and its answer is checked before the caller sees it (the spec third parties implement is backend.ts;
 * this is the core's own dispatch, as `__kvm_gmem_prepare_folio` is the one caller of `kvm_arch_gmem_prepare`).
 *
 * Two kinds of hook, by what the call that asks can still do (HOOKS below says which is which):
 * - 'refuse': the answer decides whether the call goes on or what it returns, and it is asked before the call
 *   changes anything. A hook that throws, or answers outside its declared type, fails the call with EIO naming
 *   the backend and the hook; nothing changed (in the kernel a callback breaking its contract is a WARN and
 *   -EIO, not a user error).
 * - 'report': the answer only feeds counters or page contents of an operation that must complete (truncation,
 *   release, a guest fault already past its checks). A hook that throws or answers wrongly is reported
 *   (Host.observerErrors(), event 'observer-error', as a consumer's exception is) and read as its documented
 *   default; the operation goes on.
 *
 * Cheap by construction: a hook is called directly inside one try, its answer checked inline; a message, a
 * closure or an error is built only when the answer is wrong. An answer object (an access verdict) is read once,
 * inside that try, into a fresh object of its declared fields, which is checked and handed on (an allowing verdict
 * is a frozen constant). Conversions ask conversionPolicy once per area.
 */
import type { AccessVerdict, FaultKind } from '../access.js';
import { PAGE_SIZE } from '../constants.js';
import { GmemError, fail } from '../errors.js';
import type { Kernel } from '../kernel.js';
import type {
  ArchBackend,
  BackendHook,
  ConsumerResponse,
  ConversionContext,
  ConversionTarget,
  HypervisorConversionContext,
  PageAccessContext,
  PageAttribute,
  PipelineStep,
  PrivateEntryContext,
  PrivateEntryRefusalContext,
  RemovalContext,
} from './backend.js';

export type { BackendHook } from './backend.js';

/**
 * Every hook, with its kind. Typed as a record of all hooks, so that a hook added to backend.ts without a
 * function here fails the typecheck (and the hostile-backend test, which has one case per entry).
 */
export const HOOKS: { readonly [K in BackendHook]: 'refuse' | 'report' } = Object.freeze({
  conversionPolicy: 'refuse',
  hypervisorRefusal: 'refuse',
  deviceAccess: 'refuse',
  hostKernelAccess: 'refuse',
  deviceMayReach: 'refuse',
  contentsOnConversion: 'refuse',
  privateEntryRefusal: 'refuse',
  contentsOnRemoval: 'report',
  removalPipeline: 'report',
  contentsOnPrivateEntry: 'report',
  privateEntry: 'report',
});

const RESPONSES: readonly ConsumerResponse[] = ['revoke', 'refuse', 'tolerate', 'split'];
/** Every FaultKind (access.ts), tied to the type: a kind added there and not here, or a stray one here, fails the typecheck. */
const FAULT_KINDS = {
  sigbus: true,
  sigsegv: true,
  'iommu-fault': true,
  contained: true,
  poison: true,
  'machine-check': true,
  efault: true,
  einval: true,
  mmio: true,
  retry: true,
  'memory-fault': true,
} as const satisfies Record<FaultKind, true>;
const FAULTS: ReadonlySet<unknown> = new Set(Object.keys(FAULT_KINDS));

/** Text for a message about a hostile value, which may throw from a getter, toString or a Proxy trap: never throws. */
function printable(value: unknown, print: (value: unknown) => string): string {
  try {
    return print(value);
  } catch {
    return typeof value === 'object' ? 'an object that throws when read' : `a ${typeof value} that throws when read`;
  }
}

/** An answer, for a message. */
export function describeAnswer(value: unknown): string {
  return printable(value, (v) => {
    if (typeof v === 'string') return `'${v}'`;
    if (typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function') return 'a Promise (hooks are synchronous)';
    try {
      return JSON.stringify(v) ?? String(v);
    } catch {
      return String(v);
    }
  });
}

const messageOf = (error: unknown): string => printable(error, (e) => (e instanceof Error ? e.message : String(e)));

/** Whether a hook threw a GmemError (a thrown Proxy whose traps throw is not one). */
function isGmemError(error: unknown): boolean {
  try {
    return GmemError.isInstance(error);
  } catch {
    return false;
  }
}

/** A 'refuse' hook threw: EIO naming the backend and the hook (a GmemError it threw passes as it is). */
function threw(op: string, backend: ArchBackend, hook: BackendHook, error: unknown): never {
  if (isGmemError(error)) throw error;
  const who = `backend ${backend.id}`;
  return fail('EIO', op, `${who}: ${hook} threw: ${messageOf(error)}`, { hint: `fix ${who}'s ${hook}` });
}

/** A 'refuse' hook answered outside its type: EIO naming the backend, the hook and what was expected. */
function wrong(op: string, backend: ArchBackend, hook: BackendHook, answer: unknown, expected: string): never {
  const who = `backend ${backend.id}`;
  return fail('EIO', op, `${who}: ${hook} returned ${describeAnswer(answer)}${expected}`, { hint: `fix ${who}'s ${hook}` });
}

/** A 'report' hook threw or answered wrongly: recorded; the caller goes on with the default. */
function report(kernel: Kernel, hook: BackendHook, error: unknown): void {
  kernel.reportObserverError({ source: `backend ${kernel.backend.id}`, hook, error });
}

/** conversionPolicy: what the registry does to an area over converting pages. */
export function conversionPolicy(kernel: Kernel, op: string, context: ConversionContext): ConsumerResponse {
  const backend = kernel.backend;
  let answer: unknown;
  try {
    answer = backend.conversionPolicy(context);
  } catch (error) {
    return threw(op, backend, 'conversionPolicy', error);
  }
  if (RESPONSES.includes(answer as ConsumerResponse)) return answer as ConsumerResponse;
  return wrong(op, backend, 'conversionPolicy', answer, `, expected one of ${RESPONSES.join(', ')}`);
}

/** hypervisorRefusal: the lowest byte offset the hypervisor refuses to convert, or undefined (absent: none). */
export function hypervisorRefusal(kernel: Kernel, op: string, context: HypervisorConversionContext): number | undefined {
  const backend = kernel.backend;
  if (!backend.hypervisorRefusal) return undefined;
  let answer: unknown;
  try {
    answer = backend.hypervisorRefusal(context);
  } catch (error) {
    return threw(op, backend, 'hypervisorRefusal', error);
  }
  if (answer === undefined) return undefined;
  const low = context.offset;
  const high = context.offset + context.length;
  if (typeof answer !== 'number' || !Number.isSafeInteger(answer) || answer % PAGE_SIZE !== 0 || answer < low || answer >= high) {
    return wrong(op, backend, 'hypervisorRefusal', answer, `, expected undefined or a page-aligned byte offset in [${low}, ${high})`);
  }
  return answer;
}

const ALLOW: AccessVerdict = Object.freeze({ allow: true });
const ALLOW_POISONS: AccessVerdict = Object.freeze({ allow: true, poisons: true });
const ALLOW_CLEAN: AccessVerdict = Object.freeze({ allow: true, poisons: false });

/**
 * The verdict an answer holds, as a fresh object of AccessVerdict's fields, or why it is none. Each field is read
 * once, here: the caller checks and hands on this copy, never the backend's object (whose getters could throw, or
 * answer one thing to the check and another afterwards). Called inside the hook's try.
 */
function ownVerdict(answer: unknown): AccessVerdict | string {
  if (typeof answer !== 'object' || answer === null) return 'not an object';
  const { allow, fault, fatal, logged, mechanism, lands, poisons } = answer as Record<string, unknown>;
  // `poisons` means the same whether the access is allowed or refused (page-walk.ts poisons the frame either way).
  if (poisons !== undefined && typeof poisons !== 'boolean') return 'poisons is not a boolean';
  if (allow === true) return poisons === undefined ? ALLOW : poisons ? ALLOW_POISONS : ALLOW_CLEAN;
  if (allow !== false) return 'allow is not a boolean';
  if (!FAULTS.has(fault)) return 'fault is not a FaultKind';
  if (typeof fatal !== 'boolean' || typeof logged !== 'boolean') return 'fatal and logged must be booleans';
  if (typeof mechanism !== 'string') return 'mechanism is not a string';
  if (lands !== undefined && typeof lands !== 'boolean') return 'lands is not a boolean';
  const verdict: Extract<AccessVerdict, { allow: false }> = { allow: false, fault: fault as FaultKind, fatal, logged, mechanism };
  if (lands !== undefined) verdict.lands = lands;
  if (poisons !== undefined) verdict.poisons = poisons;
  return verdict;
}

/** deviceAccess or hostKernelAccess: what touching a private frame does. */
export function accessVerdict(kernel: Kernel, op: string, hook: 'deviceAccess' | 'hostKernelAccess', context: PageAccessContext): AccessVerdict {
  const backend = kernel.backend;
  let answer: unknown;
  let verdict: AccessVerdict | string;
  try {
    answer = hook === 'deviceAccess' ? backend.deviceAccess(context) : backend.hostKernelAccess(context);
    verdict = ownVerdict(answer);
  } catch (error) {
    return threw(op, backend, hook, error);
  }
  return typeof verdict === 'string' ? wrong(op, backend, hook, answer, `: ${verdict}`) : verdict;
}

/** deviceMayReach: whether any device may reach a page in this state (the 'unsafe-iopte' invariant). */
export function deviceMayReach(kernel: Kernel, op: string, context: { attribute: PageAttribute; vmType: 'default' | 'coco' }): boolean {
  const backend = kernel.backend;
  let answer: unknown;
  try {
    answer = backend.deviceMayReach(context);
  } catch (error) {
    return threw(op, backend, 'deviceMayReach', error);
  }
  return typeof answer === 'boolean' ? answer : wrong(op, backend, 'deviceMayReach', answer, ', expected a boolean');
}

/** contentsOnConversion: whether pages leaving the hardware-private state are cleared (asked before step 12). */
export function contentsOnConversion(kernel: Kernel, op: string, context: { to: ConversionTarget }): 'keep' | 'zero' {
  const backend = kernel.backend;
  let answer: unknown;
  try {
    answer = backend.contentsOnConversion(context);
  } catch (error) {
    return threw(op, backend, 'contentsOnConversion', error);
  }
  return answer === 'keep' || answer === 'zero' ? answer : wrong(op, backend, 'contentsOnConversion', answer, ", expected 'keep' or 'zero'");
}

/**
 * privateEntryRefusal: undefined (the page enters) or the fault KVM_RUN reports (absent: never refuses). A
 * verdict that allows is wrong here.
 */
export function privateEntryRefusal(kernel: Kernel, op: string, context: PrivateEntryRefusalContext): Extract<AccessVerdict, { allow: false }> | undefined {
  const backend = kernel.backend;
  if (!backend.privateEntryRefusal) return undefined;
  let answer: unknown;
  let verdict: AccessVerdict | string | undefined;
  try {
    answer = backend.privateEntryRefusal(context);
    verdict = answer === undefined ? undefined : ownVerdict(answer);
  } catch (error) {
    return threw(op, backend, 'privateEntryRefusal', error);
  }
  if (verdict === undefined) return undefined;
  if (typeof verdict === 'string') return wrong(op, backend, 'privateEntryRefusal', answer, `: ${verdict}`);
  if (verdict.allow) return wrong(op, backend, 'privateEntryRefusal', answer, ': return undefined to let the page enter, or a fault');
  return verdict;
}

/** Whether pipeline steps are an array of { step: non-empty string, count: non-negative integer, bound?: 'upper' }. */
function isPipeline(answer: unknown): answer is readonly PipelineStep[] {
  return (
    Array.isArray(answer) &&
    answer.every((s) => typeof s === 'object' && s !== null && typeof s.step === 'string' && s.step !== '' && Number.isSafeInteger(s.count) && s.count >= 0 && (s.bound === undefined || s.bound === 'upper'))
  );
}

const NO_STEPS: readonly PipelineStep[] = Object.freeze([]);

function pipeline(kernel: Kernel, hook: 'removalPipeline' | 'privateEntry', answer: unknown): readonly PipelineStep[] {
  if (isPipeline(answer)) return answer;
  report(kernel, hook, new Error(`returned ${describeAnswer(answer)}, expected an array of { step, count, bound?: 'upper' }`));
  return NO_STEPS;
}

/** removalPipeline: the steps hardware-private pages take when they leave that state (absent or broken: none). */
export function removalPipeline(kernel: Kernel, context: RemovalContext): readonly PipelineStep[] {
  const backend = kernel.backend;
  if (!backend.removalPipeline) return NO_STEPS;
  try {
    // Checked inside the try: a getter of the answer that throws is reported like a throw of the hook.
    return pipeline(kernel, 'removalPipeline', backend.removalPipeline(context));
  } catch (error) {
    report(kernel, 'removalPipeline', error);
    return NO_STEPS;
  }
}

/** privateEntry: the steps a page takes when the guest faults it in as private (absent or broken: none). */
export function privateEntry(kernel: Kernel, context: PrivateEntryContext): readonly PipelineStep[] {
  const backend = kernel.backend;
  if (!backend.privateEntry) return NO_STEPS;
  try {
    // Checked inside the try: a getter of the answer that throws is reported like a throw of the hook.
    return pipeline(kernel, 'privateEntry', backend.privateEntry(context));
  } catch (error) {
    report(kernel, 'privateEntry', error);
    return NO_STEPS;
  }
}

function contents(kernel: Kernel, hook: 'contentsOnRemoval' | 'contentsOnPrivateEntry', answer: unknown): 'keep' | 'zero' {
  if (answer === undefined || answer === 'keep') return 'keep';
  if (answer === 'zero') return 'zero';
  report(kernel, hook, new Error(`returned ${describeAnswer(answer)}, expected 'keep' or 'zero'`));
  return 'keep';
}

/** contentsOnRemoval: whether a freed hardware-private page is cleared (absent or broken: 'keep'). */
export function contentsOnRemoval(kernel: Kernel, context: { cause: 'truncate' | 'release' }): 'keep' | 'zero' {
  const backend = kernel.backend;
  if (!backend.contentsOnRemoval) return 'keep';
  let answer: unknown;
  try {
    answer = backend.contentsOnRemoval(context);
  } catch (error) {
    report(kernel, 'contentsOnRemoval', error);
    return 'keep';
  }
  return contents(kernel, 'contentsOnRemoval', answer);
}

/** contentsOnPrivateEntry: what the guest's first private access finds (absent or broken: 'keep'). */
export function contentsOnPrivateEntry(kernel: Kernel): 'keep' | 'zero' {
  const backend = kernel.backend;
  if (!backend.contentsOnPrivateEntry) return 'keep';
  let answer: unknown;
  try {
    answer = backend.contentsOnPrivateEntry();
  } catch (error) {
    report(kernel, 'contentsOnPrivateEntry', error);
    return 'keep';
  }
  return contents(kernel, 'contentsOnPrivateEntry', answer);
}
