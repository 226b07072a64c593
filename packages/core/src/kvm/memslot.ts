/**
 * A KVM memslot (struct kvm_memory_slot): a GPA range backed by a userspace address and, with
 * KVM_MEM_GUEST_MEMFD, by a range of a guest_memfd (kernel-contract §3.7).
 */
import type { GuestMemfd } from './guest-memfd.js';

export interface Memslot {
  /** The slot number as passed: address space id << 16 | slot id. */
  readonly slot: number;
  readonly asId: number;
  baseGfn: number;
  readonly npages: number;
  flags: number;
  readonly userspaceAddr: number;
  /** The guest_memfd binding; file becomes null when the file is released first (§3.7 unbind, §3.8). */
  readonly gmem: { file: GuestMemfd | null; readonly pgoff: number } | null;
  /**
   * KVM_MEMSLOT_GMEM_ONLY: shared accesses also come from guest_memfd. Set when the guest_memfd has the MMAP
   * flag; the model also sets it for VMs with private memory, since it runs with in-place conversion on
   * (GMEM-LATER sets it "also when gmem_in_place_conversion").
   */
  readonly gmemOnly: boolean;
}
