/**
 * The variant contract of every backend package, as a loader or `gmemlab backends` meets it: the default export
 * is a factory whose published variants each build `<id>:<key>` (describeFactoryProblems), and the keys are the
 * ids the packages document.
 */
import { describeFactoryProblems, type BackendFactory } from '@gmemlab/core';
import { describe, expect, it } from 'vitest';

const PACKAGES: Record<string, string[]> = {
  '@gmemlab/tdx': ['tdx:connect', 'tdx:dma-poison', 'tdx:no-erratum'],
  '@gmemlab/sev-snp': ['sev-snp:tio', 'sev-snp:iommu-hugepages'],
  '@gmemlab/arm-cca': ['arm-cca:da', 'arm-cca:rely-on-gpt'],
  '@gmemlab/pkvm': ['pkvm:upstream', 'pkvm:refuse-dma-mapped', 'pkvm:hyp-bug'],
};

describe('backend variants', () => {
  for (const [name, ids] of Object.entries(PACKAGES)) {
    it(`${name}: every published variant builds '<id>:<key>', and they are ${ids.join(', ')}`, async () => {
      const factory = ((await import(name)) as { default: BackendFactory<unknown> }).default;
      expect(describeFactoryProblems(factory)).toEqual([]);
      expect(Object.keys(factory.variants).map((key) => `${factory.id}:${key}`)).toEqual(ids);
      expect(Object.entries(factory.variants).map(([, options]) => factory(options).id)).toEqual(ids);
      expect(Object.isFrozen(factory.variants)).toBe(true);
    });
  }
});
