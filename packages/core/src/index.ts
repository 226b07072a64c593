/**
 * @gmemlab/core: an executable model of KVM guest_memfd, memslots, iommufd and the guest_memfd mapping registry
 * with its invalidation contract. See ARCHITECTURE.md for the map of the code.
 */
export { createHost, Host, type HostOptions, type Conversion, type CreateVmOptions } from './host.js';
export type { CrashRecord, HugeIopteCut } from './kernel.js';
export type { Run } from './util/run.js';
export { GmemError, HostCrashedError, ERRNO_VALUES, type Errno, type GmemErrorDetails } from './errors.js';
export { CloneError } from './util/clone.js';
export * from './constants.js';
export type {
  AccessResult,
  AccessOk,
  AccessFault,
  AccessVerdict,
  FaultKind,
  FrameOwner,
  MemoryFaultExit,
  ReachedFrame,
} from './access.js';
export {
  EventStream,
  EVENT_TYPES,
  OBSERVER_ERRORS_KEPT,
  type GmemEvent,
  type GmemEventType,
  type InvalidationCause,
  type InvalidationEvent,
  type ZapEvent,
  type RevokeEvent,
  type RemapEvent,
  type CallEvent,
  type AccessEvent,
  type PipelineEvent,
  type HardwareEvent,
  type CrashEvent,
  type ObserverErrorEvent,
  type ObserverError,
  type Listener,
} from './events.js';
export { CONTRACTS, registersWithGmem, type Contract } from './contract.js';
export {
  describeBackendProblems,
  type ArchBackend,
  type BackendRule,
  type RuleEvidence,
  type ConsumerResponse,
  type ConversionContext,
  type ConversionPolicyDeclaration,
  type ConversionPolicyInput,
  type ConversionTarget,
  type DmaAreaInfo,
  type HardwareState,
  type HypervisorConversionContext,
  type PrivateEntryContext,
  type PageAccessContext,
  type PageAttribute,
  type PipelineStep,
  type RemovalContext,
} from './arch/backend.js';
export { swProtected } from './arch/sw-protected.js';
export { defineBackendFactory, describeFactoryProblems, factoryCore, type BackendFactory } from './arch/factory.js';
export {
  archBackend,
  BackendOptionError,
  defineOptions,
  flag,
  oneOf,
  ruleTable,
  variantId,
  whenHardwarePrivate,
  type ArchBackendFields,
  type OptionConflict,
  type OptionInputs,
  type OptionReader,
  type OptionSpec,
  type OptionSpecs,
  type OptionSpecsOf,
  type OptionValues,
  type RuleCondition,
  type RuleRow,
  type RuleTable,
} from './arch/skeleton.js';
export type {
  MappingConsumer,
  Registration,
  Invalidation,
  ConversionRequest,
  ConsumerKind,
} from './registry/registry.js';
export { violationKey, type Violation, type ViolationKind } from './invariants.js';
export type { PageMap, PageRun, EntryState } from './page-map.js';
export type { MemoryAttributesArgs } from './kvm/vm-attributes.js';
export type {
  Vm,
  VmType,
  CreateGuestMemfdArgs,
  UserMemoryRegion2Args,
  UserMemoryRegionArgs,
  GuestAccessOptions,
  GuestFaultOptions,
  PendingGuestFault,
} from './kvm/vm.js';
export { IOPTE_SPLIT_STEP, IOPTE_UNMAP_WHOLE_STEP } from './iommufd/area.js';
export type { GuestMemfd, GuestMemfdStat, SetMemoryAttributes2Args, MmapArgs, Pin } from './kvm/guest-memfd.js';
export type { Memslot } from './kvm/memslot.js';
export { MADV_HWPOISON, type HostMapping } from './mm/host-mapping.js';
export type { Memfd } from './mm/memfd.js';
export type { Iommufd } from './iommufd/iommufd.js';
export type { Ioas, MapFileArgs, MapArgs, UnmapArgs } from './iommufd/ioas.js';
export type { Device, IovaArea } from './iommufd/device.js';
export { CALLS, CALL_NAMES, type CallSpec, type ArgSpec, type HandleKind, type ResolvedArgs } from './calls.js';
