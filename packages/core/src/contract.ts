/**
 * The two designs argued in the RFC thread, run on the same actions:
 * - 'gmem-registry' (Ackerley Tng, Jason Gunthorpe, Sean Christopherson): guest_memfd keeps a registry of every
 *   mapping of its pages, by file, and invalidates them itself: always on truncation, on conversion as the
 *   architecture requires.
 * - 'vmm-driven' (the RFC as posted): iommufd maps guest_memfd pages without registering; nothing in the kernel
 *   invalidates them, and the VMM must unmap in time.
 */
export type Contract = 'gmem-registry' | 'vmm-driven';
export const CONTRACTS: readonly Contract[] = ['gmem-registry', 'vmm-driven'];
