/**
 * The neutral backend shipped with the core: a software-protected VM, like x86's KVM_X86_SW_PROTECTED_VM.
 * Nothing in hardware enforces private memory (it is a development vehicle; kernel-contract §8.B uses it), so
 * DMA over converting pages is tolerated, every access is allowed, and contents survive conversion (C1/C2).
 */
import { PAGE_SIZE } from '../constants.js';
import type { ArchBackend, BackendRule, ConsumerResponse } from './backend.js';

/** What kernel-contract says for each claim (BackendRule.evidence). */
const VM_TYPE = { tag: 'kernel-contract §8.B', quote: 'x86, `KVM_X86_SW_PROTECTED_VM`' };

const rules: readonly BackendRule[] = Object.freeze(
  [
    {
      topic: 'conversion policy',
      rule: "'tolerate' both ways: nothing in hardware enforces private memory, so no DMA mapping needs unmapping when pages convert.",
      source: 'kernel-contract §8.B (KVM_X86_SW_PROTECTED_VM); [I]',
      evidence: [VM_TYPE],
    },
    {
      topic: 'device access to private',
      rule: 'Allowed: a device reads and writes a private page like any other, since no hardware checks who touches it.',
      source: 'kernel-contract §8.B (KVM_X86_SW_PROTECTED_VM); [I]',
      evidence: [VM_TYPE],
    },
    {
      topic: 'host access to private',
      rule: "Allowed: a host-kernel access to a private page through the direct map reads and writes it. (Host user mappings of private pages are the core's business: zapped before a conversion to private, refused by the fault handler.)",
      source: 'kernel-contract §8.B (KVM_X86_SW_PROTECTED_VM), §4.2; [I]',
      evidence: [
        VM_TYPE,
        {
          tag: 'kernel-contract §4.2',
          quote: '`unmap_mapping_pages()` zaps host user PTEs of the range in every process (row C8)',
        },
      ],
    },
    {
      topic: 'IOPTEs over private',
      rule: 'IOMMU_IOAS_MAP_FILE maps private pages too, and a device may reach any page: no IOPTE is unsafe.',
      source: 'kernel-contract §8.B (KVM_X86_SW_PROTECTED_VM); [I]',
      evidence: [VM_TYPE],
    },
    {
      topic: 'contents',
      rule: "'keep': KVM does not touch the bytes when attributes change, so they survive a conversion both ways (rows C1, C2). No firmware steps run at entry or removal.",
      source: 'kernel-contract §4.2, §8.C',
      evidence: [
        {
          tag: 'kernel-contract §4.2',
          quote: 'KVM "does not directly manipulate the memory contents" of pages when attributes change',
        },
        { tag: 'kernel-contract §8.C', quote: "to shared: host reads 'A', writes 'B'; guest reads 'B'" },
      ],
    },
  ].map((rule) => Object.freeze({ ...rule, evidence: Object.freeze(rule.evidence.map((e) => Object.freeze(e))) })),
);

/** The neutral policy: every conversion tolerates every area (no hardware enforcement to protect). */
const tolerate = (): ConsumerResponse => 'tolerate';

export const swProtected: ArchBackend = Object.freeze({
  specificationVersion: 'v1',
  id: 'sw-protected',
  name: 'Software-protected VM (no hardware enforcement)',
  pageSizes: Object.freeze([PAGE_SIZE]),
  conversionPolicy: tolerate,
  // The answer reads nothing of the context: one question per conversion answers for every area. A backend made by
  // spreading this one and replacing conversionPolicy does not inherit the promise (it names this function).
  conversionPolicyInputs: Object.freeze({ policy: tolerate, inputs: Object.freeze([]) }),
  deviceAccess: () => ({ allow: true }),
  hostKernelAccess: () => ({ allow: true }),
  deviceMayReach: () => true,
  mapsPrivatePages: true,
  // kernel-contract §4.2: "KVM does not directly manipulate the memory contents of pages during attribute updates".
  contentsOnConversion: () => 'keep',
  rules,
} satisfies ArchBackend);
