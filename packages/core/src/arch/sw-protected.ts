/**
 * The neutral backend shipped with the core: a software-protected VM, like x86's KVM_X86_SW_PROTECTED_VM.
 * Nothing in hardware enforces private memory (it is a development vehicle; kernel-contract §8.B uses it), so
 * DMA over converting pages is tolerated, every access is allowed, and contents survive conversion (C1/C2).
 */
import { PAGE_SIZE } from '../constants.js';
import type { ArchBackend } from './backend.js';

export const swProtected: ArchBackend = Object.freeze({
  specificationVersion: 'v1',
  id: 'sw-protected',
  name: 'Software-protected VM (no hardware enforcement)',
  pageSizes: [PAGE_SIZE],
  conversionPolicy: () => 'tolerate',
  deviceAccess: () => ({ allow: true }),
  hostKernelAccess: () => ({ allow: true }),
  deviceMayReach: () => true,
  mapsPrivatePages: true,
  // kernel-contract §4.2: "KVM does not directly manipulate the memory contents of pages during attribute updates".
  contentsOnConversion: () => 'keep',
} satisfies ArchBackend);
