/**
 * isAvailable(): whether this machine can run guest_memfd calls for real, and if not, precisely why.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { release } from 'node:os';
import { HelperError, KernelError } from './errors.js';
import { ensureHelper } from './native.js';
import { LinuxHost } from './host.js';

export const KVM_CAP_GUEST_MEMFD = 234;
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244;

export type Availability =
  | {
      available: true;
      /** uname -r. */
      kernel: string;
      /** KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD_FLAGS) on /dev/kvm. */
      guestMemfdFlags: number;
    }
  | { available: false; reason: string };

export interface AvailabilityOptions {
  /** guest_memfd flags the caller needs (e.g. MMAP | INIT_SHARED = 0x3); default 0. */
  flags?: number;
}

/**
 * Whether this machine can run guest_memfd calls for real. The first call builds the helper (native.ts) if it is not
 * built yet, so it may take a second. Never throws: anything missing (/dev/kvm, permission, a C compiler, kernel
 * support) is `{ available: false, reason }`, one sentence.
 */
export async function isAvailable(options: AvailabilityOptions = {}): Promise<Availability> {
  try {
    return await check(options);
  } catch (error) {
    return {
      available: false,
      reason: `isAvailable() failed unexpectedly: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
}

async function check(options: AvailabilityOptions): Promise<Availability> {
  const no = (reason: string): Availability => ({ available: false, reason });
  if (process.platform !== 'linux') return no(`not Linux (${process.platform})`);
  try {
    await stat('/dev/kvm');
  } catch {
    return no('no /dev/kvm (KVM is not loaded, or this is not a machine with virtualization)');
  }
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return no('no permission to open /dev/kvm read-write (run as root or join the kvm group)');
  }
  const binary = await ensureHelper();
  if (!binary.ok) return no(binary.problem);
  let host: LinuxHost | undefined;
  try {
    host = await LinuxHost.open({ timeoutMs: 5000 });
    if ((await host.checkExtension(KVM_CAP_GUEST_MEMFD)) <= 0)
      return no(`KVM_CAP_GUEST_MEMFD is 0: kernel ${release()} has no guest_memfd`);
    const flags = await host.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS);
    const wanted = options.flags ?? 0;
    const missing = wanted & ~flags;
    if (missing)
      return no(
        `guest_memfd flags 0x${missing.toString(16)} unsupported (KVM_CAP_GUEST_MEMFD_FLAGS = 0x${flags.toString(16)})`,
      );
    return { available: true, kernel: release(), guestMemfdFlags: flags };
  } catch (error) {
    if (KernelError.isInstance(error)) return no(`${error.op} failed with ${error.errno}`);
    if (HelperError.isInstance(error)) return no(error.message);
    return no(String(error));
  } finally {
    await host?.dispose();
  }
}
