/**
 * A device attached to an IOAS through a domain, doing DMA by IOVA. The model gives each IOAS one domain shared
 * by all its devices: the IOPTEs exist while at least one device is attached.
 */
import type { AccessResult, AccessVerdict } from '../access.js';
import { PAGE_SIZE } from '../constants.js';
import type { Kernel } from '../kernel.js';
import { frameStep } from '../arch/hardware.js';
import { asAsked, walkPages, type PageStep } from '../mm/page-walk.js';
import { parseAccessBytes, parseAccessLength, parseSafe } from '../util/args.js';
import type { IoasArea } from './area.js';

/**
 * The IOAS a device is attached to, as the device uses it: the area at an IOVA page, and detach. iommufd/ioas.ts's
 * Ioas implements it; the device names no Ioas type, so that iommufd/ has no import circle (the IOAS makes devices).
 */
export interface DeviceIoas {
  areaAt(iovaPage: number): IoasArea | undefined;
  detach(device: Device): void;
}

/**
 * The area an IOVA page falls in, as a tool reads it (the demo's runner finds which area and file page a DMA went
 * through): its label, first IOVA, the file page of its first page, and its file's inode number.
 */
export interface IovaArea {
  /** e.g. 'ioas:1/area:2', the owner named by an 'unsafe-iopte' violation. */
  readonly label: string;
  readonly iova: number;
  /** The file page index of the area's first page. */
  readonly first: number;
  readonly inode: { readonly ino: number };
}

/**
 * An IOVA with no live IOPTE (no area, no domain, revoked, privately unmapped, wrong permission): the DMA stops
 * there, not fatal, logged for the host. That is the model's reading (kernel-contract §5.1, "What a device meets
 * at an IOVA"): no source here says what each IOMMU does on a translation fault, or whom it reports it to.
 */
function iommuFault(mechanism: string): Extract<AccessVerdict, { allow: false }> {
  return { allow: false, fault: 'iommu-fault', fatal: false, logged: true, mechanism };
}

export class Device {
  private attached = true;

  /** @internal Made by the model (the call named in the class comment), never by a user: it takes the Kernel. */
  constructor(
    private readonly kernel: Kernel,
    private readonly owner: DeviceIoas,
    readonly name: string,
  ) {}

  /** The IOAS the device is attached to, as a tool reads it: the area an IOVA page falls in. */
  get ioas(): { areaAt(iovaPage: number): IovaArea | undefined } {
    return this.owner;
  }

  get isAttached(): boolean {
    return this.attached;
  }

  /** Detach from the IOAS; the last device out takes the domain and its IOPTEs with it. */
  detach(): void {
    this.kernel.checkAlive('detach device');
    if (!this.attached) return;
    this.attached = false;
    this.owner.detach(this);
  }

  /** DMA read of `length` bytes (at most MAX_RW_COUNT) at `iova`. */
  dmaRead(iova: number | bigint, length: number | bigint): AccessResult {
    const op = 'DMA read';
    this.kernel.checkAlive(op);
    return this.dma(parseSafe(op, 'iova', iova), parseAccessLength(op, 'length', length), undefined);
  }

  /** DMA write of `data` (at most MAX_RW_COUNT bytes) at `iova`. */
  dmaWrite(iova: number | bigint, data: Uint8Array): AccessResult {
    const op = 'DMA write';
    this.kernel.checkAlive(op);
    const at = parseSafe(op, 'iova', iova);
    return this.dma(at, parseAccessBytes(op, 'data', data).length, data);
  }

  private dma(iova: number, length: number, data: Uint8Array | undefined): AccessResult {
    this.kernel.checkAlive(data ? 'DMA write' : 'DMA read');
    // translate changes nothing (the IOMMU walk and the backend's verdict): every page is asked before a byte moves.
    return walkPages(
      this.kernel,
      { by: 'device', via: `device:${this.name}` },
      iova,
      length,
      data,
      (page, write) => this.translate(page, write),
      asAsked,
    );
  }

  /** One IOVA page through the IOMMU: the pfn it reaches, or the fault. */
  private translate(iovaPage: number, write: boolean): PageStep {
    if (!this.attached) return iommuFault('device detached: blocking domain');
    const area = this.owner.areaAt(iovaPage);
    if (!area) return iommuFault('IO page fault: no IOPTE at this IOVA');
    if (write ? !area.writable : !area.readable)
      return iommuFault(`IO page fault: IOPTE is not ${write ? 'writable' : 'readable'}`);
    const page = iovaPage - area.iova / PAGE_SIZE;
    if (area.revoked.has(page)) return iommuFault('IO page fault: IOPTE revoked by guest_memfd');
    const pfn = area.ioptes.get(page);
    if (pfn === undefined && area.unmappedPrivate.has(page))
      return iommuFault('IO page fault: IOPTE unmapped by guest_memfd while the page is private (mirror)');
    if (pfn === undefined) return iommuFault('IO page fault: page not mapped in the domain');
    // The hardware checks the frame the IOPTE reaches, whoever owns it now (a stale IOPTE may reach another
    // VM's private page once the frame was reused).
    return frameStep(this.kernel, 'device', write ? 'DMA write' : 'DMA read', pfn, write, !area.isLive(page, pfn));
  }
}
