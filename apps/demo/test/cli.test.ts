/**
 * The CLI as a user runs it: the built binary, in a child process. Exit codes, one-line errors without a stack
 * trace, every format parses, backends from a config file outside the repository.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTRACTS } from '@gmemlab/core';
import { isAvailable } from '@gmemlab/linux';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'dist', 'bin.js');
const fixtures = join(root, 'test', 'fixtures');
const thirdParty = join(fixtures, 'third-party');
const availability = await isAvailable();
const oracleSkip = availability.available ? undefined : availability.reason;

function gmemlab(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: options.cwd ?? root,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...options.env },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** One line on stderr, naming what is wrong, and no stack trace. */
function expectOneLineError(r: ReturnType<typeof gmemlab>, ...parts: string[]) {
  expect(r.code).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const p of parts) expect(lines[0]).toContain(p);
}

describe('help and usage', () => {
  it.each(['compare', 'run', 'validate', 'schema', 'backends', 'explain', 'scenarios'])(
    '%s --help exits 0 with its usage',
    (command) => {
      const r = gmemlab([command, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`Usage: gmemlab ${command}`));
    },
  );

  it('an unknown command or option is a usage error (exit 2)', () => {
    expect(gmemlab(['frobnicate']).code).toBe(2);
    expect(gmemlab(['compare', '--colour']).code).toBe(2);
    expect(gmemlab(['compare', '--format', 'pdf']).code).toBe(2);
  });
});

describe('scenario errors: one line naming file, step and field; nothing runs', () => {
  it('a misspelt field', () => {
    const r = gmemlab(['run', join(fixtures, 'bad-field.yaml')]);
    expectOneLineError(r, 'bad-field.yaml', 'step 3', 'sise', "did you mean 'size'");
    expect(r.stdout).toBe('');
  });

  it('a YAML syntax error names the line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-'));
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'title: x\nsteps:\n  - call: host.createVm\n   as: vm\n');
    expectOneLineError(gmemlab(['validate', file]), 'broken.yaml:4:');
  });

  it('an unknown call suggests the nearest', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-'));
    const file = join(dir, 'typo.yaml');
    writeFileSync(
      file,
      'title: t\nsituation: s\nsource: s\nsteps:\n  - call: host.createVm\n    as: vm\n  - call: vm.createGuestMemFd\n    size: 4KiB\n',
    );
    expectOneLineError(gmemlab(['validate', file]), 'typo.yaml', 'step 2', "'vm.createGuestMemfd'");
  });

  it('a handle used before it exists, and an unknown name in an expression', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-'));
    const a = join(dir, 'a.yaml');
    writeFileSync(
      a,
      'title: t\nsituation: s\nsource: s\nsteps:\n  - call: gmem.fallocate\n    mode: 0\n    offset: 0\n    length: 4KiB\n',
    );
    expectOneLineError(gmemlab(['validate', a]), 'step 1', 'no gmem exists yet');
    const b = join(dir, 'b.yaml');
    writeFileSync(
      b,
      'title: t\nsituation: s\nsource: s\nsteps:\n  - call: host.createVm\n    as: vm\n  - call: vm.createGuestMemfd\n    size: 2MiB + SIZ\n',
    );
    expectOneLineError(gmemlab(['validate', b]), 'step 2', "field 'size'", "'SIZ'");
  });

  it('a missing file, and a folder', () => {
    expectOneLineError(gmemlab(['run', '/nonexistent/x.yaml']), 'no such file');
    expectOneLineError(gmemlab(['validate', fixtures]), 'is a folder');
  });

  it('validate accepts YAML and JSON scenarios', () => {
    const r = gmemlab(['validate', join(fixtures, 'pinned.json'), join(fixtures, 'failing-expectation.yaml')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/pinned\.json: ok \(6 steps\)/);
  });
});

describe('exit codes and formats', () => {
  it('0 when every expectation holds, 1 when one fails (and the failure is shown)', () => {
    const ok = gmemlab(['run', join(fixtures, 'pinned.json'), '--arch', 'tdx', '--format', 'text']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/EAGAIN @4 KiB\s+expected: EAGAIN @4 KiB\s+PASS/);
    const bad = gmemlab(['run', join(fixtures, 'failing-expectation.yaml'), '--arch', 'tdx', '--format', 'text']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/expected ok, got EAGAIN @4 KiB/);
  });

  it('json is the documented Comparison and agrees with the text', () => {
    const r = gmemlab(['compare', join(fixtures, 'pinned.json'), '--arch', 'tdx,sev-snp', '--format', 'json']);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.exitCode).toBe(0);
    expect(json.archs.map((a: { id: string }) => a.id)).toEqual(['tdx', 'sev-snp']);
    expect(json.contracts).toEqual(['vmm-driven', 'gmem-registry', 'mirror']);
    expect(json.runs).toHaveLength(2 * CONTRACTS.length);
    // The verdict leads: rows the architectures, columns the designs, a cell per pair with its outcome and cost.
    expect(Object.keys(json).slice(0, 5)).toEqual(['tool', 'scenarios', 'archs', 'contracts', 'verdict']);
    expect(json.verdict.rows.map((r: { arch: string }) => r.arch)).toEqual(['tdx', 'sev-snp']);
    expect(json.verdict.rows[0].cells[0]).toMatchObject({
      outcome: 'safe',
      runs: 1,
      failed: 0,
      cost: { steps: expect.any(Number), iopte: 0, faults: 0 },
    });
    const step4 = json.runs[0].steps[3];
    expect(step4).toMatchObject({
      path: '4',
      call: 'gmem.setMemoryAttributes2',
      label: 'EAGAIN @4 KiB',
      verdict: 'pass',
      result: { kind: 'errno', errno: 'EAGAIN', errorOffset: 4096 },
    });
    expect(step4.pages[0].pinned).toEqual([[1, 2, true]]);
  });

  it('text is ASCII only; markdown has a table; html is one self-contained file with the data', () => {
    const args = ['compare', join(fixtures, 'pinned.json'), '--arch', 'tdx'];
    const text = gmemlab([...args, '--format', 'text']).stdout;
    expect(text).toMatch(/^[\x09\x0a\x20-\x7e]*$/);
    const md = gmemlab([...args, '--format', 'markdown']).stdout;
    expect(md).toMatch(/^## Verdict\n/);
    expect(md).toMatch(
      /\| \| vmm-driven \| gmem-registry \| mirror \|\n\|---\|---\|---\|---\|\n\| \*\*tdx\*\* \| ✓ safe/,
    );
    expect(md).toMatch(/\| \| step \| tdx<br>vmm-driven \| tdx<br>gmem-registry \|/);
    // No path of this machine in a report unless asked (--full-paths).
    expect(md).not.toContain(fixtures);
    expect(gmemlab([...args, '--format', 'markdown', '--full-paths']).stdout).toContain(fixtures);
    const html = gmemlab([...args, '--format', 'html']).stdout;
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href="http/);
    const data = /<script type="application\/json" id="gmemlab-data">([\s\S]*?)<\/script>/.exec(html);
    expect(JSON.parse(data![1]!).runs).toHaveLength(CONTRACTS.length);
    expect(html).not.toContain(fixtures);
  });

  it('--out writes the report to a file', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'gmemlab-')), 'r.json');
    const r = gmemlab(['compare', join(fixtures, 'pinned.json'), '--arch', 'tdx', '--format', 'json', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(JSON.parse(readFileSync(out, 'utf8')).runs).toHaveLength(CONTRACTS.length);
  });

  it('schema prints a JSON Schema that names every call', () => {
    const schema = JSON.parse(gmemlab(['schema']).stdout);
    expect(schema.$schema).toMatch(/json-schema\.org/);
    const text = JSON.stringify(schema);
    for (const call of [
      'vm.createGuestMemfd',
      'ioas.mapFile',
      'gmem.setMemoryAttributes2',
      'fault.install',
      'device.dmaWrite',
    ])
      expect(text).toContain(call);
  });
});

describe('backends', () => {
  it('lists the built-in backends with package and version', () => {
    const r = gmemlab(['backends', '--format', 'json']);
    expect(r.code).toBe(0);
    const ids = JSON.parse(r.stdout).backends.map((b: { id: string; package: string }) => `${b.id} ${b.package}`);
    expect(ids).toEqual([
      'sw-protected @gmemlab/core',
      'tdx @gmemlab/tdx',
      'sev-snp @gmemlab/sev-snp',
      'arm-cca @gmemlab/arm-cca',
      'pkvm @gmemlab/pkvm',
    ]);
  });

  it('loads a third-party package through gmemlab.config.json in the current folder and runs it', () => {
    const list = gmemlab(['backends', '--format', 'json'], { cwd: thirdParty });
    const acme = JSON.parse(list.stdout).backends.find((b: { id: string }) => b.id === 'acme');
    expect(acme).toMatchObject({
      package: 'acme-backend',
      version: '3.1.4',
      name: 'ACME confidential VM (test fixture)',
    });
    // Its policy refuses conversions under a registered DMA area: the pinned fixture's final conversion succeeds
    // (no DMA area there), so run a scenario with an area through the library instead: here, explain shows it.
    const explain = gmemlab(['explain', 'acme'], { cwd: thirdParty });
    expect(explain.code).toBe(0);
    expect(explain.stdout).toMatch(/to-private, IOMMU_IOAS_MAP_FILE area with IOPTEs\s+refuse/);
    const run = gmemlab(['run', join(fixtures, 'pinned.json'), '--arch', 'acme', '--format', 'json'], {
      cwd: thirdParty,
    });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).runs[0].arch).toBe('acme');
  });

  it('--config names the file; a module that is not a backend gets one line saying why', () => {
    expectOneLineError(
      gmemlab(['backends', '--config', join(thirdParty, 'broken.config.json')]),
      'not-a-backend.js',
      'no default export',
    );
    expectOneLineError(
      gmemlab(['backends', '--config', join(thirdParty, 'no-policy.config.json')]),
      'no-policy.js',
      'has no conversionPolicy',
    );
    expectOneLineError(
      gmemlab(['backends', '--config', join(thirdParty, 'missing.json')]),
      'missing.json',
      'no such file',
    );
  });

  it('an unknown --arch suggests the nearest id', () => {
    expectOneLineError(
      gmemlab(['compare', '--arch', 'sev-snpp']),
      "unknown architecture 'sev-snpp'",
      'did you mean sev-snp',
    );
  });

  it('explain lists what the policy answers', () => {
    const r = gmemlab(['explain', 'tdx', '--format', 'json']);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.id).toBe('tdx');
    expect(json.answers['gmem-registry: to-private, IOMMU_IOAS_MAP_FILE area with IOPTEs']).toBe('revoke');
  });

  it("explain shows each rule's quotes beside it, in text, markdown and JSON (issue 16)", () => {
    const text = gmemlab(['explain', 'arm-cca']);
    expect(text.code).toBe(0);
    // The rule, its source line, then the quote of each cited tag.
    expect(text.stdout).toMatch(
      /IOMMU_IOAS_MAP_FILE maps shared pages only[^\n]*\n\s+source: \[T1d\]\n\s+T1d: “[^”]*the iommu should be programed with the shared pages/,
    );
    const md = gmemlab(['explain', 'arm-cca', '--format', 'markdown']);
    expect(md.stdout).toMatch(/_\(\[T1d\]\)_\n {2}- T1d: “[^”]*shared pages/);
    const json = JSON.parse(gmemlab(['explain', 'sev-snp', '--format', 'json']).stdout) as {
      rules: Array<{ source: string; evidence: Array<{ tag: string; quote: string }> }>;
    };
    expect(json.rules.length).toBeGreaterThan(0);
    for (const rule of json.rules) expect(rule.evidence.length, rule.source).toBeGreaterThan(0);
  });

  it('explain states the truncation rule for every architecture, has the mirror rows, and never says "contained (fatal)"', () => {
    for (const arch of [
      'sw-protected',
      'tdx',
      'tdx:dma-poison',
      'sev-snp',
      'arm-cca',
      'pkvm',
      'pkvm:upstream',
      'pkvm:hyp-bug',
    ]) {
      const json = JSON.parse(gmemlab(['explain', arch, '--format', 'json']).stdout) as {
        answers: Record<string, string>;
      };
      expect(json.answers['truncation (PUNCH_HOLE, release), every architecture'], arch).toMatch(
        /revoke each area over the range, whole \(kernel-contract §9\.3\)/,
      );
      for (const to of ['private', 'shared'])
        expect(json.answers[`mirror: to-${to}, IOMMU_IOAS_MAP_FILE area with IOPTEs`], arch).toBeDefined();
      for (const answer of Object.values(json.answers)) expect(answer, arch).not.toMatch(/\(fatal\)/);
    }
    const tdx = JSON.parse(gmemlab(['explain', 'tdx', '--format', 'json']).stdout) as {
      answers: Record<string, string>;
    };
    expect(tdx.answers['device write: private page, hardware private']).toMatch(/^host crash \(machine-check\) by /);
  });

  it("explain with an unknown id names explain's argument, not an option it lacks", () => {
    const r = gmemlab(['explain', 'foo']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^gmemlab: explain: unknown architecture 'foo'; known: /);
    expect(r.stderr).not.toMatch(/--arch|, all/);
    expect(gmemlab(['explain', 'tdx,sev-snp']).stderr).toMatch(/one backend id at a time/);
  });
});

describe('--oracle linux', () => {
  it('refuses, in one line, a scenario with a step the running kernel cannot take', () => {
    expectOneLineError(
      gmemlab(['run', join(fixtures, 'pinned.json'), '--oracle', 'linux']),
      'pinned.json',
      'step 1 (host.createVm)',
      'coco VM types need TDX or SEV-SNP',
    );
  });

  it.skipIf(oracleSkip !== undefined)(
    `runs truncate-under-mmap on the model and on /dev/kvm, step beside step${oracleSkip ? ` (skipped: ${oracleSkip})` : ''}`,
    () => {
      const r = gmemlab(['run', 'truncate-under-mmap', '--oracle', 'linux', '--format', 'json']);
      expect(r.code).toBe(0);
      const report = JSON.parse(r.stdout);
      expect(report.divergent).toBe(false);
      expect(report.steps).toHaveLength(10);
      expect(report.steps[5]).toMatchObject({
        call: 'vm.guestRead',
        model: 'ok abababababababababababababababab',
        kernel: 'ok abababababababababababababababab',
      });
      expect(report.steps[9]).toMatchObject({ model: 'EOPNOTSUPP', kernel: 'EOPNOTSUPP', verdict: 'same' });
    },
  );
});
