/**
 * `run --oracle linux` without /dev/kvm: the kernel steps a scenario becomes, derived from core's call table by
 * @gmemlab/linux/differential (issue 22: one call table for the demo and the differential oracle), and the
 * refusals, each with the machine's reason, before anything runs.
 */
import { CALLS } from '@gmemlab/core';
import * as derivation from '@gmemlab/linux/differential';
import { describe, expect, it } from 'vitest';
import { OracleError, toDifferentialSteps } from '../src/oracle.js';
import { loadScenario } from '../src/scenario/load.js';
import { FIXTURES, PACKAGE } from './support.js';
import { DMA_SETUP, testScenario } from './worlds.js';

describe('the kernel steps of a scenario', () => {
  it('every call the helper runs, with repeats expanded, defaults applied, mappings as addresses and unnamed results named by path', () => {
    const steps = toDifferentialSteps(loadScenario(`${FIXTURES}/oracle-every-call.yaml`), derivation);
    expect(steps.map((s) => [s.path, s.step])).toEqual([
      ['1', { op: 'createVm', as: 'vm' }],
      ['2', { op: 'createGuestMemfd', vm: 'vm', size: 2097152, flags: 3, as: 'gmem' }],
      ['3', { op: 'memfdCreate', size: 65536, as: 'memfd' }],
      ['4', { op: 'mmap', fd: 'memfd', length: 65536, shared: true, as: 'shm' }],
      ['5', { op: 'mmap', fd: 'gmem', length: 8192, shared: false, offset: 4096, as: 'map@5' }],
      [
        '6',
        {
          op: 'setUserMemoryRegion2',
          vm: 'vm',
          slot: 0,
          flags: 4,
          guestPhysAddr: 1073741824,
          memorySize: 2097152,
          userspaceAddr: { map: 'shm', offset: 4096 },
          guestMemfd: 'gmem',
          guestMemfdOffset: 0,
        },
      ],
      [
        '7',
        {
          op: 'setUserMemoryRegion2',
          vm: 'vm',
          slot: 1,
          flags: 0,
          guestPhysAddr: 2147483648,
          memorySize: 65536,
          userspaceAddr: { map: 'shm', offset: 0 },
        },
      ],
      ['8.1', { op: 'mapWrite', map: 'shm', offset: 0, data: { fill: 0x5a, length: 16 } }],
      ['8.2', { op: 'mapRead', map: 'shm', offset: 0, length: 16 }],
      ['8.1', { op: 'mapWrite', map: 'shm', offset: 4096, data: { fill: 0x5a, length: 16 } }],
      ['8.2', { op: 'mapRead', map: 'shm', offset: 4096, length: 16 }],
      ['9', { op: 'guestWrite', vm: 'vm', gpa: 2147483648, data: { fill: 0, length: 8 } }],
      ['10', { op: 'guestRead', vm: 'vm', gpa: 2147483652, length: 4 }],
      ['11', { op: 'madvise', map: 'shm', offset: 0, length: 4096, advice: 9 }],
      ['12', { op: 'fallocate', fd: 'memfd', mode: 3, offset: 0, length: 4096 }],
      ['13', { op: 'fallocate', fd: 'gmem', mode: 0, offset: 0, length: 4096 }],
      ['14', { op: 'munmap', map: 'shm' }],
      ['15', { op: 'close', fd: 'gmem' }],
      ['16', { op: 'close', fd: 'memfd' }],
      ['17', { op: 'close', fd: 'vm' }],
    ]);
  });

  it.each([
    [
      'a coco VM',
      [{ call: 'host.createVm', as: 'vm' }],
      "step 1 (host.createVm): the kernel oracle cannot run it: only a default VM ('type: default')",
    ],
    [
      'iommufd',
      [
        { call: 'host.createVm', type: 'default', as: 'vm' },
        { call: 'host.openIommufd', as: 'iommufd' },
      ],
      'step 2 (host.openIommufd): the kernel oracle cannot run it: the helper has no iommufd',
    ],
    [
      'a conversion',
      [
        { call: 'host.createVm', type: 'default', as: 'vm' },
        { call: 'vm.createGuestMemfd', size: '4KiB', as: 'gmem' },
        { call: 'gmem.setMemoryAttributes2', offset: 0, size: '4KiB', attributes: 0 },
      ],
      'step 3 (gmem.setMemoryAttributes2): the kernel oracle cannot run it: this kernel reports no KVM_CAP_MEMORY_ATTRIBUTES',
    ],
    [
      'a guest intent',
      [
        { call: 'host.createVm', type: 'default', as: 'vm' },
        { call: 'vm.guestRead', gpa: 0, length: 1, intent: 'shared' },
      ],
      'step 2 (vm.guestRead): the kernel oracle cannot run it: a guest intent needs a VM with private memory',
    ],
    [
      'a pin',
      [
        { call: 'host.createVm', type: 'default', as: 'vm' },
        { call: 'vm.createGuestMemfd', size: '4KiB', as: 'gmem' },
        { call: 'gmem.pin', offset: 0, length: '4KiB', as: 'pin' },
      ],
      'step 3 (gmem.pin): the kernel oracle cannot run it: the helper has no such call',
    ],
  ])('refuses %s before anything runs, naming the step and the reason', (_what, steps, message) => {
    expect(() => toDifferentialSteps(testScenario(steps), derivation)).toThrow(OracleError);
    expect(() => toDifferentialSteps(testScenario(steps), derivation)).toThrow(message);
  });

  it("today's path: the VM-fd conversion (vm.setMemoryAttributes) of qemu-today derives the helper's setMemoryAttributes step", () => {
    // qemu-today makes a coco VM, which the oracle refuses on its own account (no TDX or SNP hardware here); read
    // as a default VM, its steps up to the first iommufd call derive, the conversion on the VM fd included.
    const scenario = loadScenario(`${PACKAGE}/scenarios/qemu-today.yaml`);
    const defaultVm = (call: string, args: derivation.CallArgs): derivation.CallArgs =>
      call === 'host.createVm' ? { ...args, type: 'default' } : args;
    const asDefault = {
      unsupportedReason: (call: string, args: derivation.CallArgs) =>
        derivation.unsupportedReason(call, defaultVm(call, args)),
      stepOfCall: (
        call: string,
        on: string | undefined,
        args: derivation.CallArgs,
        options?: { as?: string; where?: string },
      ) => derivation.stepOfCall(call, on, defaultVm(call, args), options),
    };
    const untilIommufd = scenario.steps.slice(
      0,
      scenario.steps.findIndex((s) => s.kind === 'call' && s.call === 'host.openIommufd'),
    );
    const steps = toDifferentialSteps({ ...scenario, steps: untilIommufd }, asDefault);
    expect(steps.filter((s) => s.call === 'vm.setMemoryAttributes').map((s) => [s.path, s.step])).toEqual([
      ['6', { op: 'setMemoryAttributes', vm: 'vm', address: 4 * 2 ** 30, size: 2 * 2 ** 20, attributes: 8 }],
    ]);
    expect(
      derivation.unsupportedReason('vm.setMemoryAttributes', { address: 0, size: 4096, attributes: 0, flags: 0 }),
    ).toBeUndefined();
    expect(
      derivation.stepOfCall('vm.setMemoryAttributes', 'vm', { address: 0, size: 4096, attributes: 0, flags: 0 }),
    ).toEqual({ op: 'setMemoryAttributes', vm: 'vm', address: 0, size: 4096, attributes: 0, flags: 0 });
  });

  it('the DMA world is refused at its first iommufd call', () => {
    expect(() => toDifferentialSteps(testScenario(DMA_SETUP), derivation)).toThrow('step 1 (host.createVm)');
  });

  it("every call of core's table either derives a step of the helper's protocol or is refused with a reason", () => {
    for (const [call, spec] of Object.entries(CALLS)) {
      const args = Object.fromEntries(
        Object.entries(spec.args)
          .filter(([, a]) => !a.optional)
          .map(([name, a]) => [
            name,
            a.type === 'handle'
              ? 'h'
              : a.type === 'enum'
                ? a.values[0]!
                : a.type === 'bool'
                  ? true
                  : a.type === 'string'
                    ? 's'
                    : 4096,
          ]),
      );
      if (call === 'host.createVm') args.type = 'default';
      const reason = derivation.unsupportedReason(call, args);
      if (reason !== undefined) {
        expect(() => derivation.stepOfCall(call, 'x', args)).toThrow(reason);
        continue;
      }
      const step = derivation.stepOfCall(call, spec.receiver === 'host' ? undefined : 'x', args) as { op: string };
      expect(derivation.STEP_OPS.has(step.op as never), call).toBe(true);
    }
  });
});
