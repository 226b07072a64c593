/**
 * Every rule a backend states (`backend.rules`, for the neutral backend and every option combination of the four
 * backend packages) cites a source, and every tag and § it cites is defined in docs/. The check is the one code
 * comments go through (scripts/check-doc-citations.mjs), run on the rules as the backends build them at run time,
 * so a rule text assembled from pieces is covered too.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { swProtected, type ArchBackend } from '@gmemlab/core';
import { armCca } from '@gmemlab/arm-cca';
import { pkvm } from '@gmemlab/pkvm';
import { sevSnp } from '@gmemlab/sev-snp';
import { tdx } from '@gmemlab/tdx';
import { afterAll, describe, expect, it } from 'vitest';
import {
  blockOf,
  citedTags,
  listedQuotes,
  missingEvidence,
  oneLine,
  renderBlock,
  strayEvidence,
  withBlock,
} from '../support/evidence.js';

const root = join(import.meta.dirname, '..', '..');

/** Every combination of the given option values, as option objects (undefined values left out). */
function combinations(values: Record<string, unknown[]>): Record<string, unknown>[] {
  return Object.entries(values).reduce<Record<string, unknown>[]>(
    (all, [key, choices]) =>
      all.flatMap((options) =>
        choices.map((choice) => (choice === undefined ? options : { ...options, [key]: choice })),
      ),
    [{}],
  );
}

/**
 * Each distinct backend the option combinations build (a default given explicitly builds the same id as the
 * option left out); combinations a factory refuses (a TypeError) are skipped.
 */
function build(factory: (options?: never) => ArchBackend, values: Record<string, unknown[]>): ArchBackend[] {
  const byId = new Map<string, ArchBackend>();
  for (const options of combinations(values)) {
    try {
      const backend = factory(options as never);
      if (!byId.has(backend.id)) byId.set(backend.id, backend);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
    }
  }
  return [...byId.values()];
}

/** Every shipped backend, every option combination, by the package that ships it. */
const BY_PACKAGE: Record<string, ArchBackend[]> = {
  '@gmemlab/core': [swProtected],
  '@gmemlab/tdx': build(tdx, {
    variant: [undefined, 'connect'],
    dmaToPrivate: [undefined, 'poison'],
    pwMceErratum: [undefined, true, false],
    hostRead: [undefined, 'machine-check'],
    dmaRead: [undefined, 'no-fault'],
  }),
  '@gmemlab/sev-snp': build(sevSnp, { variant: [undefined, 'tio'], iommuHugePages: [undefined, true] }),
  '@gmemlab/arm-cca': build(armCca, { variant: [undefined, 'da'], mapFile: [undefined, 'rely-on-gpt'] }),
  '@gmemlab/pkvm': build(pkvm, {
    variant: [undefined, 'upstream'],
    unshare: [undefined, 'refuse-dma-mapped'],
    hostAbort: [undefined, 'hyp-bug'],
  }),
};
const BACKENDS: ArchBackend[] = Object.values(BY_PACKAGE).flat();

/** What counts as citing a source: a bracketed tag, a § of a document, the second pass, or a GitHub issue. */
const CITES = /\[[A-Z][^\]]*\]|§\d|arch-behaviour 6b|[A-Za-z][\w.-]*#\d+/;

const fixtures: string[] = [];
afterAll(() => {
  for (const dir of fixtures) rmSync(dir, { recursive: true, force: true });
});

describe('backend rules cite their sources', () => {
  it('covers every option combination', () => {
    const ids = BACKENDS.map((b) => b.id);
    // tdx: plain or connect × two DMA-write readings × erratum or not (connect implies no erratum: 6), × two
    // host-read readings × two DMA-read readings: 24.
    const tdxIds = ids.filter((id) => id.startsWith('tdx'));
    expect(tdxIds).toHaveLength(24);
    expect(tdxIds).toEqual(
      expect.arrayContaining([
        'tdx',
        'tdx:no-erratum',
        'tdx:dma-poison',
        'tdx:dma-poison-no-erratum',
        'tdx:connect',
        'tdx:connect-dma-poison',
        'tdx:connect-dma-poison-host-read-mce-dma-read-ok',
      ]),
    );
    expect(ids.filter((id) => id.startsWith('pkvm'))).toHaveLength(8);
    expect(ids).toEqual(
      expect.arrayContaining([
        'sw-protected',
        'sev-snp',
        'sev-snp:tio',
        'arm-cca',
        'arm-cca:da',
        'arm-cca:rely-on-gpt',
        'pkvm:upstream-refuse-dma-mapped-hyp-bug',
      ]),
    );
  });

  it('every backend states rules, and every rule has a topic, a rule and a source that cites something', () => {
    for (const backend of BACKENDS) {
      expect(backend.rules?.length ?? 0, backend.id).toBeGreaterThan(0);
      for (const rule of backend.rules ?? []) {
        expect(rule.topic.trim(), backend.id).not.toBe('');
        expect(rule.rule.trim(), backend.id).not.toBe('');
        expect(rule.source, `${backend.id} / ${rule.topic}: no citation in '${rule.source}'`).toMatch(CITES);
      }
    }
  });

  it('every instance of a backend package says, for each thing its hooks decide, what it does (a rule per topic)', () => {
    // What every hook of an architecture backend decides; tdx and pkvm also name the reading of every instance
    // ('variant'), and pkvm says whether the hypervisor refuses a conversion.
    const topics = [
      'conversion policy',
      'device access to private',
      'host access to private',
      'IOPTEs over private',
      'private entry',
      'removal pipeline',
      'contents',
      'page sizes',
    ];
    const more: Record<string, string[]> = {
      '@gmemlab/tdx': ['variant'],
      '@gmemlab/pkvm': ['variant', 'hypervisor refusal'],
    };
    for (const [name, backends] of Object.entries(BY_PACKAGE)) {
      if (name === '@gmemlab/core') continue;
      for (const backend of backends) {
        const stated = new Set((backend.rules ?? []).map((rule) => rule.topic));
        expect(
          [...topics, ...(more[name] ?? [])].filter((topic) => !stated.has(topic)),
          backend.id,
        ).toEqual([]);
      }
    }
  });

  it('every tag and § cited in a rule or its source is defined in docs/ (scripts/check-doc-citations.mjs)', () => {
    // The checker, run on a fixture: the project's docs, and one file holding every rule, one per line.
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-rule-sources-'));
    fixtures.push(dir);
    mkdirSync(join(dir, 'docs'));
    for (const doc of readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')))
      copyFileSync(join(root, 'docs', doc), join(dir, 'docs', doc));
    mkdirSync(join(dir, 'packages', 'rules'), { recursive: true });
    const entries = BACKENDS.flatMap((backend) =>
      (backend.rules ?? []).flatMap((rule) => [
        { where: `${backend.id}, ${rule.topic}, source`, text: rule.source },
        { where: `${backend.id}, ${rule.topic}, rule`, text: rule.rule },
      ]),
    );
    const lines = entries.map((entry) => entry.text);
    writeFileSync(join(dir, 'packages', 'rules', 'rules.md'), lines.join('\n') + '\n');
    const run = spawnSync(
      process.execPath,
      [join(root, 'scripts', 'check-doc-citations.mjs'), '--root', dir, '--json'],
      { encoding: 'utf8' },
    );
    if (run.error) throw run.error;
    const result = JSON.parse(run.stdout) as { problems: string[]; stats: { tags: number; sections: number } };
    // The docs' own links are the doc-citations test's business (the fixture has no README or packages to link to).
    const ours = result.problems.filter((problem) => problem.startsWith('packages/rules/'));
    expect(
      ours.map((problem) =>
        problem.replace(/^packages\/rules\/rules\.md:(\d+)/, (_, n: string) => entries[Number(n) - 1]!.where),
      ),
    ).toEqual([]);
    // Guard against a check that silently found nothing: every rule's source cites at least one tag or §.
    expect(result.stats.tags + result.stats.sections).toBeGreaterThan(lines.length / 2);
  });

  it("'arch-behaviour 6b', which the checker does not resolve, names the second-pass section of docs/sources.md", () => {
    expect(BACKENDS.some((b) => b.rules?.some((rule) => rule.source.includes('arch-behaviour 6b')))).toBe(true);
    expect(readFileSync(join(root, 'docs', 'sources.md'), 'utf8')).toMatch(/^## .*\(arch-behaviour 6b\)$/m);
  });
});

describe('citations carry their evidence (issue 16)', () => {
  const sourcesPath = join(root, 'docs', 'sources.md');

  it('reads the tags of a source as the evidence names them', () => {
    expect(citedTags('[S-a, S-b], kernel-contract §4.2')).toEqual(['S-a', 'S-b', 'kernel-contract §4.2']);
    expect(citedTags('[T1a, T1d, S-c]; [T2]; [U]')).toEqual(['T1a', 'T1d', 'S-c', 'T2']);
    expect(citedTags('[C-c] (SMMUv3 §3.25.1)')).toEqual(['C-c']);
    expect(citedTags('kernel-contract §8.B (KVM_X86_SW_PROTECTED_VM), §4.2; [I]')).toEqual([
      'kernel-contract §8.B',
      'kernel-contract §4.2',
    ]);
    expect(citedTags('[C-a, C-d, C-e2], arch-behaviour 6b')).toEqual(['C-a', 'C-d', 'C-e2', 'arch-behaviour 6b']);
    expect(citedTags('kernel-contract §9.4; pKVM-IA#92 (prior-art §7)')).toEqual([
      'kernel-contract §9.4',
      'pKVM-IA#92',
    ]);
    expect(citedTags('prior-art §7 (Fuad Tabba); [P-d]')).toEqual(['P-d', 'prior-art §7']);
    expect(citedTags('[X-c] [C statement]; [I]')).toEqual(['X-c']);
  });

  it('every rule of every shipped backend has an evidence entry for each tag it cites', () => {
    // Lists exactly the (backend, rule topic, tag) triples that lack one.
    const missing = missingEvidence(BACKENDS).map((m) => `${m.backend} | ${m.topic} | ${m.tag}`);
    expect(
      missing,
      `rules citing a tag without evidence for it (backend | rule topic | tag):\n${missing.join('\n')}`,
    ).toEqual([]);
  });

  it('no evidence entry names a tag its rule does not cite', () => {
    const stray = strayEvidence(BACKENDS).map((m) => `${m.backend} | ${m.topic} | ${m.tag}`);
    expect(stray).toEqual([]);
  });

  it('every quote is listed under its tag in docs/sources.md', () => {
    const listed = listedQuotes(readFileSync(sourcesPath, 'utf8'));
    const unlisted: string[] = [];
    for (const backend of BACKENDS) {
      for (const rule of backend.rules ?? []) {
        for (const entry of rule.evidence ?? []) {
          if (!listed.get(entry.tag)?.has(oneLine(entry.quote)))
            unlisted.push(`${backend.id} | ${rule.topic} | ${entry.tag}: ${oneLine(entry.quote)}`);
        }
      }
    }
    expect(
      unlisted,
      `quotes not listed under their tag in docs/sources.md (regenerate: pnpm --filter @gmemlab/tests evidence):\n${unlisted.join('\n')}`,
    ).toEqual([]);
  });

  it("each package's evidence block in docs/sources.md is what its rules give (GMEMLAB_WRITE_EVIDENCE=1 rewrites them)", () => {
    let doc = readFileSync(sourcesPath, 'utf8');
    if (process.env.GMEMLAB_WRITE_EVIDENCE === '1') {
      for (const [pkg, backends] of Object.entries(BY_PACKAGE)) doc = withBlock(doc, pkg, renderBlock(pkg, backends));
      writeFileSync(sourcesPath, doc);
    }
    const stale = Object.entries(BY_PACKAGE)
      .filter(([pkg, backends]) => blockOf(doc, pkg) !== renderBlock(pkg, backends))
      .map(([pkg]) => pkg);
    expect(
      stale,
      'evidence blocks of docs/sources.md that differ from the rules: run pnpm --filter @gmemlab/tests evidence',
    ).toEqual([]);
  });
});
