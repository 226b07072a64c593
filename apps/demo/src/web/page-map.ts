/**
 * One guest_memfd at one step, drawn as runs scaled to the file's page count (a file may be 1 TiB: runs are drawn,
 * never pages). Rows: what the file holds (attribute, holes, pins, poison), what the hardware holds as private,
 * then each translation that reaches the file: stage-2, host mmap PTEs and IOPTEs, live or stale (the same test as
 * the invariants, kernel-contract §9.5), and IOPTEs guest_memfd revoked.
 */
import { formatSize } from '../util/size.js';
import type { PageMap } from '../run/types.js';
import { h, s } from './dom.js';
import { complement, intersect, runsText } from './model.js';
import { COLOURS } from './style.js';

const WIDTH = 1000;
const ROW = 14;
const GAP = 4;
const PAGE = 4096;

/** Pattern ids, defined once per document by patternDefs(). */
const PATTERN = { hole: 'gm-hole', stale: 'gm-stale', reach: 'gm-reach', revoked: 'gm-revoked' } as const;

/** The shared <defs>: an invisible svg holding the patterns every page map and the legend refer to. */
export function patternDefs(): SVGSVGElement {
  const hatch = (id: string, colour: string, ground: string, width: number) =>
    s(
      'pattern',
      { id, patternUnits: 'userSpaceOnUse', width: 6, height: 6, patternTransform: 'rotate(45)' },
      s('rect', { width: 6, height: 6, fill: ground }),
      s('rect', { width, height: 6, fill: colour }),
    );
  return s(
    'svg',
    { width: 0, height: 0, 'aria-hidden': 'true', style: 'position:absolute' },
    s(
      'defs',
      {},
      hatch(PATTERN.hole, '#bdbdbd', '#ffffff', 1.5),
      hatch(PATTERN.stale, '#000000', COLOURS.stale, 2),
      hatch(PATTERN.reach, '#ffffff', COLOURS.reachesPrivate, 1.5),
      hatch(PATTERN.revoked, '#9a9a9a', '#ffffff', 1),
    ),
  );
}

/** Fills for each state, shared with the legend. */
export const FILL = {
  shared: COLOURS.shared,
  private: COLOURS.private,
  hole: `url(#${PATTERN.hole})`,
  hardware: COLOURS.hardware,
  live: COLOURS.live,
  stale: `url(#${PATTERN.stale})`,
  reach: `url(#${PATTERN.reach})`,
  revoked: `url(#${PATTERN.revoked})`,
  pinned: '#000000',
  poisoned: COLOURS.reachesPrivate,
} as const;

const pages = (n: number) => `${n.toLocaleString('en-US')} page${n === 1 ? '' : 's'}`;
const range = (start: number, end: number) =>
  `pages ${start.toLocaleString('en-US')}–${end.toLocaleString('en-US')} (offset ${formatSize(start * PAGE)}, ${formatSize((end - start) * PAGE)})`;

interface Bar {
  start: number;
  end: number;
  fill: string;
  title: string;
  /** Part of a row's height, from the top (default: the whole row). */
  y?: number;
  height?: number;
  outline?: boolean;
}

interface Row {
  name: string;
  label: string;
  bars: Bar[];
  /** Compact runs for data attributes (tests and the curious). */
  runs: string;
}

function rowsOf(map: PageMap): Row[] {
  const n = map.npages;
  const privateRuns = map.attribute.filter(([, , v]) => v === 'private');
  const holes = complement(map.populated, n);
  const file: Bar[] = [
    ...map.attribute.map(([start, end, v]) => ({
      start,
      end,
      fill: v === 'private' ? FILL.private : FILL.shared,
      title: `${v}: ${range(start, end)}`,
    })),
    ...holes.map(([start, end]) => ({
      start,
      end,
      fill: FILL.hole,
      title: `hole (no page in the file): ${range(start, end)}`,
      y: 0,
      height: ROW,
    })),
    ...map.pinned.map(([start, end]) => ({
      start,
      end,
      fill: FILL.pinned,
      title: `long-term pinned: ${range(start, end)}`,
      y: ROW - 4,
      height: 4,
    })),
    ...map.poisoned.map(([start, end]) => ({
      start,
      end,
      fill: FILL.poisoned,
      title: `hwpoison: ${range(start, end)}`,
      y: 0,
      height: 4,
    })),
  ];
  const hardware = map.hardware.map(([start, end]) => ({
    start,
    end,
    fill: FILL.hardware,
    title: `hardware-private: ${range(start, end)}`,
  }));

  const stage2: Bar[] = [];
  for (const [start, end, v] of map.stage2) {
    if (v.state === 'stale')
      stage2.push({
        start,
        end,
        fill: FILL.stale,
        title: `STALE stage-2 (${v.side}) of ${v.owner}: ${range(start, end)}`,
        outline: true,
      });
    else
      stage2.push({
        start,
        end,
        fill: v.side === 'private' ? FILL.private : FILL.shared,
        title: `stage-2 ${v.side} of ${v.owner}: ${range(start, end)}`,
      });
  }

  /** A translation layer: live entries, live entries that reach private pages, stale and revoked ones. */
  const layer = (runs: PageMap['hostPte'] | PageMap['iopte'], what: string): Bar[] => {
    const out: Bar[] = [];
    const late: Bar[] = [];
    for (const [start, end, v] of runs) {
      if (v.state === 'revoked')
        out.push({
          start,
          end,
          fill: FILL.revoked,
          title: `${what} of ${v.owner} revoked by guest_memfd: ${range(start, end)}`,
        });
      else if (v.state === 'stale')
        late.push({
          start,
          end,
          fill: FILL.stale,
          title: `STALE ${what} of ${v.owner} (the file no longer holds that frame): ${range(start, end)}`,
          outline: true,
        });
      else {
        out.push({ start, end, fill: FILL.live, title: `${what} of ${v.owner}: ${range(start, end)}` });
        for (const [a, b] of intersect([[start, end]], privateRuns))
          late.push({
            start: a,
            end: b,
            fill: FILL.reach,
            title: `${what} of ${v.owner} reaches PRIVATE pages: ${range(a, b)}`,
            outline: true,
          });
      }
    }
    // Drawn last, so that a thin stale or unsafe run is never hidden under a wide live one.
    return [...out, ...late];
  };

  const rows: Row[] = [
    { name: 'file', label: 'file', bars: file, runs: `${runsText(map.attribute)};holes=${runsText(holes)}` },
    { name: 'hardware', label: 'hw-private', bars: hardware, runs: runsText(map.hardware) },
    {
      name: 'stage2',
      label: 'stage-2',
      bars: stage2,
      runs: runsText(map.stage2.map(([a, b, v]) => [a, b, `${v.side}|${v.state}`])),
    },
    {
      name: 'hostPte',
      label: 'host mmap',
      bars: layer(map.hostPte, 'host PTE'),
      runs: runsText(map.hostPte.map(([a, b, v]) => [a, b, v.state])),
    },
    {
      name: 'iopte',
      label: 'IOPTE',
      bars: layer(map.iopte, 'IOPTE'),
      runs: runsText(map.iopte.map(([a, b, v]) => [a, b, v.state])),
    },
  ];
  // Today's path (kernel-contract §4.4): the VMM's own shared memory behind the memslot, and the pages allocated on
  // both sides until the VMM discards one, outlined.
  if (map.sharedBacking) {
    const shared: Bar[] = [
      ...map.sharedBacking.map(([start, end, v]) => ({
        start,
        end,
        fill: FILL.shared,
        title: `shared side populated (${v.owner}): ${range(start, end)}`,
      })),
      ...(map.doubleAllocated ?? []).map(([start, end]) => ({
        start,
        end,
        fill: FILL.hardware,
        title: `allocated twice (guest_memfd and the shared side): ${range(start, end)}`,
        outline: true,
      })),
    ];
    rows.push({
      name: 'sharedSide',
      label: 'shared side',
      bars: shared,
      runs: `${runsText(map.sharedBacking.map(([a, b]) => [a, b, 'populated']))};double=${runsText(map.doubleAllocated ?? [])}`,
    });
  }
  return rows;
}

/**
 * The figure for one guest_memfd; with `window` ([start, end) in pages), only that part of the file is drawn (runs
 * clipped to it, the axis labelled with its offsets); the caption says so.
 */
export function pageMapFigure(map: PageMap, window?: readonly [number, number]): HTMLElement {
  const rows = rowsOf(map);
  const [v0, v1] =
    window && window[1] > window[0] ? [Math.max(0, window[0]), Math.min(map.npages, window[1])] : [0, map.npages];
  const n = Math.max(1, v1 - v0);
  const zoomed = v0 > 0 || v1 < map.npages;
  const height = rows.length * (ROW + GAP) - GAP;
  const x = (page: number) => ((Math.min(v1, Math.max(v0, page)) - v0) / n) * WIDTH;
  // A run is at least ~1.5 px wide, so a single stale page of a 1 TiB file still shows.
  const w = (start: number, end: number) => Math.max(1.6, x(end) - x(start));
  const inView = (b: Bar) => b.end > v0 && b.start < v1;
  const svg = s(
    'svg',
    {
      viewBox: `0 0 ${WIDTH} ${height}`,
      preserveAspectRatio: 'none',
      height,
      role: 'img',
      'aria-label': `page map of guest_memfd ino ${map.ino}`,
    },
    rows.map((row, i) =>
      s(
        'g',
        { 'data-row': row.name, 'data-runs': row.runs, transform: `translate(0 ${i * (ROW + GAP)})` },
        row.bars.filter(inView).map((b) =>
          s(
            'rect',
            {
              x: x(b.start),
              y: b.y ?? 0,
              width: w(b.start, b.end),
              height: b.height ?? ROW,
              fill: b.fill,
              ...(b.outline ? { stroke: '#000', 'stroke-width': 1, 'vector-effect': 'non-scaling-stroke' } : {}),
            },
            s('title', {}, b.title),
          ),
        ),
      ),
    ),
  );
  const stale = [...map.stage2, ...map.hostPte, ...map.iopte]
    .filter(([, , v]) => v.state === 'stale')
    .reduce((k, [a, b]) => k + (b - a), 0);
  const privateRuns = map.attribute.filter(([, , v]) => v === 'private');
  const reachable = (runs: PageMap['iopte'] | PageMap['hostPte']) =>
    intersect(
      runs.filter(([, , v]) => v.state === 'live'),
      privateRuns,
    ).reduce((k, [a, b]) => k + (b - a), 0);
  const deviceReach = reachable(map.iopte);
  const hostReach = reachable(map.hostPte);
  const pinned = map.pinned.reduce((k, [a, b]) => k + (b - a), 0);
  const poisoned = map.poisoned.reduce((k, [a, b]) => k + (b - a), 0);
  const twice = (map.doubleAllocated ?? []).reduce((k, [a, b]) => k + (b - a), 0);
  return h(
    'figure',
    {
      class: `pagemap${zoomed ? ' zoomed' : ''}`,
      'data-ino': map.ino,
      'data-vm': map.vm,
      'data-npages': map.npages,
      'data-view-start': v0,
      'data-view-end': v1,
      'data-stale': stale,
      'data-iopte-private': deviceReach,
    },
    h(
      'figcaption',
      {},
      h('b', {}, `guest_memfd ino ${map.ino}`),
      ` of ${map.vm} · ${formatSize(map.npages * PAGE)} (${pages(map.npages)})`,
      zoomed
        ? h(
            'span',
            { class: 'zoom-note' },
            ` · showing offset ${formatSize(v0 * PAGE)}–${formatSize(v1 * PAGE)}, where the scenario acts`,
          )
        : null,
      stale > 0 ? h('b', { style: `color:${COLOURS.stale}` }, ` · ${pages(stale)} reached by stale entries`) : null,
      deviceReach > 0 ? h('b', {}, ` · ${pages(deviceReach)} private yet mapped by IOPTEs`) : null,
      hostReach > 0 ? h('b', {}, ` · ${pages(hostReach)} private yet mapped by host PTEs`) : null,
      pinned > 0 ? ` · ${pages(pinned)} pinned` : null,
      poisoned > 0 ? ` · ${pages(poisoned)} poisoned` : null,
      twice > 0 ? h('b', {}, ` · ${pages(twice)} allocated twice`) : null,
    ),
    h(
      'div',
      { class: 'pm' },
      h(
        'div',
        {
          class: 'rows',
          style: `grid-template-rows: repeat(${rows.length}, ${ROW}px); row-gap: ${GAP}px; line-height: ${ROW}px`,
        },
        rows.map((r) => h('span', {}, r.label)),
      ),
      svg,
      h(
        'div',
        { class: 'axis' },
        h('span', {}, v0 === 0 ? '0' : formatSize(v0 * PAGE)),
        h('span', {}, formatSize(Math.floor((v0 + v1) / 2) * PAGE)),
        h('span', {}, formatSize(v1 * PAGE)),
      ),
    ),
  );
}

/** A legend swatch. */
export function swatch(fill: string, outline = false): SVGSVGElement {
  return s(
    'svg',
    { width: 22, height: 12, viewBox: '0 0 22 12' },
    s('rect', { width: 22, height: 12, fill, ...(outline ? { stroke: '#000', 'stroke-width': 1 } : {}) }),
  );
}
