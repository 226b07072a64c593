/**
 * `--format html` without a browser: one self-contained file (no network, nothing outside it), the comparison
 * embedded so that no text of a scenario can close its <script> element, and the web view read at run time from
 * the built package, also when @gmemlab/demo is installed from its tarball.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonForScript, scriptForInline } from '../src/format/html.js';
import type { Comparison } from '../src/run/types.js';
import { cli, PACKAGE, requireBuild, RESULTS } from './support.js';

const DATA_OPEN = '<script type="application/json" id="gmemlab-data">';

function embedded(html: string): Comparison {
  const start = html.indexOf(DATA_OPEN) + DATA_OPEN.length;
  return JSON.parse(html.slice(start, html.indexOf('</script>', start))) as Comparison;
}

const withoutTimes = (c: Comparison) => ({ ...c, runs: c.runs.map((r) => ({ ...r, elapsedMs: 0 })) });

describe('--format html', () => {
  let dir: string;
  beforeAll(() => {
    requireBuild();
    dir = mkdtempSync(join(tmpdir(), 'gmemlab-html-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('compare -o writes one file that needs nothing else: the script inlined, no src or href, a CSP that allows no fetch', () => {
    const out = join(dir, 'report.html');
    const r = cli(['compare', 'rfc-as-posted', '--arch', 'tdx,sev-snp', '--format', 'html', '-o', out]);
    expect(r.status).toBe(0);
    const html = readFileSync(out, 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/\s(src|href)=/i);
    // The SVG namespace is a name, not a fetch.
    expect(html.replaceAll('http://www.w3.org/2000/svg', '')).not.toMatch(/https?:\/\//);
    expect(html).toContain("default-src 'none'");
    expect(html).toContain(
      readFileSync(join(PACKAGE, 'dist', 'web', 'app.js'), 'utf8')
        .trim()
        .slice(0, 200),
    );
    expect(html.match(/<script/g)).toHaveLength(2);
    expect(html.match(/<\/script>/g)).toHaveLength(2);
  });

  it('embeds the same Comparison that --format json prints', () => {
    const args = ['compare', 'rfc-as-posted', '--arch', 'tdx,sev-snp'];
    const json = JSON.parse(cli([...args, '--format', 'json']).stdout) as Comparison;
    const html = cli([...args, '--format', 'html', '--full-paths']).stdout;
    expect(withoutTimes(embedded(html))).toEqual(withoutTimes(json));
    // Without --full-paths no path of this machine is in the page: files by name only.
    const plain = embedded(cli([...args, '--format', 'html']).stdout);
    expect(plain.scenarios[0]!.file).toBe('rfc-as-posted.yaml');
    expect(plain.runs.every((r) => r.scenario.file === 'rfc-as-posted.yaml')).toBe(true);
  });

  it('run --format html works too', () => {
    const r = cli(['run', 'rfc-as-posted', '--arch', 'tdx', '--format', 'html']);
    expect(r.status).toBe(0);
    expect(embedded(r.stdout).runs.map((run) => run.arch)).toEqual(['tdx']);
  });

  it('a scenario whose text holds </script> and <!-- cannot end the data element early', () => {
    const hostile = '</script><script>window.pwned = 1</script><!-- <script>';
    const file = join(dir, 'hostile.yaml');
    const rfc = readFileSync(join(PACKAGE, 'scenarios', 'rfc-as-posted.yaml'), 'utf8');
    writeFileSync(
      file,
      rfc
        .replace(/^title: .*$/m, `title: ${JSON.stringify(hostile)}`)
        .replace(/^situation: >\n/m, `situation: >\n  ${hostile}\n`),
    );
    const r = cli(['compare', file, '--arch', 'tdx', '--format', 'html']);
    expect(r.stderr).toBe('');
    expect(embedded(r.stdout).scenarios[0]!.title).toBe(hostile);
    expect(r.stdout.match(/<script/g)).toHaveLength(2);
    expect(r.stdout.match(/<\/script>/g)).toHaveLength(2);
  });

  it('jsonForScript leaves no "<" and round-trips; scriptForInline breaks </script and <!-- only', () => {
    const value = { s: '</script><!--<SCRIPT>\u2028\u2029&' };
    expect(jsonForScript(value)).not.toContain('<');
    expect(JSON.parse(jsonForScript(value))).toEqual(value);
    expect(scriptForInline('a="</script>";b="</SCRIPT >";c="<!--";d=1<2')).toBe(
      'a="<\\/script>";b="<\\/SCRIPT >";c="<\\!--";d=1<2',
    );
  });

  it('the web view ships in the package tarball and is read from the installed package at run time', () => {
    const packed = join(RESULTS, 'packed');
    rmSync(packed, { recursive: true, force: true });
    mkdirSync(packed, { recursive: true });
    const pack = spawnSync('pnpm', ['pack', '--pack-destination', packed], { cwd: PACKAGE, encoding: 'utf8' });
    expect(pack.status, pack.stderr).toBe(0);
    const tarball = pack.stdout.trim().split('\n').at(-1)!;
    const untar = spawnSync('tar', ['-xzf', tarball, '-C', packed], { encoding: 'utf8' });
    expect(untar.status, untar.stderr).toBe(0);
    // Unpacked under apps/demo, its dependencies resolve from apps/demo/node_modules as an install's would.
    const bin = join(packed, 'package', 'dist', 'bin.js');
    const r = spawnSync(
      process.execPath,
      [bin, 'compare', 'rfc-as-posted', '--arch', 'tdx', '--format', 'html', '--full-paths'],
      { cwd: dir, encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      readFileSync(join(packed, 'package', 'dist', 'web', 'app.js'), 'utf8')
        .trim()
        .slice(0, 200),
    );
    expect(embedded(r.stdout).scenarios[0]!.file).toContain(join(packed, 'package', 'scenarios'));
  });
});
