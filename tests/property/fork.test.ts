/**
 * Host.fork() with every architecture's backend and the full random call generator (calls.ts): a sequence is
 * split at a random point, the host (with everything the caller holds) is forked there, and the rest runs on
 * both. Every call must give the same result or error, the same events and the same snapshot on the original
 * and on the fork; and the other host the steps pass objects from stays as it was in both worlds.
 */
import { CONTRACTS, GmemError, HostCrashedError, type ArchBackend } from '@gmemlab/core';
import { armCca } from '@gmemlab/arm-cca';
import { pkvm } from '@gmemlab/pkvm';
import { sevSnp } from '@gmemlab/sev-snp';
import { tdx } from '@gmemlab/tdx';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  announceSeed,
  checkProperty,
  newWorld,
  NOTHING,
  sequences,
  withoutNoops,
  type Step,
  type World,
} from './calls.js';

const RUNS = Math.max(1, Math.round(Number(process.env.GMEMLAB_PROPERTY_RUNS ?? 1000) / 20));

/** A value as plain data: model objects by class name, bytes as numbers. */
function plain(value: unknown): unknown {
  if (typeof value !== 'object' || value === null)
    return typeof value === 'bigint' || typeof value === 'symbol' ? String(value) : value;
  if (value instanceof Uint8Array) return [...value];
  if (Array.isArray(value)) return value.map(plain);
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto !== Object.prototype && proto !== null) return `<${(value.constructor as { name: string }).name}>`;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
}

function observe(world: World, step: Step): unknown {
  const { events, stop } = world.host.events.record();
  let outcome: unknown;
  try {
    step.run(world);
    outcome = 'returned';
  } catch (error) {
    if (error === NOTHING) outcome = 'nothing';
    else if (GmemError.isInstance(error) || HostCrashedError.isInstance(error))
      outcome = { name: error.name, message: error.message };
    else throw error;
  }
  stop();
  return {
    outcome,
    events: events.map(plain),
    snapshot: world.host.snapshot(),
    other: world.other.host.snapshot(),
    crashed: world.host.crashed ?? null,
    observerErrors: [...world.host.observerErrors()],
    held: [
      world.vms.length,
      world.gmems.length,
      world.mappings.length,
      world.ioases.length,
      world.devices.length,
      world.pins.length,
      world.faults.length,
    ],
  };
}

const BACKENDS: ArchBackend[] = [tdx, tdx({ variant: 'connect' }), sevSnp, armCca, pkvm, pkvm({ variant: 'upstream' })];

announceSeed('fork.test.ts');

describe('Host.fork() with every architecture', () => {
  for (const [b, backend] of BACKENDS.entries()) {
    it(`a fork behaves as the original, call for call (${backend.id}, every contract)`, () => {
      for (const [c, contract] of CONTRACTS.entries()) {
        checkProperty(
          fc.property(sequences, fc.nat(), (sequence, at) => {
            const calls = withoutNoops(sequence);
            const split = at % (calls.length + 1);
            const world = newWorld(contract, backend);
            for (const step of calls.slice(0, split)) observe(world, step);
            const { host, held } = world.host.forkWith(world);
            // Identity as booleans: a failing toBe on a Host would format the whole object graph.
            expect(held.host === host && held.other.host !== world.other.host).toBe(true);
            for (const step of calls.slice(split)) expect(observe(held, step), step.name).toEqual(observe(world, step));
          }),
          RUNS,
          b * CONTRACTS.length + c,
        );
      }
    });
  }
});
