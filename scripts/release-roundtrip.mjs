#!/usr/bin/env node
/**
 * The release round trip against a real npm registry: verdaccio 6.8.0 (the last release that runs on Node 20) on
 * 127.0.0.1, its storage in a temp folder, anonymous publish, stopped by its PID at the end (also on failure).
 *
 *  1. a scratch copy of the workspace (built dist included); @gmemlab/core as it is now (0.1.0) is published, to
 *     have an older core on the registry; `changeset version`; `pnpm -r publish` of every public package;
 *  2. a scratch npm project installs @gmemlab/demo and the four backends; `gmemlab backends` and `gmemlab compare`;
 *     the same in a pnpm project;
 *  3. a patch of @gmemlab/tdx alone (a changeset, `changeset version`, `pnpm -r publish`): only tdx moves, the core
 *     does not; `npm update @gmemlab/tdx` (and `pnpm update`) make `backends` and `compare` use it;
 *  4. a mismatched core (`npm install @gmemlab/core@0.1.0 --legacy-peer-deps`): `gmemlab backends` fails with one
 *     line naming both cores, and the fix it names works;
 *  5. `gmemlab new-backend` writes a third party's package; `npm install && npm test && npm pack` there, then
 *     `npm publish`; the npm project installs it and loads it through gmemlab.config.json.
 *
 * Run after a build: `pnpm test:release` (builds first). Everything is bounded: each command has a timeout, and the
 * wait for the registry is a fixed number of tries. Nothing listens beyond 127.0.0.1.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyChangesets, publicPackages, run, workspaceCopy } from './lib/versioned-copy.mjs';

const VERDACCIO = '6.8.0';
const HOST = '127.0.0.1';
const root = new URL('..', import.meta.url).pathname;
const started = Date.now();
const seconds = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`;
const work = mkdtempSync(join(tmpdir(), 'gmemlab-release-'));
let registry; // the verdaccio child process
let stepStarted = Date.now();

function step(title) {
  stepStarted = Date.now();
  console.log(`\n== ${title}`);
}
function done(summary) {
  console.log(`   ${summary} (${seconds(stepStarted)})`);
}
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** A TCP port free on 127.0.0.1 now (the OS picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** verdaccio, installed with npm into a temp folder shared by runs, if it is not there yet. */
function verdaccioBin() {
  const dir = join(tmpdir(), `gmemlab-verdaccio-${VERDACCIO}`);
  const bin = join(dir, 'node_modules', 'verdaccio', 'bin', 'verdaccio');
  if (!existsSync(bin)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{ "private": true }\n');
    run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', `verdaccio@${VERDACCIO}`], dir, {
      timeout: 600_000,
    });
  }
  return bin;
}

async function startRegistry(port) {
  const storage = join(work, 'storage');
  const config = join(work, 'verdaccio.yaml');
  // No uplinks: the registry holds only what this run publishes. Clients reach it for the @gmemlab and @acme scopes
  // alone (scoped registry lines in their npmrc), everything else comes from their usual registry.
  writeFileSync(
    config,
    [
      `storage: ${storage}`,
      'auth:',
      '  htpasswd:',
      `    file: ${join(work, 'htpasswd')}`,
      '    max_users: -1',
      'uplinks: {}',
      'packages:',
      "  '**':",
      '    access: $all',
      '    publish: $anonymous',
      '    unpublish: $anonymous',
      'log: { type: stdout, format: pretty, level: warn }',
      '',
    ].join('\n'),
  );
  const log = join(work, 'verdaccio.log');
  const { openSync } = await import('node:fs');
  const out = openSync(log, 'w');
  registry = spawn(process.execPath, [verdaccioBin(), '--config', config, '--listen', `http://${HOST}:${port}`], {
    stdio: ['ignore', out, out],
  });
  const url = `http://${HOST}:${port}/`;
  for (let i = 0; i < 120; i++) {
    if (registry.exitCode !== null) break;
    try {
      const response = await fetch(`${url}-/ping`, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return url;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`verdaccio did not answer on ${url} within 30 s:\n${readFileSync(log, 'utf8').slice(-2000)}`);
}

function stopRegistry() {
  if (registry && registry.exitCode === null) {
    process.kill(registry.pid, 'SIGTERM');
    console.log(`stopped verdaccio (pid ${registry.pid})`);
  }
  registry = undefined;
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopRegistry();
    process.exit(130);
  });
}

/** A line of `gmemlab backends --format json` by id. */
function backendsOf(cwd, gmemlab, args = []) {
  return JSON.parse(run(gmemlab, ['backends', '--format', 'json', ...args], cwd)).backends;
}

/** Run a command expected to fail; return its stderr. */
async function failing(command, args, cwd, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) reject(new Error(`${command} ${args.join(' ')} succeeded; a failure was expected`));
      else resolve({ code, stderr });
    });
  });
}

let failed = false;
try {
  const port = await freePort();
  step(`verdaccio ${VERDACCIO} on ${HOST}:${port}`);
  const url = await startRegistry(port);
  const hostKey = url.replace(/^http:/, '');
  // npm refuses to publish without some auth line for the registry (ENEEDAUTH), even where the registry lets
  // anonymous users publish; verdaccio accepts any token for a $anonymous publish.
  const npmrc = join(work, 'npmrc');
  writeFileSync(npmrc, `@gmemlab:registry=${url}\n@acme:registry=${url}\n${hostKey}:_authToken=anonymous\n`);
  const env = { NPM_CONFIG_USERCONFIG: npmrc, npm_config_userconfig: npmrc, NO_COLOR: '1', GMEMLAB_DEBUG: '' };
  done(`up (pid ${registry.pid}), storage ${join(work, 'storage')}`);

  step('a scratch copy of the workspace; @gmemlab/core 0.1.0 published as it is');
  const copy = workspaceCopy(root, join(work, 'workspace'));
  const coreOld = JSON.parse(readFileSync(join(copy, 'packages', 'core', 'package.json'), 'utf8')).version;
  run('pnpm', ['publish', '--no-git-checks'], join(copy, 'packages', 'core'), { env });
  done(`published @gmemlab/core@${coreOld}`);

  step('changeset version; pnpm -r publish of every public package');
  applyChangesets(copy);
  const released = publicPackages(copy).map((p) => `${p.manifest.name}@${p.manifest.version}`);
  const published = run('pnpm', ['-r', 'publish', '--no-git-checks'], copy, { env });
  const lines = published.split('\n').filter((l) => l.startsWith('+ '));
  for (const r of released)
    check(lines.includes(`+ ${r}`) || r === `@gmemlab/core@${coreOld}`, `${r} was not published:\n${published}`);
  const version = Object.fromEntries(publicPackages(copy).map((p) => [p.manifest.name, p.manifest.version]));
  for (const p of publicPackages(copy)) {
    // Each tarball ships its CHANGELOG.md (scripts/lint-packages.mjs checks the files); here, that it has this release.
    check(
      readFileSync(join(copy, p.rel, 'CHANGELOG.md'), 'utf8').includes(`## ${p.manifest.version}`),
      `${p.manifest.name}: CHANGELOG.md has no ${p.manifest.version} entry`,
    );
  }
  const tdxPeer = JSON.parse(
    run('npm', ['view', `@gmemlab/tdx@${version['@gmemlab/tdx']}`, 'peerDependencies', '--json'], work, { env }),
  );
  const demoDeps = JSON.parse(
    run('npm', ['view', `@gmemlab/demo@${version['@gmemlab/demo']}`, 'dependencies', '--json'], work, { env }),
  );
  check(
    demoDeps['@gmemlab/tdx'] === `^${version['@gmemlab/tdx']}`,
    `the demo's range on tdx is ${demoDeps['@gmemlab/tdx']}`,
  );
  done(
    `${lines.join(', ').replaceAll('+ ', '')}; tdx peer ${JSON.stringify(tdxPeer)}; demo -> tdx '${demoDeps['@gmemlab/tdx']}'`,
  );

  const backends = ['@gmemlab/tdx', '@gmemlab/sev-snp', '@gmemlab/arm-cca', '@gmemlab/pkvm'];
  const projects = {};
  for (const manager of ['npm', 'pnpm']) {
    step(`a scratch ${manager} project: @gmemlab/demo and the four backends; gmemlab backends, gmemlab compare`);
    const dir = join(work, `project-${manager}`);
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'package.json'),
      `${JSON.stringify({ name: `roundtrip-${manager}`, version: '0.0.0', private: true, type: 'module' }, null, 2)}\n`,
    );
    if (manager === 'npm')
      run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '@gmemlab/demo', ...backends], dir, {
        env,
      });
    else run('pnpm', ['add', '@gmemlab/demo', ...backends], dir, { env });
    const gmemlab = join(dir, 'node_modules', '.bin', 'gmemlab');
    const list = backendsOf(dir, gmemlab);
    const tdx = list.find((b) => b.id === 'tdx');
    check(tdx.version === version['@gmemlab/tdx'] && tdx.copy === 'project', `tdx: ${JSON.stringify(tdx)}`);
    check(
      list.every((b) => b.core.version === version['@gmemlab/core']),
      'a backend runs on another core',
    );
    const compare = run(gmemlab, ['compare'], dir, { env });
    projects[manager] = { dir, gmemlab };
    done(
      `backends: ${list.map((b) => `${b.id} ${b.version} (${b.copy}, core ${b.core.version})`).join(', ')}; compare exit 0, ${compare.trim().split('\n').length} lines`,
    );
  }

  step('a patch of @gmemlab/tdx alone: changeset, changeset version, pnpm -r publish');
  // The patch's visible change: the backend's display name (so a report shows which build ran). Written into
  // the built dist, as a rebuild would.
  const tdxDist = join(copy, 'packages', 'tdx', 'dist', 'index.js');
  const patchedName = 'Intel TDX (round-trip patch)';
  const distText = readFileSync(tdxDist, 'utf8');
  check(distText.includes(': "Intel TDX"}'), 'the tdx dist does not name "Intel TDX"');
  writeFileSync(tdxDist, distText.replace(': "Intel TDX"}', `: ${JSON.stringify(patchedName)}}`));
  writeFileSync(
    join(copy, '.changeset', 'roundtrip-tdx-patch.md'),
    '---\n"@gmemlab/tdx": patch\n---\n\nThe round trip\'s patch: the display name.\n',
  );
  applyChangesets(copy);
  const after = Object.fromEntries(publicPackages(copy).map((p) => [p.manifest.name, p.manifest.version]));
  const moved = Object.keys(after).filter((n) => after[n] !== version[n]);
  check(moved.length === 1 && moved[0] === '@gmemlab/tdx', `moved: ${moved.join(', ')}`);
  const patch = run('pnpm', ['-r', 'publish', '--no-git-checks'], copy, { env });
  const patchLines = patch.split('\n').filter((l) => l.startsWith('+ '));
  check(
    patchLines.length === 1 && patchLines[0] === `+ @gmemlab/tdx@${after['@gmemlab/tdx']}`,
    `published: ${patchLines.join(', ')}`,
  );
  done(
    `published ${patchLines[0].slice(2)} only; core stays ${after['@gmemlab/core']}, demo stays ${after['@gmemlab/demo']}`,
  );

  for (const manager of ['npm', 'pnpm']) {
    step(`${manager} update @gmemlab/tdx in the ${manager} project`);
    const { dir, gmemlab } = projects[manager];
    if (manager === 'npm')
      run('npm', ['update', '--no-audit', '--no-fund', '--loglevel=error', '@gmemlab/tdx'], dir, { env });
    else run('pnpm', ['update', '@gmemlab/tdx'], dir, { env });
    const tdx = backendsOf(dir, gmemlab).find((b) => b.id === 'tdx');
    check(
      tdx.version === after['@gmemlab/tdx'] && tdx.name === patchedName,
      `tdx after update: ${JSON.stringify(tdx)}`,
    );
    const report = JSON.parse(
      run(gmemlab, ['compare', 'rfc-as-posted', '--arch', 'tdx,sev-snp', '--format', 'json'], dir, { env }),
    );
    check(report.archs.find((a) => a.id === 'tdx').name === patchedName, 'compare did not run the patched tdx');
    done(`backends: tdx ${tdx.version} (${tdx.copy}) at ${tdx.path}; compare ran '${patchedName}'`);
  }

  step('a mismatched core in the npm project: npm install @gmemlab/core@' + coreOld + ' --legacy-peer-deps');
  const { dir: npmDir, gmemlab: npmGmemlab } = projects.npm;
  run(
    'npm',
    ['install', '--no-audit', '--no-fund', '--loglevel=error', '--legacy-peer-deps', `@gmemlab/core@${coreOld}`],
    npmDir,
    { env },
  );
  const mismatch = await failing(npmGmemlab, ['backends'], npmDir, env);
  const message = mismatch.stderr.trim();
  check(mismatch.code === 2 && !message.includes('\n'), `not one line, exit 2: ${mismatch.code} ${message}`);
  check(
    message.includes(`@gmemlab/core ${coreOld}`) && message.includes(`@gmemlab/core ${version['@gmemlab/core']}`),
    `both versions are not named: ${message}`,
  );
  console.log(`   ${message}`);
  run(
    'npm',
    ['install', '--no-audit', '--no-fund', '--loglevel=error', `@gmemlab/core@${version['@gmemlab/core']}`],
    npmDir,
    { env },
  );
  run('npm', ['dedupe', '--no-audit', '--no-fund', '--loglevel=error'], npmDir, { env });
  check(
    backendsOf(npmDir, npmGmemlab).every((b) => b.core.version === version['@gmemlab/core']),
    'the fix did not give one core',
  );
  done(
    `exit 2, one line; after the fix it names (npm install @gmemlab/core@${version['@gmemlab/core']}, npm dedupe) one core again`,
  );

  step('a third party: gmemlab new-backend, npm install && npm test && npm pack, npm publish, loaded by config');
  const cove = join(work, 'gmemlab-cove');
  console.log(
    `   ${run(npmGmemlab, ['new-backend', cove, '--package', '@acme/gmemlab-cove'], work, { env }).split('\n')[0]}`,
  );
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], cove, { env });
  const tests = run('npm', ['test'], cove, { env });
  const count = /Tests\s+(\d+ passed[^\n]*)/.exec(tests.replace(/\x1b\[[0-9;]*m/g, ''))?.[1];
  check(count !== undefined, `no test summary:\n${tests}`);
  const packed = run('npm', ['pack', '--json'], cove, { env });
  const packedFiles = JSON.parse(packed.slice(packed.indexOf('[')))[0]
    .files.map((f) => f.path)
    .sort();
  check(
    packedFiles.includes('dist/index.js') &&
      packedFiles.includes('dist/index.d.ts') &&
      packedFiles.includes('CHANGELOG.md'),
    `packed: ${packedFiles.join(', ')}`,
  );
  run('npm', ['publish'], cove, { env });
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '@acme/gmemlab-cove'], npmDir, { env });
  writeFileSync(join(npmDir, 'gmemlab.config.json'), '{ "backends": ["@acme/gmemlab-cove"] }\n');
  const withCove = backendsOf(npmDir, npmGmemlab, ['--config', 'gmemlab.config.json']);
  const coveRow = withCove.find((b) => b.id === 'cove');
  check(
    coveRow && coveRow.package === '@acme/gmemlab-cove' && coveRow.version === '0.1.0',
    `cove: ${JSON.stringify(coveRow)}`,
  );
  const explain = run(npmGmemlab, ['explain', 'cove:io'], npmDir, { env });
  done(
    `tests ${count}; packed ${packedFiles.join(', ')}; backends lists cove 0.1.0 (variants ${coveRow.variants.join(', ')}, core ${coveRow.core.version}); explain cove:io ${explain.trim().split('\n').length} lines`,
  );
} catch (error) {
  failed = true;
  console.error(`\nrelease round trip FAILED: ${error.message}`);
} finally {
  stopRegistry();
  if (failed) console.error(`(scratch folder kept: ${work})`);
  else rmSync(work, { recursive: true, force: true });
}
console.log(`\nrelease round trip ${failed ? 'failed' : 'passed'} in ${seconds(started)}`);
process.exit(failed ? 1 : 0);
