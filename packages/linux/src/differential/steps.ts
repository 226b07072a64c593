/**
 * A sequence of calls as plain data, runnable on the model and on the kernel alike. Objects are named: a step
 * with `as` binds the object it creates to that name, later steps refer to it. 'kvm' names /dev/kvm.
 */

export type Num = number | bigint;

/** Bytes to write: `fill` repeats one byte; `pattern` writes (pattern + i) & 0xff at byte i. */
export type Bytes = { fill: number; length: number } | { pattern: number; length: number };

/** A memslot userspace address: a raw value, or `offset` bytes into the mapping named `map`. */
export type Address = Num | { map: string; offset?: number };

export type Step =
  | { op: 'checkExtension'; capability: number }
  /**
   * KVM_CREATE_VM: 'default' (type 0, the default) or 'sw-protected' (KVM_X86_SW_PROTECTED_VM, type 1: a VM with
   * private memory and no hardware enforcement, the model's 'coco' VM on its neutral backend).
   */
  | { op: 'createVm'; as: string; type?: 'default' | 'sw-protected' }
  /** KVM_SET_MEMORY_ATTRIBUTES on the VM fd (kernel-contract §4.4). */
  | { op: 'setMemoryAttributes'; vm: string; address: Num; size: Num; attributes: Num; flags?: Num }
  | { op: 'createGuestMemfd'; vm: string; size: Num; flags?: Num; as: string }
  | { op: 'memfdCreate'; size: number; as: string }
  | { op: 'stat'; fd: string }
  | { op: 'read'; fd: string; length: number }
  | { op: 'write'; fd: string; data: Bytes }
  | { op: 'pread'; fd: string; length: number; offset: Num }
  | { op: 'pwrite'; fd: string; data: Bytes; offset: Num }
  | { op: 'fallocate'; fd: string; mode: number; offset: Num; length: Num }
  | { op: 'mmap'; fd: string; length: Num; offset?: Num; shared: boolean; as: string }
  | { op: 'mapRead'; map: string; offset: Num; length: Num }
  | { op: 'mapWrite'; map: string; offset: Num; data: Bytes }
  | { op: 'munmap'; map: string }
  | { op: 'madvise'; map: string; offset: Num; length: Num; advice: number }
  | {
      op: 'setUserMemoryRegion';
      vm: string;
      slot: Num;
      flags: Num;
      guestPhysAddr: Num;
      memorySize: Num;
      userspaceAddr?: Address;
    }
  | {
      op: 'setUserMemoryRegion2';
      vm: string;
      slot: Num;
      flags: Num;
      guestPhysAddr: Num;
      memorySize: Num;
      userspaceAddr?: Address;
      /** A name ('kvm', a VM, a file) or a raw fd number. */
      guestMemfd?: string | number;
      guestMemfdOffset?: Num;
    }
  | { op: 'guestRead'; vm: string; gpa: Num; length: Num }
  | { op: 'guestWrite'; vm: string; gpa: Num; data: Bytes }
  | { op: 'close'; fd: string };

/** What one side did with one step. Read data is lowercase hex. */
export type Outcome =
  | { status: 'ok'; value?: string | number | { size: number; blksize: number } }
  | { status: 'error'; errno: string; message?: string }
  | { status: 'fault'; fault: string; address: number; done: number }
  | { status: 'skipped'; reason: string };

export function materialize(bytes: Bytes): Uint8Array {
  const out = new Uint8Array(bytes.length);
  if ('fill' in bytes) out.fill(bytes.fill & 0xff);
  else for (let i = 0; i < out.length; i++) out[i] = (bytes.pattern + i) & 0xff;
  return out;
}

export function hex(data: Uint8Array | undefined): string {
  return data ? Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex') : '';
}

/** One line for a step, for side-by-side listings. */
export function describeStep(step: Step): string {
  const { op, ...rest } = step;
  const args = Object.entries(rest)
    .map(
      ([k, v]) =>
        `${k}=${typeof v === 'bigint' ? `${v}n` : typeof v === 'object' ? JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x)) : String(v)}`,
    )
    .join(' ');
  return `${op} ${args}`;
}

/** One short line for an outcome (long data summarised as runs). */
export function describeOutcome(outcome: Outcome | undefined): string {
  if (!outcome) return '(not run)';
  switch (outcome.status) {
    case 'ok':
      if (outcome.value === undefined) return 'ok';
      if (typeof outcome.value === 'string') return `ok ${summariseHex(outcome.value)}`;
      return `ok ${JSON.stringify(outcome.value)}`;
    case 'error':
      return outcome.errno;
    case 'fault':
      return `${outcome.fault} at ${outcome.address} after ${outcome.done} bytes`;
    case 'skipped':
      return `skipped (${outcome.reason})`;
  }
}

function summariseHex(value: string): string {
  if (value.length <= 32) return value || '(0 bytes)';
  const runs: string[] = [];
  let i = 0;
  while (i < value.length) {
    const byte = value.slice(i, i + 2);
    let j = i + 2;
    while (j < value.length && value.slice(j, j + 2) === byte) j += 2;
    runs.push(`${byte}x${(j - i) / 2}`);
    i = j;
    if (runs.length > 6) {
      runs.push('...');
      break;
    }
  }
  return `${value.length / 2} bytes [${runs.join(' ')}]`;
}
