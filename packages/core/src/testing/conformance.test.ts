import { describe, expect, it } from 'vitest';
import { swProtected, type ArchBackend } from '../index.js';
import { conformanceCases, describeBackendConformance } from './index.js';

describeBackendConformance(swProtected, { describe, it });

describe('the kit catches a backend that breaks its own declarations', () => {
  const run = (backend: ArchBackend, name: RegExp) => {
    const matching = conformanceCases(backend).filter((c) => name.test(c.name));
    expect(matching.length).toBeGreaterThan(0);
    return () => matching.forEach((c) => c.run());
  };

  it('a backend that tolerates DMA over private pages but says no device may reach them', () => {
    const liar: ArchBackend = { ...swProtected, id: 'liar', deviceMayReach: ({ attribute }) => attribute === 'shared' };
    expect(run(liar, /conversion to private under live IOPTEs.*gmem-registry/)).toThrow(/unsafe-iopte/);
  });

  it('a backend whose declared device verdict is not what it returns', () => {
    let calls = 0;
    const flaky: ArchBackend = { ...swProtected, id: 'flaky', deviceAccess: () => (calls++ % 2 ? { allow: true } : { allow: false, fault: 'contained', fatal: false, logged: false, mechanism: 'x' }) };
    expect(run(flaky, /is stateless/)).toThrow(/not deterministic/);
  });

  it('a backend with a malformed id', () => {
    expect(run({ ...swProtected, id: 'TDX Connect' }, /implements ArchBackend v1/)).toThrow(/id/);
  });

  it('a backend that reports timings instead of counts', () => {
    const timed: ArchBackend = { ...swProtected, id: 'timed', removalPipeline: () => [{ step: 'flush', count: 1.5 }] };
    expect(run(timed, /is stateless/)).toThrow(/whole numbers/);
  });
});
