#!/usr/bin/env node
/**
 * The smoke test `scripts/lint-packages.mjs` runs in a scratch npm project where every packed tarball is installed
 * (it copies this file there, so bare specifiers resolve from that project's node_modules, as for a user). Each
 * package's main entry is imported, its documented exports are checked, and it is used once. Exits 1 on any
 * problem, listing them.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

class CheckFailed extends Error {}
const problems = [];
const check = async (name, fn) => {
  const started = Date.now();
  try {
    const note = await fn();
    console.log(`  ok   ${name} (${Date.now() - started} ms)${note ? `: ${note}` : ''}`);
  } catch (error) {
    problems.push(name);
    console.log(`  FAIL ${name}: ${error instanceof CheckFailed ? error.message : (error?.stack ?? error)}`);
  }
};
const expectExports = (name, module, names) => {
  const missing = names.filter((key) => module[key] === undefined);
  if (missing.length > 0) throw new CheckFailed(`${name} lacks the exports ${missing.join(', ')}`);
};
const assert = (condition, message) => {
  if (!condition) throw new CheckFailed(message);
};

await check('@gmemlab/core: exports, a host and a VM', async () => {
  const core = await import('@gmemlab/core');
  expectExports('@gmemlab/core', core, ['createHost', 'Host', 'GmemError', 'CONTRACTS', 'swProtected', 'defineBackendFactory', 'describeBackendProblems', 'describeFactoryProblems', 'EventStream', 'RangeMap', 'GUEST_MEMFD_FLAG_MMAP', 'KVM_MEM_GUEST_MEMFD']);
  const host = core.createHost();
  const vm = host.createVm();
  const gmem = vm.createGuestMemfd({ size: 16384, flags: core.GUEST_MEMFD_FLAG_MMAP });
  assert(gmem.stat().size === 16384, 'stat().size is not 16384');
  const violations = host.checkInvariants();
  assert(violations.length === 0, `checkInvariants() = ${JSON.stringify(violations)}`);
});

for (const [name, factory, create, steps] of [
  ['@gmemlab/tdx', 'tdx', 'createTdxBackend', 'TDX_STEPS'],
  ['@gmemlab/sev-snp', 'sevSnp', 'createSevSnpBackend', 'SEV_SNP_STEPS'],
  ['@gmemlab/arm-cca', 'armCca', 'createArmCcaBackend', 'ARM_CCA_STEPS'],
  ['@gmemlab/pkvm', 'pkvm', 'createPkvmBackend', 'PKVM_STEPS'],
]) {
  await check(`${name}: exports, a host with it`, async () => {
    const core = await import('@gmemlab/core');
    const backend = await import(name);
    expectExports(name, backend, ['default', factory, create, steps]);
    assert(backend.default === backend[factory], `the default export is not ${factory}`);
    const problems = core.describeFactoryProblems(backend.default);
    assert(problems.length === 0, `describeFactoryProblems: ${problems.join('; ')}`);
    assert(Object.keys(backend.default.variants).length > 0 && (backend.default.rules ?? []).length > 0, `${factory} publishes no variants or states no rules`);
    const host = core.createHost({ backend: backend.default });
    const vm = host.createVm({ type: 'coco' });
    vm.createGuestMemfd({ size: 16384 });
    const violations = host.checkInvariants();
    assert(violations.length === 0, `checkInvariants() = ${JSON.stringify(violations)}`);
  });
}

await check('@gmemlab/explore: exports, one exhaustive run', async () => {
  const explore = await import('@gmemlab/explore');
  expectExports('@gmemlab/explore', explore, ['explore', 'exploreMany', 'search', 'randomWalks', 'PROPERTIES', 'PROPERTY_NAMES', 'DEFAULT_WORLD', 'scenarioOf']);
  const core = await import('@gmemlab/core');
  const run = explore.explore({ backend: core.swProtected, contract: 'vmm-driven', depth: 4 });
  assert(run.result.properties['no-dma-after-free'].holds === false, 'no-dma-after-free is not violated at depth 4 under vmm-driven');
  assert(run.result.properties['no-dma-after-free'].trace?.steps.length > 0, 'the counterexample has no scenario');
  return `${run.result.states} states, depth ${run.result.depth}`;
});

await check('@gmemlab/linux: exports, isAvailable()', async () => {
  const linux = await import('@gmemlab/linux');
  expectExports('@gmemlab/linux', linux, ['isAvailable', 'createLinuxHost', 'KernelError', 'HelperError', 'KVM_CAP_GUEST_MEMFD']);
  const differential = await import('@gmemlab/linux/differential');
  expectExports('@gmemlab/linux/differential', differential, ['runOnBoth', 'formatReport', 'DOCUMENTED_DIFFERENCES', 'KERNEL_MATCHING_MODEL_OPTIONS']);
  const availability = await linux.isAvailable();
  assert(typeof availability === 'object' && availability !== null && typeof availability.available === 'boolean', `isAvailable() returned ${JSON.stringify(availability)}`);
  let kvm = true;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    kvm = false;
  }
  const cc = process.env.CC || 'gcc';
  const compiler = spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!availability.available) {
    assert(typeof availability.reason === 'string' && availability.reason.length > 0 && !/\n\s+at /.test(availability.reason), `unclear reason: ${JSON.stringify(availability.reason)}`);
    assert(!(kvm && compiler), `/dev/kvm is read-writable and ${cc} runs, but isAvailable() says: ${availability.reason}`);
    return `not available here (/dev/kvm ${kvm ? 'usable' : 'unusable'}, ${cc} ${compiler ? 'found' : 'missing'}): ${availability.reason}`;
  }
  // One step list through the differential runner: the tarball's helper, and core resolved from its own tarball.
  const report = await differential.runOnBoth([
    { op: 'createVm', as: 'vm' },
    { op: 'createGuestMemfd', vm: 'vm', size: 16384, flags: 0, as: 'g' },
    { op: 'fallocate', fd: 'g', mode: 3, offset: 0, length: 4096 },
  ]);
  const divergent = report.steps.filter((step) => step.verdict === 'divergent');
  assert(divergent.length === 0, `runOnBoth found divergent steps:\n${differential.formatReport(report)}`);
  return JSON.stringify(availability);
});

if (problems.length > 0) {
  console.error(`smoke test failed: ${problems.join('; ')}`);
  process.exit(1);
}
