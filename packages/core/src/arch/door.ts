/**
 * The one door from the core to a backend: every call of an ArchBackend hook is made here, by one function per
 * hook, and its answer is checked before the caller sees it (the spec third parties implement is backend.ts;
 * this is the core's own dispatch, as `__kvm_gmem_prepare_folio` is the one caller of `kvm_arch_gmem_prepare`).
 *
 * What a broken hook (one that throws, or answers outside its declared type) does depends on the call that asks
 * it, not on the hook: HOOKS below says it per hook, or per call site where a hook is asked from calls of both
 * kinds.
 * - 'refuse': the call asks before it changes anything, and can still fail. A broken hook fails that call with
 *   EIO naming the backend and the hook, and the model is exactly as it was. The kernel has the same habit where
 *   an arch callback breaks its contract: `kvm_gmem_get_pfn` returns the error of `kvm_arch_gmem_prepare` (so
 *   KVM_RUN does), and a TDX SEAMCALL that fails is KVM_BUG_ON and -EIO (torvalds/linux virt/kvm/guest_memfd.c
 *   `__kvm_gmem_prepare_folio`, commit 01f492e1817e; arch/x86/kvm/vmx/tdx.c `tdx_mem_page_aug`,
 *   `tdx_handle_ept_violation`, commit 3829d81b6958). Truncation, conversions and the guest's private fault all
 *   ask here: their removal and entry hooks are asked in the validate phase and the checked answer is passed on.
 *   Truncation is the one such refusal without a kernel counterpart (`kvm_gmem_punch_hole` returns 0 and the
 *   free's `kvm_arch_gmem_invalidate` returns void): a punch fails only because the model will not guess what an
 *   unreadable backend meant, and it fails before invalidate_begin.
 * - 'report': the call cannot fail any more. The last close of a guest_memfd releases it whatever happens
 *   (fs/file_table.c `__fput` ignores what `->release` returns, and `kvm_gmem_release` returns 0), so its
 *   hardware-private pages leave that state with no one to tell an errno to. A broken hook there is reported
 *   (Host.observerErrors(), event 'observer-error', as a consumer's exception is) and read as its documented
 *   default; the release goes on. The same would hold for a free at the last unpin and for VM destruction, but no
 *   hook is asked there (an orphaned frame is a plain free; the file pins the VM, not the other way round).
 *
 * Cheap by construction: a hook is called directly inside one try, its answer checked inline; a message, a
 * closure or an error is built only when the answer is wrong. An answer object (an access verdict, an array of
 * pipeline steps) is read once, inside that try, into a fresh object of its declared fields, which is checked and
 * handed on (an allowing verdict is a frozen constant). Conversions ask conversionPolicy once per area, or, for a
 * backend that declares what the answer depends on (`conversionPolicyInputs`), once per distinct value of those
 * inputs among the areas of one conversion, the others getting the answer already checked (policy-memo.ts); an
 * access asks about every page it will reach before it changes any (page-walk.ts), the guest's private fault
 * included.
 */
import type { AccessVerdict, FaultKind } from '../access.js';
import { PAGE_SIZE } from '../constants.js';
import { GmemError, fail } from '../errors.js';
import { messageOf, printable } from '../util/message.js';
import type { Kernel } from '../kernel.js';
import type {
  ArchBackend,
  BackendHook,
  ConsumerResponse,
  ConversionContext,
  ConversionTarget,
  DmaAreaInfo,
  HypervisorConversionContext,
  PageAccessContext,
  PageAttribute,
  PipelineStep,
  PrivateEntryContext,
  PrivateEntryRefusalContext,
  RemovalContext,
} from './backend.js';

export type { BackendHook } from './backend.js';

/** What a broken answer does where a hook is asked (see the header). */
export type HookKind = 'refuse' | 'report';

/**
 * Every hook, with its kind: one kind where every call that asks the hook can refuse, or one per call site (named
 * by the call, as in its errors) where some cannot. Checked against the record of all hooks, so that a hook added
 * to backend.ts without an entry here fails the typecheck (and the hostile-backend test, which has cases per
 * entry and per call site).
 */
export const HOOKS = Object.freeze({
  conversionPolicy: 'refuse',
  hypervisorRefusal: 'refuse',
  deviceAccess: 'refuse',
  hostKernelAccess: 'refuse',
  deviceMayReach: 'refuse',
  contentsOnConversion: 'refuse',
  privateEntryRefusal: 'refuse',
  // The guest's private fault asks these with privateEntryRefusal, before the page enters (GmemInode.privateEntryPlan).
  privateEntry: 'refuse',
  contentsOnPrivateEntry: 'refuse',
  // Truncation (fallocate PUNCH_HOLE, also reached by MADV_REMOVE) and both conversions ask before their point of
  // no return; the release of the last file cannot refuse.
  // A memslot's deletion (KVM_SET_USER_MEMORY_REGION2 of size 0) cannot fail once it zaps: in the kernel
  // kvm_arch_flush_shadow_memslot returns void, and a TDX removal that fails there is KVM_BUG_ON, not an errno.
  contentsOnRemoval: Object.freeze({ fallocate: 'refuse', release: 'report', KVM_SET_USER_MEMORY_REGION2: 'report' }),
  removalPipeline: Object.freeze({
    fallocate: 'refuse',
    KVM_SET_MEMORY_ATTRIBUTES2: 'refuse',
    KVM_SET_MEMORY_ATTRIBUTES: 'refuse',
    release: 'report',
    KVM_SET_USER_MEMORY_REGION2: 'report',
  }),
} as const) satisfies { readonly [K in BackendHook]: HookKind | { readonly [site: string]: HookKind } };

/** The calls that ask removalPipeline. */
export type RemovalSite = keyof typeof HOOKS.removalPipeline;
/** The calls that ask contentsOnRemoval. */
export type RemovalContentsSite = keyof typeof HOOKS.contentsOnRemoval;

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

/** An answer, for a message. */
export function describeAnswer(value: unknown): string {
  return printable(value, (v) => {
    if (typeof v === 'string') return `'${v}'`;
    // A String object is not a string: say so, or the message would read as if 'revoke' had been refused.
    if (v instanceof String) return `a String object (${JSON.stringify(String(v))})`;
    // An array is described by its length past a few entries (a sparse array of 2^32-1 holes must not be printed).
    if (Array.isArray(v) && v.length > 8) return `an array of ${v.length} entries`;
    if (typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function')
      return 'a Promise (hooks are synchronous)';
    return bounded(v, 0);
  });
}

/**
 * A value for a message, JSON-like but bounded: strings cut at 60 characters, at most 8 entries or fields, two
 * levels (a sparse array of 2^24 holes nested in an answer must not be printed whole).
 */
function bounded(v: unknown, depth: number): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}...` : v);
  if (typeof v === 'function') return 'a function';
  if (typeof v !== 'object' || v === null) return String(v);
  if (Array.isArray(v)) {
    if (v.length > 8 || depth >= 2) return `an array of ${v.length} entries`;
    return `[${Array.from(v, (entry) => bounded(entry, depth + 1)).join(',')}]`;
  }
  if (depth >= 2) return 'an object';
  const keys = Object.keys(v);
  const shown = keys
    .slice(0, 8)
    .map((key) => `${JSON.stringify(key)}:${bounded((v as Record<string, unknown>)[key], depth + 1)}`);
  return `{${shown.join(',')}${keys.length > 8 ? ',...' : ''}}`;
}

/** Whether a hook threw a GmemError (a thrown Proxy whose traps throw is not one). */
function isGmemError(error: unknown): boolean {
  try {
    return GmemError.isInstance(error);
  } catch {
    return false;
  }
}

/** A 'refuse' hook threw: EIO naming the backend and the hook (a GmemError it threw passes on: own.ts checked and copied it). */
function threw(op: string, backend: ArchBackend, hook: BackendHook, error: unknown): never {
  if (isGmemError(error)) throw error;
  const who = `backend ${backend.id}`;
  return fail('EIO', op, `${who}: ${hook} threw: ${messageOf(error)}`, { hint: `fix ${who}'s ${hook}` });
}

/** A 'refuse' hook answered outside its type: EIO naming the backend, the hook and what was expected. */
function wrong(op: string, backend: ArchBackend, hook: BackendHook, answer: unknown, expected: string): never {
  const who = `backend ${backend.id}`;
  return fail('EIO', op, `${who}: ${hook} returned ${describeAnswer(answer)}${expected}`, {
    hint: `fix ${who}'s ${hook}`,
  });
}

/** A hook asked where the call cannot refuse threw or answered wrongly: recorded; the caller goes on with the default. */
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

/**
 * conversionPolicy for one area a conversion overlaps, on pages [start, end) of its file: asked, or, where the
 * backend declared its inputs (ArchBackend.conversionPolicyInputs), the checked answer this conversion already got
 * for an area with the same inputs (kernel.policyMemo). `request` names the conversion: the object GmemInode.convert
 * hands every consumer, with its direction and page range. The context is built only when the backend is asked.
 */
export function conversionPolicyForArea(
  kernel: Kernel,
  op: string,
  request: { readonly to: ConversionTarget; readonly start: number; readonly end: number },
  area: Readonly<DmaAreaInfo>,
  start: number,
  end: number,
): ConsumerResponse {
  const memo = kernel.policyMemo;
  if (memo.declared) {
    const kept = memo.find(request, area, start, end);
    if (kept !== undefined) return kept;
  }
  const answer = conversionPolicy(kernel, op, {
    to: request.to,
    offset: request.start * PAGE_SIZE,
    length: (request.end - request.start) * PAGE_SIZE,
    contract: kernel.contract,
    area,
    overlapOffset: start * PAGE_SIZE,
    overlapLength: (end - start) * PAGE_SIZE,
  });
  if (memo.declared) memo.keep(request, area, start, end, answer);
  return answer;
}

/** hypervisorRefusal: the lowest byte offset the hypervisor refuses to convert, or undefined (absent: none). */
export function hypervisorRefusal(
  kernel: Kernel,
  op: string,
  context: HypervisorConversionContext,
): number | undefined {
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
  if (
    typeof answer !== 'number' ||
    !Number.isSafeInteger(answer) ||
    answer % PAGE_SIZE !== 0 ||
    answer < low ||
    answer >= high
  ) {
    return wrong(
      op,
      backend,
      'hypervisorRefusal',
      answer,
      `, expected undefined or a page-aligned byte offset in [${low}, ${high})`,
    );
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
  const verdict: Extract<AccessVerdict, { allow: false }> = {
    allow: false,
    fault: fault as FaultKind,
    fatal,
    logged,
    mechanism,
  };
  if (lands !== undefined) verdict.lands = lands;
  if (poisons !== undefined) verdict.poisons = poisons;
  return verdict;
}

/** deviceAccess or hostKernelAccess: what touching a private frame does. */
export function accessVerdict(
  kernel: Kernel,
  op: string,
  hook: 'deviceAccess' | 'hostKernelAccess',
  context: PageAccessContext,
): AccessVerdict {
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
export function deviceMayReach(
  kernel: Kernel,
  op: string,
  context: { attribute: PageAttribute; vmType: 'default' | 'coco' },
): boolean {
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
  return answer === 'keep' || answer === 'zero'
    ? answer
    : wrong(op, backend, 'contentsOnConversion', answer, ", expected 'keep' or 'zero'");
}

/**
 * privateEntryRefusal: undefined (the page enters) or the fault KVM_RUN reports (absent: never refuses). A
 * verdict that allows is wrong here.
 */
export function privateEntryRefusal(
  kernel: Kernel,
  op: string,
  context: PrivateEntryRefusalContext,
): Extract<AccessVerdict, { allow: false }> | undefined {
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
  if (verdict.allow)
    return wrong(op, backend, 'privateEntryRefusal', answer, ': return undefined to let the page enter, or a fault');
  return verdict;
}

/**
 * The pipeline steps an answer holds, as a fresh array of fresh { step, count, bound? } objects, or undefined when
 * it is not an array of { step: non-empty string, count: non-negative integer, bound?: 'upper' } (a hole is not a
 * step). Each field is read once, here, inside the hook's try: the caller hands on this copy, never the backend's
 * array (whose getters could throw, or answer one thing to the check and another when the steps are counted).
 */
function ownSteps(answer: unknown): readonly PipelineStep[] | undefined {
  if (!Array.isArray(answer)) return undefined;
  const length = answer.length;
  if (length === 0) return NO_STEPS;
  // A pipeline names the few operations a page goes through (a handful per backend); a list longer than
  // this bound is a broken answer, refused before it is read or counted (each step is an event and a counter).
  if (length > MAX_PIPELINE_STEPS) return undefined;
  const steps: PipelineStep[] = [];
  for (let i = 0; i < length; i++) {
    const item: unknown = answer[i];
    if (typeof item !== 'object' || item === null) return undefined;
    const { step, count, bound } = item as Record<string, unknown>;
    if (
      typeof step !== 'string' ||
      step === '' ||
      typeof count !== 'number' ||
      !Number.isSafeInteger(count) ||
      count < 0 ||
      (bound !== undefined && bound !== 'upper')
    )
      return undefined;
    steps.push(bound === undefined ? { step, count } : { step, count, bound });
  }
  return steps;
}

const NO_STEPS: readonly PipelineStep[] = Object.freeze([]);
/** @internal The longest pipeline the door accepts from one hook call. */
export const MAX_PIPELINE_STEPS = 64;
const PIPELINE = ", expected an array of { step, count, bound?: 'upper' }";
const CONTENTS = ", expected 'keep' or 'zero'";

/**
 * removalPipeline: the steps hardware-private pages take when they leave that state (absent: none). Broken: EIO
 * where `site` can refuse, else reported and read as none.
 */
export function removalPipeline(kernel: Kernel, site: RemovalSite, context: RemovalContext): readonly PipelineStep[] {
  const backend = kernel.backend;
  if (!backend.removalPipeline) return NO_STEPS;
  let answer: unknown;
  let steps: readonly PipelineStep[] | undefined;
  try {
    answer = backend.removalPipeline(context);
    // Copied inside the try: a getter of the answer that throws is a throw of the hook.
    steps = ownSteps(answer);
  } catch (error) {
    if (HOOKS.removalPipeline[site] === 'refuse') return threw(site, backend, 'removalPipeline', error);
    report(kernel, 'removalPipeline', error);
    return NO_STEPS;
  }
  if (steps !== undefined) return steps;
  if (HOOKS.removalPipeline[site] === 'refuse') return wrong(site, backend, 'removalPipeline', answer, PIPELINE);
  report(kernel, 'removalPipeline', new Error(`returned ${describeAnswer(answer)}${PIPELINE}`));
  return NO_STEPS;
}

/**
 * contentsOnRemoval: whether a freed hardware-private page is cleared (absent: 'keep'). Broken: EIO where `site`
 * can refuse, else reported and read as 'keep'.
 */
export function contentsOnRemoval(
  kernel: Kernel,
  site: RemovalContentsSite,
  context: { cause: 'truncate' | 'release' | 'memslot-delete' },
): 'keep' | 'zero' {
  const backend = kernel.backend;
  if (!backend.contentsOnRemoval) return 'keep';
  let answer: unknown;
  try {
    answer = backend.contentsOnRemoval(context);
  } catch (error) {
    if (HOOKS.contentsOnRemoval[site] === 'refuse') return threw(site, backend, 'contentsOnRemoval', error);
    report(kernel, 'contentsOnRemoval', error);
    return 'keep';
  }
  if (answer === 'keep' || answer === 'zero') return answer;
  if (HOOKS.contentsOnRemoval[site] === 'refuse') return wrong(site, backend, 'contentsOnRemoval', answer, CONTENTS);
  report(kernel, 'contentsOnRemoval', new Error(`returned ${describeAnswer(answer)}${CONTENTS}`));
  return 'keep';
}

/** privateEntry: the steps a page takes when the guest faults it in as private (absent: none). */
export function privateEntry(kernel: Kernel, op: string, context: PrivateEntryContext): readonly PipelineStep[] {
  const backend = kernel.backend;
  if (!backend.privateEntry) return NO_STEPS;
  let answer: unknown;
  let steps: readonly PipelineStep[] | undefined;
  try {
    answer = backend.privateEntry(context);
    // Copied inside the try: a getter of the answer that throws is a throw of the hook.
    steps = ownSteps(answer);
  } catch (error) {
    return threw(op, backend, 'privateEntry', error);
  }
  return steps ?? wrong(op, backend, 'privateEntry', answer, PIPELINE);
}

/** contentsOnPrivateEntry: what the guest's first private access finds (absent: 'keep'). */
export function contentsOnPrivateEntry(kernel: Kernel, op: string): 'keep' | 'zero' {
  const backend = kernel.backend;
  if (!backend.contentsOnPrivateEntry) return 'keep';
  let answer: unknown;
  try {
    answer = backend.contentsOnPrivateEntry();
  } catch (error) {
    return threw(op, backend, 'contentsOnPrivateEntry', error);
  }
  return answer === 'keep' || answer === 'zero'
    ? answer
    : wrong(op, backend, 'contentsOnPrivateEntry', answer, CONTENTS);
}
