#!/usr/bin/env node
// Converts and truncates a guest_memfd while a device has it mapped through iommufd, under both designs argued
// in "[RFC PATCH kernel] iommufd: Allow mapping from KVM's guest_memfd", and prints what happened: first step by
// step with the neutral backend, then the same actions on each architecture package, side by side.
// Backends are loaded by short id, package name or path (--backend SPEC, repeatable), never imported statically.
import { createRequire } from 'node:module';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  describeBackendProblems,
  createHost,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GmemError,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '@gmemlab/core';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const GPA = 4 * 1024 * MiB;

function describeAccess(result) {
  if (result.ok) return 'ok';
  return `${result.fault} at 0x${result.address.toString(16)} after ${result.done} bytes (${result.mechanism})`;
}

function describeEvent(event) {
  switch (event.type) {
    case 'invalidate-begin':
    case 'invalidate-end':
      return `${event.type} ${event.cause} [${event.offset}, +${event.length})`;
    case 'zap': {
      // Zap ranges are in the owner's own units: gfns for stage-2, pages of the mapping or area otherwise.
      const unit = event.target === 'stage2' ? 'GPA' : event.target === 'iopte' ? 'area offset' : 'mapping offset';
      const range = `[0x${(event.start * PAGE_SIZE).toString(16)}, 0x${(event.end * PAGE_SIZE).toString(16)})`;
      return `  zap ${event.target} of ${event.owner}, ${unit} ${range} (${event.cause})`;
    }
    case 'revoke':
      return `  revoke ${`ioas:${event.ioas}/area:${event.area}`} iova 0x${event.iova.toString(16)} +${event.length} (${event.cause})`;
    default:
      return undefined;
  }
}

function run(contract) {
  console.log(`\n=== contract '${contract}' (backend: neutral software-protected VM) ===`);
  const host = createHost({ contract });
  const vm = host.createVm({ type: 'coco' });
  const gmem = vm.createGuestMemfd({ size: SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  vm.setUserMemoryRegion2({
    slot: 1,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: GPA,
    memorySize: SIZE,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  const ioas = host.openIommufd().createIoas();
  const iova = ioas.mapFile({
    fd: gmem,
    start: 0,
    length: SIZE,
    flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
  });
  const nic = ioas.attachDevice('nic');
  console.log(
    `guest_memfd fd ${gmem.fd}: ${SIZE / MiB} MiB bound at GPA 0x${GPA.toString(16)}, mapped for DMA at IOVA 0x${iova.toString(16)}`,
  );
  console.log(
    `device writes 2 pages at IOVA+0: ${describeAccess(nic.dmaWrite(iova, new Uint8Array(2 * PAGE_SIZE).fill(0x5a)))}`,
  );
  const guest = vm.guestRead(GPA, 4);
  console.log(
    `guest reads GPA+0: ${guest.ok ? `[${[...guest.data].map((b) => b.toString(16)).join(' ')}]` : describeAccess(guest)}`,
  );

  const recording = host.events.record();
  console.log('\n-- convert the first 2 MiB to private (KVM_SET_MEMORY_ATTRIBUTES2)');
  gmem.setMemoryAttributes2({ offset: 0, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  console.log(`device reads IOVA+0 (now private): ${describeAccess(nic.dmaRead(iova, 4))}`);

  console.log('\n-- pin a shared page (long-term GUP) and try to convert it');
  const pin = gmem.pin(4 * MiB, PAGE_SIZE);
  try {
    gmem.setMemoryAttributes2({ offset: 2 * MiB, size: 4 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
  } catch (error) {
    if (!GmemError.isInstance(error)) throw error;
    console.log(`refused: ${error.errno}, errorOffset ${error.errorOffset} (${error.message})`);
  }
  pin.unpin();

  console.log('\n-- punch a hole over [8 MiB, 10 MiB) while the device still maps it');
  gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 8 * MiB, 2 * MiB);
  console.log(`device writes IOVA+8 MiB: ${describeAccess(nic.dmaWrite(iova + 8 * MiB, new Uint8Array(16)))}`);
  recording.stop();

  console.log('\nwhat the kernel did:');
  for (const event of recording.events) {
    const line = describeEvent(event);
    if (line) console.log(`  ${line}`);
  }
  const violations = host.checkInvariants();
  console.log(
    violations.length === 0
      ? '\ninvariants: all hold'
      : `\ninvariants broken:\n${violations.map((v) => `  ${v.kind}: ${v.message}`).join('\n')}`,
  );
}

const KNOWN = ['tdx', 'sev-snp', 'arm-cca', 'pkvm'];
const HELP = `usage: pnpm example [--backend SPEC]...

Converts and truncates a guest_memfd under a live DMA mapping, step by step with the neutral backend, then runs the
same actions on each backend side by side.

  --backend SPEC  a backend to compare (repeatable; default: ${KNOWN.join(', ')}). SPEC is
                    a short id with an optional variant:  tdx  tdx:connect  sev-snp:tio  arm-cca:da  pkvm:upstream
                    a package name:                       @gmemlab/tdx  some-package
                    a path to a module:                   ./my-backend.js
                  Package names resolve from the current folder first, then from this example.
  -h, --help      this text`;

/** The variant options each @gmemlab package accepts, by the part of the id after the colon. */
const VARIANTS = {
  tdx: {
    connect: { variant: 'connect' },
    'dma-poison': { dmaToPrivate: 'poison' },
    'no-erratum': { pwMceErratum: false },
  },
  'sev-snp': { tio: { variant: 'tio' } },
  'arm-cca': { da: { variant: 'da' } },
  pkvm: {
    upstream: { variant: 'upstream' },
    'refuse-dma-mapped': { unshare: 'refuse-dma-mapped' },
    'hyp-bug': { hostAbort: 'hyp-bug' },
  },
};

/** Import `specifier` from the current folder if it resolves there, else from this example's own dependencies. */
async function importFromCwd(specifier) {
  if (specifier.startsWith('.') || specifier.startsWith('/'))
    return import(pathToFileURL(resolvePath(process.cwd(), specifier)).href);
  try {
    return await import(createRequire(resolvePath(process.cwd(), 'noop.js')).resolve(specifier));
  } catch {
    return import(specifier);
  }
}

/** Load a backend by short id, package name or path: its default export, checked against the ArchBackend spec. */
async function loadBackend(spec) {
  const [arch, variant] = spec.split(':');
  const isShort = KNOWN.includes(arch);
  const name = isShort ? `@gmemlab/${arch}` : spec;
  let module;
  try {
    module = await importFromCwd(name);
  } catch (error) {
    const hint =
      isShort || name.startsWith('@gmemlab/')
        ? ''
        : ` (the built-in backends are ${KNOWN.join(', ')}, with variants such as tdx:connect)`;
    throw new Error(`cannot load backend ${spec}: ${String(error.message).split('\n')[0]}${hint}`);
  }
  let backend = module.default ?? module;
  if (typeof backend !== 'function' && (typeof backend !== 'object' || backend === null))
    throw new Error(`${spec}: not a backend (its default export is ${typeof backend})`);
  if (!('specificationVersion' in backend) || !('conversionPolicy' in backend))
    throw new Error(`${spec}: not a backend (its default export has no specificationVersion or conversionPolicy)`);
  if (isShort && variant !== undefined) {
    const options = variant.split('-').length && VARIANTS[arch][variant];
    if (!options)
      throw new Error(`${spec}: unknown variant '${variant}' (known: ${Object.keys(VARIANTS[arch]).join(', ')})`);
    backend = backend(options);
  }
  const problems = describeBackendProblems(backend);
  if (problems.length > 0) throw new Error(`${spec} does not export an ArchBackend v1: ${problems.join('; ')}`);
  return backend;
}

/** The same actions on one backend and contract, summed up in one row. */
function compare(backend, contract) {
  const host = createHost({ backend, contract });
  const vm = host.createVm({ type: 'coco', vcpus: 4 });
  const gmem = vm.createGuestMemfd({ size: SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
  vm.setUserMemoryRegion2({
    slot: 1,
    flags: KVM_MEM_GUEST_MEMFD,
    guestPhysAddr: GPA,
    memorySize: SIZE,
    guestMemfd: gmem,
    guestMemfdOffset: 0,
  });
  const ioas = host.openIommufd().createIoas();
  const iova = ioas.mapFile({
    fd: gmem,
    start: 0,
    length: SIZE,
    flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
  });
  const nic = ioas.attachDevice('nic');
  vm.guestWrite(GPA, new Uint8Array(PAGE_SIZE).fill(0x11));
  // Invariants are checked after every step, so a violation that a later step hides still shows.
  const seen = new Set();
  const check = () => host.checkInvariants().forEach((v) => seen.add(v.kind));
  const short = (result) => (result.ok ? 'lands' : `${result.fault}${result.fatal ? ' (FATAL)' : ''}`);
  const step = (fn) => {
    if (host.crashed) return 'host down';
    const out = fn();
    check();
    return out;
  };
  // The guest touches the first page as private: KVM exits to the VMM, which converts the first 2 MiB.
  const exit = step(() => vm.guestRead(GPA, 1, { intent: 'private' }));
  const exitCell = exit.ok ? 'none' : exit.fault === 'memory-fault' ? 'MEMORY_FAULT' : exit.fault;
  const conversion = step(() => {
    try {
      gmem.setMemoryAttributes2({ offset: 0, size: 2 * MiB, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE });
      return 'ok';
    } catch (error) {
      if (!GmemError.isInstance(error)) throw error;
      return `${error.errno} @${error.errorOffset}`;
    }
  });
  // The guest accepts the 2 MiB page by page: each page enters the hardware-private state, unless the hypervisor
  // refuses it (Android pKVM does not donate a page a live IOPTE maps: KVM_RUN returns EINVAL).
  const accept = step(() => {
    const faults = new Map();
    for (let at = 0; at < 2 * MiB; at += PAGE_SIZE) {
      const result = vm.guestRead(GPA + at, 1, { intent: 'private' });
      if (!result.ok) faults.set(result.fault, (faults.get(result.fault) ?? 0) + 1);
    }
    return faults.size === 0 ? 'ok' : [...faults].map(([fault, n]) => `${fault} x${n}`).join(', ');
  });
  const entry = Object.values(host.pipelineCounters()).reduce((a, b) => a + b, 0);
  // A total that includes a count the backend marks as an upper bound is itself one (host.pipelineBounds()).
  const boundsNow = () => new Set(Object.keys(host.pipelineBounds?.() ?? {}));
  const entryBounds = boundsNow();
  const dma = step(() => short(nic.dmaWrite(iova, new Uint8Array(8))));
  step(() => gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * MiB));
  const stale = step(() => short(nic.dmaWrite(iova, new Uint8Array(8))));
  const removal = Object.values(host.pipelineCounters()).reduce((a, b) => a + b, 0) - entry;
  check();
  const removalBound = [...boundsNow()].some((step) => !entryBounds.has(step));
  return [
    backend.id,
    contract,
    exitCell,
    conversion,
    accept,
    dma,
    stale,
    [...seen].join(', ') || 'none',
    `${entryBounds.size > 0 ? 'at most ' : ''}${entry}`,
    `${removalBound ? 'at most ' : ''}${removal}${host.crashed ? ' (before the crash)' : ''}`,
  ];
}

let values;
try {
  ({ values } = parseArgs({
    options: { backend: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } },
  }));
} catch (error) {
  console.error(`${error.message}\n\n${HELP}`);
  process.exit(2);
}
if (values.help) {
  console.log(HELP);
  process.exit(0);
}

// Load every backend first, so that a wrong name is reported before anything runs.
let backends;
try {
  backends = await Promise.all((values.backend ?? KNOWN).map(loadBackend));
} catch (error) {
  console.error(error.message);
  process.exit(2);
}

run('gmem-registry');
run('vmm-driven');

console.log('\n=== the same actions on each architecture ===');
console.log(
  'The guest touches its first page as private (an exit to the VMM); the VMM converts the first 2 MiB while a',
);
console.log(
  'device maps them; the guest accepts the 2 MiB page by page; the device writes there; the VMM punches those',
);
console.log('2 MiB out of the file; the device writes there again. Invariants are checked after every step. Steps are');
console.log(
  "firmware/hypervisor operations counted (entry: at the guest's private faults; removal: at the punch), not",
);
console.log('timings; "at most" marks a total that includes an upper bound. A FATAL fault takes the host down: later');
console.log('steps say "host down".\n');
const rows = [
  [
    'backend',
    'contract',
    'guest exit',
    'to-private',
    'guest accepts',
    'DMA after accept',
    'DMA after punch',
    'invariants broken (any step)',
    'entry steps',
    'removal steps',
  ],
];
for (const backend of backends)
  for (const contract of ['gmem-registry', 'vmm-driven']) rows.push(compare(backend, contract));
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const row of rows)
  console.log(
    row
      .map((cell, i) => cell.padEnd(widths[i]))
      .join('  ')
      .trimEnd(),
  );
