/**
 * `gmemlab explain <arch>`: a backend's rules with their sources (ArchBackend.rules), and what its policy
 * answers, asked directly: the conversion policy for each kind of DMA area and direction, and what a device
 * or the host kernel touching a private page does. The answers are the backend's own, not a summary of them.
 */
import { formatSize } from './scenario/expr.js';
import { CONTRACTS, PAGE_SIZE, PMD_SIZE, type AccessVerdict, type ArchBackend, type DmaAreaInfo } from '@gmemlab/core';

interface Rule {
  topic: string;
  rule: string;
  source: string;
  /** What each cited source says (BackendRule.evidence); [] when the backend gives none. */
  evidence: Array<{ tag: string; quote: string }>;
}

function rulesOf(backend: ArchBackend): Rule[] {
  const raw = (backend as unknown as { rules?: unknown }).rules;
  if (!Array.isArray(raw)) return [];
  return raw
    .filter(
      (r): r is Omit<Rule, 'evidence'> & { evidence?: unknown } =>
        typeof r === 'object' && r !== null && typeof r.rule === 'string' && typeof r.source === 'string',
    )
    .map((r) => ({
      topic: String(r.topic ?? ''),
      rule: r.rule,
      source: r.source,
      evidence: Array.isArray(r.evidence)
        ? r.evidence
            .filter(
              (e): e is { tag: string; quote: string } =>
                typeof e === 'object' && e !== null && typeof e.tag === 'string' && typeof e.quote === 'string',
            )
            .map((e) => ({ tag: e.tag, quote: e.quote.replace(/\s+/g, ' ').trim() }))
        : [],
    }));
}

/** A rule with its source and, under it, each source's quote. */
function formatRule(r: Rule, md: boolean): string {
  if (md)
    return [`- **${r.topic}**: ${r.rule} _(${r.source})_`, ...r.evidence.map((e) => `  - ${e.tag}: “${e.quote}”`)].join(
      '\n',
    );
  return [
    `  - ${r.topic}: ${r.rule}`,
    `      source: ${r.source}`,
    ...r.evidence.map((e) => `      ${e.tag}: “${e.quote}”`),
  ].join('\n');
}

/**
 * An access verdict in the verdict's vocabulary (run/verdict.ts): a fatal fault is a host crash whatever its kind
 * (never 'contained (fatal)'), an IOMMU refusal an IOMMU fault, a contained one a contained fault.
 */
const verdict = (v: AccessVerdict, write: boolean) => {
  if (v.allow) return v.poisons && write ? 'allowed, poisons the line' : 'allowed';
  const what = v.fatal
    ? `host crash (${v.fault})`
    : v.fault === 'iommu-fault'
      ? 'IOMMU fault'
      : v.fault === 'contained'
        ? 'contained fault'
        : v.fault;
  return `${what} by ${v.mechanism}${write && v.lands ? '; the write lands' : ''}${write && v.poisons ? ' and poisons' : ''}`;
};

function ask<T>(fn: () => T): T | string {
  try {
    return fn();
  } catch (error) {
    return `throws: ${(error as Error).message}`;
  }
}

/** The policy's answers to the questions the core asks it. */
export function probe(backend: ArchBackend): Array<[string, string]> {
  const area = (source: 'file' | 'user', hasIoptes: boolean): DmaAreaInfo => ({
    ioas: 1,
    area: 1,
    iova: 0,
    length: PMD_SIZE,
    fileOffset: 0,
    iopteSize: PMD_SIZE,
    hasIoptes,
    source,
  });
  const rows: Array<[string, string]> = [];
  // Truncation is the thread's one point of agreement, and the core's rule for every architecture: under both
  // registry designs guest_memfd revokes every iommufd area over a punched or released range, whole (kernel-contract
  // §9.3, RFC-J1); under vmm-driven nothing does, and the VMM must unmap first. No backend is asked.
  rows.push([
    'truncation (PUNCH_HOLE, release), every architecture',
    'gmem-registry and mirror: revoke each area over the range, whole (kernel-contract §9.3); vmm-driven: nothing revokes, the VMM must unmap first',
  ]);
  for (const contract of ['gmem-registry', 'mirror'] as const) {
    for (const to of ['private', 'shared'] as const) {
      for (const source of ['file', 'user'] as const) {
        rows.push([
          `${contract}: to-${to}, ${source === 'file' ? 'IOMMU_IOAS_MAP_FILE' : 'IOMMU_IOAS_MAP'} area with IOPTEs`,
          String(
            ask(() =>
              backend.conversionPolicy({
                to,
                offset: 0,
                length: PAGE_SIZE,
                contract,
                area: area(source, true),
                overlapOffset: 0,
                overlapLength: PAGE_SIZE,
              }),
            ),
          ),
        ]);
      }
    }
  }
  for (const write of [false, true]) {
    for (const hardware of ['private', 'shared'] as const) {
      rows.push([
        `device ${write ? 'write' : 'read'}: private page, hardware ${hardware}`,
        String(
          ask(() =>
            verdict(
              backend.deviceAccess({ attribute: 'private', hardware, write, vmType: 'coco', stale: false }),
              write,
            ),
          ),
        ),
      ]);
    }
  }
  rows.push([
    'host kernel write: private page, hardware private',
    String(
      ask(() =>
        verdict(
          backend.hostKernelAccess({
            attribute: 'private',
            hardware: 'private',
            write: true,
            vmType: 'coco',
            stale: false,
          }),
          true,
        ),
      ),
    ),
  ]);
  rows.push([
    'a device may reach a private page (else an IOPTE to it is unsafe-iopte)',
    String(ask(() => backend.deviceMayReach({ attribute: 'private', vmType: 'coco' }))),
  ]);
  rows.push(['gmem-registry maps private pages at MAP_FILE', String(backend.mapsPrivatePages)]);
  rows.push([
    'contents on to-shared of a hardware-private page',
    String(ask(() => backend.contentsOnConversion({ to: 'shared' }))),
  ]);
  rows.push([
    'contents of a hardware-private page freed by truncation',
    String(ask(() => backend.contentsOnRemoval?.({ cause: 'truncate' }) ?? 'keep (not specified)')),
  ]);
  rows.push(['page becomes hardware-private at', backend.privateEntryAt ?? 'install']);
  if (backend.hypervisorRefusal) {
    rows.push([
      'hypervisor refuses to-private of a DMA-mapped page (every design)',
      String(
        ask(() =>
          backend.hypervisorRefusal!({
            to: 'private',
            offset: 0,
            length: PAGE_SIZE,
            contract: CONTRACTS[0]!,
            dmaMapped: [{ offset: 0, length: PAGE_SIZE, area: area('file', true) }],
          }) !== undefined
            ? 'yes'
            : 'no',
        ),
      ),
    ]);
  }
  return rows;
}

export function explainBackend(backend: ArchBackend, format: string): string {
  const rules = rulesOf(backend);
  const answers = probe(backend);
  if (format === 'json')
    return JSON.stringify(
      { id: backend.id, name: backend.name, pageSizes: backend.pageSizes, rules, answers: Object.fromEntries(answers) },
      null,
      2,
    );
  const md = format === 'markdown';
  const out: string[] = [];
  out.push(md ? `### ${backend.name} (\`${backend.id}\`)` : `${backend.name} (${backend.id})`, '');
  out.push(
    `page sizes tracked: ${backend.pageSizes.map(formatSize).join(', ')}${backend.hardwarePrivateName ? `; hardware-private state: ${backend.hardwarePrivateName}` : ''}`,
    '',
  );
  out.push(md ? '#### Rules' : 'Rules (each with its source, and what the source says):', '');
  if (rules.length === 0)
    out.push('  (this backend lists no rules: ArchBackend.rules is optional; its answers below are still its own)');
  for (const r of rules) out.push(formatRule(r, md));
  out.push('', md ? '#### What the policy answers' : 'What the policy answers when the core asks:', '');
  const width = Math.max(...answers.map(([q]) => q.length));
  for (const [q, a] of answers) out.push(md ? `- ${q}: **${a}**` : `  ${q.padEnd(width)}  ${a}`);
  return out.join('\n');
}
