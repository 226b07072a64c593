/**
 * The columns of a comparison: the three designs of the thread, all on in-place conversion (the contracts of
 * @gmemlab/core), and `today`, the production path of every confidential VM now: guest_memfd holds only private
 * memory, the shared side is the VMM's own memory at the memslot's userspace address, and a conversion is
 * KVM_SET_MEMORY_ATTRIBUTES on the VM fd (HostOptions.conversion 'separate', kernel-contract §4.4). Nothing in the
 * kernel registers or mirrors anything there, so `today` runs with the contract of the RFC as posted
 * ('vmm-driven'), which only matters for an IOMMU_IOAS_MAP_FILE of the guest_memfd.
 *
 * A scenario is written for one world: `host: { conversion: separate }` makes it a today's-path scenario, run in
 * the `today` column only; every other scenario runs under the three designs and not under `today` (its calls are
 * in-place conversions, which today's kernel does not have).
 */
import { CONTRACTS, type Contract, type HostOptions } from '@gmemlab/core';

export const TODAY = 'today' as const;
/** In the order of the thread (the RFC, the registry, its mirroring refinement), then today's path. */
export const DESIGNS = ['vmm-driven', 'gmem-registry', 'mirror', TODAY] as const;
export type Design = Contract | typeof TODAY;

export function isDesign(value: string): value is Design {
  return value === TODAY || (CONTRACTS as readonly string[]).includes(value);
}

/** The host options a column stands for, over the scenario's own. */
export function hostOptionsFor(design: Design, scenarioHost: Partial<HostOptions>): HostOptions {
  if (design === TODAY) return { ...scenarioHost, contract: 'vmm-driven', conversion: 'separate' };
  return { ...scenarioHost, contract: design };
}

/** Why a scenario does not run in a column (nothing runs), or undefined when it does. */
export function skipReason(
  design: Design,
  scenarioHost: { conversion?: string; inPlaceConversion?: boolean },
): string | undefined {
  const separate = scenarioHost.conversion === 'separate' || scenarioHost.inPlaceConversion === false;
  if (design === TODAY && !separate)
    return "an in-place conversion scenario: today's path (conversion 'separate') has no in-place conversion; its companion runs in this column";
  if (design !== TODAY && separate)
    return "a today's-path scenario (conversion 'separate'): it runs in the 'today' column; its in-place companion runs under the designs";
  return undefined;
}
