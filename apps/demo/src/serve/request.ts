/**
 * What POST /api/compare accepts: built-in scenario ids (never file paths: the network chooses among what the
 * operator offered at start), backend ids as `--arch` takes them, and contract names. Checked with zod; a problem
 * is one line for a 400.
 */
import { DESIGNS } from '../run/designs.js';
import { z } from 'zod';

const Id = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, 'not an id (letters, digits, . _ : -)');

export const CompareRequest = z.strictObject({
  scenarios: z.array(Id).min(1).max(64),
  archs: z.array(Id).min(1).max(32),
  contracts: z
    .array(z.enum(DESIGNS as unknown as readonly [string, ...string[]]))
    .min(1)
    .max(DESIGNS.length * 2),
});
export type CompareRequest = z.infer<typeof CompareRequest>;

/** The request, or one line saying what is wrong with it. */
export function parseCompareRequest(
  value: unknown,
): { ok: true; request: CompareRequest } | { ok: false; message: string } {
  const parsed = CompareRequest.safeParse(value);
  if (parsed.success) return { ok: true, request: parsed.data };
  const issue = parsed.error.issues[0]!;
  const where = issue.path.length > 0 ? `field '${issue.path.join('.')}'` : 'the body';
  const message =
    issue.code === 'unrecognized_keys'
      ? `${where}: unknown field '${issue.keys[0]}' (expected scenarios, archs, contracts)`
      : `${where}: ${issue.message}`;
  return { ok: false, message: message.replace(/\s+/g, ' ') };
}
