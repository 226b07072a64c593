/**
 * Intel TDX as an ArchBackend. The TDX module (SEAM) owns the Secure EPT and the private HKIDs; MKTME adds a
 * 28-bit MAC and a TD-owner bit per line [X-a, X-b, X-f]. Nothing checks *who* touches a private page: a host
 * write or a device's DMA lands, breaks integrity, and the poison is consumed later as a machine check. So the
 * model keeps devices away from private pages entirely: shared IOPTEs go before a page turns private [T1g],
 * no IOPTE is ever made over a private page, and any that exists is an 'unsafe-iopte' violation (I2).
 *
 * Source tags are those of docs/sources.md in the gmemlab repository (arch-behaviour §7).
 */
import type { AccessVerdict, ArchBackend, BackendRule, ConversionContext, PageAccessContext, PipelineStep, PrivateEntryContext, RemovalContext } from '@gmemlab/core';
import { PAGE_SIZE, PMD_SIZE, PUD_SIZE } from '@gmemlab/core';



export type TdxVariant = 'connect';

export interface TdxOptions {
  /**
   * 'connect': TDX Connect (TDISP). The trusted IOMMU table of an assigned device reuses the Secure EPT, so its
   * private DMA follows S-EPT changes inside the TDX module with no notification [T1e, T1g, X-i]; the IOPTEs the
   * host manages (the ones this model has) stay shared-only and follow the same rules as plain TDX.
   */
  variant?: TdxVariant;
  /**
   * What a device write that reaches a TD-private page does. The sources differ, so both readings are here:
   * - 'machine-check' (default): Xu Yilun's statement, the only one about DMA — it "will cause host machine
   *   check and host restart", "not contained" [T1e, T1f]. The host crashes at the write.
   * - 'poison': the CPU path of [X-d] applied to DMA — the write breaks the line's integrity silently and the
   *   TD's next read consumes the poison (#MC, the TD is killed, [X-a]). Whether a DMA write behaves so is [U].
   */
  dmaToPrivate?: 'machine-check' | 'poison';
  /**
   * Whether the CPU has the partial-write machine-check erratum (X86_BUG_TDX_PW_MCE: Sapphire Rapids and Emerald
   * Rapids, the first TDX parts [X-b, X-c]). Newer kernels clear a reclaimed page only on such parts
   * (tdx_quirk_reset_paddr, arch-behaviour 6b; [X-c2]); the tree cited for the pipeline clears always [X-a].
   * Default true (false with 'connect', which refuses to run on erratum parts [X-i2]): the page is cleared with
   * MOVDIR64B, and a kernel read of TD memory may machine-check [X-c, I]. false: no clear step, the bytes are left
   * as they were, and kernel reads are allowed [X-c].
   */
  pwMceErratum?: boolean;
}

/** The step names, in the order KVM runs them for each 4K page [X-a]. */
export const TDX_STEPS = {
  aug: 'SEAMCALL TDH.MEM.PAGE.AUG',
  accept: 'TDCALL TDG.MEM.PAGE.ACCEPT (guest)',
  block: 'SEAMCALL TDH.MEM.RANGE.BLOCK',
  track: 'SEAMCALL TDH.MEM.TRACK',
  ipi: 'IPI (KVM_REQ_OUTSIDE_GUEST_MODE, per vCPU)',
  remove: 'SEAMCALL TDH.MEM.PAGE.REMOVE',
  wbinvd: 'SEAMCALL TDH.PHYMEM.PAGE.WBINVD',
  clear: 'MOVDIR64B page clear (tdx_clear_page)',
} as const;

// [T1e, T1f] Xu Yilun: a device write through a stale IOPTE "will cause host machine check and host restart",
// "not contained". The write lands (legacy VT-d checks no ownership) and breaks the line's integrity.
const DMA_MACHINE_CHECK: AccessVerdict = {
  allow: false,
  fault: 'machine-check',
  fatal: true,
  logged: true,
  lands: true,
  poisons: true,
  mechanism: 'TDX: no ownership check on DMA; the access breaks MKTME integrity and the host takes a machine check (not contained)',
};

function deviceAccess(reading: 'machine-check' | 'poison') {
  return (context: PageAccessContext): AccessVerdict => {
    // Only a page the TDX module holds (AUG'd into the S-EPT, under the TD's private KeyID) is TD memory. A page
    // that is private in KVM's view but not yet accepted is still an ordinary host page to the IOMMU.
    if (context.vmType !== 'coco' || context.hardware !== 'private') return { allow: true };
    // [T1e] The statement does not separate reads from writes; the default reading treats both as fatal.
    if (reading === 'machine-check') return DMA_MACHINE_CHECK;
    // 'poison' reading: [X-d]'s integrity rule; reads return ciphertext or zeros [U].
    return context.write ? { allow: true, poisons: true } : { allow: true };
  };
}

function hostKernelAccess(erratum: boolean) {
  return (context: PageAccessContext): AccessVerdict => {
    if (context.vmType !== 'coco' || context.hardware !== 'private') return { allow: true };
    // [X-d] No access-check fault: "host kernel must not allow any writes to TD-private memory"; the write poisons
    // the line and the TD's next read consumes it (#MC, TD killed [X-a]).
    if (context.write) return { allow: true, poisons: true };
    // [X-c] "Kernel read/write to TDX private memory doesn't cause machine check" on parts *without* the erratum:
    // there a read is allowed (what it returns, ciphertext or zeros, is [U]). On erratum parts the same comment
    // implies a kernel read can machine-check [I]: in kernel context that is fatal.
    if (erratum) return { allow: false, fault: 'machine-check', fatal: true, logged: true, mechanism: 'TDX (X86_BUG_TDX_PW_MCE part): a kernel read of TD memory fails the integrity check: machine check in kernel context' };
    return { allow: true };
  };
}

function conversionPolicy(context: ConversionContext) {
  // [T1g] "unmap [shared IOPTE] before conversion to private"; "the only concern to ensure kernel safety".
  if (context.to === 'private') return 'revoke' as const;
  // [T1g] "map after conversion to shared" is optional and left to userspace: nothing to unmap.
  return 'tolerate' as const;
}

function privateEntry(context: PrivateEntryContext): readonly PipelineStep[] {
  // [X-a, 6b] At the guest's private fault KVM adds the page to the S-EPT with TDH.MEM.PAGE.AUG (4K: KVM maps
  // private memory at 4K only), and the guest accepts it with TDG.MEM.PAGE.ACCEPT.
  return [
    { step: TDX_STEPS.aug, count: context.pages },
    { step: TDX_STEPS.accept, count: context.pages },
  ];
}

function removalPipeline(clear: boolean) {
  return (context: RemovalContext): readonly PipelineStep[] => {
    if (context.cause === 'to-private') return [];
    // [X-a] tdx_sept_remove_private_spte, per 4K page the TDX module held (KVM_BUG_ON(level != PG_LEVEL_4K)):
    // BLOCK -> TRACK + kick every vCPU -> PAGE.REMOVE -> PHYMEM.PAGE.WBINVD -> MOVDIR64B clear.
    const pages = context.pages;
    return [
      { step: TDX_STEPS.block, count: pages },
      { step: TDX_STEPS.track, count: pages },
      { step: TDX_STEPS.ipi, count: pages * context.vcpus },
      { step: TDX_STEPS.remove, count: pages },
      { step: TDX_STEPS.wbinvd, count: pages },
      // [X-a] "MOVDIR64B also clears the poison bit"; newer trees only with the erratum ([X-c2], 6b).
      ...(clear ? [{ step: TDX_STEPS.clear, count: pages }] : []),
    ];
  };
}

/**
 * The rules of one instance in words, with the tags the code above cites: `backend.rules`, what the README's
 * tables say for these options. Where the sources disagree or are silent, the rule says so.
 */
function tdxRules(connect: boolean, dmaToPrivate: 'machine-check' | 'poison', pwMceErratum: boolean): readonly BackendRule[] {
  const rules: BackendRule[] = [];
  if (connect) {
    rules.push({
      topic: 'variant',
      rule: "TDX Connect (TDISP): an assigned device's private DMA goes through the trusted IOMMU table that reuses the Secure EPT and follows S-EPT changes inside the TDX module. The host-managed IOPTEs, the only ones modelled, stay shared-only, so every other rule is plain TDX's.",
      source: '[T1e, T1g, X-i]',
    });
  }
  rules.push(
    pwMceErratum
      ? {
          topic: 'variant',
          rule: 'A part with the partial-write machine-check erratum (X86_BUG_TDX_PW_MCE: Sapphire Rapids and Emerald Rapids, the first TDX parts), the default; the page clear and the kernel-read rules follow from it.',
          source: '[X-b, X-c]',
        }
      : connect
        ? {
            topic: 'variant',
            rule: 'A part without the partial-write machine-check erratum: TDX Connect refuses to initialise on X86_BUG_TDX_PW_MCE parts, so this variant implies no erratum (no page clear, kernel reads allowed).',
            source: '[X-i2]',
          }
        : {
            topic: 'variant',
            rule: 'A part without the partial-write machine-check erratum (X86_BUG_TDX_PW_MCE): no page clear on reclaim, and kernel reads of TD memory are allowed.',
            source: '[X-c], [X-c2]',
          },
    {
      topic: 'conversion policy',
      rule: "To private: 'revoke', the registry unmaps the shared IOPTEs over the converting pages after the kernel's refcount check and before the attribute changes, the only thing kernel safety needs.",
      source: '[T1g]',
    },
    {
      topic: 'conversion policy',
      rule: "To shared: 'tolerate', nothing to unmap; mapping the pages again after the conversion is optional and left to the VMM.",
      source: '[T1g]',
    },
    dmaToPrivate === 'machine-check'
      ? {
          topic: 'device access to private',
          rule: "A device access to a page the TD holds is a host machine check, fatal and not contained: the write lands and breaks the line's integrity. The source does not separate reads from writes; treating a read like a write is an inference [I].",
          source: '[T1e, T1f] (Xu Yilun)',
        }
      : {
          topic: 'device access to private',
          rule: "A device write to a page the TD holds poisons the line silently, and the TD's next read consumes the poison (machine check, the TD is killed, the host survives); a read returns the stored bytes. This applies the CPU path of [X-d] to DMA, which no source confirms [U]; the only statement about DMA [T1e] says host machine check instead.",
          source: '[X-d], [X-a]; [U]',
        },
    {
      topic: 'device access to private',
      rule: 'A page private in KVM\'s view that the TD never accepted is still an ordinary host page: a device access to it is allowed.',
      source: '[X-a], arch-behaviour 6b',
    },
    {
      topic: 'host access to private',
      rule: "A host-kernel write to a page the TD holds does not fault: it poisons the line, and the TD's next read takes the machine check (the TD is killed, the host survives).",
      source: '[X-d], [X-a]',
    },
    pwMceErratum
      ? {
          topic: 'host access to private',
          rule: 'A host-kernel read of a page the TD holds is a fatal machine check in kernel context on this erratum part; the source implies it rather than says it [I].',
          source: '[X-c]; [I]',
        }
      : {
          topic: 'host access to private',
          rule: 'A host-kernel read of a page the TD holds is allowed on a part without the erratum; what it returns (ciphertext or zeros) is unconfirmed [U], and the model returns the stored bytes.',
          source: '[X-c]; [U]',
        },
    {
      topic: 'IOPTEs over private',
      rule: "No device may reach a page of a coco VM whose attribute is private: any IOPTE over one is an 'unsafe-iopte' violation (I2), already before the TD accepts the page [I].",
      source: '[T1e]; kernel-contract §9.5',
    },
    {
      topic: 'IOPTEs over private',
      rule: connect
        ? 'In the registry design IOMMU_IOAS_MAP_FILE fills IOPTEs only for pages shared at fill time: the host-managed (T=0) table maps shared pages only, and private DMA goes through the S-EPT-backed T=1 table the host does not write.'
        : 'In the registry design IOMMU_IOAS_MAP_FILE fills IOPTEs only for pages shared at fill time: the host-managed (T=0) IOMMU table maps shared pages only.',
      source: connect ? '[T1g], [T1e]' : '[T1g]',
    },
    {
      topic: 'private entry',
      rule: "At the guest's private fault, when the stage-2 entry is installed, KVM adds each 4K page to the S-EPT with TDH.MEM.PAGE.AUG and the guest accepts it with TDG.MEM.PAGE.ACCEPT; one ACCEPT per 4K page is an inference [I].",
      source: '[X-a], arch-behaviour 6b',
    },
    pwMceErratum
      ? {
          topic: 'removal pipeline',
          rule: 'Per 4K page the TD held, leaving by truncate, release or to-shared: TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK with an IPI to every vCPU, TDH.MEM.PAGE.REMOVE, TDH.PHYMEM.PAGE.WBINVD, then a MOVDIR64B clear. Pages the TD never held cost nothing.',
          source: '[X-a] (tdx_sept_remove_private_spte)',
        }
      : {
          topic: 'removal pipeline',
          rule: 'Per 4K page the TD held, leaving by truncate, release or to-shared: TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK with an IPI to every vCPU, TDH.MEM.PAGE.REMOVE, TDH.PHYMEM.PAGE.WBINVD, and no clear (newer trees clear only on erratum parts; a posted patch, merge status unknown). Pages the TD never held cost nothing.',
          source: '[X-a]; [X-c2], arch-behaviour 6b',
        },
    pwMceErratum
      ? {
          topic: 'contents',
          rule: "A page the TD held is cleared with MOVDIR64B when it leaves ('zero' on conversion to shared and on truncate or release), which also clears any poison. Conversion to private changes no bytes: PAGE.AUG waits for the guest's fault.",
          source: '[X-a] (tdx_clear_page)',
        }
      : {
          topic: 'contents',
          rule: "'keep': nothing clears a page the TD held when it leaves (conversion to shared, truncate, release), so its bytes stay, and so does any poison the host left in a line, which a later read consumes [I].",
          source: '[X-c2], arch-behaviour 6b; [X-a]',
        },
    {
      topic: 'page sizes',
      rule: 'The ABI has 4K, 2M and 1G pages, but KVM maps private memory at 4K only, so every step counts 4K pages; huge-page support is in progress and not modelled.',
      source: '[X-h], [X-a]',
    },
  );
  return Object.freeze(rules.map((rule) => Object.freeze(rule)));
}

/** Build a TDX backend description; `variant: 'connect'` gives 'tdx:connect'. */
export function createTdxBackend(options: TdxOptions = {}): ArchBackend {
  const { variant, dmaToPrivate = 'machine-check' } = options;
  if (variant !== undefined && variant !== 'connect') throw new TypeError(`@gmemlab/tdx: unknown variant ${String(variant)}; the only variant is 'connect'`);
  // [X-i2] tdx_connect_init refuses on X86_BUG_TDX_PW_MCE parts: TDX Connect implies a part without the erratum.
  const pwMceErratum = options.pwMceErratum ?? variant !== 'connect';
  if (variant === 'connect' && pwMceErratum === true) throw new TypeError('@gmemlab/tdx: TDX Connect does not initialise on parts with X86_BUG_TDX_PW_MCE [X-i2]; pwMceErratum must be false with it');
  if (dmaToPrivate !== 'machine-check' && dmaToPrivate !== 'poison') throw new TypeError(`@gmemlab/tdx: dmaToPrivate must be 'machine-check' or 'poison', not ${String(dmaToPrivate)}`);
  if (typeof pwMceErratum !== 'boolean') throw new TypeError('@gmemlab/tdx: pwMceErratum must be a boolean');
  // Connect implies no erratum, so its id does not repeat it.
  const parts = [variant, dmaToPrivate === 'poison' ? 'dma-poison' : undefined, pwMceErratum || variant === 'connect' ? undefined : 'no-erratum'].filter(Boolean);
  return Object.freeze({
    specificationVersion: 'v1',
    id: parts.length > 0 ? `tdx:${parts.join('-')}` : 'tdx',
    name: `${variant ? 'Intel TDX Connect' : 'Intel TDX'}${dmaToPrivate === 'poison' ? ' (DMA poisons)' : ''}${pwMceErratum || variant === 'connect' ? '' : ' (no PW_MCE erratum)'}`,
    // [X-h] TDX_PS_4K/2M/1G in the ABI; [X-a] KVM maps private memory at 4K only in the version cited.
    pageSizes: [PAGE_SIZE, PMD_SIZE, PUD_SIZE],
    conversionPolicy,
    deviceAccess: deviceAccess(dmaToPrivate),
    hostKernelAccess: hostKernelAccess(pwMceErratum),
    // [T1e] "Intel TDX has no lower level privilege protection table": a device must never reach a private page
    // through a host IOPTE, so such an IOPTE is an invariant violation (kernel-contract §9.5 I2).
    deviceMayReach: ({ attribute, vmType }) => vmType !== 'coco' || attribute === 'shared',
    // [T1g] The host-managed (T=0) IOMMU table only ever maps shared pages; with Connect, private DMA goes
    // through the S-EPT-backed T=1 table, which the host does not write [T1e].
    mapsPrivatePages: false,
    // [X-a] A page leaving the TD is removed from the S-EPT and cleared with MOVDIR64B (when the clear runs).
    // Shared -> private changes no hardware state: PAGE.AUG happens at the guest's fault.
    contentsOnConversion: ({ to }) => (to === 'shared' && pwMceErratum ? 'zero' : 'keep'),
    contentsOnRemoval: () => (pwMceErratum ? 'zero' : 'keep'),
    removalPipeline: removalPipeline(pwMceErratum),
    privateEntry,
    privateEntryAt: 'install',
    hardwarePrivateName: 'TD private page (PAGE.AUG into the S-EPT, accepted)',
    rules: tdxRules(variant === 'connect', dmaToPrivate, pwMceErratum),
  } satisfies ArchBackend);
}
