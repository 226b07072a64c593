/**
 * @gmemlab/linux: the running kernel's guest_memfd, memslots and mmaps with @gmemlab/core's method names, through
 * a small C helper process (README.md explains why and its protocol). `@gmemlab/linux/differential` runs one
 * step list on both the model and the kernel.
 */
export {
  isAvailable,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  type Availability,
  type AvailabilityOptions,
} from './availability.js';
export { KernelError, HelperError } from './errors.js';
export { helperPath } from './native.js';
export {
  createLinuxHost,
  LinuxHost,
  LinuxVm,
  LinuxFile,
  LinuxGuestMemfd,
  LinuxMemfd,
  LinuxMapping,
  type AccessResult,
  type GuestMemfdStat,
  type LinuxHostOptions,
  type U64,
  type UserMemoryRegionArgs,
  type UserMemoryRegion2Args,
  type UserspaceAddress,
} from './host.js';
