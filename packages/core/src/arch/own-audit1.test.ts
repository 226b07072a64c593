/**
 * Outside audit s19-audit1 of 168531a (a hook that catches the host's refusal still fails the asking call): ways
 * around the `refusedInside` check. Each case is a hook (or its answer) that calls the model, catches what it is
 * told, and returns; the asking call should then fail with EIO naming the hook, as in own.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GmemError,
  HostCrashedError,
  PAGE_SIZE,
  swProtected,
} from '../index.js';
import { createScenario } from '../testing/index.js';
import { fatalHostAccess } from '../test-support.js';
import type { ArchBackend } from './backend.js';

type Scenario = ReturnType<typeof createScenario>;
const P = PAGE_SIZE;
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
const backendWith = (hooks: Partial<ArchBackend>): ArchBackend => ({ ...swProtected, id: 't:audit', ...hooks });

function outcome(call: () => unknown): unknown {
  try {
    call();
  } catch (error) {
    return error;
  }
  return 'completed';
}

describe('audit s19-audit1: the caught refusal', () => {
  it('an answer whose getter calls the model and catches the refusal: the asking call still fails with EIO', () => {
    let world: Scenario | undefined;
    let inner: string | undefined;
    let armed = false;
    world = createScenario(
      backendWith({
        deviceAccess: (context) => {
          const verdict = swProtected.deviceAccess(context);
          if (!armed) return verdict;
          // The hook itself calls nothing; its answer's getter does, read by own.ts's plainAnswer after the
          // `refusedInside` check.
          return {
            ...verdict,
            get allow() {
              try {
                world!.gmem.fallocate(PUNCH, 0, P);
              } catch (error) {
                inner = (error as GmemError).errno;
              }
              return verdict.allow;
            },
          } as never;
        },
      }),
      { private: [{ offset: P, length: P, faulted: true }] },
    );
    armed = true;
    const caught = outcome(() => world!.device!.dmaWrite(world!.iova, new Uint8Array(2 * P).fill(0xab)));
    expect(inner).toBe('EIO');
    expect(GmemError.isInstance(caught), `the asking call ${String(caught)}`).toBe(true);
    expect((caught as GmemError).errno).toBe('EIO');
  });

  it('a hook that catches the refusal and then throws a GmemError of its own: the call fails with EIO, not its errno', () => {
    let world: Scenario | undefined;
    let armed = false;
    world = createScenario(
      backendWith({
        hypervisorRefusal: () => {
          if (!armed) return undefined;
          try {
            world!.gmem.fallocate(PUNCH, 0, P);
          } catch {
            // caught
          }
          throw new GmemError('EAGAIN', 'hypervisor', 'busy, try again');
        },
      }),
    );
    armed = true;
    const caught = outcome(() => world!.convert(0, P, 'private'));
    expect(GmemError.isInstance(caught)).toBe(true);
    // EAGAIN tells the VMM to retry; the hook broke its contract, which own.ts says is EIO naming the hook.
    expect((caught as GmemError).errno).toBe('EIO');
    expect((caught as GmemError).message).toMatch(/caught the refusal/);
  });

  it('a hook that calls ANOTHER host, one that crashed, and catches its HostCrashedError: the call still fails', () => {
    const dead = createScenario(fatalHostAccess, { size: 4 * P, map: false, private: [{ offset: 0, length: P }] });
    dead.vm.guestWrite(0, new Uint8Array([1]));
    expect(dead.gmem.directMapRead(0, 1)).toMatchObject({ ok: false, fatal: true });
    expect(dead.host.crashed).toBeTruthy();
    let inner: unknown;
    let armed = false;
    const world = createScenario(
      backendWith({
        hypervisorRefusal: () => {
          if (!armed) return undefined;
          try {
            dead.gmem.fallocate(PUNCH, 0, P);
          } catch (error) {
            inner = error;
          }
          return undefined;
        },
      }),
    );
    armed = true;
    const caught = outcome(() => world.convert(0, P, 'private'));
    // Before the fix checkAlive threw HostCrashedError before refuseInsideHook ran, so refusedInside was never set
    // and the convert completed; the other host refuses either way.
    expect(HostCrashedError.isInstance(inner) || GmemError.isInstance(inner)).toBe(true);
    expect(GmemError.isInstance(caught), `the asking call ${String(caught)}`).toBe(true);
    expect((caught as GmemError).errno).toBe('EIO');
  });
  it("a forged GmemError thrown by a getter of the hook's answer is checked like one the hook throws (EIO)", () => {
    const BRAND = Symbol.for('gmemlab.GmemError');
    let armed = false;
    const world = createScenario(
      backendWith({
        deviceAccess: (context) => {
          const verdict = swProtected.deviceAccess(context);
          if (!armed) return verdict;
          return {
            get allow(): boolean {
              throw { [BRAND]: true, errno: 'EWHATEVER', op: 'x', message: 'forged' };
            },
          } as never;
        },
      }),
      { private: [{ offset: P, length: P, faulted: true }] },
    );
    armed = true;
    const caught = outcome(() => world.device!.dmaWrite(world.iova, new Uint8Array(2 * P).fill(0xab)));
    expect(caught).toBeInstanceOf(GmemError);
    expect((caught as GmemError).errno).toBe('EIO');
  });
});
