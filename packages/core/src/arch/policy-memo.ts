/**
 * The conversionPolicy answers one conversion has asked, for a backend that declares what its answer depends on
 * (ArchBackend.conversionPolicyInputs): an area whose declared inputs equal those of an area already asked in the
 * same conversion gets that area's answer, already copied and checked by the door, instead of a new question. A
 * backend that declares nothing is asked once per area, as before (`declared` is false and nothing is kept).
 *
 * Only the inputs that differ between the areas of one conversion are compared: the area's fields and its
 * overlap. The conversion's own fields ('to', 'offset', 'length', 'contract') are the same for every area it
 * asks about, because the answers are kept for one conversion only, named by its request object (the one
 * GmemInode.convert hands every consumer). Kept in fields and reused arrays, so that a conversion allocates
 * nothing here (ARCHITECTURE.md: per-call bookkeeping in long-lived objects does not refill arrays).
 */
import {
  CONVERSION_POLICY_INPUTS,
  type ConsumerResponse,
  type ConversionPolicyInput,
  type DmaAreaInfo,
} from './backend.js';

/**
 * Distinct keys kept per conversion. An area whose key is not among them is asked (the spec allows more questions,
 * never fewer): a backend whose key names the area keeps none worth keeping past a few.
 */
const MAX_KEPT = 8;

export class ConversionPolicyMemo {
  /** Whether the backend declared its inputs; if not, nothing is kept and every area is asked. */
  readonly declared: boolean;
  /** The area fields the answer depends on. */
  private readonly areaFields: ReadonlyArray<keyof DmaAreaInfo>;
  private readonly byOverlapOffset: boolean;
  private readonly byOverlapLength: boolean;
  /** The request object of the conversion the kept answers belong to. */
  private conversion: object | undefined;
  private count = 0;
  private readonly areas: Array<Readonly<DmaAreaInfo> | undefined> = [];
  /** Each kept area's overlap with the conversion, in pages [start, end). */
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private readonly answers: ConsumerResponse[] = [];
  /** Whether the answer reads only the conversion's own fields: one answer for every area of a conversion. */
  readonly wide: boolean;

  constructor(inputs: readonly ConversionPolicyInput[] | undefined) {
    this.declared = inputs !== undefined;
    const fields: Array<keyof DmaAreaInfo> = [];
    for (const input of inputs ?? [])
      if (CONVERSION_POLICY_INPUTS[input] === 'area' && input.startsWith('area.'))
        fields.push(input.slice('area.'.length) as keyof DmaAreaInfo);
    this.areaFields = Object.freeze(fields);
    this.byOverlapOffset = inputs?.includes('overlapOffset') ?? false;
    this.byOverlapLength = inputs?.includes('overlapLength') ?? false;
    this.wide = this.declared && fields.length === 0 && !this.byOverlapOffset && !this.byOverlapLength;
  }

  /**
   * The answer for every area of `conversion`, once one area of it was asked, where the backend's answer reads only
   * the conversion's own fields; otherwise undefined.
   */
  wideAnswer(conversion: object): ConsumerResponse | undefined {
    return this.wide && conversion === this.conversion && this.count > 0 ? this.answers[0] : undefined;
  }

  /**
   * The answer kept in `conversion` for an area with the same declared inputs as `area` overlapping pages
   * [start, end), or undefined (and, for a conversion not seen last, forget the previous one's answers).
   */
  find(conversion: object, area: Readonly<DmaAreaInfo>, start: number, end: number): ConsumerResponse | undefined {
    if (conversion !== this.conversion) {
      this.forget();
      this.conversion = conversion;
      return undefined;
    }
    for (let i = 0; i < this.count; i++) if (this.sameInputs(i, area, start, end)) return this.answers[i];
    return undefined;
  }

  /** Keep the checked `answer` asked for `area` in `conversion` (the one `find` was last given). */
  keep(conversion: object, area: Readonly<DmaAreaInfo>, start: number, end: number, answer: ConsumerResponse): void {
    if (conversion !== this.conversion || this.count >= MAX_KEPT) return;
    const i = this.count++;
    this.areas[i] = area;
    this.starts[i] = start;
    this.ends[i] = end;
    this.answers[i] = answer;
  }

  private sameInputs(i: number, area: Readonly<DmaAreaInfo>, start: number, end: number): boolean {
    if (this.byOverlapOffset && this.starts[i] !== start) return false;
    if (this.byOverlapLength && this.ends[i]! - this.starts[i]! !== end - start) return false;
    const fields = this.areaFields;
    if (fields.length === 0) return true;
    const kept = this.areas[i]!;
    for (let f = 0; f < fields.length; f++) if (kept[fields[f]!] !== area[fields[f]!]) return false;
    return true;
  }

  private forget(): void {
    for (let i = 0; i < this.count; i++) this.areas[i] = undefined;
    this.count = 0;
  }
}
