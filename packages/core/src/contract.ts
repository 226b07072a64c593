/**
 * The designs argued in the RFC thread, run on the same actions:
 * - 'gmem-registry' (Ackerley Tng, Jason Gunthorpe, Sean Christopherson): guest_memfd keeps a registry of every
 *   mapping of its pages, by file, and invalidates them itself: always on truncation, on conversion as the
 *   architecture requires.
 * - 'vmm-driven' (the RFC as posted): iommufd maps guest_memfd pages without registering; nothing in the kernel
 *   invalidates them, and the VMM must unmap in time.
 * - 'mirror' (Jason Gunthorpe's suggestion, RFC-J5, RFC-J6: "Intel needs two-step synchronisation (wipe IOPTEs
 *   before a conversion, restore the right ones after)"; "iommufd may have to mirror guest_memfd into IOPTEs and
 *   track changes"): iommufd areas register exactly as in 'gmem-registry', and truncation and release revoke them
 *   as there (kernel-contract §9.3 is unchanged). A conversion to private does what the architecture's policy
 *   says, but the IOPTEs a 'revoke' answer removes are only unmapped for privacy, not revoked for good; once a
 *   conversion to shared has stored the attributes and ended its invalidation, every registered area over the
 *   range maps those pages again (the "mirror of guest_memfd" kernel-contract §9.4 leaves open).
 */
export type Contract = 'gmem-registry' | 'vmm-driven' | 'mirror';
export const CONTRACTS: readonly Contract[] = ['gmem-registry', 'vmm-driven', 'mirror'];

/** Whether iommufd areas over guest_memfd pages register with its mapping registry in this mode. */
export function registersWithGmem(contract: Contract): boolean {
  return contract !== 'vmm-driven';
}
