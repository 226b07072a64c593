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
import { HOOK_REQUIRED, type ArchBackend, type BackendHook } from './backend.js';

/** The hook on the stack, if any: which backend, which hook (a constant per hook: nothing is made per call). */
let running: { readonly backend: string; readonly hook: BackendHook } | undefined;

/** @internal The backend hook running now, if a hook is on the stack. */
export function hookRunning(): { readonly backend: string; readonly hook: BackendHook } | undefined {
  return running;
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

/** Every non-hook field of ArchBackend is in DATA_FIELDS (a field added to the spec without it fails here). */
type MissingDataField = Exclude<Exclude<keyof ArchBackend, BackendHook>, (typeof DATA_FIELDS)[number]>;
const allDataFields: MissingDataField extends never ? true : MissingDataField = true;
void allDataFields;

function markHandled(answer: unknown): void {
  if (typeof answer !== 'object' || answer === null) return;
  const then = (answer as { then?: unknown }).then;
  if (typeof then === 'function') then.call(answer, undefined, () => undefined);
}

/**
 * @internal The host's copy of `value` (already checked by describeBackendProblems). Reads each field once; a
 * getter that throws propagates (createHost turns it into EINVAL).
 */
export function ownBackend(value: ArchBackend): ArchBackend {
  const source = value as unknown as Record<string, unknown>;
  const own: Record<string, unknown> = {};
  for (const field of DATA_FIELDS) {
    const data = source[field];
    if (data !== undefined) own[field] = Array.isArray(data) ? Object.freeze([...data]) : data;
  }
  const id = own.id as string;
  for (const hook of Object.keys(HOOK_REQUIRED) as BackendHook[]) {
    const fn = source[hook];
    if (typeof fn !== 'function') continue;
    const tag = Object.freeze({ backend: id, hook });
    own[hook] = function (this: unknown, context: unknown): unknown {
      const outer = running;
      running = tag;
      try {
        const answer: unknown = fn.call(value, context);
        try {
          markHandled(answer);
        } catch {
          // A thenable whose `then` throws: the door refuses the answer as it is.
        }
        return answer;
      } finally {
        running = outer;
      }
    };
  }
  return Object.freeze(own) as unknown as ArchBackend;
}
