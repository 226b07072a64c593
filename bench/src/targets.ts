/** The targets of issues 11 and 19, judged on the rows of one run. A missed target is reported, never an error. */
import type { Row } from './rows.js';

export interface Verdict {
  target: string;
  status: 'met' | 'MISSED' | 'not measured';
  detail: string;
}

const fmt = (x: number) => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(2));

/** Derived rows: how the cost of a conversion grows with the file size and with the number of areas. */
export function growthRows(rows: readonly Row[]): Row[] {
  const rate = (name: string) => rows.find((r) => r.name === name)?.value ?? null;
  const out: Row[] = [];
  for (const backend of ['tdx', 'sev-snp']) {
    for (const design of ['', ' mirror']) {
      const b = `${backend}${design}`;
      const pairs: Array<[string, string, string]> = [
        [`conversion cost growth 1GiB to 1TiB ${b}`, `conversions 1GiB ${b}`, `conversions 1TiB ${b}`],
        [
          `conversion cost growth 1GiB to 1TiB ${b} 1 area`,
          `conversions 1GiB ${b} 1 area`,
          `conversions 1TiB ${b} 1 area`,
        ],
        [`conversion cost growth 1 to 10,000 areas 1GiB ${b}`, `conversions 1GiB ${b} 1 area`, `conversions 1GiB ${b}`],
        [`conversion cost growth 1 to 10,000 areas 1TiB ${b}`, `conversions 1TiB ${b} 1 area`, `conversions 1TiB ${b}`],
      ];
      for (const [name, small, large] of pairs) {
        const a = rate(small);
        const l = rate(large);
        // Cost per conversion is 1/rate: growth = rate(small) / rate(large).
        if (a !== null && l !== null)
          out.push({
            name,
            value: Math.round((a / l) * 100) / 100,
            unit: 'x',
            note: `${fmt(a)} -> ${fmt(l)} conversions/s`,
          });
      }
    }
  }
  return out;
}

export function judge(rows: readonly Row[]): Verdict[] {
  const get = (name: string) => rows.find((r) => r.name === name);
  const verdicts: Verdict[] = [];
  const atLeast = (target: string, row: Row | undefined, field: 'value' | 'ratio', bound: number, unit: string) => {
    const v = row?.[field];
    if (v === undefined || v === null) verdicts.push({ target, status: 'not measured', detail: row?.note ?? 'no row' });
    else if (v >= bound) verdicts.push({ target, status: 'met', detail: `${fmt(v)} ${unit}` });
    else
      verdicts.push({
        target,
        status: 'MISSED',
        detail: `${fmt(v)} ${unit}: ${fmt(bound / v)}x short of ${fmt(bound)}`,
      });
  };
  const below = (target: string, row: Row | undefined, bound: number, unit: string) => {
    const v = row?.value;
    if (v === undefined || v === null) verdicts.push({ target, status: 'not measured', detail: 'no row' });
    else if (v < bound) verdicts.push({ target, status: 'met', detail: `${fmt(v)} ${unit}` });
    else
      verdicts.push({
        target,
        status: 'MISSED',
        detail: `${fmt(v)} ${unit}, ${fmt(v - bound)} ${unit} over ${fmt(bound)}`,
      });
  };
  const cases = ['1GiB', '1GiB 1 area', '1TiB', '1TiB 1 area'];
  const caseName = (size: string, b: string) =>
    size.endsWith('1 area') ? `conversions ${size.replace(' 1 area', '')} ${b} 1 area` : `conversions ${size} ${b}`;
  for (const design of ['', ' mirror']) {
    for (const backend of ['tdx', 'sev-snp']) {
      const b = `${backend}${design}`;
      const label = `${backend}, ${design ? 'mirror' : 'gmem-registry'}`;
      for (const size of cases)
        atLeast(`>= 1.0x the range-notify bitmap, ${size}, ${label}`, get(caseName(size, b)), 'ratio', 1, 'x');
      for (const size of cases)
        atLeast(
          `>= 0.5x the physical floor, ${size}, ${label}`,
          get(`${caseName(size, b)} (vs physical floor)`),
          'ratio',
          0.5,
          'x',
        );
      atLeast(
        `>= 1,000,000 conversions/s, 1 TiB, 10,000 areas, ${label}`,
        get(`conversions 1TiB ${b}`),
        'value',
        1e6,
        'conversions/s',
      );
      below(
        `cost grows < 1.5x from 1 GiB to 1 TiB (1 area), ${label}`,
        get(`conversion cost growth 1GiB to 1TiB ${b} 1 area`),
        1.5,
        'x',
      );
      below(
        `cost grows < 1.5x from 1 GiB to 1 TiB (10,000 areas), ${label}`,
        get(`conversion cost growth 1GiB to 1TiB ${b}`),
        1.5,
        'x',
      );
      below(
        `cost grows < 1.5x from 1 to 10,000 areas (1 GiB), ${label}`,
        get(`conversion cost growth 1 to 10,000 areas 1GiB ${b}`),
        1.5,
        'x',
      );
      below(
        `cost grows < 1.5x from 1 to 10,000 areas (1 TiB), ${label}`,
        get(`conversion cost growth 1 to 10,000 areas 1TiB ${b}`),
        1.5,
        'x',
      );
      below(
        `resident memory < 150 MB, benchmark 1 at 1 TiB, ${label}`,
        get(`resident memory conversions 1TiB ${b}`),
        150,
        'MB',
      );
    }
  }
  atLeast('property tests >= 100,000 calls/s', get('property tests'), 'value', 1e5, 'calls/s');
  atLeast('explorer >= 200,000 states/s per core', get('explorer states/s (default world)'), 'value', 2e5, 'states/s');
  return verdicts;
}
