/**
 * The call table: every public call of the model a step may make, by the name the API gives it
 * (`receiver.method`), with its receiver kind, its arguments (kind, optionality, default, meaning), what it returns,
 * the kernel interface it stands for, and the model invocation (`run`). One table serves every client that
 * describes calls as data: the demo's scenario format (its schema, static checks, runner and docs are generated
 * from it), the differential oracle (@gmemlab/linux/differential derives its kernel steps from it) and the
 * explorer's actions (a step written as data and the call it makes are one entry here). It names no backend and
 * no file format; a client evaluates its own argument syntax, then calls `CALLS[name].run(receiver, args)`.
 */
import type { Host } from './host.js';
import type { Device } from './iommufd/device.js';
import type { Ioas } from './iommufd/ioas.js';
import type { Iommufd } from './iommufd/iommufd.js';
import type { GuestMemfd, Pin } from './kvm/guest-memfd.js';
import type { PendingGuestFault, Vm } from './kvm/vm.js';
import type { HostMapping } from './mm/host-mapping.js';
import type { Memfd } from './mm/memfd.js';

export type HandleKind =
  'vm' | 'gmem' | 'memfd' | 'mapping' | 'iommufd' | 'ioas' | 'device' | 'pin' | 'fault' | 'number';

export type ArgSpec =
  | { type: 'num'; optional?: boolean; doc: string }
  /** A number, or a list of numbers OR'ed together (flag names). */
  | { type: 'flags'; optional?: boolean; doc: string }
  /** The name of an earlier step's handle of one of these kinds. */
  | { type: 'handle'; kinds: readonly HandleKind[]; optional?: boolean; doc: string }
  | { type: 'bool'; optional?: boolean; default?: boolean; doc: string }
  | { type: 'enum'; values: readonly string[]; optional?: boolean; default?: string; doc: string }
  | { type: 'string'; optional?: boolean; doc: string }
  /** A byte value 0..255 that fills the data written (`length` bytes). */
  | { type: 'byte'; optional?: boolean; doc: string };

/** Arguments after evaluation: numbers, OR'ed flags, live objects for handles. */
export type ResolvedArgs = Record<string, unknown>;

export interface CallSpec {
  /** The kind of object the call is made on; 'host' is the host itself. */
  receiver: Exclude<HandleKind, 'number'> | 'host';
  /** The kind of handle a successful call gives back, if any. */
  returns?: HandleKind;
  /** The kernel interface the call stands for, for display. */
  kernel: string;
  doc: string;
  args: Record<string, ArgSpec>;
  /** Make the call on the model: `args` evaluated (numbers, flags OR'ed, handles as objects); `run` applies defaults. */
  run(receiver: any, args: ResolvedArgs): unknown;
}

const num = (doc: string, optional = false): ArgSpec => ({ type: 'num', doc, optional });
const flags = (doc: string, optional = false): ArgSpec => ({ type: 'flags', doc, optional });
const intent: ArgSpec = {
  type: 'enum',
  values: ['shared', 'private'],
  optional: true,
  doc: "the guest's private/shared intent (TDX shared bit, SNP C-bit, CCA top IPA bit); absent: the page's attribute",
};
const data: ArgSpec = { type: 'byte', optional: true, doc: 'the byte written (default 0)' };
/** mmap(2) and fallocate(2) take the same arguments on a guest_memfd and on a memfd. */
const mmapCall = (receiver: 'gmem' | 'memfd', doc: string): CallSpec => ({
  receiver,
  returns: 'mapping',
  kernel: 'mmap',
  doc,
  args: {
    length: num('bytes'),
    shared: { type: 'bool', optional: true, default: true, doc: 'MAP_SHARED (default true)' },
    offset: num('file offset', true),
  },
  run: (file: GuestMemfd | Memfd, a) =>
    file.mmap({
      length: a.length as number,
      shared: (a.shared as boolean | undefined) ?? true,
      ...(a.offset !== undefined ? { offset: a.offset as number } : {}),
    }),
});
const fallocateCall = (receiver: 'gmem' | 'memfd', doc: string): CallSpec => ({
  receiver,
  kernel: 'fallocate',
  doc,
  args: {
    mode: flags('0, or FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE'),
    offset: num('file offset'),
    length: num('bytes'),
  },
  run: (file: GuestMemfd | Memfd, a) => file.fallocate(a.mode as number, a.offset as number, a.length as number),
});
const fill = (data: unknown, length: unknown) => new Uint8Array(Number(length)).fill(Number(data ?? 0));
const guestOptions = (a: ResolvedArgs) =>
  a.intent === undefined ? undefined : { intent: a.intent as 'shared' | 'private' };

export const CALLS: Readonly<Record<string, CallSpec>> = {
  'host.createVm': {
    receiver: 'host',
    returns: 'vm',
    kernel: 'KVM_CREATE_VM',
    doc: "create a VM; 'coco' has private memory (TDX, SNP, CCA realm or pKVM guest as the backend says)",
    args: {
      type: {
        type: 'enum',
        values: ['default', 'coco'],
        optional: true,
        default: 'coco',
        doc: "'default' or 'coco' (default 'coco')",
      },
      vcpus: num('vCPUs (IPI counts in removal pipelines)', true),
    },
    run: (host: Host, a) =>
      host.createVm({
        type: (a.type as 'coco' | 'default' | undefined) ?? 'coco',
        ...(a.vcpus !== undefined ? { vcpus: Number(a.vcpus) } : {}),
      }),
  },
  'host.openIommufd': {
    receiver: 'host',
    returns: 'iommufd',
    kernel: 'open("/dev/iommu")',
    doc: 'open an iommufd',
    args: {},
    run: (host: Host) => host.openIommufd(),
  },
  'host.memfdCreate': {
    receiver: 'host',
    returns: 'memfd',
    kernel: 'memfd_create',
    doc: 'create a memfd (shmem) of a fixed size',
    args: { size: num('bytes') },
    run: (host: Host, a) => host.memfdCreate(a.size as number),
  },
  'vm.createGuestMemfd': {
    receiver: 'vm',
    returns: 'gmem',
    kernel: 'KVM_CREATE_GUEST_MEMFD',
    doc: 'create a guest_memfd',
    args: { size: num('bytes'), flags: flags('GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED', true) },
    run: (vm: Vm, a) =>
      vm.createGuestMemfd({ size: a.size as number, ...(a.flags !== undefined ? { flags: a.flags as number } : {}) }),
  },
  'vm.setMemoryAttributes': {
    receiver: 'vm',
    kernel: 'KVM_SET_MEMORY_ATTRIBUTES',
    doc: "today's path (host conversion 'separate'): make gfns [address, address + size) private (attributes KVM_MEMORY_ATTRIBUTE_PRIVATE) or shared (0) in KVM's per-VM attributes",
    args: {
      address: num('GPA of the first byte'),
      size: num('bytes'),
      attributes: flags('KVM_MEMORY_ATTRIBUTE_PRIVATE or 0'),
      flags: flags('must be 0', true),
    },
    run: (vm: Vm, a) =>
      vm.setMemoryAttributes({
        address: a.address as number,
        size: a.size as number,
        attributes: a.attributes as number,
        ...(a.flags !== undefined ? { flags: a.flags as number } : {}),
      }),
  },
  'vm.setUserMemoryRegion2': {
    receiver: 'vm',
    kernel: 'KVM_SET_USER_MEMORY_REGION2',
    doc: 'create, move or delete a memslot (memorySize 0 deletes)',
    args: {
      slot: num('slot id (as_id << 16 | id)'),
      flags: flags('KVM_MEM_GUEST_MEMFD, KVM_MEM_READONLY, ...'),
      guestPhysAddr: num('GPA of the slot'),
      memorySize: num('bytes'),
      userspaceAddr: num('host virtual address of the shared side', true),
      guestMemfd: { type: 'handle', kinds: ['gmem'], optional: true, doc: 'the guest_memfd bound to the slot' },
      guestMemfdOffset: num('offset in the guest_memfd', true),
    },
    run: (vm: Vm, a) =>
      vm.setUserMemoryRegion2({
        slot: a.slot as number,
        flags: a.flags as number,
        guestPhysAddr: a.guestPhysAddr as number,
        memorySize: a.memorySize as number,
        ...(a.userspaceAddr !== undefined ? { userspaceAddr: a.userspaceAddr as number } : {}),
        ...(a.guestMemfd !== undefined ? { guestMemfd: a.guestMemfd as GuestMemfd } : {}),
        ...(a.guestMemfdOffset !== undefined ? { guestMemfdOffset: a.guestMemfdOffset as number } : {}),
      }),
  },
  'vm.guestRead': {
    receiver: 'vm',
    kernel: 'guest load (KVM_RUN)',
    doc: 'the guest reads guest memory; a private/shared mismatch is a KVM_EXIT_MEMORY_FAULT',
    args: { gpa: num('guest physical address'), length: num('bytes'), intent },
    run: (vm: Vm, a) => vm.guestRead(a.gpa as number, a.length as number, guestOptions(a)),
  },
  'vm.guestWrite': {
    receiver: 'vm',
    kernel: 'guest store (KVM_RUN)',
    doc: 'the guest writes `length` bytes of `data` to guest memory',
    args: { gpa: num('guest physical address'), length: num('bytes'), data, intent },
    run: (vm: Vm, a) => vm.guestWrite(a.gpa as number, fill(a.data, a.length), guestOptions(a)),
  },
  'vm.resolveGuestFault': {
    receiver: 'vm',
    returns: 'fault',
    kernel: 'kvm_mmu_faultin_pfn',
    doc: 'first step of a guest fault: the pfn from guest_memfd and mmu_invalidate_seq sampled; `fault.install` is the second',
    args: { gpa: num('guest physical address'), write: { type: 'bool', optional: true, doc: 'a write fault' }, intent },
    run: (vm: Vm, a) =>
      vm.resolveGuestFault(a.gpa as number, {
        ...guestOptions(a),
        ...(a.write !== undefined ? { write: a.write as boolean } : {}),
      }),
  },
  'fault.install': {
    receiver: 'fault',
    kernel: 'mmu_invalidate_retry_gfn + map',
    doc: "second step of a guest fault: install the stage-2 entry, or 'retry' if an invalidation overlapped",
    args: {},
    run: (fault: PendingGuestFault) => fault.install(),
  },
  'vm.close': {
    receiver: 'vm',
    kernel: 'close(vm fd)',
    doc: 'close the VM fd (the VM lives while guest_memfd files hold it)',
    args: {},
    run: (vm: Vm) => vm.close(),
  },
  'gmem.mmap': mmapCall('gmem', 'map the guest_memfd into the VMM (needs GUEST_MEMFD_FLAG_MMAP)'),
  'gmem.setMemoryAttributes2': {
    receiver: 'gmem',
    kernel: 'KVM_SET_MEMORY_ATTRIBUTES2',
    doc: 'convert a range: attributes KVM_MEMORY_ATTRIBUTE_PRIVATE (to private) or 0 (to shared)',
    args: {
      offset: num('file offset'),
      size: num('bytes'),
      attributes: flags('KVM_MEMORY_ATTRIBUTE_PRIVATE or 0'),
      flags: flags('must be 0', true),
    },
    run: (gmem: GuestMemfd, a) =>
      gmem.setMemoryAttributes2({
        offset: a.offset as number,
        size: a.size as number,
        attributes: a.attributes as number,
        ...(a.flags !== undefined ? { flags: a.flags as number } : {}),
      }),
  },
  'gmem.fallocate': fallocateCall(
    'gmem',
    'allocate, or with FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE truncate a range out of the guest',
  ),
  'gmem.pin': {
    receiver: 'gmem',
    returns: 'pin',
    kernel: 'pin_user_pages(FOLL_LONGTERM)',
    doc: 'take a long-term pin on shared pages (as GUP would)',
    args: { offset: num('file offset'), length: num('bytes') },
    run: (gmem: GuestMemfd, a) => gmem.pin(a.offset as number, a.length as number),
  },
  'pin.unpin': {
    receiver: 'pin',
    kernel: 'unpin_user_pages',
    doc: 'drop the pin',
    args: {},
    run: (pin: Pin) => pin.unpin(),
  },
  'gmem.memoryFailure': {
    receiver: 'gmem',
    kernel: 'memory_failure',
    doc: 'the hardware reports an uncorrectable error in one page (its index)',
    args: { index: num('page index in the file') },
    run: (gmem: GuestMemfd, a) => gmem.memoryFailure(a.index as number),
  },
  'gmem.directMapRead': {
    receiver: 'gmem',
    kernel: 'host kernel load',
    doc: 'the host kernel reads the page through the direct map (a stale kernel pointer)',
    args: { offset: num('file offset'), length: num('bytes') },
    run: (gmem: GuestMemfd, a) => gmem.directMapRead(a.offset as number, a.length as number),
  },
  'gmem.directMapWrite': {
    receiver: 'gmem',
    kernel: 'host kernel store',
    doc: 'the host kernel writes the page through the direct map',
    args: { offset: num('file offset'), length: num('bytes'), data },
    run: (gmem: GuestMemfd, a) => gmem.directMapWrite(a.offset as number, fill(a.data, a.length)),
  },
  'gmem.close': {
    receiver: 'gmem',
    kernel: 'close',
    doc: 'close the guest_memfd fd (the file lives while memslots, mmaps or areas hold it)',
    args: {},
    run: (gmem: GuestMemfd) => gmem.close(),
  },
  'memfd.mmap': mmapCall('memfd', 'map the memfd into the VMM'),
  'memfd.fallocate': fallocateCall('memfd', 'allocate or punch a hole in the memfd'),
  'memfd.close': {
    receiver: 'memfd',
    kernel: 'close',
    doc: 'close the memfd fd',
    args: {},
    run: (memfd: Memfd) => memfd.close(),
  },
  'mapping.read': {
    receiver: 'mapping',
    kernel: 'VMM load',
    doc: 'the VMM reads through its mapping',
    args: { offset: num('offset in the mapping'), length: num('bytes') },
    run: (m: HostMapping, a) => m.read(a.offset as number, a.length as number),
  },
  'mapping.write': {
    receiver: 'mapping',
    kernel: 'VMM store',
    doc: 'the VMM writes through its mapping',
    args: { offset: num('offset in the mapping'), length: num('bytes'), data },
    run: (m: HostMapping, a) => m.write(a.offset as number, fill(a.data, a.length)),
  },
  'mapping.madvise': {
    receiver: 'mapping',
    kernel: 'madvise',
    doc: 'madvise a range of the mapping (MADV_REMOVE punches a hole)',
    args: { offset: num('offset in the mapping'), length: num('bytes'), advice: num('MADV_* value') },
    run: (m: HostMapping, a) => m.madvise(a.offset as number, a.length as number, a.advice as number),
  },
  'mapping.munmap': {
    receiver: 'mapping',
    kernel: 'munmap',
    doc: 'unmap the whole mapping',
    args: {},
    run: (m: HostMapping) => m.munmap(),
  },
  'iommufd.createIoas': {
    receiver: 'iommufd',
    returns: 'ioas',
    kernel: 'IOMMU_IOAS_ALLOC',
    doc: 'create an I/O address space',
    args: {},
    run: (fd: Iommufd) => fd.createIoas(),
  },
  'iommufd.close': {
    receiver: 'iommufd',
    kernel: 'close',
    doc: 'close the iommufd',
    args: {},
    run: (fd: Iommufd) => fd.close(),
  },
  'ioas.mapFile': {
    receiver: 'ioas',
    returns: 'number',
    kernel: 'IOMMU_IOAS_MAP_FILE',
    doc: 'map a range of a guest_memfd or memfd for DMA by fd; returns the IOVA',
    args: {
      fd: { type: 'handle', kinds: ['gmem', 'memfd'], doc: 'the file' },
      start: num('file offset'),
      length: num('bytes'),
      iova: num('IOVA (with IOMMU_IOAS_MAP_FIXED_IOVA)', true),
      flags: flags('IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE [| IOMMU_IOAS_MAP_FIXED_IOVA]'),
    },
    run: (ioas: Ioas, a) =>
      ioas.mapFile({
        fd: a.fd as GuestMemfd,
        start: a.start as number,
        length: a.length as number,
        flags: a.flags as number,
        ...(a.iova !== undefined ? { iova: a.iova as number } : {}),
      }),
  },
  'ioas.map': {
    receiver: 'ioas',
    returns: 'number',
    kernel: 'IOMMU_IOAS_MAP',
    doc: 'map a user address range (part of a mapping) for DMA; returns the IOVA',
    args: {
      mapping: { type: 'handle', kinds: ['mapping'], doc: 'the VMM mapping holding the range' },
      offset: num('offset in the mapping'),
      length: num('bytes'),
      iova: num('IOVA (with IOMMU_IOAS_MAP_FIXED_IOVA)', true),
      flags: flags('IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE [| IOMMU_IOAS_MAP_FIXED_IOVA]'),
    },
    run: (ioas: Ioas, a) =>
      ioas.map({
        mapping: a.mapping as HostMapping,
        offset: a.offset as number,
        length: a.length as number,
        flags: a.flags as number,
        ...(a.iova !== undefined ? { iova: a.iova as number } : {}),
      }),
  },
  'ioas.unmap': {
    receiver: 'ioas',
    returns: 'number',
    kernel: 'IOMMU_IOAS_UNMAP',
    doc: 'unmap whole areas inside [iova, iova + length); returns bytes unmapped',
    args: { iova: num('IOVA'), length: num('bytes') },
    run: (ioas: Ioas, a) => ioas.unmap({ iova: a.iova as number, length: a.length as number }),
  },
  'ioas.copy': {
    receiver: 'ioas',
    returns: 'number',
    kernel: 'IOMMU_IOAS_COPY',
    doc: 'map into this IOAS what [srcIova, srcIova + length) of the source IOAS maps, sharing its pages (no new pin, no new registration); returns the IOVA',
    args: {
      src: { type: 'handle', kinds: ['ioas'], optional: true, doc: 'the source IOAS (default: this one)' },
      srcIova: num('source IOVA: the range may start and end inside areas, but may not hold a hole'),
      length: num('bytes'),
      iova: num('destination IOVA (with IOMMU_IOAS_MAP_FIXED_IOVA)', true),
      flags: flags('IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE [| IOMMU_IOAS_MAP_FIXED_IOVA]'),
    },
    run: (ioas: Ioas, a) =>
      ioas.copy({
        ...(a.src !== undefined ? { src: a.src as Ioas } : {}),
        srcIova: a.srcIova as number,
        length: a.length as number,
        flags: a.flags as number,
        ...(a.iova !== undefined ? { iova: a.iova as number } : {}),
      }),
  },
  'ioas.disableLargePages': {
    receiver: 'ioas',
    kernel: 'IOMMU_OPTION(IOMMU_OPTION_HUGE_PAGES, 0)',
    doc: 'map with 4K IOPTEs only, as VFIO_TYPE1_IOMMU does, so that the VFIO-compatible unmap may cut areas',
    args: {},
    run: (ioas: Ioas) => ioas.disableLargePages(),
  },
  'ioas.vfioUnmapDma': {
    receiver: 'ioas',
    returns: 'number',
    kernel: 'VFIO_IOMMU_UNMAP_DMA (iommufd VFIO compatibility)',
    doc: 'unmap [iova, iova + length), cutting areas at its edges when large pages are disabled; an empty range unmaps 0 bytes',
    args: { iova: num('IOVA'), length: num('bytes') },
    run: (ioas: Ioas, a) => ioas.vfioUnmapDma({ iova: a.iova as number, length: a.length as number }),
  },
  'ioas.unmapAll': {
    receiver: 'ioas',
    returns: 'number',
    kernel: 'IOMMU_IOAS_UNMAP (all)',
    doc: 'unmap every area',
    args: {},
    run: (ioas: Ioas) => ioas.unmapAll(),
  },
  'ioas.attachDevice': {
    receiver: 'ioas',
    returns: 'device',
    kernel: 'IOMMU_HWPT_ALLOC + attach',
    doc: 'attach a device: the IOAS gets a domain and its areas get IOPTEs',
    args: { name: { type: 'string', optional: true, doc: 'a name for the device' } },
    run: (ioas: Ioas, a) => ioas.attachDevice(a.name as string | undefined),
  },
  'ioas.destroy': {
    receiver: 'ioas',
    kernel: 'IOMMU_DESTROY',
    doc: 'destroy the IOAS',
    args: {},
    run: (ioas: Ioas) => ioas.destroy(),
  },
  'device.dmaRead': {
    receiver: 'device',
    kernel: 'DMA read',
    doc: 'the device reads at an IOVA',
    args: { iova: num('IOVA'), length: num('bytes') },
    run: (d: Device, a) => d.dmaRead(a.iova as number, a.length as number),
  },
  'device.dmaWrite': {
    receiver: 'device',
    kernel: 'DMA write',
    doc: 'the device writes `length` bytes of `data` at an IOVA',
    args: { iova: num('IOVA'), length: num('bytes'), data },
    run: (d: Device, a) => d.dmaWrite(a.iova as number, fill(a.data, a.length)),
  },
  'device.detach': {
    receiver: 'device',
    kernel: 'detach',
    doc: 'detach the device from its IOAS',
    args: {},
    run: (d: Device) => d.detach(),
  },
};

export const CALL_NAMES = Object.keys(CALLS);
