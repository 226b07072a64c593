/**
 * The host's own copy of a backend. A backend crosses the public surface, so the host reads each of its fields
 * once, when it is created, into a frozen object of the spec's fields, and asks only that copy: a getter that
 * throws, or answers one thing to createHost's check and another later, cannot reach the model (the field is
 * read once; a throw there is createHost's EINVAL).
 *
 * Each hook is wrapped, for two things the door (door.ts) cannot see from outside a call:
 * - a hook must not call the model: while one runs, every host refuses its calls with EIO naming the backend
 *   and the hook (HostKernel.checkAlive asks `hookRunning()`). A hook that converted or punched pages from
 *   inside a conversion or an access would change what the asking call already decided. (In the kernel an
 *   arch callback runs inside the call, under the locks it holds, e.g. guest_memfd's invalidate lock during a
 *   punch; it has no way back into the same path.)
 * - an answer that is a rejected Promise is marked handled, so that its rejection cannot end the process on the
 *   next tick (the door still fails the call: hooks are synchronous).
 */
import { ERRNO_VALUES, GmemError, type Errno } from '../errors.js';
import { HOOK_REQUIRED, type ArchBackend, type BackendHook } from './backend.js';

/** The hook on the stack, if any: which backend, which hook (a constant per hook: nothing is made per call). */
let running: { readonly backend: string; readonly hook: BackendHook } | undefined;
/**
 * The first refusal (refuseInsideHook) thrown while the running hook ran: a hook that made one is broken even if it
 * caught it; one that lets it through passes it on as it is.
 */
let refusal: unknown;

/** @internal The backend hook running now, if a hook is on the stack. */
export function hookRunning(): { readonly backend: string; readonly hook: BackendHook } | undefined {
  return running;
}

/** @internal EIO if a backend's hook is running: `op` is a call of the model made from inside it. */
export function refuseInsideHook(op: string): void {
  const hook = running;
  if (!hook) return;
  const error = new GmemError(
    'EIO',
    op,
    `backend ${hook.backend}: its ${hook.hook} called into the host; a hook must not call the model`,
    { hint: `fix backend ${hook.backend}'s ${hook.hook}` },
  );
  refusal ??= error;
  throw error;
}

const CAUGHT = 'it called into the host and caught the refusal (a hook must not call the model)';

/** The longest array an answer may hold that is copied entry by entry (a pipeline is checked against its own bound). */
const MAX_COPIED_ENTRIES = 64;
/** The most fields copied from an answer object (an access verdict has seven). */
const MAX_COPIED_FIELDS = 16;

/**
 * An answer as plain data, read while the hook still counts as running: the door checks and prints this copy, so a
 * getter or Proxy trap on the answer runs here, where a call into the model is refused like one from the hook
 * itself. Answers are at most an array of objects of primitives: deeper values are replaced by a description, an
 * array longer than the door reads by an empty one of its length, and functions are kept (a thenable stays one).
 */
function plainAnswer(value: unknown, depth: number): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= 2) return Array.isArray(value) ? `an array of ${value.length} entries` : 'an object';
  if (Array.isArray(value)) {
    const length = value.length;
    if (length > MAX_COPIED_ENTRIES) return new Array(length);
    const copy: unknown[] = [];
    for (let i = 0; i < length; i++) copy.push(plainAnswer(value[i], depth + 1));
    return copy;
  }
  if (value instanceof String) return value;
  const copy: Record<string, unknown> = {};
  const keys = Object.keys(value);
  for (let i = 0; i < keys.length && i < MAX_COPIED_FIELDS; i++) {
    const key = keys[i]!;
    copy[key] = plainAnswer((value as Record<string, unknown>)[key], depth + 1);
  }
  // `then` may be inherited (a Promise's is): keep it, so the door can say the hook answered a Promise.
  const then = (value as { then?: unknown }).then;
  if (typeof then === 'function') copy.then = then;
  return copy;
}

/** The spec's data fields, copied as they are (arrays as frozen copies). */
const DATA_FIELDS = [
  'specificationVersion',
  'id',
  'name',
  'pageSizes',
  'iommuPageSizes',
  'mapsPrivatePages',
  'mapsSharedBackPages',
  'privateEntryAt',
  'privateRemovalAt',
  'hardwarePrivateName',
  'rules',
] as const satisfies readonly Exclude<keyof ArchBackend, BackendHook>[];

/** Every non-hook field of ArchBackend is in DATA_FIELDS or copied on its own (a field added without either fails here). */
type MissingDataField = Exclude<
  Exclude<keyof ArchBackend, BackendHook>,
  (typeof DATA_FIELDS)[number] | 'conversionPolicyInputs'
>;
const allDataFields: MissingDataField extends never ? true : MissingDataField = true;
void allDataFields;

function markHandled(answer: unknown): void {
  if (typeof answer !== 'object' || answer === null) return;
  const then = (answer as { then?: unknown }).then;
  if (typeof then === 'function') then.call(answer, undefined, () => undefined);
}

/**
 * Whether everything the host reads of a backend is frozen data: the backend (a plain object, or a factory
 * function), and every object and array reached from its fields, are frozen plain objects (prototype
 * Object.prototype or null) or arrays, with no accessor; hooks may be functions (the host keeps the function it
 * read, and reads nothing of it). Such a backend cannot answer a
 * second read differently, so its checked copy can serve every host made with it (createHost keeps it). A class
 * instance is not: a field it inherits lives on a prototype that can change.
 */
export function isFrozenData(value: object): boolean {
  try {
    return frozenData(value);
  } catch {
    // A Proxy whose traps throw: not data the host can keep (it is read afresh, as any backend was).
    return false;
  }
}

function frozenData(value: object): boolean {
  const seen = new Set<object>();
  const stack: object[] = [value];
  while (stack.length > 0) {
    const object = stack.pop()!;
    if (seen.has(object)) continue;
    seen.add(object);
    if (!Object.isFrozen(object)) return false;
    const proto = Object.getPrototypeOf(object) as object | null;
    // The backend itself may be a factory (a function carrying the fields: arch/factory.ts).
    const plain =
      proto === Object.prototype ||
      proto === null ||
      (proto === Array.prototype && Array.isArray(object)) ||
      (object === value && proto === Function.prototype && typeof object === 'function');
    if (!plain) return false;
    for (const key of Reflect.ownKeys(object)) {
      const descriptor = Reflect.getOwnPropertyDescriptor(object, key)!;
      if (descriptor.get !== undefined || descriptor.set !== undefined) return false;
      const field: unknown = descriptor.value;
      if (typeof field === 'object' && field !== null) stack.push(field);
    }
  }
  return true;
}

/**
 * Whether `own`, ownBackend's copy of `value`, holds only what `value` owns: each field read is the value of its own
 * data property (undefined where it has none), each array copied holds the array's own elements. isFrozenData sees
 * only own properties, and the Proxy invariants bind only those of a frozen target: [[Get]] of a key an object lacks
 * is answered by its prototype or by a Proxy's get trap, and an array is copied through its inherited iterator, so a
 * copy that took such an answer may not be what the next read gives (createHost then keeps no copy of it).
 */
export function readAsOwnData(value: object, own: ArchBackend): boolean {
  try {
    const copy = own as unknown as Record<string, unknown>;
    for (const field of DATA_FIELDS) if (!sameAsOwn(value, field, copy[field])) return false;
    for (const hook of Object.keys(HOOK_REQUIRED)) {
      const owned = ownValue(value, hook);
      // A function read is wrapped; anything else is copied as it is.
      if (typeof owned === 'function' ? typeof copy[hook] !== 'function' : copy[hook] !== owned) return false;
    }
    const declared = ownValue(value, 'conversionPolicyInputs');
    const declaration = copy.conversionPolicyInputs as Record<string, unknown> | undefined;
    if (typeof declared !== 'object' || declared === null) return declaration === declared;
    // ownDeclaration's copy: its policy is the copy's own where it names the backend's conversionPolicy.
    const described = ownValue(declared, 'policy');
    const policy = typeof described === 'function' && described === ownValue(value, 'conversionPolicy');
    if (declaration?.policy !== (policy ? copy.conversionPolicy : described)) return false;
    return sameAsOwn(declared, 'inputs', declaration?.inputs);
  } catch {
    // A Proxy trap that throws: not data the host can keep.
    return false;
  }
}

const ownValue = (object: object, key: string): unknown => Reflect.getOwnPropertyDescriptor(object, key)?.value;

/** Whether `read` is `object`'s own `key`, or an array holding exactly that array's own elements. */
function sameAsOwn(object: object, key: string, read: unknown): boolean {
  const owned = ownValue(object, key);
  if (!Array.isArray(owned) || !Array.isArray(read) || read === owned) return Object.is(read, owned);
  if (read.length !== ownValue(owned, 'length')) return false;
  for (let i = 0; i < read.length; i++) if (!Object.is(read[i], ownValue(owned, String(i)))) return false;
  return true;
}

/**
 * @internal The host's copy of `value`, which createHost then checks (describeBackendProblems): each field is read
 * once, so what is checked is what is used. A getter that throws propagates (createHost's EINVAL).
 */
export function ownBackend(value: ArchBackend): ArchBackend {
  const source = value as unknown as Record<string, unknown>;
  const own: Record<string, unknown> = {};
  for (const field of DATA_FIELDS) {
    const data = source[field];
    if (data !== undefined) own[field] = Array.isArray(data) ? Object.freeze([...data]) : data;
  }
  const id = own.id as string;
  const policy = source.conversionPolicy;
  for (const hook of Object.keys(HOOK_REQUIRED) as BackendHook[]) {
    const fn = hook === 'conversionPolicy' ? policy : source[hook];
    if (typeof fn !== 'function') {
      // Copied as it is, for createHost's check of the copy to refuse (a hook that is not a function).
      if (fn !== undefined) own[hook] = fn;
      continue;
    }
    const tag = Object.freeze({ backend: id, hook });
    own[hook] = function (this: unknown, context: unknown): unknown {
      const outer = running;
      const outerRefusal = refusal;
      running = tag;
      refusal = undefined;
      try {
        let copy: unknown;
        try {
          const answer: unknown = fn.call(value, context);
          try {
            markHandled(answer);
          } catch {
            // A thenable whose `then` throws: the door refuses the answer as it is.
          }
          // Primitives (most answers) are returned as they are; an object is read here, still inside the guard, and
          // what a getter of it throws is checked like what the hook throws.
          copy = typeof answer === 'object' && answer !== null ? plainAnswer(answer, 0) : answer;
        } catch (error) {
          // A hook that caught the refusal and then threw something else (even a GmemError of another errno) is
          // reported as the broken hook it is, not by what it chose to throw.
          if (refusal !== undefined && error !== refusal) throw new Error(CAUGHT);
          throw ownThrown(error);
        }
        // It called the model and caught the refusal (in the hook, or in a getter or `then` of its answer, read
        // just above): still a hook that broke its contract. The asking call fails (or, where it cannot, reports
        // it) as for any hook that throws; its answer is not used.
        if (refusal !== undefined) throw new Error(CAUGHT);
        return copy;
      } finally {
        running = outer;
        refusal = outerRefusal;
      }
    };
  }
  const declaration = source.conversionPolicyInputs;
  if (declaration !== undefined) own.conversionPolicyInputs = ownDeclaration(declaration, policy, own.conversionPolicy);
  return Object.freeze(own) as unknown as ArchBackend;
}

/**
 * What a hook threw, read while it still counts as running. A GmemError (a backend may refuse with an errno of its
 * own) is passed on as a fresh GmemError of the fields it claims, each checked: the brand is only a symbol any
 * object can carry, so an object that carries it with an errno the model does not know, or fields that are not
 * strings, is no GmemError, and becomes a plain Error, which the door turns into EIO naming the hook. Anything
 * else is passed on as it is (the door describes it without trusting it).
 */
function ownThrown(error: unknown): unknown {
  let claimed: boolean;
  try {
    claimed = GmemError.isInstance(error);
  } catch {
    return new Error('it threw an object that cannot be read');
  }
  if (!claimed) return error;
  try {
    const { errno, op, message, argument, errorOffset, hint } = error as unknown as Record<string, unknown>;
    const optional = (v: unknown) => v === undefined || typeof v === 'string';
    if (
      typeof errno !== 'string' ||
      !Object.prototype.hasOwnProperty.call(ERRNO_VALUES, errno) ||
      typeof op !== 'string' ||
      typeof message !== 'string' ||
      !optional(argument) ||
      !optional(hint) ||
      (errorOffset !== undefined && typeof errorOffset !== 'number')
    )
      return new Error(`it threw an object branded GmemError that is not one (errno ${describeErrno(errno)})`);
    const copy = new GmemError(errno as Errno, op, '', {
      argument: argument as string | undefined,
      errorOffset: errorOffset as number | undefined,
      hint: hint as string | undefined,
    });
    copy.message = message;
    // Where the backend threw it from, for its author: a stack that is a string (nothing else is read).
    const stack = (error as { stack?: unknown }).stack;
    if (typeof stack === 'string') copy.stack = stack;
    return copy;
  } catch {
    return new Error('it threw an object branded GmemError whose fields cannot be read');
  }
}

const describeErrno = (errno: unknown): string =>
  typeof errno === 'string' ? JSON.stringify(errno.length > 20 ? `${errno.slice(0, 20)}...` : errno) : typeof errno;

/**
 * The copy of a conversionPolicyInputs declaration, its fields read once: about the copy's own (wrapped)
 * conversionPolicy when it describes the function read as the backend's, else about the function it names, which
 * the copy does not have (so declaredPolicyInputs ignores it). A value of the wrong shape is kept for
 * describeBackendProblems to refuse; a list longer than the door copies is refused by its length, unread.
 */
function ownDeclaration(declaration: unknown, policy: unknown, ownPolicy: unknown): unknown {
  if (typeof declaration !== 'object' || declaration === null) return declaration;
  const { policy: described, inputs } = declaration as Record<string, unknown>;
  const list = !Array.isArray(inputs)
    ? inputs
    : inputs.length > MAX_COPIED_ENTRIES
      ? new Array(inputs.length)
      : Object.freeze([...(inputs as unknown[])]);
  return Object.freeze({
    policy: typeof described === 'function' && described === policy ? ownPolicy : described,
    inputs: list,
  });
}
