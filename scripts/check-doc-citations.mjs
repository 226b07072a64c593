#!/usr/bin/env node
/**
 * Every citation in the code must resolve in docs/: each `kernel-contract §x.y` (or bare `§x.y`) to a heading of
 * docs/kernel-contract.md, each `arch-behaviour §n` / `prior-art §n` to a heading of docs/sources.md, each source
 * tag ([T1e], [S-a], [C-e2], GMEM-LATER, CONV8, RFC-J1, pKVM-IA#92, the markers [C] [I] [U]) to a row of
 * docs/sources.md, and each relative link in docs/ and the root README to a file (and heading) that exists.
 *
 *   node scripts/check-doc-citations.mjs [--root DIR] [--json]
 *
 * Exits 1 and lists the problems when something does not resolve. tests/architecture/doc-citations.test.ts runs it.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where citations are looked for: code, tests, apps, benchmarks, scripts, changesets and the top-level documents. */
const SCAN_DIRS = ['packages', 'tests', 'apps', 'bench', 'scripts', '.changeset', 'docs'];
const SCAN_FILES = ['README.md', 'ARCHITECTURE.md', 'BENCHMARKS.md'];
const SKIP_DIRS = new Set(['node_modules', 'dist', '.turbo', 'coverage', 'api']);
const EXTENSIONS = /\.(ts|mts|cts|js|mjs|cjs|md|c|h)$/;
/** This checker and its test quote the patterns they look for. */
const SELF = new Set(['scripts/check-doc-citations.mjs', 'tests/architecture/doc-citations.test.ts']);

/** A § citation and the document it belongs to, from the nearest document name before it on the line. */
const SECTION = /§(\d+(?:\.[0-9A-Za-z]+)*)/g;
const DOCUMENT_MARKERS = [
  ['kernel-contract', 'kernel-contract'],
  ['arch-behaviour', 'arch-behaviour'],
  ['prior-art', 'prior-art'],
  // Sections of the Arm SMMUv3 specification, cited next to [C-c]: not ours to resolve.
  ['SMMU', 'external'],
  ['[C-c]', 'external'],
];

/** Source-tag shapes. Bracketed: [T1e] [T2] [X-a] [C-e2] and the markers [C] [I] [U]. */
const BRACKET = /\[([^\][\n]{1,80})\]/g;
const BRACKET_TAG = /^(?:T\d[a-z]|T2|[A-Z]-[a-z]\d?|[CIU])$/;
/** Bare tags of the kernel contract, and GitHub issues written as name#N. */
const BARE =
  /(?<![\w-])(?:RFC(?:-[A-Z]+\d*)?|CONV\d+|GMEM(?:-[A-Z]+)?|KVMUAPI|KVMMAIN|KVMH|SETMEM|MSLOT|NODM|GWRITE|UAPI|IOPT|UNMAP-FIX|DMABUF(?:-REVOKE)?|PAGES-FILE|VFIOCOMPAT|FILEWR|MEMFDPIN|IOTEST|LPC)(?![\w-])|(?<![\w/#-])[A-Za-z][\w.-]*#\d+(?![\w-])/g;

function walk(root, dir, out) {
  const full = join(root, dir);
  if (!existsSync(full)) return;
  for (const entry of readdirSync(full)) {
    if (SKIP_DIRS.has(entry)) continue;
    const path = join(dir, entry);
    if (statSync(join(root, path)).isDirectory()) walk(root, path, out);
    else if (EXTENSIONS.test(entry)) out.push(path);
  }
}

function filesToScan(root) {
  const files = [];
  for (const dir of SCAN_DIRS) walk(root, dir, files);
  for (const file of SCAN_FILES) if (existsSync(join(root, file))) files.push(file);
  return files.map((f) => f.split('\\').join('/')).filter((f) => !SELF.has(f));
}

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading) {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function headings(text) {
  return text
    .split('\n')
    .filter((line) => /^#{1,6}\s/.test(line))
    .map((line) => line.replace(/^#{1,6}\s+/, ''));
}

/** Sections a document defines: every §x.y in its headings. */
function definedSections(text) {
  const out = new Set();
  for (const heading of headings(text)) for (const m of heading.matchAll(SECTION)) out.add(m[1]);
  return out;
}

/** Tags docs/sources.md defines: the first cell of every table row, plus the `[X]` markers. */
function definedTags(text) {
  const out = new Set();
  for (const line of text.split('\n')) {
    const cells = line.split('|');
    if (!line.startsWith('|') || cells.length < 3) continue;
    const first = cells[1].trim().replace(/\*\*/g, '').replace(/`/g, '');
    if (first === '' || /^-+$/.test(first)) continue;
    out.add(first.replace(/^\[(.*)\]$/, '$1'));
  }
  return out;
}

function classify(prefix) {
  let best = { at: -1, doc: 'kernel-contract' };
  for (const [marker, doc] of DOCUMENT_MARKERS) {
    const at = prefix.lastIndexOf(marker);
    if (at > best.at) best = { at, doc };
  }
  return best.doc;
}

export function checkDocCitations(root) {
  const problems = [];
  const stats = { files: 0, sections: 0, tags: 0, links: 0 };
  const read = (path) => (existsSync(join(root, path)) ? readFileSync(join(root, path), 'utf8') : undefined);
  const contract = read('docs/kernel-contract.md');
  const sources = read('docs/sources.md');
  if (contract === undefined) problems.push('docs/kernel-contract.md is missing');
  if (sources === undefined) problems.push('docs/sources.md is missing');
  const kcSections = definedSections(contract ?? '');
  const sourceHeadings = headings(sources ?? '').join('\n');
  const tags = definedTags(sources ?? '');

  for (const file of filesToScan(root)) {
    stats.files++;
    const lines = readFileSync(join(root, file), 'utf8').split('\n');
    lines.forEach((line, i) => {
      const where = `${file}:${i + 1}`;
      for (const m of line.matchAll(SECTION)) {
        const doc = classify(line.slice(0, m.index));
        if (doc === 'external') continue;
        stats.sections++;
        const section = m[1];
        if (doc === 'kernel-contract') {
          if (!kcSections.has(section))
            problems.push(`${where}: kernel-contract §${section} has no heading in docs/kernel-contract.md`);
        } else if (!sourceHeadings.includes(`${doc} §${section}`)) {
          problems.push(`${where}: ${doc} §${section} has no heading in docs/sources.md`);
        }
      }
      for (const m of line.matchAll(BRACKET)) {
        for (const part of m[1].split(',').map((p) => p.trim())) {
          if (!BRACKET_TAG.test(part)) continue;
          stats.tags++;
          if (!tags.has(part)) problems.push(`${where}: source tag [${part}] is not defined in docs/sources.md`);
        }
      }
      for (const m of line.matchAll(BARE)) {
        stats.tags++;
        if (!tags.has(m[0])) problems.push(`${where}: source tag ${m[0]} is not defined in docs/sources.md`);
      }
    });
  }

  // Relative links of the documents a user reads: the docs folder and the root README.
  const documents = [];
  walk(root, 'docs', documents);
  documents.push('README.md');
  for (const file of documents.filter((f) => f.endsWith('.md') && existsSync(join(root, f)))) {
    const text = readFileSync(join(root, file), 'utf8');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/i.test(target)) continue;
      stats.links++;
      const [path, anchor] = target.split('#');
      const resolved = path === '' ? join(root, file) : resolve(join(root, dirname(file)), path);
      if (!existsSync(resolved)) {
        problems.push(`${file}: link ${target} points at a file that does not exist`);
        continue;
      }
      if (anchor !== undefined && resolved.endsWith('.md')) {
        const anchors = new Set(headings(readFileSync(resolved, 'utf8')).map(slug));
        if (!anchors.has(anchor))
          problems.push(`${file}: link ${target} names no heading of ${relative(root, resolved)}`);
      }
    }
  }
  return { problems, stats };
}

const invoked = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invoked) {
  const args = process.argv.slice(2);
  const rootAt = args.indexOf('--root');
  const root = rootAt >= 0 ? resolve(args[rootAt + 1]) : resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const result = checkDocCitations(root);
  if (args.includes('--json')) {
    console.log(JSON.stringify(result));
  } else {
    for (const problem of result.problems) console.log(problem);
    const { files, sections, tags, links } = result.stats;
    console.log(
      `${result.problems.length} problem(s); ${files} files, ${sections} section citations, ${tags} tag citations, ${links} links checked`,
    );
  }
  process.exitCode = result.problems.length === 0 ? 0 : 1;
}
