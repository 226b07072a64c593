/**
 * Citations that carry their evidence (issue 16): which source tags a rule's `source` cites, what a rule is
 * missing, and the per-package blocks of docs/sources.md that list, under each tag, the passages the rules quote.
 *
 * The blocks are generated from the backends' rules, one block per package between markers, so that two
 * branches that add evidence to different packages change different blocks. Regenerate them with
 * `pnpm --filter @gmemlab/tests evidence` (tests/architecture/rule-sources.test.ts in write mode); the same test
 * fails, naming the package, when a block is not what the rules give.
 */
import type { ArchBackend, BackendRule } from '@gmemlab/core';

/** Confidence markers of docs/sources.md: not sources. */
const MARKER = /^(I|U|C(\s.*)?)$/;
/** Documents whose sections are cited as 'kernel-contract §4.2'. */
const DOCUMENTS = ['kernel-contract', 'prior-art', 'arch-behaviour'];

/**
 * The tags a rule's `source` cites, as its evidence names them: 'T1d', 'S-a', 'kernel-contract §4.2',
 * 'arch-behaviour 6b', 'pKVM-IA#92', 'RFC-J5'. Parenthesised remarks are not citations ('(SMMUv3 §3.25.1)',
 * '(prior-art §7)' after an issue), nor are the confidence markers [I], [U], [C …].
 */
export function citedTags(source: string): string[] {
  const tags: string[] = [];
  const add = (tag: string) => {
    if (!tags.includes(tag)) tags.push(tag);
  };
  let text = source;
  for (const [, inside] of text.matchAll(/\[([^\]]+)\]/g)) {
    for (const part of inside!.split(',').map((p) => p.trim())) if (part !== '' && !MARKER.test(part)) add(part);
  }
  text = text.replace(/\[[^\]]*\]/g, ' ').replace(/\([^)]*\)/g, ' ');
  for (const match of text.matchAll(/arch-behaviour 6b/g)) add(match[0]);
  for (const document of DOCUMENTS) {
    // 'kernel-contract §9.5 I1, §3.3': every § in the run that follows the document's name.
    for (const [, run] of text.matchAll(
      new RegExp(`${document} (§[\\w.]+(?:\\s+I\\d+)?(?:\\s*,\\s*§[\\w.]+(?:\\s+I\\d+)?)*)`, 'g'),
    )) {
      for (const [, section] of run!.matchAll(/§([\w.]+)/g)) add(`${document} §${section!.replace(/\.$/, '')}`);
    }
  }
  for (const [issue] of text.matchAll(/[A-Za-z][\w.-]*#\d+/g)) add(issue);
  for (const [tag] of text.matchAll(/\bRFC-[A-Z]+\d*\b/g)) add(tag);
  return tags;
}

export interface MissingEvidence {
  backend: string;
  topic: string;
  tag: string;
}

/** Every (backend, rule topic, tag) whose rule cites the tag without an evidence entry for it. */
export function missingEvidence(backends: readonly ArchBackend[]): MissingEvidence[] {
  const missing: MissingEvidence[] = [];
  for (const backend of backends) {
    for (const rule of backend.rules ?? []) {
      const have = new Set((rule.evidence ?? []).map((e) => e.tag));
      for (const tag of citedTags(rule.source)) {
        if (have.has(tag) || missing.some((m) => m.backend === backend.id && m.topic === rule.topic && m.tag === tag))
          continue;
        missing.push({ backend: backend.id, topic: rule.topic, tag });
      }
    }
  }
  return missing;
}

/** Evidence entries whose tag the rule's source does not cite (a quote for a tag the rule does not rest on). */
export function strayEvidence(backends: readonly ArchBackend[]): MissingEvidence[] {
  const stray: MissingEvidence[] = [];
  for (const backend of backends) {
    for (const rule of backend.rules ?? []) {
      const cited = new Set(citedTags(rule.source));
      for (const entry of rule.evidence ?? [])
        if (!cited.has(entry.tag)) stray.push({ backend: backend.id, topic: rule.topic, tag: entry.tag });
    }
  }
  return stray;
}

export const blockBegin = (pkg: string) =>
  `<!-- evidence ${pkg} begin (generated from backend.rules: pnpm --filter @gmemlab/tests evidence) -->`;
export const blockEnd = (pkg: string) => `<!-- evidence ${pkg} end -->`;

/** One quote as docs/sources.md lists it: on one line, whitespace collapsed. */
export const oneLine = (quote: string) => quote.replace(/\s+/g, ' ').trim();

/**
 * The block of docs/sources.md for one package: under each tag its rules cite (in order of first use), each
 * distinct passage once, with the rules (backend id, topic) that quote it.
 */
export function renderBlock(pkg: string, backends: readonly ArchBackend[]): string {
  const byTag = new Map<string, Map<string, string[]>>();
  for (const backend of backends) {
    for (const rule of (backend.rules ?? []) as readonly BackendRule[]) {
      for (const entry of rule.evidence ?? []) {
        const quotes = byTag.get(entry.tag) ?? new Map<string, string[]>();
        byTag.set(entry.tag, quotes);
        const quote = oneLine(entry.quote);
        const users = quotes.get(quote) ?? [];
        quotes.set(quote, users);
        const user = `${backend.id} / ${rule.topic}`;
        if (!users.includes(user)) users.push(user);
      }
    }
  }
  const lines = [blockBegin(pkg), '', `### ${pkg}`, ''];
  if (byTag.size === 0) lines.push('(no rule of this package carries evidence yet)', '');
  for (const [tag, quotes] of byTag) {
    lines.push(`#### ${tag}`, '');
    for (const [quote, users] of quotes) lines.push(`- ${quote} — ${users.join('; ')}`);
    lines.push('');
  }
  lines.push(blockEnd(pkg));
  return lines.join('\n');
}

/** docs/sources.md with `pkg`'s block replaced (or appended at the end of the evidence section). */
export function withBlock(doc: string, pkg: string, block: string): string {
  const begin = doc.indexOf(blockBegin(pkg));
  const end = doc.indexOf(blockEnd(pkg));
  if (begin >= 0 && end > begin) return doc.slice(0, begin) + block + doc.slice(end + blockEnd(pkg).length);
  const anchor = '<!-- evidence blocks end -->';
  const at = doc.indexOf(anchor);
  if (at < 0) throw new Error(`docs/sources.md has no '${anchor}' marker to add the block of ${pkg} before`);
  return doc.slice(0, at) + block + '\n\n' + doc.slice(at);
}

/** The block of `pkg` as docs/sources.md holds it, or undefined. */
export function blockOf(doc: string, pkg: string): string | undefined {
  const begin = doc.indexOf(blockBegin(pkg));
  const end = doc.indexOf(blockEnd(pkg));
  return begin >= 0 && end > begin ? doc.slice(begin, end + blockEnd(pkg).length) : undefined;
}

/** Tag -> the passages listed under it (in any package's block) in docs/sources.md. */
export function listedQuotes(doc: string): Map<string, Set<string>> {
  const listed = new Map<string, Set<string>>();
  let tag: string | undefined;
  for (const line of doc.split('\n')) {
    const heading = /^#{1,4} (.*)$/.exec(line);
    if (heading) {
      tag = line.startsWith('#### ') ? heading[1]!.trim() : undefined;
      continue;
    }
    if (tag === undefined || !line.startsWith('- ')) continue;
    const quote = line.slice(2).replace(/ — [^—]*$/, '');
    const set = listed.get(tag) ?? new Set<string>();
    set.add(quote);
    listed.set(tag, set);
  }
  return listed;
}
