/**
 * @internal The conversion's shortcuts, each of which skips work that cannot change anything:
 * - GmemInode.convert asks one pages object for the policy's one answer, in place of listing them all;
 * - IoasArea.restore skips an area whose IOPTEs already map every page of the range as a fill would;
 * - KVM's invalidation walks its bindings without listing them, when no listener can run in between.
 * Off, the model does that work as before them; the differential test (conversion-fast-path.test.ts) runs the
 * same calls both ways and compares everything observable.
 */
export const conversionShortcuts = { enabled: true };
