/**
 * strace output, as strace prints it: `name(args) = result`, with `strace -f`'s `[pid N] ` (or `N ` with -o)
 * prefix, `-t`/`-tt`/`-ttt`/`-r` timestamps, `-T` times, and `<unfinished ...>` / `<... name resumed>` pairs
 * joined per pid. fds are followed through the trace: openat("/dev/kvm") → KVM_CREATE_VM's result is a VM fd →
 * KVM_CREATE_GUEST_MEMFD's result is a guest_memfd fd; openat("/dev/iommu") is an iommufd; memfd_create a memfd.
 *
 * What strace decodes decides what replays (strace/strace at v7.2-3-g3e4d70a5e, 3e4d70a5e497, src/kvm.c
 * kvm_ioctl): of the KVM ioctls it prints the fields of KVM_SET_USER_MEMORY_REGION only (and KVM_CREATE_VCPU's
 * id, KVM_CHECK_EXTENSION's capability, registers and CPUID); KVM_CREATE_VM's result as an fd. KVM_CREATE_GUEST_MEMFD,
 * KVM_SET_USER_MEMORY_REGION2 and KVM_SET_MEMORY_ATTRIBUTES are named (src/linux/<arch>/ioctls_arch0.h) with their
 * argument printed as an address. iommufd has no decoder at all: its ioctls are named (src/linux/64/ioctls_inc.h,
 * linux/iommufd.h) and their argument is an address. A call whose fields the log does not carry is counted, by
 * name, as not replayable; a guest_memfd's size is taken from its uses (translate.ts).
 */
import { KVM_MEM_GUEST_MEMFD } from '@gmemlab/core';
import { KERNEL_CONSTANTS } from '../scenario/expr.js';
import { expectFromLog, hex, PAGE, type Translator } from './translate.js';

export const STRACE_SOURCE =
  'strace/strace v7.2-3-g3e4d70a5e (3e4d70a5e497dc924fba50766f1dc31081c7a59b): src/kvm.c, src/linux/64/ioctls_inc.h, src/linux/x86_64/ioctls_arch0.h';

/** ioctl numbers by (type, nr), for strace's raw forms `_IOC(...)` and `0x...` (older strace, or -X raw). */
const IOCTLS: Record<number, Record<number, string>> = {
  // linux/kvm.h: KVMIO 0xAE
  0xae: {
    0x01: 'KVM_CREATE_VM',
    0x41: 'KVM_CREATE_VCPU',
    0x46: 'KVM_SET_USER_MEMORY_REGION',
    0x49: 'KVM_SET_USER_MEMORY_REGION2',
    0x80: 'KVM_RUN',
    0xd2: 'KVM_SET_MEMORY_ATTRIBUTES',
    0xd4: 'KVM_CREATE_GUEST_MEMFD',
  },
  // linux/iommufd.h: IOMMUFD_TYPE ';' (0x3b), from 0x80; linux/vfio.h: VFIO_TYPE ';' too, below 0x80
  0x3b: {
    0x71: 'VFIO_IOMMU_MAP_DMA',
    0x72: 'VFIO_IOMMU_UNMAP_DMA',
    0x80: 'IOMMU_DESTROY',
    0x81: 'IOMMU_IOAS_ALLOC',
    0x83: 'IOMMU_IOAS_COPY',
    0x85: 'IOMMU_IOAS_MAP',
    0x86: 'IOMMU_IOAS_UNMAP',
    0x87: 'IOMMU_OPTION',
    0x89: 'IOMMU_HWPT_ALLOC',
    0x8f: 'IOMMU_IOAS_MAP_FILE',
  },
};

type FdKind = 'kvm' | 'vm' | 'gmem' | 'memfd' | 'iommufd' | 'other';
interface Fd {
  kind: FdKind;
  handle?: string;
}

const PREFIX =
  /^\s*(?:\[pid\s+(\d+)\]\s+|(\d+)\s+(?=[^\d\s]|\d\d:|\d+\.\d))?(?:(?:\d\d:\d\d:\d\d(?:\.\d+)?|\d+\.\d+)\s+)?/;

/** Whether a line looks like strace's (for telling the format). */
export function isStraceLine(text: string): boolean {
  const body = text.slice(PREFIX.exec(text)![0].length);
  return (
    /^[a-z_][a-z0-9_]*\(.*\)\s+=\s+(-?\d+|0x[0-9a-f]+|\?)/.test(body) ||
    /^<\.\.\. [a-z_0-9]+ resumed>/.test(body) ||
    /<unfinished \.\.\.>$/.test(body)
  );
}

/** Split `a, "b,c", {x=1, y=2}) = 3 ...` at the call's closing parenthesis: its arguments and the rest. */
export function splitCall(text: string): { args: string[]; rest: string } | undefined {
  const args: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      continue;
    }
    if (c === '(' || c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === ')') {
      if (depth === 0) {
        const last = text.slice(start, i).trim();
        if (last !== '' || args.length > 0) args.push(last);
        return { args, rest: text.slice(i + 1) };
      }
      depth--;
    } else if (c === ',' && depth === 0) {
      args.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  return undefined;
}

/** A number strace printed: decimal, hex, NULL, or OR'ed constant names (`FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE`). */
function numberOf(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  const t = text.replace(/\s*\/\*.*?\*\/\s*/g, '').trim();
  if (t === 'NULL') return 0n;
  if (/^-?\d+$/.test(t)) return BigInt(t);
  if (/^0x[0-9a-fA-F]+$/.test(t)) return BigInt(t);
  let value = 0n;
  for (const part of t.split('|')) {
    const p = part.trim();
    if (/^(0x[0-9a-fA-F]+|\d+)$/.test(p)) value |= BigInt(p);
    else if (KERNEL_CONSTANTS.has(p)) value |= KERNEL_CONSTANTS.get(p)!;
    else return undefined;
  }
  return value;
}

/** The ioctl's name from strace's forms: `KVM_RUN`, `0xae80 /* KVM_RUN *\/`, `_IOC(_IOC_NONE, 0xae, 0x80, 0)`, `0xae80`. */
function ioctlName(text: string): string {
  const comment = /\/\*\s*([A-Z][A-Z0-9_]+)\s*\*\//.exec(text);
  if (comment) return comment[1]!;
  if (/^[A-Z][A-Z0-9_]+$/.test(text)) return text;
  const ioc = /^_IOC\([^,]+,\s*(0x[0-9a-fA-F]+|\d+),\s*(0x[0-9a-fA-F]+|\d+),/.exec(text);
  const raw = /^0x[0-9a-fA-F]+$/.test(text) ? Number(BigInt(text) & 0xffffn) : undefined;
  const type = ioc ? Number(ioc[1]) : raw !== undefined ? raw >> 8 : undefined;
  const nr = ioc ? Number(ioc[2]) : raw !== undefined ? raw & 0xff : undefined;
  return (type !== undefined && nr !== undefined ? IOCTLS[type]?.[nr] : undefined) ?? text;
}

/** `{slot=0, flags=KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr=0x100000, ...}` into its fields. */
function fieldsOf(text: string): Map<string, string> | undefined {
  const m = /^\{(.*)\}$/.exec(text.trim());
  if (!m) return undefined;
  const out = new Map<string, string>();
  for (const part of m[1]!.split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

export class StraceReader {
  private fds = new Map<bigint, Fd>();
  private pending = new Map<string, string>();

  constructor(private readonly t: Translator) {}

  static sources(): string[] {
    return [STRACE_SOURCE];
  }

  /** Calls left `<unfinished ...>` at the end of the log: counted. */
  finish(): void {
    for (const text of this.pending.values())
      this.t.unknown(
        `${/^[a-z_0-9]+/.exec(text)?.[0] ?? 'a call'} left <unfinished ...> at the end of the log (its result is unknown)`,
      );
    this.pending.clear();
  }

  line(raw: string): void {
    const t = this.t;
    const prefix = PREFIX.exec(raw)!;
    const pid = prefix[1] ?? prefix[2] ?? '';
    let body = raw.slice(prefix[0].length).trimEnd();
    if (body === '') return t.unknown('empty line');
    if (/^\+\+\+ (exited with|killed by) /.test(body)) return t.skip('process exit (+++ ... +++)');
    if (/^--- /.test(body)) return t.skip('signal (--- SIG... ---)');
    const resumed = /^<\.\.\. ([a-z_0-9]+) resumed>\s?(.*)$/.exec(body);
    if (resumed) {
      const start = this.pending.get(pid);
      if (start === undefined) return t.unknown(`<... ${resumed[1]} resumed> without its start in the log`);
      this.pending.delete(pid);
      body = `${start}${resumed[2]}`;
    }
    const unfinished = /^(.*?)\s*<unfinished \.\.\.>$/.exec(body);
    if (unfinished) {
      this.pending.set(pid, unfinished[1]!);
      return;
    }
    const call = /^([a-z_][a-z0-9_]*)\((.*)$/.exec(body);
    if (!call) return t.unknown('not an strace line');
    const split = splitCall(call[2]!);
    if (!split) return t.unknown(`${call[1]}(...) cut before its closing parenthesis`);
    const result = /^\s*=\s*(0x[0-9a-fA-F]+|-?\d+|\?)(?:\s+(E[A-Z0-9]+)(?:\s+\([^)]*\))?)?/.exec(split.rest);
    if (!result) return t.unknown(`${call[1]}(...) without a result`);
    const ret = result[1] === '?' ? undefined : BigInt(result[1]!);
    const errno = result[2];
    this.call(call[1]!, split.args, ret, errno);
  }

  /** The expectation of a replayed call's logged result; a logged errno the model does not have is said once. */
  private expect(ret: bigint | undefined, errno: string | undefined): string | undefined {
    const expect = expectFromLog(ret, errno);
    if (expect === undefined && ret !== undefined)
      this.t.assumptions.add(
        `a call that failed with an errno the model does not have (${errno ?? ret}) carries no expectation`,
      );
    return expect;
  }

  private fd(text: string | undefined): { number: bigint; fd?: Fd } | undefined {
    const n = numberOf(text?.replace(/<.*>$/, ''));
    return n === undefined ? undefined : { number: n, ...(this.fds.has(n) ? { fd: this.fds.get(n)! } : {}) };
  }

  private call(name: string, args: string[], ret: bigint | undefined, errno: string | undefined): void {
    const t = this.t;
    const failed = ret === undefined || ret < 0n;
    const expect = () => this.expect(ret, errno);
    const logged = errno ? `= ${ret} ${errno}` : `= ${ret === undefined ? '?' : ret >= 0x10000n ? hex(ret) : ret}`;
    const note = `${name} ${logged}`;
    switch (name) {
      case 'open':
      case 'openat': {
        if (failed) return t.skip(`${name} that failed`);
        const path = /^"(.*)"$/.exec(args[name === 'open' ? 0 : 1] ?? '')?.[1];
        if (path === '/dev/kvm') this.fds.set(ret, { kind: 'kvm' });
        else if (path === '/dev/iommu') {
          const handle = t.name('iommufd');
          t.step({ call: 'host.openIommufd', as: handle }, `${note} (open /dev/iommu)`);
          this.fds.set(ret, { kind: 'iommufd', handle });
          return t.replayed();
        } else this.fds.set(ret, { kind: 'other' });
        return t.skip(
          `${name} of ${path === '/dev/kvm' ? '/dev/kvm (its fd is followed)' : 'a file that is no KVM or iommufd device'}`,
        );
      }
      case 'memfd_create': {
        if (failed) return t.skip('memfd_create that failed');
        const handle = t.createMemfd(note);
        this.fds.set(ret, { kind: 'memfd', handle });
        return t.replayed();
      }
      case 'ftruncate': {
        const f = this.fd(args[0]);
        const size = numberOf(args[1]);
        if (f?.fd?.kind === 'memfd' && !failed && size !== undefined && t.setSize(f.fd.handle!, size))
          return t.replayed();
        return t.skip(
          f?.fd?.kind === 'memfd'
            ? 'ftruncate of a memfd after its first size (the model creates a memfd with a fixed size)'
            : 'ftruncate of a file that is no memfd',
        );
      }
      case 'close': {
        const f = this.fd(args[0]);
        if (!f?.fd) return t.skip('close of an fd this log never opened, or not a memory one');
        this.fds.delete(f.number);
        const call =
          f.fd.kind === 'vm' || f.fd.kind === 'gmem' || f.fd.kind === 'memfd' || f.fd.kind === 'iommufd'
            ? `${f.fd.kind}.close`
            : undefined;
        if (!call || failed)
          return t.skip(failed ? 'close that failed' : 'close of a file that is no VM, guest_memfd, memfd or iommufd');
        t.step({ call, on: f.fd.handle! }, note);
        return t.replayed();
      }
      case 'ioctl':
        return this.ioctl(args, ret, failed, note, expect);
      case 'mmap': {
        if (failed || ret === undefined) return t.skip('mmap that failed');
        const length = numberOf(args[1]);
        const flags = args[3] ?? '';
        const f = this.fd(args[4]);
        const offset = numberOf(args[5]) ?? 0n;
        if (length === undefined) return t.unknown('mmap whose length is not a number');
        const shared = /\bMAP_SHARED/.test(flags);
        if (/\bMAP_ANONYMOUS\b/.test(flags) || !f?.fd || (f.fd.kind !== 'gmem' && f.fd.kind !== 'memfd')) {
          t.addMapping({ start: ret, length, anonymous: true, shared });
          // An fd the log never opened is counted, not refused: it may be any file opened before the trace began.
          return t.skip(
            /\bMAP_ANONYMOUS\b/.test(flags)
              ? 'mmap of anonymous memory (followed: replayed when KVM or a device uses it)'
              : f?.fd
                ? 'mmap of a file that is no guest_memfd or memfd'
                : 'mmap of an fd this log never opened (followed as memory of unknown kind)',
          );
        }
        const handle = t.name('m');
        t.use(f.fd.handle!, offset, length);
        if (f.fd.kind === 'gmem') t.mapped(f.fd.handle!);
        t.step(
          {
            call: f.fd.kind === 'gmem' ? 'gmem.mmap' : 'memfd.mmap',
            on: f.fd.handle!,
            as: handle,
            length: hex(length),
            shared,
            ...(offset !== 0n ? { offset: hex(offset) } : {}),
          },
          `${note} (mmap)`,
        );
        t.addMapping({
          start: ret,
          length: ((length + PAGE - 1n) / PAGE) * PAGE,
          handle,
          file: { handle: f.fd.handle!, kind: f.fd.kind, offset },
          anonymous: false,
          shared,
        });
        return t.replayed();
      }
      case 'munmap': {
        const address = numberOf(args[0]);
        const length = numberOf(args[1]);
        if (address === undefined || length === undefined) return t.unknown('munmap whose arguments are not numbers');
        const m = t.mappingAt(address, 1n);
        if (!m) return t.skip('munmap of memory the log never mapped');
        if (m.start !== address || length < m.length)
          return t.skip('munmap of part of a mapping (mapping.munmap unmaps whole mappings)');
        t.removeMapping(m);
        if (!m.handle) return t.skip('munmap of memory no VM or device used');
        t.step({ call: 'mapping.munmap', on: m.handle }, note, expect());
        return t.replayed();
      }
      case 'madvise': {
        const address = numberOf(args[0]);
        const length = numberOf(args[1]);
        const advice = numberOf(args[2]);
        if (address === undefined || length === undefined || advice === undefined)
          return t.unknown(`madvise with an advice the model does not know (${args[2] ?? '?'})`);
        const m = t.mappingAt(address, length);
        if (!m?.handle)
          return t.skip(
            m ? 'madvise of anonymous memory no VM or device uses' : 'madvise of memory the log never mapped',
          );
        t.step(
          {
            call: 'mapping.madvise',
            on: m.handle,
            offset: hex(address - m.start),
            length: hex(length),
            advice: hex(advice),
          },
          note,
          expect(),
        );
        return t.replayed();
      }
      case 'fallocate': {
        const f = this.fd(args[0]);
        const mode = numberOf(args[1]);
        const offset = numberOf(args[2]);
        const length = numberOf(args[3]);
        // An fd the log never opened is counted, not refused (README): a VMM fallocates disk images too (QEMU's block
        // layer punches holes in image files opened before a `strace -p` attached), so it is not known to be memory.
        if (!f?.fd || (f.fd.kind !== 'gmem' && f.fd.kind !== 'memfd'))
          return t.skip(
            f?.fd ? 'fallocate of a file that is no guest_memfd or memfd' : 'fallocate on an fd this log never opened',
          );
        if (mode === undefined || offset === undefined || length === undefined)
          return t.unknown('fallocate whose arguments are not numbers');
        t.fallocate({ handle: f.fd.handle!, kind: f.fd.kind }, mode, offset, length, note, expect());
        return t.replayed();
      }
      default:
        return t.skip(`${name} (no memory call the model has)`);
    }
  }

  private ioctl(
    args: string[],
    ret: bigint | undefined,
    failed: boolean,
    note: string,
    expect: () => string | undefined,
  ): void {
    const t = this.t;
    const request = ioctlName(args[1] ?? '');
    const f = this.fd(args[0]);
    const ours = /^(KVM_|IOMMU_|VFIO_IOMMU_)/.test(request);
    if (!ours)
      return t.skip(`ioctl ${/^[A-Z_0-9]+$/.test(request) ? request : '(another device)'} (not KVM or iommufd)`);
    if (!f?.fd)
      return t.fail(
        `ioctl(${args[0]}, ${request}): fd ${args[0]} was never opened in this log (was the trace started after it was opened?)`,
      );
    const fd = f.fd;
    switch (request) {
      case 'KVM_CREATE_VM': {
        if (fd.kind !== 'kvm') return t.fail(`KVM_CREATE_VM on fd ${f.number}, which is no /dev/kvm`);
        if (failed) return t.skip('KVM_CREATE_VM that failed');
        // The machine type, as x86 KVM reads it: private memory only for KVM_X86_SW_PROTECTED_VM (1), KVM_X86_SNP_VM
        // (4) and KVM_X86_TDX_VM (5) (arch/x86/kvm/x86.c kvm_arch_init_vm; svm_vm_init: has_private_mem = type ==
        // KVM_X86_SNP_VM, so SEV (2) and SEV-ES (3) have none). On arm64 the argument is the IPA size, not a type.
        const type = numberOf(args[2]) ?? 0n;
        const coco = type === 1n || type === 4n || type === 5n;
        if (!coco && type !== 0n && type !== 2n && type !== 3n) {
          t.assumptions.add(
            `KVM_CREATE_VM type ${hex(type)} is none of x86's (0 default, 1 SW_PROTECTED, 2 SEV, 3 SEV-ES, 4 SNP, 5 TDX; on arm64 the argument is the IPA size): replayed as a default VM, without private memory`,
          );
        }
        const handle = t.createVm(coco ? 'coco' : 'default', note);
        this.fds.set(ret!, { kind: 'vm', handle });
        return t.replayed();
      }
      case 'KVM_CREATE_GUEST_MEMFD': {
        if (fd.kind !== 'vm') return t.fail(`KVM_CREATE_GUEST_MEMFD on fd ${f.number}, which is no VM fd`);
        if (failed) return t.skip('KVM_CREATE_GUEST_MEMFD that failed');
        const fields = fieldsOf(args[2] ?? '');
        const handle = t.createGuestMemfd(
          fd.handle!,
          `${note} (strace prints no size: see the let)`,
          numberOf(fields?.get('size')),
        );
        this.fds.set(ret!, { kind: 'gmem', handle });
        return t.replayed();
      }
      case 'KVM_SET_USER_MEMORY_REGION': {
        if (fd.kind !== 'vm') return t.fail(`KVM_SET_USER_MEMORY_REGION on fd ${f.number}, which is no VM fd`);
        const fields = fieldsOf(args[2] ?? '');
        const slot = numberOf(fields?.get('slot'));
        const flags = numberOf(fields?.get('flags'));
        const gpa = numberOf(fields?.get('guest_phys_addr'));
        const size = numberOf(fields?.get('memory_size'));
        const ua = numberOf(fields?.get('userspace_addr'));
        if (slot === undefined || flags === undefined || gpa === undefined || size === undefined || ua === undefined)
          return t.skip('KVM_SET_USER_MEMORY_REGION without its fields (strace could not read them)');
        let address: string | undefined;
        if (size > 0n && ua !== 0n) {
          const m =
            t.mappingAt(ua, size) ??
            t.fail(
              `KVM_SET_USER_MEMORY_REGION: userspace_addr ${hex(ua)} (+${hex(size)}) is in no mapping this log made`,
            );
          address = t.addressOf(m, ua);
        }
        t.setMemslot(
          fd.handle!,
          slot,
          flags & ~BigInt(KVM_MEM_GUEST_MEMFD),
          gpa,
          size,
          address,
          undefined,
          0n,
          note,
          expect(),
          ua,
        );
        return t.replayed();
      }
      case 'KVM_SET_USER_MEMORY_REGION2':
      case 'KVM_SET_MEMORY_ATTRIBUTES':
      case 'IOMMU_IOAS_ALLOC':
      case 'IOMMU_IOAS_MAP':
      case 'IOMMU_IOAS_MAP_FILE':
      case 'IOMMU_IOAS_UNMAP':
      case 'IOMMU_IOAS_COPY':
      case 'IOMMU_DESTROY':
      case 'IOMMU_OPTION':
      case 'IOMMU_HWPT_ALLOC':
      case 'VFIO_IOMMU_MAP_DMA':
      case 'VFIO_IOMMU_UNMAP_DMA':
        if (fieldsOf(args[2] ?? ''))
          return t.skip(
            `${request} with fields this strace version does not print (not read: the replay follows strace 7.2)`,
          );
        return t.skip(`${request} (strace prints its argument as an address, not its fields: not replayable)`);
      default:
        return t.skip(`ioctl ${request} (no memory call)`);
    }
  }
}
