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
  expectExports('@gmemlab/core', core, [
    'createHost',
    'Host',
    'GmemError',
    'CONTRACTS',
    'swProtected',
    'defineBackendFactory',
    'describeBackendProblems',
    'describeFactoryProblems',
    'EventStream',
    'defineOptions',
    'archBackend',
    'GUEST_MEMFD_FLAG_MMAP',
    'KVM_MEM_GUEST_MEMFD',
    'CALLS',
    'violationKey',
    'KVM_CAP_MEMORY_ATTRIBUTES',
  ]);
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
    assert(
      Object.keys(backend.default.variants).length > 0 && (backend.default.rules ?? []).length > 0,
      `${factory} publishes no variants or states no rules`,
    );
    const host = core.createHost({ backend: backend.default });
    const vm = host.createVm({ type: 'coco' });
    vm.createGuestMemfd({ size: 16384 });
    const violations = host.checkInvariants();
    assert(violations.length === 0, `checkInvariants() = ${JSON.stringify(violations)}`);
  });
}

await check('@gmemlab/explore: exports, one exhaustive run', async () => {
  const explore = await import('@gmemlab/explore');
  expectExports('@gmemlab/explore', explore, [
    'explore',
    'exploreMany',
    'search',
    'randomWalks',
    'PROPERTIES',
    'PROPERTY_NAMES',
    'DEFAULT_WORLD',
    'scenarioOf',
  ]);
  const core = await import('@gmemlab/core');
  const run = explore.explore({ backend: core.swProtected, contract: 'vmm-driven', depth: 4 });
  assert(
    run.result.properties['no-dma-after-free'].holds === false,
    'no-dma-after-free is not violated at depth 4 under vmm-driven',
  );
  assert(run.result.properties['no-dma-after-free'].trace?.steps.length > 0, 'the counterexample has no scenario');
  return `${run.result.states} states, depth ${run.result.depth}`;
});

await check('@gmemlab/linux: exports, isAvailable()', async () => {
  const linux = await import('@gmemlab/linux');
  expectExports('@gmemlab/linux', linux, [
    'isAvailable',
    'createLinuxHost',
    'KernelError',
    'HelperError',
    'KVM_CAP_GUEST_MEMFD',
  ]);
  const differential = await import('@gmemlab/linux/differential');
  expectExports('@gmemlab/linux/differential', differential, [
    'runOnBoth',
    'formatReport',
    'DOCUMENTED_DIFFERENCES',
    'KERNEL_MATCHING_MODEL_OPTIONS',
    'stepOfCall',
    'unsupportedReason',
  ]);
  const availability = await linux.isAvailable();
  assert(
    typeof availability === 'object' && availability !== null && typeof availability.available === 'boolean',
    `isAvailable() returned ${JSON.stringify(availability)}`,
  );
  let kvm = true;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    kvm = false;
  }
  const cc = process.env.CC || 'gcc';
  const compiler = spawnSync(cc, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!availability.available) {
    assert(
      typeof availability.reason === 'string' &&
        availability.reason.length > 0 &&
        !/\n\s+at /.test(availability.reason),
      `unclear reason: ${JSON.stringify(availability.reason)}`,
    );
    assert(
      !(kvm && compiler),
      `/dev/kvm is read-writable and ${cc} runs, but isAvailable() says: ${availability.reason}`,
    );
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

await check(
  '@gmemlab/demo: the gmemlab bin compares the built-in library; a backend package loads through a config file',
  async () => {
    const demo = await import('@gmemlab/demo');
    expectExports('@gmemlab/demo', demo, [
      'loadScenario',
      'compare',
      'loadBackends',
      'selectArchs',
      'renderCompareMarkdown',
      'scenarioJsonSchema',
    ]);
    const { writeFileSync, mkdirSync } = await import('node:fs');
    // The bin npm linked for the package, run as a user's shell would; the JSON with page maps is several MB.
    const gmemlab = (...args) =>
      spawnSync('node_modules/.bin/gmemlab', args, {
        encoding: 'utf8',
        maxBuffer: 512 * 1024 * 1024,
        env: { ...process.env, NO_COLOR: '1' },
      });
    const compare = gmemlab('compare', '--format', 'json');
    assert(
      compare.status === 0,
      `gmemlab compare exited ${compare.status ?? compare.signal ?? compare.error}: ${compare.stderr}`,
    );
    const result = JSON.parse(compare.stdout);
    assert(result.runs.length >= result.scenarios.length * 4, `only ${result.runs.length} runs`);
    // A stranger's backend package: a plain ArchBackend default export, listed in gmemlab.config.json here.
    mkdirSync('node_modules/stranger-backend', { recursive: true });
    writeFileSync(
      'node_modules/stranger-backend/package.json',
      JSON.stringify({ name: 'stranger-backend', version: '1.0.0', type: 'module', main: 'index.js' }),
    );
    writeFileSync(
      'node_modules/stranger-backend/index.js',
      "export default { specificationVersion: 'v1', id: 'stranger', name: 'Stranger', pageSizes: [4096], conversionPolicy: () => 'revoke', deviceAccess: () => ({ allow: true }), hostKernelAccess: () => ({ allow: true }), deviceMayReach: () => true, mapsPrivatePages: false, contentsOnConversion: () => 'keep' };\n",
    );
    writeFileSync('gmemlab.config.json', JSON.stringify({ backends: ['stranger-backend'] }));
    const backends = gmemlab('backends', '--format', 'json');
    assert(backends.status === 0, `gmemlab backends exited ${backends.status}: ${backends.stderr}`);
    assert(
      JSON.parse(backends.stdout).backends.some((b) => b.id === 'stranger' && b.version === '1.0.0'),
      'the config file backend is not listed',
    );
    const bad = gmemlab('validate', 'nope.yaml');
    assert(
      bad.status === 2 && bad.stderr.trim().split('\n').length === 1,
      `a missing scenario: exit ${bad.status}, stderr ${JSON.stringify(bad.stderr)}`,
    );
    return `${result.runs.length} runs, exit ${compare.status}`;
  },
);

if (problems.length > 0) {
  console.error(`smoke test failed: ${problems.join('; ')}`);
  process.exit(1);
}
