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

  it('a backend that never maps private pages and says no device may reach them, but keeps IOPTEs over converting ones', () => {
    // (A backend that maps private pages on purpose and says no device may reach them — pKVM upstream, with no
    // DMA isolation — reports 'unsafe-iopte' as the truth about that architecture; see unsafeByDesign.)
    const liar: ArchBackend = {
      ...swProtected,
      id: 'liar',
      mapsPrivatePages: false,
      deviceMayReach: ({ attribute }) => attribute === 'shared',
    };
    expect(run(liar, /conversion to private under live IOPTEs.*gmem-registry/)).toThrow(/unsafe-iopte/);
  });

  it('a backend whose declared device verdict is not what it returns', () => {
    let calls = 0;
    const flaky: ArchBackend = {
      ...swProtected,
      id: 'flaky',
      deviceAccess: () =>
        calls++ % 2
          ? { allow: true }
          : { allow: false, fault: 'contained', fatal: false, logged: false, mechanism: 'x' },
    };
    expect(run(flaky, /is stateless/)).toThrow(/not deterministic/);
  });

  it('a backend with a malformed id', () => {
    expect(run({ ...swProtected, id: 'TDX Connect' }, /implements ArchBackend v1/)).toThrow(/id/);
  });

  it('a backend whose entry steps are timings', () => {
    const timed: ArchBackend = { ...swProtected, id: 'timed-entry', privateEntry: () => [{ step: 'aug', count: 0.5 }] };
    expect(run(timed, /is stateless/)).toThrow(/whole numbers/);
  });

  it('a policy that refuses every conversion to private passes the kit (the kit converts before it maps)', () => {
    const refusing: ArchBackend = {
      ...swProtected,
      id: 'refusing',
      conversionPolicy: ({ to }) => (to === 'private' ? 'refuse' : 'tolerate'),
    };
    for (const c of conformanceCases(refusing)) expect(() => c.run(), c.name).not.toThrow();
  });

  it('a backend that reports timings instead of counts', () => {
    const timed: ArchBackend = { ...swProtected, id: 'timed', removalPipeline: () => [{ step: 'flush', count: 1.5 }] };
    expect(run(timed, /is stateless/)).toThrow(/whole numbers/);
  });
});
