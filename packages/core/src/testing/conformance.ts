/**
 * The conformance kit: one suite every ArchBackend package runs against itself (the abstract-level pattern).
 *
 * It checks the contract the core keeps whatever an architecture decides (kernel-contract §9.3, §9.5):
 * truncation revokes every registered DMA mapping and frees the pages, a refused or failed conversion changes
 * nothing, the invariants hold after every step in the registering modes ('gmem-registry', 'mirror'), and what the backend declares
 * (conversionPolicy, hypervisorRefusal, deviceAccess, hostKernelAccess, deviceMayReach, mapsPrivatePages,
 * contentsOnConversion, removalPipeline) is what the model then does. The kit asserts with plain thrown Errors,
 * so it runs under vitest, node:test, mocha or jest: pass their `describe` and `it`.
 */
import type { AccessResult, AccessVerdict } from '../access.js';
import {
  declaredPolicyInputs,
  describeBackendProblems,
  type ArchBackend,
  type ConsumerResponse,
  type ConversionContext,
  type ConversionPolicyInput,
  type ConversionTarget,
  type DmaAreaInfo,
  type PageAccessContext,
} from '../arch/backend.js';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PAGE_SIZE,
} from '../constants.js';
import { CONTRACTS, registersWithGmem, type Contract } from '../contract.js';
import { GmemError, HostCrashedError } from '../errors.js';
import type { Host } from '../host.js';
import { createScenario, type ScenarioOptions } from './scenario.js';

/** The two functions of a test runner the kit needs (vitest, node:test, mocha and jest all fit). */
export interface ConformanceHarness {
  describe(name: string, body: () => void): unknown;
  it(name: string, body: () => void | Promise<void>): unknown;
}

/** One conformance case: a name and a body that throws when the backend or the core breaks the contract. */
export interface ConformanceCase {
  name: string;
  run(): void;
}

const P = PAGE_SIZE;
/** Small files keep every iommufd area at 4K IOPTEs, so the kit never depends on huge-IOPTE rules. */
const SIZE = 16 * P;
const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const FAULT_KINDS = [
  'sigbus',
  'sigsegv',
  'iommu-fault',
  'contained',
  'poison',
  'machine-check',
  'efault',
  'einval',
  'mmio',
  'retry',
  'memory-fault',
];

function fail(message: string): never {
  throw new Error(`conformance: ${message}`);
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) fail(message);
}

function same(actual: unknown, expected: unknown, message: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${message}\n  expected: ${e}\n  actual:   ${a}`);
}

/** Run `fn`; return the GmemError it throws, or undefined if it succeeds. Other errors propagate. */
function attempt(fn: () => unknown): GmemError | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    if (GmemError.isInstance(error)) return error;
    throw error;
  }
}

/**
 * Whether the backend itself lets devices reach private pages it says no device may reach: it maps private pages
 * (mapsPrivatePages) and deviceMayReach(private) is false (pKVM upstream: no DMA isolation at all). Then
 * 'unsafe-iopte' is the truth about that architecture, not a broken core contract; tests that demand clean
 * invariants in 'gmem-registry' mode leave that one kind out for such a backend.
 */
export function unsafeByDesign(backend: ArchBackend): boolean {
  return !backend.deviceMayReach({ attribute: 'private', vmType: 'coco' }) && backend.mapsPrivatePages;
}

function cleanInvariants(host: Host, step: string, backend: ArchBackend): void {
  const violations = host.checkInvariants().filter((v) => !(v.kind === 'unsafe-iopte' && unsafeByDesign(backend)));
  if (violations.length > 0)
    fail(`invariants broken after ${step}: ${violations.map((v) => `${v.kind}: ${v.message}`).join('; ')}`);
}

/** The kit's scenario: the exported one, over the whole file, with its area always present. */
function setup(
  backend: ArchBackend,
  contract: Contract,
  options: Omit<ScenarioOptions, 'contract' | 'size' | 'map'> = {},
) {
  const scenario = createScenario(backend, { contract, size: SIZE, ...options });
  return { ...scenario, area: scenario.area! };
}

/** Whether the host crashed, and every call now throws HostCrashedError. */
function assertCrashed(host: Host, what: string): void {
  assert(host.crashed !== undefined, `${what} was fatal, but the host is not marked crashed`);
  let thrown: unknown;
  try {
    host.createVm({ type: 'coco' });
  } catch (error) {
    thrown = error;
  }
  assert(
    HostCrashedError.isInstance(thrown),
    `after ${what}, a call on the crashed host must throw HostCrashedError (got ${String(thrown)})`,
  );
}

function verdictMatches(result: AccessResult, verdict: AccessVerdict, what: string): void {
  if (verdict.allow) {
    assert(result.ok, `${what}: the backend allows it, but the model faulted (${JSON.stringify(result)})`);
    return;
  }
  assert(!result.ok, `${what}: the backend declares a '${verdict.fault}' fault, but the access succeeded`);
  same(
    { fault: result.fault, fatal: result.fatal, logged: result.logged, mechanism: result.mechanism },
    { fault: verdict.fault, fatal: verdict.fatal, logged: verdict.logged, mechanism: verdict.mechanism },
    `${what}: the model's fault differs from the backend's verdict`,
  );
}

function checkVerdict(verdict: AccessVerdict, what: string): void {
  if (verdict.allow) return;
  assert(FAULT_KINDS.includes(verdict.fault), `${what}: fault '${String(verdict.fault)}' is not a FaultKind`);
  assert(
    typeof verdict.fatal === 'boolean' && typeof verdict.logged === 'boolean',
    `${what}: fatal and logged must be booleans`,
  );
  assert(
    typeof verdict.mechanism === 'string' && verdict.mechanism !== '',
    `${what}: mechanism must name what raised the fault`,
  );
}

/** Every access context a backend can be asked about. */
const ACCESS_CONTEXTS: PageAccessContext[] = (['shared', 'private'] as const).flatMap((attribute) =>
  (['shared', 'private'] as const).flatMap((hardware) =>
    [false, true].flatMap((write) =>
      [false, true].flatMap((stale) =>
        (['default', 'coco'] as const).map((vmType) => ({ attribute, hardware, write, vmType, stale })),
      ),
    ),
  ),
);

/** The context of an access to a page of the kit's coco VM. */
function ctx(attribute: 'shared' | 'private', hardware: 'shared' | 'private', write: boolean): PageAccessContext {
  return { attribute, hardware, write, vmType: 'coco', stale: false };
}

function countSteps(
  into: Record<string, number>,
  steps: ReadonlyArray<{ step: string; count: number }>,
  times = 1,
): void {
  for (const { step, count } of steps) if (count > 0) into[step] = (into[step] ?? 0) + count * times;
}

function shapeCases(backend: ArchBackend): ConformanceCase[] {
  return [
    {
      name: 'implements ArchBackend v1',
      run() {
        const problems = describeBackendProblems(backend);
        assert(problems.length === 0, `not an ArchBackend v1: ${problems.join('; ')}`);
        assert(
          /^[a-z0-9][a-z0-9-]*(:[a-z0-9][a-z0-9-]*)?$/.test(backend.id),
          `id '${backend.id}' is not '<arch>' or '<arch>:<variant>' in lower-case`,
        );
        assert(backend.name.trim() !== '', 'name is empty');
        assert(backend.pageSizes.length > 0, 'pageSizes is empty');
        backend.pageSizes.forEach((size, i) => {
          assert(
            Number.isSafeInteger(size) && size > 0 && size % P === 0,
            `pageSizes[${i}] = ${size} is not a multiple of ${P}`,
          );
          if (i > 0) assert(size > backend.pageSizes[i - 1]!, 'pageSizes is not sorted smallest first');
        });
      },
    },
    {
      name: 'is stateless: every hook answers the same question the same way, and verdicts are well formed',
      run() {
        for (const context of ACCESS_CONTEXTS) {
          const label = JSON.stringify(context);
          const device = backend.deviceAccess(context);
          same(backend.deviceAccess(context), device, `deviceAccess(${label}) is not deterministic`);
          checkVerdict(device, `deviceAccess(${label})`);
          const kernel = backend.hostKernelAccess(context);
          same(backend.hostKernelAccess(context), kernel, `hostKernelAccess(${label}) is not deterministic`);
          checkVerdict(kernel, `hostKernelAccess(${label})`);
          if (context.attribute === 'shared' && context.hardware === 'shared' && context.vmType === 'coco') {
            assert(device.allow, `deviceAccess(${label}): a shared page is ordinary memory; a device must reach it`);
            assert(
              kernel.allow,
              `hostKernelAccess(${label}): a shared page is ordinary memory; the kernel must reach it`,
            );
          }
          const reach = backend.deviceMayReach(context);
          same(backend.deviceMayReach(context), reach, `deviceMayReach(${label}) is not deterministic`);
          if (context.attribute === 'shared') assert(reach, `deviceMayReach(${label}) must be true for shared pages`);
        }
        for (const to of ['shared', 'private'] as const) {
          const contents = backend.contentsOnConversion({ to });
          assert(
            contents === 'keep' || contents === 'zero',
            `contentsOnConversion({ to: '${to}' }) is '${String(contents)}'`,
          );
        }
        for (const cause of ['truncate', 'release'] as const) {
          const contents = backend.contentsOnRemoval?.({ cause }) ?? 'keep';
          assert(
            contents === 'keep' || contents === 'zero',
            `contentsOnRemoval({ cause: '${cause}' }) is '${String(contents)}'`,
          );
        }
        const removal = {
          cause: 'truncate' as const,
          pages: 3,
          ranges: [{ offset: 0, length: 3 * P }],
          vcpus: 4,
          iommuDomains: 1,
        };
        const entry = {
          pages: 1,
          ranges: [{ offset: 0, length: P }],
          vcpus: 4,
          at: backend.privateEntryAt ?? ('install' as const),
        };
        for (const [hook, steps, again] of [
          ['removalPipeline', backend.removalPipeline?.(removal) ?? [], backend.removalPipeline?.(removal) ?? []],
          ['privateEntry', backend.privateEntry?.(entry) ?? [], backend.privateEntry?.(entry) ?? []],
        ] as const) {
          same(again, steps, `${hook} is not deterministic`);
          assert(Array.isArray(steps), `${hook} must return an array`);
          for (const { step, count } of steps) {
            assert(typeof step === 'string' && step !== '', `a ${hook} step has no name`);
            assert(
              Number.isSafeInteger(count) && count >= 0,
              `${hook} step '${step}' has count ${count}: counts are whole numbers, not timings`,
            );
          }
        }
      },
    },
  ];
}

function truncationCases(backend: ArchBackend, contract: Contract): ConformanceCase[] {
  return [
    {
      name: `truncation frees the pages${registersWithGmem(contract) ? ' and revokes every DMA mapping' : ''} (${contract})`,
      run() {
        // Half the file private (and faulted in by the guest) before any IOPTE exists, so no policy can refuse it.
        const s = setup(backend, contract, { private: [{ offset: 0, length: SIZE / 2, faulted: true }] });
        s.gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, SIZE);
        assert(
          s.host.allocatedPages === s.baseline,
          `PUNCH_HOLE of the whole file left ${s.host.allocatedPages - s.baseline} pages allocated`,
        );
        same(
          (s.host.snapshot() as { inodes: Array<{ hardware: unknown[] }> }).inodes[0]!.hardware,
          [],
          'truncated pages must leave the hardware-private state',
        );
        const write = s.device!.dmaWrite(s.iova + SIZE - P, new Uint8Array([1]));
        const kinds = s.host.checkInvariants().map((v) => v.kind);
        if (registersWithGmem(contract)) {
          assert(
            !write.ok && write.fault === 'iommu-fault',
            `a DMA after truncation must hit a revoked IOPTE, got ${JSON.stringify(write)}`,
          );
          cleanInvariants(s.host, 'PUNCH_HOLE', backend);
        } else {
          // Nothing in the kernel unmaps: the stale IOPTE now reaches a freed frame whatever the architecture.
          assert(write.ok, 'in vmm-driven mode the stale IOPTE is still there and the DMA lands on a freed frame');
          assert(
            write.reached?.[0]?.owner.kind === 'free',
            `the stale DMA must report that it reached a free frame, got ${JSON.stringify(write.reached)}`,
          );
          assert(
            kinds.includes('stale-iopte'),
            `vmm-driven truncation must leave a 'stale-iopte' violation, got [${kinds.join(', ')}]`,
          );
        }
      },
    },
    {
      name: `removal steps count only hardware-private pages: a private page the guest never faulted costs nothing (${contract})`,
      run() {
        const s = setup(backend, contract, {
          attach: false,
          private: [
            { offset: 0, length: 4 * P, faulted: false },
            { offset: 4 * P, length: 2 * P, faulted: true },
          ],
        });
        const expected: Record<string, number> = {};
        countSteps(
          expected,
          backend.privateEntry?.({
            pages: 1,
            ranges: [{ offset: 4 * P, length: P }],
            vcpus: 2,
            at: backend.privateEntryAt ?? 'install',
          }) ?? [],
          2,
        );
        same(
          s.host.pipelineCounters(),
          expected,
          'two private guest faults count the entry steps of two pages, nothing else',
        );
        s.gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 8 * P);
        countSteps(
          expected,
          backend.removalPipeline?.({
            cause: 'truncate',
            pages: 2,
            ranges: [{ offset: 4 * P, length: 2 * P }],
            vcpus: 2,
            iommuDomains: 0,
          }) ?? [],
        );
        same(
          s.host.pipelineCounters(),
          expected,
          'PUNCH_HOLE of 4 never-faulted and 2 faulted private pages counts the removal of 2',
        );
      },
    },
    {
      name: `closing the last reference evicts the inode and frees every page (${contract})`,
      run() {
        const s = setup(backend, contract, { attach: false, private: [{ offset: 0, length: 4 * P, faulted: true }] });
        s.ioas.unmapAll();
        s.gmem.close();
        assert(
          s.host.allocatedPages === s.baseline,
          `release left ${s.host.allocatedPages - s.baseline} pages allocated`,
        );
        if (registersWithGmem(contract)) cleanInvariants(s.host, 'release', backend);
      },
    },
  ];
}

function failedConversionCases(backend: ArchBackend, contract: Contract): ConformanceCase[] {
  return [
    {
      name: `a conversion refused for a pinned page changes nothing and reports errorOffset (${contract})`,
      run() {
        const s = setup(backend, contract, { attach: false });
        s.ioas.unmapAll();
        const pin = s.gmem.pin(5 * P, P);
        const before = s.host.snapshot();
        const error = attempt(() => s.convert(4 * P, 4 * P, 'private'));
        assert(error?.errno === 'EAGAIN', `expected EAGAIN, got ${error ? error.errno : 'success'}`);
        same(error.errorOffset, 5 * P, 'errorOffset must be the first pinned page');
        same(s.host.snapshot(), before, 'a refused conversion changed the host');
        pin.unpin();
        s.convert(4 * P, 4 * P, 'private');
        if (registersWithGmem(contract)) cleanInvariants(s.host, 'the retried conversion', backend);
      },
    },
    {
      name: `an invalid conversion changes nothing (${contract})`,
      run() {
        const s = setup(backend, contract);
        const before = s.host.snapshot();
        const error = attempt(() =>
          s.gmem.setMemoryAttributes2({ offset: P, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE, flags: 1 }),
        );
        assert(error?.errno === 'EINVAL', `expected EINVAL, got ${error ? error.errno : 'success'}`);
        same(s.host.snapshot(), before, 'an invalid conversion changed the host');
      },
    },
  ];
}

/** What the backend declares for converting [offset, offset + length) of the kit's layout with IOPTEs present. */
function declared(
  backend: ArchBackend,
  contract: Contract,
  area: DmaAreaInfo,
  to: ConversionTarget,
  offset: number,
  length: number,
) {
  const refusal = backend.hypervisorRefusal?.({
    to,
    offset,
    length,
    contract,
    dmaMapped: area.hasIoptes ? [{ offset, length, area }] : [],
  });
  const policy: ConsumerResponse | undefined = registersWithGmem(contract)
    ? backend.conversionPolicy({ to, offset, length, contract, area, overlapOffset: offset, overlapLength: length })
    : undefined;
  return { refusal, policy };
}

function expectConversion(
  backend: ArchBackend,
  contract: Contract,
  s: ReturnType<typeof setup>,
  to: ConversionTarget,
  offset: number,
  length: number,
): 'refused' | ConsumerResponse | 'unregistered' {
  const { refusal, policy } = declared(backend, contract, s.area, to, offset, length);
  assert(
    policy === undefined || ['revoke', 'refuse', 'tolerate', 'split'].includes(policy),
    `conversionPolicy returned ${JSON.stringify(policy)}`,
  );
  const before = s.host.snapshot();
  const error = attempt(() => s.convert(offset, length, to));
  if (refusal !== undefined || policy === 'refuse') {
    assert(
      error?.errno === 'EAGAIN',
      `the backend refuses this conversion to ${to} (${refusal !== undefined ? 'hypervisorRefusal' : 'conversionPolicy'}), but it ${error ? `failed with ${error.errno}` : 'succeeded'}`,
    );
    const expected = Math.min(
      ...[refusal, policy === 'refuse' ? offset : undefined].filter((v): v is number => v !== undefined),
    );
    same(error.errorOffset, expected, 'errorOffset must be the lowest refused offset');
    assert(
      error.errorOffset! >= offset && error.errorOffset! < offset + length && error.errorOffset! % P === 0,
      'errorOffset must be a page inside the range',
    );
    same(s.host.snapshot(), before, `a refused conversion to ${to} changed the host`);
    return 'refused';
  }
  if (error) throw error;
  return policy ?? 'unregistered';
}

function policyCases(backend: ArchBackend, contract: Contract): ConformanceCase[] {
  const range = { offset: 2 * P, length: 2 * P };
  return [
    {
      name: `a conversion to private under live IOPTEs does what the backend declares (${contract})`,
      run() {
        const s = setup(backend, contract);
        const outcome = expectConversion(backend, contract, s, 'private', range.offset, range.length);
        if (outcome === 'refused') {
          assert(
            s.device!.dmaWrite(s.iova + range.offset, new Uint8Array([0xa5])).ok,
            'after a refused conversion the page is still shared and DMA must work',
          );
          return;
        }
        // The guest accepts the page: now the hardware holds it as private, and the kept IOPTE (if any) meets it —
        // unless the hypervisor refuses to make a DMA-mapped page private at the fault (privateEntryRefusal).
        const entry = s.vm.guestRead(range.offset, 1, { intent: 'private' });
        const refusal =
          outcome === 'revoke'
            ? undefined
            : backend.privateEntryRefusal?.({ offset: range.offset, length: P, dmaMapped: true, contract });
        if (refusal) {
          assert(
            !entry.ok && entry.fault === refusal.fault,
            `privateEntryRefusal refuses a DMA-mapped page, but the guest's private fault gave ${JSON.stringify(entry)}`,
          );
          assert(
            s.device!.dmaWrite(s.iova + range.offset, new Uint8Array([0xa5])).ok,
            'a page the hypervisor refused to make private is still an ordinary page: DMA must work',
          );
          assert(!s.host.crashed, 'a refused private fault must not bring the host down');
          return;
        }
        const kinds = s.host.checkInvariants().map((v) => v.kind);
        const write = s.device!.dmaWrite(s.iova + range.offset, new Uint8Array([0xa5]));
        if (outcome === 'revoke') {
          assert(
            !write.ok && write.fault === 'iommu-fault',
            `conversionPolicy said 'revoke', but a DMA to the converted page gave ${JSON.stringify(write)}`,
          );
          assert(s.device!.dmaWrite(s.iova, new Uint8Array([1])).ok, "'revoke' must only unmap the converting pages");
        } else {
          const verdict = backend.deviceAccess(ctx('private', 'private', true));
          verdictMatches(write, verdict, 'a DMA write through a kept IOPTE to a hardware-private page');
          if (!verdict.allow && verdict.fatal) assertCrashed(s.host, 'a fatal DMA');
        }
        if (registersWithGmem(contract)) {
          const broken = kinds.filter((kind) => !(kind === 'unsafe-iopte' && unsafeByDesign(backend)));
          assert(
            broken.length === 0,
            `invariants broken after a conversion to private (${outcome}): [${broken.join(', ')}]`,
          );
          if (contract === 'mirror' && outcome === 'revoke' && !s.host.crashed) {
            // 'mirror' (RFC-J5, RFC-J6): the pages come back once the conversion to shared completes.
            const back = declared(backend, contract, s.area, 'shared', range.offset, range.length);
            if (back.refusal === undefined && back.policy !== 'refuse') {
              s.convert(range.offset, range.length, 'shared');
              const again = s.device!.dmaWrite(s.iova + range.offset, new Uint8Array([0x5a]));
              assert(
                again.ok,
                `mirror: after the conversion back to shared the DMA must land again, got ${JSON.stringify(again)}`,
              );
              cleanInvariants(s.host, 'a mirror round trip', backend);
            }
          }
        } else {
          const unsafe = !backend.deviceMayReach({ attribute: 'private', vmType: 'coco' });
          assert(
            kinds.includes('unsafe-iopte') === unsafe,
            `vmm-driven: 'unsafe-iopte' must be reported exactly when deviceMayReach(private) is false (got [${kinds.join(', ')}])`,
          );
        }
      },
    },
    {
      name: `a conversion to shared under live IOPTEs does what the backend declares (${contract})`,
      run() {
        // Private (and accepted by the guest) before any IOPTE exists; then the device attaches.
        const s = setup(backend, contract, {
          attach: false,
          private: [{ offset: range.offset, length: range.length, faulted: true }],
        });
        const device = s.ioas.attachDevice('dev0');
        const area = { ...s.area, hasIoptes: true };
        const { refusal, policy } = declared(backend, contract, area, 'shared', range.offset, range.length);
        const before = s.host.snapshot();
        const error = attempt(() => s.convert(range.offset, range.length, 'shared'));
        if (refusal !== undefined || policy === 'refuse') {
          assert(
            error?.errno === 'EAGAIN',
            `the backend refuses this conversion to shared, but it ${error ? `failed with ${error.errno}` : 'succeeded'}`,
          );
          same(s.host.snapshot(), before, 'a refused conversion to shared changed the host');
          return;
        }
        if (error) throw error;
        const write = device.dmaWrite(s.iova + range.offset, new Uint8Array([0x5a]));
        // The RFC as posted maps every page; the registry design maps private pages only when mapsPrivatePages;
        // 'mirror' maps the pages again once the conversion to shared completes (RFC-J5, RFC-J6).
        const mapped = contract === 'vmm-driven' || backend.mapsPrivatePages;
        // The pages were faulted in as private, so after the conversion they are pages the guest shared back: a
        // backend with mapsSharedBackPages false (a hypervisor IOMMU that maps only host-owned pages) maps none.
        const sharedBackMapped = backend.mapsSharedBackPages !== false || backend.mapsPrivatePages;
        if (contract === 'mirror' && !sharedBackMapped)
          assert(
            !write.ok && write.fault === 'iommu-fault',
            `mapsSharedBackPages is false: mirror may not map a page the guest shared back, but the DMA gave ${JSON.stringify(write)}`,
          );
        else if (contract === 'mirror')
          assert(
            write.ok,
            `mirror: a completed conversion to shared maps the pages again, but the DMA gave ${JSON.stringify(write)}`,
          );
        else if (policy === 'revoke')
          assert(
            !write.ok && write.fault === 'iommu-fault',
            `conversionPolicy said 'revoke', but the DMA gave ${JSON.stringify(write)}`,
          );
        else if (mapped) assert(write.ok, 'an IOPTE kept over a page that became shared must reach it');
        else
          assert(
            !write.ok && write.fault === 'iommu-fault',
            "with mapsPrivatePages false the page had no IOPTE; remapping after to-shared is the VMM's job",
          );
        if (registersWithGmem(contract)) cleanInvariants(s.host, `a conversion to shared (${policy})`, backend);
      },
    },
    {
      name: `IOMMU_IOAS_MAP_FILE over private pages creates IOPTEs when mapsPrivatePages, or always as the RFC posted (${contract})`,
      run() {
        const s = setup(backend, contract, { initShared: false });
        const read = s.device!.dmaRead(s.iova, 8);
        if (contract === 'vmm-driven' || backend.mapsPrivatePages) {
          // Private but never faulted in by the guest: the hardware does not hold the page yet.
          verdictMatches(
            read,
            backend.deviceAccess(ctx('private', 'shared', false)),
            'a DMA read of a private page mapped at fill time',
          );
        } else {
          assert(
            !read.ok && read.fault === 'iommu-fault',
            `mapsPrivatePages is false, but a DMA read of a private page gave ${JSON.stringify(read)}`,
          );
        }
        if (registersWithGmem(contract) && !s.host.crashed)
          cleanInvariants(s.host, 'filling an area over private pages', backend);
      },
    },
  ];
}

function accessCases(backend: ArchBackend): ConformanceCase[] {
  return [
    {
      name: 'the host kernel touching a private page through the direct map does what hostKernelAccess declares, before and after the guest accepts it',
      run() {
        for (const faulted of [false, true]) {
          for (const write of [false, true]) {
            const s = setup(backend, 'gmem-registry', { attach: false, private: [{ offset: 0, length: P, faulted }] });
            const result = write ? s.gmem.directMapWrite(0, new Uint8Array([7])) : s.gmem.directMapRead(0, 8);
            const verdict = backend.hostKernelAccess(ctx('private', faulted ? 'private' : 'shared', write));
            verdictMatches(
              result,
              verdict,
              `a direct-map ${write ? 'write' : 'read'} of a private page (${faulted ? 'hardware-private' : 'not yet accepted'})`,
            );
            if (!verdict.allow && verdict.fatal) {
              assertCrashed(s.host, 'a fatal host-kernel access');
              continue;
            }
            assert(s.gmem.directMapRead(P, 8).ok, 'a direct-map read of a shared page must succeed');
          }
        }
      },
    },
    {
      name: 'a private guest fault makes a page hardware-private; to-shared and truncation take it out',
      run() {
        const s = setup(backend, 'gmem-registry', { attach: false, private: [{ offset: 0, length: 2 * P }] });
        const hardware = () => (s.host.snapshot() as { inodes: Array<{ hardware: unknown[] }> }).inodes[0]!.hardware;
        same(hardware(), [], 'converting to private alone makes nothing hardware-private');
        s.faultPrivate(0, 2 * P);
        same(hardware(), [[0, 2, true]], 'private guest faults make the pages hardware-private');
        const shared = s.vm.guestRead(0, 1, { intent: 'shared' });
        assert(
          !shared.ok && shared.fault === 'memory-fault',
          `a shared-intent access to a private page must be KVM_EXIT_MEMORY_FAULT, got ${JSON.stringify(shared)}`,
        );
        s.convert(0, P, 'shared');
        same(hardware(), [[1, 2, true]], 'to-shared takes the page out of the hardware-private state');
        s.gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, P, P);
        same(hardware(), [], 'truncation takes the page out of the hardware-private state');
        cleanInvariants(s.host, 'entering and leaving the hardware-private state', backend);
      },
    },
    {
      name: 'page contents across shared -> private -> shared follow contentsOnConversion, only where the hardware held the page',
      run() {
        for (const faulted of [false, true]) {
          const s = setup(backend, 'gmem-registry', { attach: false });
          s.ioas.unmapAll();
          const mapping = s.gmem.mmap({ length: SIZE, shared: true });
          assert(mapping.write(P, new Uint8Array([0xc3])).ok, 'a host write to a shared page failed');
          s.convert(P, P, 'private');
          if (faulted) s.faultPrivate(P, P);
          s.convert(P, P, 'shared');
          const read = mapping.read(P, 1);
          assert(read.ok, 'a host read of a page converted back to shared failed');
          // A page the guest faulted in holds what contentsOnPrivateEntry says from then on (TDX's ACCEPT zeroes it).
          const zero =
            faulted &&
            (backend.contentsOnConversion({ to: 'shared' }) === 'zero' ||
              backend.contentsOnPrivateEntry?.() === 'zero');
          same(
            read.data![0],
            zero ? 0 : 0xc3,
            `contents after a round trip (${faulted ? 'accepted by the guest' : 'never accepted'}; contentsOnPrivateEntry: ${backend.contentsOnPrivateEntry?.() ?? 'keep'}; contentsOnConversion to shared: ${backend.contentsOnConversion({ to: 'shared' })})`,
          );
        }
      },
    },
    {
      name: "the guest's first private access finds what contentsOnPrivateEntry declares",
      run() {
        const s = setup(backend, 'gmem-registry', { attach: false });
        s.ioas.unmapAll();
        const mapping = s.gmem.mmap({ length: SIZE, shared: true });
        assert(mapping.write(P, new Uint8Array([0xc3])).ok, 'a host write to a shared page failed');
        s.convert(P, P, 'private');
        const read = s.vm.guestRead(P, 1, { intent: 'private' });
        if (!read.ok) return; // a backend whose entry refuses or faults here is checked elsewhere
        same(
          read.data![0],
          backend.contentsOnPrivateEntry?.() === 'zero' ? 0 : 0xc3,
          `the first private read (contentsOnPrivateEntry: ${backend.contentsOnPrivateEntry?.() ?? 'keep'})`,
        );
      },
    },
    {
      name: 'pipeline counters are per host: one backend instance serves many hosts',
      run() {
        const a = setup(backend, 'gmem-registry', {
          attach: false,
          private: [{ offset: 0, length: 4 * P, faulted: true }],
        });
        const b = setup(backend, 'gmem-registry', { attach: false });
        a.gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4 * P);
        b.gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 8 * P, 4 * P);
        same(
          b.host.pipelineCounters(),
          {},
          'removing shared pages runs no pipeline, and counters must not leak between hosts',
        );
        const expected: Record<string, number> = {};
        countSteps(
          expected,
          backend.privateEntry?.({
            pages: 1,
            ranges: [{ offset: 0, length: P }],
            vcpus: 2,
            at: backend.privateEntryAt ?? 'install',
          }) ?? [],
          4,
        );
        countSteps(
          expected,
          backend.removalPipeline?.({
            cause: 'truncate',
            pages: 4,
            ranges: [{ offset: 0, length: 4 * P }],
            vcpus: 2,
            iommuDomains: 0,
          }) ?? [],
        );
        same(
          a.host.pipelineCounters(),
          expected,
          'the host counts exactly the steps privateEntry and removalPipeline return',
        );
      },
    },
    {
      name: "a mismatch between the guest's intent and the attribute is KVM_EXIT_MEMORY_FAULT, and the conversion that answers it lets the guest in",
      run() {
        const s = setup(backend, 'gmem-registry', { attach: false });
        s.ioas.unmapAll();
        const exit = s.vm.guestWrite(3 * P, new Uint8Array([1]), { intent: 'private' });
        assert(
          !exit.ok && exit.fault === 'memory-fault',
          `a private access to a shared page must exit, got ${JSON.stringify(exit)}`,
        );
        same(
          exit.exit,
          { reason: 'KVM_EXIT_MEMORY_FAULT', gpa: 3 * P, size: P, flags: KVM_MEMORY_ATTRIBUTE_PRIVATE },
          'the exit carries gpa, size and KVM_MEMORY_EXIT_FLAG_PRIVATE',
        );
        s.convert(3 * P, P, 'private');
        assert(
          s.vm.guestWrite(3 * P, new Uint8Array([1]), { intent: 'private' }).ok,
          'after the VMM converts the page, the private access succeeds',
        );
        cleanInvariants(s.host, 'a guest-initiated conversion', backend);
      },
    },
  ];
}

function invariantWalk(backend: ArchBackend, contract: Contract): ConformanceCase {
  return {
    name: `invariants hold after every step of a mixed scenario ('${contract}')`,
    run() {
      const s = setup(backend, contract);
      const step = (name: string, fn: () => unknown) => {
        fn();
        if (s.host.crashed) fail(`the host crashed at '${name}' in '${contract}' mode: ${s.host.crashed.mechanism}`);
        cleanInvariants(s.host, name, backend);
      };
      let device = s.device!;
      step('a guest write to a shared page', () => s.vm.guestWrite(0, new Uint8Array([1, 2, 3])));
      step('a DMA write', () => device.dmaWrite(s.iova + P, new Uint8Array([4])));
      step('a conversion to private (retried after IOMMU_IOAS_UNMAP if refused)', () => {
        if (attempt(() => s.convert(0, 8 * P, 'private'))) {
          s.ioas.unmapAll();
          s.convert(0, 8 * P, 'private');
          s.ioas.mapFile({ fd: s.gmem, start: 0, length: SIZE, flags: RW });
        }
      });
      step('guest writes to private pages (the guest accepts them)', () => {
        for (let page = 0; page < 6; page++) s.vm.guestWrite(page * P, new Uint8Array([5]));
      });
      step('DMA to every shared page', () => {
        for (let page = 8; page < SIZE / P; page++)
          device.dmaWrite(s.ioas.areaList()[0]!.iova + page * P, new Uint8Array([6]));
      });
      step('a conversion back to shared (retried after IOMMU_IOAS_UNMAP if refused)', () => {
        if (attempt(() => s.convert(4 * P, 4 * P, 'shared'))) {
          s.ioas.unmapAll();
          s.convert(4 * P, 4 * P, 'shared');
          s.ioas.mapFile({ fd: s.gmem, start: 0, length: SIZE, flags: RW });
        }
      });
      step('PUNCH_HOLE of a mixed range', () =>
        s.gmem.fallocate(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 2 * P, 4 * P),
      );
      step('a guest read of a punched page', () => s.vm.guestRead(2 * P, 8));
      step('memory failure on a page', () => s.gmem.memoryFailure(10));
      step('detaching the device', () => device.detach());
      step('re-attaching a device', () => {
        device = s.ioas.attachDevice('dev1');
      });
      step('IOMMU_IOAS_UNMAP of everything', () => s.ioas.unmapAll());
      step('closing the guest_memfd', () => s.gmem.close());
      step('closing the iommufd', () => s.iommufd.close());
    },
  };
}

/**
 * The contexts the kit asks conversionPolicy with to check `conversionPolicyInputs`: both directions, the registering
 * modes, four converting ranges, and areas of every IOPTE size, with and without IOPTEs, of both sources, at IOVAs
 * and file offsets aligned to 1G or not, each clipped to the range as the registry clips it.
 */
function policyContexts(): ConversionContext[] {
  const contexts: ConversionContext[] = [];
  const G = 1 << 30;
  const areas: DmaAreaInfo[] = [];
  let id = 1;
  for (const iopteSize of [P, 512 * P, G])
    for (const hasIoptes of [true, false])
      for (const source of ['file', 'user'] as const)
        for (const iova of [G, G + P])
          for (const fileOffset of [0, P])
            areas.push({
              ioas: 1 + (id % 2),
              area: id++,
              iova,
              length: 2 * G,
              fileOffset,
              iopteSize,
              hasIoptes,
              source,
            });
  const ranges = [
    [0, P],
    [P, 512 * P],
    [512 * P, 512 * P],
    [G - P, 2 * P],
  ] as const;
  for (const contract of CONTRACTS.filter(registersWithGmem))
    for (const to of ['shared', 'private'] as const)
      for (const [offset, length] of ranges)
        for (const area of areas) {
          const start = Math.max(offset, area.fileOffset);
          const end = Math.min(offset + length, area.fileOffset + area.length);
          if (start < end)
            contexts.push({ to, offset, length, contract, area, overlapOffset: start, overlapLength: end - start });
        }
  return contexts;
}

/** A context's value of one ConversionPolicyInput. */
function inputOf(context: ConversionContext, input: ConversionPolicyInput): unknown {
  if (input.startsWith('area.')) return context.area[input.slice('area.'.length) as keyof DmaAreaInfo];
  return context[input as Exclude<ConversionPolicyInput, `area.${string}`>];
}

/** The promise of `conversionPolicyInputs`, for a backend that makes it (see ArchBackend.conversionPolicyInputs). */
function policyInputCases(backend: ArchBackend): ConformanceCase[] {
  const inputs = declaredPolicyInputs(backend);
  if (inputs === undefined) return [];
  return [
    {
      name: `conversionPolicy depends only on the fields conversionPolicyInputs declares (${inputs.length === 0 ? 'none' : inputs.join(', ')})`,
      run() {
        const seen = new Map<string, { answer: ConsumerResponse; context: ConversionContext }>();
        for (const context of policyContexts()) {
          const key = JSON.stringify(inputs.map((input) => inputOf(context, input)));
          const answer = backend.conversionPolicy(context);
          const first = seen.get(key);
          if (first === undefined) seen.set(key, { answer, context });
          else
            same(
              answer,
              first.answer,
              `conversionPolicy answers differently for two contexts equal in the declared inputs: ${JSON.stringify(first.context)} and ${JSON.stringify(context)}`,
            );
        }
      },
    },
  ];
}

/** Every conformance case for `backend`, as plain data; run them with any runner. */
export function conformanceCases(backend: ArchBackend): ConformanceCase[] {
  const cases = [...shapeCases(backend), ...policyInputCases(backend)];
  for (const contract of CONTRACTS)
    cases.push(
      ...truncationCases(backend, contract),
      ...failedConversionCases(backend, contract),
      ...policyCases(backend, contract),
    );
  cases.push(...accessCases(backend));
  // Every mode in which guest_memfd invalidates iommufd areas itself must keep the invariants.
  for (const contract of CONTRACTS) if (registersWithGmem(contract)) cases.push(invariantWalk(backend, contract));
  return cases;
}

/**
 * Register the conformance suite for `backend` with a test runner:
 *
 *     import { describe, it } from 'vitest';
 *     describeBackendConformance(myBackend, { describe, it });
 */
export function describeBackendConformance(backend: ArchBackend, harness: ConformanceHarness): void {
  harness.describe(`ArchBackend conformance: ${backend.id}`, () => {
    for (const c of conformanceCases(backend)) harness.it(c.name, () => c.run());
  });
}
