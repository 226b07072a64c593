/**
 * A VMM's log turned into a scenario document: the state the parsers share (fds, the VMM's mappings by address,
 * memslots by GPA, iommufd objects by id), the steps written so far, and what was counted but not replayed.
 * The parsers (qemu.ts, strace.ts) say what a line means; this module decides which scenario call stands for it
 * — TRANSLATION below is the one table of that choice — and writes the step.
 *
 * Numbers are kept as bigints and written as hex strings (the scenario format evaluates them exactly).
 */
import { basename } from 'node:path';
import { InputError } from '../errors.js';
import {
  ERRNO_VALUES,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  MADV_DONTNEED,
} from '@gmemlab/core';

export const PAGE = 4096n;
/** loff_t: a file offset or size past 2^63 - 1 is no file's. */
export const LOFF_MAX = (1n << 63n) - 1n;
/**
 * Linux's default vm.max_map_count (include/linux/mm.h DEFAULT_MAX_MAP_COUNT, 65530): a process cannot hold more
 * mappings, so a log that leaves more alive is not a real process's; the replay stops there (bounded memory).
 */
export const MAX_LIVE_MAPPINGS = 65530;

/** A problem with the log: one line (exit 2), with the file and line number. */
export class ReplayError extends InputError {
  override readonly name = 'ReplayError';
}

/** One step of the scenario document, as a scenario file would hold it. */
export type DocStep = Record<string, unknown> & { call: string };

/** errno numbers to names (the kernel's, as the scenario format spells them). */
const ERRNO_NAMES = new Map<bigint, string>(
  Object.entries(ERRNO_VALUES).map(([name, value]) => [BigInt(value as number), name]),
);

/**
 * The expectation a logged result gives a replayed step: 'ok' for a call that returned >= 0, the errno's name for
 * one that failed with it (strace's `= -1 EEXIST`, QEMU's `ret=-22`), undefined when the log does not carry which
 * errno (QEMU's iommufd events print the ioctl's -1, not errno) or no result at all. A disagreement between the
 * model and the logged kernel then fails the step's expectation (exit 1).
 */
export function expectFromLog(ret: bigint | undefined, errno?: string): string | undefined {
  if (ret === undefined) return undefined;
  if (ret >= 0n) return 'ok';
  if (errno !== undefined) return errno in ERRNO_VALUES ? errno : undefined;
  return ERRNO_NAMES.get(-ret);
}

export const hex = (v: bigint): string => (v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);
const roundUp = (v: bigint): bigint => ((v + PAGE - 1n) / PAGE) * PAGE;

export interface Mapping {
  start: bigint;
  length: bigint;
  /** The scenario handle, once a step created it (an anonymous mapping gets one only when KVM or a device uses it). */
  handle?: string;
  file?: { handle: string; kind: 'gmem' | 'memfd'; offset: bigint };
  anonymous: boolean;
  shared: boolean;
}

interface Memslot {
  gpa: bigint;
  size: bigint;
  gmem?: string;
  gmemOffset: bigint;
  /** The memslot's userspace_addr (the shared side's memory), when it has one. */
  userspaceAddr?: bigint;
}

/** A file whose size the log does not carry: its size is a `let`, set at the end to what its uses need. */
interface SizedFile {
  let: string;
  need: bigint;
  given?: bigint;
  /** guest_memfd: the flags its uses show (GUEST_MEMFD_FLAG_MMAP when the log mmaps it). */
  flags: bigint;
  /** Why the size is what it is, for the report. */
  kind: 'gmem' | 'memfd';
}

export interface ReplayCounts {
  /** Lines replayed (each gave one or more steps). */
  replayed: number;
  /** Understood, but with nothing for the model to do (or nothing the log lets it do): by kind, with a count. */
  skipped: Map<string, number>;
  /** Not understood: by kind, with a count. */
  unknown: Map<string, number>;
}

/**
 * Which scenario call stands for each operation a log carries: the one table of that choice. Entries with
 * `waitsFor` translate to the nearest call main has, and say so in each step's note.
 */
export const TRANSLATION = {
  createVm: { call: 'host.createVm' },
  createGuestMemfd: { call: 'vm.createGuestMemfd' },
  memfdCreate: { call: 'host.memfdCreate' },
  mmapGmem: { call: 'gmem.mmap' },
  mmapMemfd: { call: 'memfd.mmap' },
  /** MAP_ANONYMOUS memory used by KVM or a device: a memfd of the mapping's size, mapped (shmem, not anon). */
  anonymousMemory: {
    call: 'host.memfdCreate',
    then: 'memfd.mmap',
    waitsFor: 'an anonymous-memory call (none in the call list: shmem stands for it)',
  },
  setMemslot: { call: 'vm.setUserMemoryRegion2' },
  /** KVM_SET_MEMORY_ATTRIBUTES on the VM fd (a GPA range): today's path, on a host with conversion 'separate'. */
  vmSetMemoryAttributes: { call: 'vm.setMemoryAttributes' },
  /** KVM_EXIT_MEMORY_FAULT: the guest access that exited, as a guest load with the exit's private flag as intent. */
  memoryFault: { call: 'vm.guestRead' },
  fallocateGmem: { call: 'gmem.fallocate' },
  fallocateMemfd: { call: 'memfd.fallocate' },
  madvise: { call: 'mapping.madvise' },
  munmap: { call: 'mapping.munmap' },
  openIommufd: { call: 'host.openIommufd' },
  createIoas: { call: 'iommufd.createIoas' },
  ioasMap: { call: 'ioas.map' },
  ioasMapFile: { call: 'ioas.mapFile' },
  ioasUnmap: { call: 'ioas.unmap' },
  ioasDestroy: { call: 'ioas.destroy' },
  attachDevice: { call: 'ioas.attachDevice' },
  detachDevice: { call: 'device.detach' },
  close: { vm: 'vm.close', gmem: 'gmem.close', memfd: 'memfd.close', iommufd: 'iommufd.close' },
} as const;

/**
 * The host a QEMU log's replay runs on: today's path (the shared side is the memory at the memslot's userspace
 * address, conversions are per VM).
 */
export const QEMU_HOST: Record<string, unknown> = { conversion: 'separate' };

export interface TranslatorOptions {
  file: string;
  format: 'qemu' | 'strace';
  /** The most steps (as --max-steps). */
  maxSteps: number;
  /** Header lines naming what the parser follows, for the scenario's source and the emitted file. */
  sources: string[];
  /** The scenario's host options. */
  host?: Record<string, unknown>;
}

export class Translator {
  readonly steps: DocStep[] = [];
  readonly counts: ReplayCounts = { replayed: 0, skipped: new Map(), unknown: new Map() };
  /** Assumptions the replay made where the log is silent, once each. */
  readonly assumptions = new Set<string>();
  line = 0;
  private names = new Map<string, number>();
  private vm: string | undefined;
  /** Mappings sorted by start address. */
  private mappings: Mapping[] = [];
  private memslots = new Map<string, Memslot>();
  private sized = new Map<string, SizedFile>();

  constructor(readonly options: TranslatorOptions) {}

  fail(message: string): never {
    throw new ReplayError(`${basename(this.options.file)}:${this.line}: ${message}`);
  }

  skip(kind: string): void {
    this.counts.skipped.set(kind, (this.counts.skipped.get(kind) ?? 0) + 1);
  }

  unknown(kind: string): void {
    this.counts.unknown.set(kind, (this.counts.unknown.get(kind) ?? 0) + 1);
  }

  /** A fresh handle name: vm, gmem1, m3, ... */
  name(base: string): string {
    const n = (this.names.get(base) ?? 0) + 1;
    this.names.set(base, n);
    return `${base}${n}`;
  }

  /**
   * Write a step; every step notes the log line it comes from. `expect` is the logged result (expectFromLog): the
   * step that stands for the logged call carries it; steps the replay adds around it (memory it implies) do not.
   */
  step(step: DocStep, note: string, expect?: string): void {
    if (this.steps.length >= this.options.maxSteps) {
      this.fail(
        `the log replays as more than ${this.options.maxSteps} steps (--max-steps ${this.options.maxSteps}); raise --max-steps, or cut the log`,
      );
    }
    this.steps.push({ ...step, note: `line ${this.line}: ${note}`, ...(expect !== undefined ? { expect } : {}) });
  }

  replayed(): void {
    this.counts.replayed++;
  }

  // --- the VM and its files ---------------------------------------------------------------------------------

  /** The VM a QEMU log implies (it traces no KVM_CREATE_VM): created once, at the first KVM event. */
  implicitVm(): string {
    if (this.vm === undefined) {
      this.vm = 'vm';
      this.assumptions.add(
        "QEMU's trace has no event for KVM_CREATE_VM: one confidential VM (type coco) is created before its first KVM event",
      );
      this.step({ call: TRANSLATION.createVm.call, as: 'vm', type: 'coco' }, 'the VM (implied)');
    }
    return this.vm;
  }

  createVm(type: 'default' | 'coco', note: string): string {
    const handle = this.vm === undefined ? 'vm' : this.name('vm');
    this.vm ??= handle;
    this.step({ call: TRANSLATION.createVm.call, as: handle, type }, note);
    return handle;
  }

  /** A file whose size comes later (or never): its size is the let `SIZE_<handle>`. */
  private sizedFile(handle: string, kind: 'gmem' | 'memfd', given?: bigint): string {
    if (given !== undefined) this.checkSize(given);
    const name = `SIZE_${handle}`;
    this.sized.set(handle, { let: name, need: 0n, flags: 0n, kind, ...(given !== undefined ? { given } : {}) });
    return name;
  }

  createGuestMemfd(vm: string, note: string, given?: bigint): string {
    const handle = this.name('gmem');
    const size = this.sizedFile(handle, 'gmem', given);
    this.step({ call: TRANSLATION.createGuestMemfd.call, on: vm, as: handle, size, flags: `FLAGS_${handle}` }, note);
    return handle;
  }

  createMemfd(note: string, given?: bigint): string {
    const handle = this.name('memfd');
    const size = this.sizedFile(handle, 'memfd', given);
    this.step({ call: TRANSLATION.memfdCreate.call, as: handle, size }, note);
    return handle;
  }

  /** A file size the log says a call succeeded with: past loff_t no file has it (the log lies), one line, exit 2. */
  private checkSize(size: bigint): void {
    if (size < 0n || size > LOFF_MAX)
      this.fail(
        `a file size of ${hex(size)} bytes is past loff_t (2^63 - 1): no file is that big, the log lies about a size`,
      );
  }

  /** ftruncate(2) of a memfd: the size the model creates it with (the first one; a later one is counted). */
  setSize(handle: string, size: bigint): boolean {
    const file = this.sized.get(handle);
    if (!file || file.given !== undefined) return false;
    this.checkSize(size);
    file.given = size;
    return true;
  }

  /** A successful mmap of a guest_memfd: it was created with GUEST_MEMFD_FLAG_MMAP (the kernel refuses it otherwise). */
  mapped(handle: string): void {
    const file = this.sized.get(handle);
    if (file?.kind === 'gmem') {
      file.flags |= BigInt(GUEST_MEMFD_FLAG_MMAP);
      this.assumptions.add(
        'a guest_memfd the log mmaps was created with GUEST_MEMFD_FLAG_MMAP (the only flag its uses show; the log does not carry its flags)',
      );
    }
  }

  /** A use of [offset, offset + length) of a file: what its size must cover when the log never gave it. */
  use(handle: string, offset: bigint, length: bigint): void {
    const file = this.sized.get(handle);
    const end = offset + length;
    // A range past loff_t is a lie about sizes: the step gets the model's errno, the file is not grown for it.
    if (!file || offset < 0n || length < 0n || end > LOFF_MAX) return;
    if (end > file.need) file.need = end;
  }

  /** The `let` block: each file's size as given, or the page-rounded end of its furthest use. */
  lets(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [handle, file] of this.sized) {
      let size = file.given;
      if (size === undefined) {
        size = file.need > 0n ? roundUp(file.need) : PAGE;
        this.assumptions.add(
          file.kind === 'gmem'
            ? 'a guest_memfd size the log does not carry is the page-rounded end of its furthest use (memslot, mmap, fallocate, MAP_FILE), at least one page'
            : 'a memfd size the log does not carry (no ftruncate) is the page-rounded end of its furthest use, at least one page',
        );
      }
      out[file.let] = hex(size);
      if (file.kind === 'gmem') out[`FLAGS_${handle}`] = hex(file.flags);
    }
    return out;
  }

  // --- mappings by address ----------------------------------------------------------------------------------

  private indexOf(address: bigint): number {
    // The last mapping starting at or below the address.
    let lo = 0;
    let hi = this.mappings.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.mappings[mid]!.start <= address) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** The mapping holding [address, address + length), if one holds all of it. */
  mappingAt(address: bigint, length: bigint): Mapping | undefined {
    const i = this.indexOf(address);
    const m = i >= 0 ? this.mappings[i] : undefined;
    return m && address + (length > 0n ? length : 1n) <= m.start + m.length ? m : undefined;
  }

  /** Record a mapping; one it overlaps is replaced, as mmap(MAP_FIXED) replaces (no step: the model's is gone too). */
  addMapping(m: Mapping): void {
    this.mappings = this.mappings.filter((o) => o.start + o.length <= m.start || m.start + m.length <= o.start);
    if (this.mappings.length >= MAX_LIVE_MAPPINGS) {
      this.fail(
        `more than ${MAX_LIVE_MAPPINGS} mappings alive at once (Linux's default vm.max_map_count): not a real process's log`,
      );
    }
    const i = this.indexOf(m.start);
    this.mappings.splice(i + 1, 0, m);
  }

  removeMapping(m: Mapping): void {
    this.mappings = this.mappings.filter((o) => o !== m);
  }

  /** The mapping's handle, creating the memory behind an anonymous one first (KVM or a device uses it). */
  materialize(m: Mapping): string {
    if (m.handle) return m.handle;
    // The memory behind it must be made, as big as the log says: past loff_t no file, and no process, has it.
    if (m.length > LOFF_MAX || m.start + m.length > 1n << 64n)
      this.fail(
        `memory at ${hex(m.start)} of ${hex(m.length)} bytes is larger than any process can map: the log lies about a size`,
      );
    const memfd = this.createMemfd(
      `anonymous memory at ${hex(m.start)} (+${hex(m.length)}) stands as a memfd (the call list has no anonymous memory)`,
      roundUp(m.length),
    );
    const handle = this.name('m');
    this.step(
      {
        call: TRANSLATION.anonymousMemory.then,
        on: memfd,
        as: handle,
        length: hex(roundUp(m.length)),
        shared: m.shared,
      },
      `the mapping at ${hex(m.start)}`,
    );
    m.handle = handle;
    m.file = { handle: memfd, kind: 'memfd', offset: 0n };
    this.assumptions.add(
      'anonymous memory KVM or a device uses is a memfd mapping of its size (the call list has no anonymous memory; shmem stands for it)',
    );
    return handle;
  }

  /** `m1 + 0x1000`: an address inside a mapping, as the scenario writes it. */
  addressOf(m: Mapping, address: bigint): string {
    const handle = this.materialize(m);
    const off = address - m.start;
    return off === 0n ? handle : `${handle} + ${hex(off)}`;
  }

  // --- memslots and GPAs -------------------------------------------------------------------------------------

  setMemslot(
    vm: string,
    slot: bigint,
    flags: bigint,
    gpa: bigint,
    size: bigint,
    ua: string | undefined,
    gmem: string | undefined,
    gmemOffset: bigint,
    note: string,
    expect?: string,
    userspaceAddr?: bigint,
  ): void {
    this.step(
      {
        call: TRANSLATION.setMemslot.call,
        on: vm,
        slot: hex(slot),
        flags: hex(flags),
        guestPhysAddr: hex(gpa),
        memorySize: hex(size),
        ...(ua !== undefined ? { userspaceAddr: ua } : {}),
        ...(gmem !== undefined ? { guestMemfd: gmem, guestMemfdOffset: hex(gmemOffset) } : {}),
      },
      note,
      expect,
    );
    // A memslot the log says the kernel refused changes nothing (the model's own errno shows if it disagrees).
    if (expect !== undefined && expect !== 'ok') return;
    const key = `${vm}/${slot}`;
    if (size === 0n) this.memslots.delete(key);
    else
      this.memslots.set(key, {
        gpa,
        size,
        gmemOffset,
        ...(gmem !== undefined && (flags & BigInt(KVM_MEM_GUEST_MEMFD)) !== 0n ? { gmem } : {}),
        ...(ua !== undefined && userspaceAddr !== undefined ? { userspaceAddr } : {}),
      });
    if (gmem !== undefined && size > 0n) this.use(gmem, gmemOffset, size);
  }

  /** The guest_memfd pieces of a GPA range: one per memslot it crosses that binds a guest_memfd. */
  gmemPieces(gpa: bigint, size: bigint): Array<{ gmem: string; offset: bigint; size: bigint; gpa: bigint }> {
    const pieces = [];
    for (const slot of this.memslots.values()) {
      if (!slot.gmem) continue;
      const start = gpa > slot.gpa ? gpa : slot.gpa;
      const end = gpa + size < slot.gpa + slot.size ? gpa + size : slot.gpa + slot.size;
      if (start < end)
        pieces.push({ gmem: slot.gmem, offset: slot.gmemOffset + (start - slot.gpa), size: end - start, gpa: start });
    }
    return pieces.sort((a, b) => (a.gpa < b.gpa ? -1 : 1));
  }

  /**
   * The file behind the shared memory at GPA [gpa, gpa + size), when one memslot holds all of it and its userspace
   * memory is a file the replay has (a memfd, or anonymous memory made one): the file and the offset of `gpa` in it.
   */
  sharedFileAt(gpa: bigint, size: bigint): { handle: string; offset: bigint } | undefined {
    for (const slot of this.memslots.values()) {
      if (slot.userspaceAddr === undefined || gpa < slot.gpa || gpa + size > slot.gpa + slot.size) continue;
      const address = slot.userspaceAddr + (gpa - slot.gpa);
      const m = this.mappingAt(address, size);
      if (!m) continue;
      this.materialize(m);
      if (m.file?.kind === 'memfd') return { handle: m.file.handle, offset: m.file.offset + (address - m.start) };
    }
    return undefined;
  }

  /**
   * KVM_SET_MEMORY_ATTRIBUTES on the VM fd, through TRANSLATION.vmSetMemoryAttributes; false, and no step, for a
   * range no guest_memfd memslot meets.
   */
  setVmMemoryAttributes(vm: string, gpa: bigint, size: bigint, toPrivate: boolean, note: string): boolean {
    if (this.gmemPieces(gpa, size).length === 0) return false;
    const attributes = toPrivate ? hex(BigInt(KVM_MEMORY_ATTRIBUTE_PRIVATE)) : '0';
    this.step(
      { call: TRANSLATION.vmSetMemoryAttributes.call, on: vm, address: hex(gpa), size: hex(size), attributes },
      note,
    );
    return true;
  }

  // --- the common memory calls --------------------------------------------------------------------------------

  fallocate(
    file: { handle: string; kind: 'gmem' | 'memfd' },
    mode: bigint,
    offset: bigint,
    length: bigint,
    note: string,
    expect?: string,
  ): void {
    const call = file.kind === 'gmem' ? TRANSLATION.fallocateGmem.call : TRANSLATION.fallocateMemfd.call;
    // Allocation (mode without PUNCH_HOLE) needs the file that big; a punch does not grow it, nor does a failed call.
    if ((mode & BigInt(FALLOC_FL_PUNCH_HOLE)) === 0n && (expect === undefined || expect === 'ok'))
      this.use(file.handle, offset, length);
    this.step({ call, on: file.handle, mode: hex(mode), offset: hex(offset), length: hex(length) }, note, expect);
  }

  /** QEMU's ram_block_discard_range: fallocate(PUNCH_HOLE | KEEP_SIZE) on the block's file, then madvise. */
  discard(
    m: Mapping,
    address: bigint,
    length: bigint,
    needFallocate: boolean,
    needMadvise: boolean,
    note: string,
    ret?: bigint,
  ): void {
    const handle = this.materialize(m);
    const off = address - m.start;
    // The logged ret is the discard's as a whole (system/physmem.c ram_block_discard_range: fallocate first, and a
    // failure stops there; then madvise). 0: both succeeded. An error: the call that failed is known only when one
    // call was made; with both, the replay cannot tell which, and neither step carries an expectation.
    const both = needFallocate && m.file !== undefined && needMadvise;
    const expect = ret === undefined ? undefined : ret >= 0n ? 'ok' : both ? undefined : expectFromLog(ret);
    if (ret !== undefined && ret < 0n && both)
      this.assumptions.add(
        'a RAM discard the log says failed, with both fallocate and madvise asked for, does not say which failed: neither step carries an expectation',
      );
    if (needFallocate && m.file)
      this.fallocate(
        m.file,
        BigInt(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE),
        m.file.offset + off,
        length,
        `${note}: fallocate`,
        expect,
      );
    // MADV_REMOVE is QEMU's choice only for shared memory without an fd; a replayed block always has one (a memfd).
    if (needMadvise)
      this.step(
        {
          call: TRANSLATION.madvise.call,
          on: handle,
          offset: hex(off),
          length: hex(length),
          advice: hex(BigInt(MADV_DONTNEED)),
        },
        `${note}: madvise(MADV_DONTNEED)`,
        expect,
      );
  }

  mapFlags(readonly: boolean, fixed: boolean): string {
    return hex(
      BigInt(
        IOMMU_IOAS_MAP_READABLE | (readonly ? 0 : IOMMU_IOAS_MAP_WRITEABLE) | (fixed ? IOMMU_IOAS_MAP_FIXED_IOVA : 0),
      ),
    );
  }

  /** The scenario document. */
  document(): Record<string, unknown> {
    const lets = this.lets();
    const what = this.options.format === 'qemu' ? "QEMU's trace log" : 'strace output';
    return {
      title: `Replay of ${basename(this.options.file)}`,
      situation: `The calls ${what} ${basename(this.options.file)} records, replayed on the model: ${this.counts.replayed} lines as ${this.steps.length} steps.`,
      source: [`gmemlab replay of ${basename(this.options.file)} (${what})`, ...this.options.sources],
      ...(this.options.host && Object.keys(this.options.host).length > 0 ? { host: this.options.host } : {}),
      ...(Object.keys(lets).length > 0 ? { let: lets } : {}),
      steps: this.steps,
    };
  }
}
