/**
 * Test helpers for this package's own tests (not built, not exported): a call that must fail with an errno and
 * leave every given host exactly as it was, and a backend that can crash the host.
 */
import { expect } from 'vitest';
import type { ArchBackend } from './arch/backend.js';
import { swProtected } from './arch/sw-protected.js';
import { GmemError, type Errno } from './errors.js';
import type { Host } from './host.js';

/** sw-protected, but a host-kernel access to a hardware-private page is a fatal machine check: a way to crash the host. */
export const fatalHostAccess: ArchBackend = {
  ...swProtected,
  id: 'fatal-host-access',
  hostKernelAccess: ({ hardware }) =>
    hardware === 'private'
      ? { allow: false, fault: 'machine-check', fatal: true, logged: true, mechanism: 'test: fatal host access' }
      : { allow: true },
};

/** Run `fn`; expect a GmemError with `errno`, and every host's snapshot deep-equal before and after. */
export function expectRefused(hosts: Host | readonly Host[], fn: () => unknown, errno: Errno): GmemError {
  const list = Array.isArray(hosts) ? (hosts as readonly Host[]) : [hosts as Host];
  const before = list.map((host) => host.snapshot());
  let thrown: unknown;
  let threw = false;
  try {
    fn();
  } catch (error) {
    threw = true;
    thrown = error;
  }
  if (!threw) throw new Error(`expected ${errno}, but the call succeeded`);
  if (!GmemError.isInstance(thrown))
    throw new Error(`expected a GmemError ${errno}, got ${String(thrown)}`, { cause: thrown });
  expect(thrown.errno, thrown.message).toBe(errno);
  expect(
    list.map((host) => host.snapshot()),
    `${thrown.message}: the model changed`,
  ).toEqual(before);
  return thrown;
}
