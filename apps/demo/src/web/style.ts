/**
 * The web view's look: the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), and
 * every state that matters also carries a pattern or a glyph, so no meaning rests on colour alone.
 */

export const COLOURS = {
  shared: '#56B4E9', // sky blue
  private: '#E69F00', // orange
  hardware: '#0072B2', // blue
  live: '#009E73', // bluish green
  reachesPrivate: '#CC79A7', // reddish purple
  stale: '#D55E00', // vermillion
  errno: '#F0E442', // yellow
  ink: '#1b1b1b',
  muted: '#6b6b6b',
  rule: '#d4d4d4',
  paper: '#ffffff',
  wash: '#f3f3f1',
} as const;

/**
 * One colour per verdict outcome (Okabe-Ito), each also with its own glyph (run/verdict.ts OUTCOME_TEXT), so
 * the outcome is told by shape as well as colour.
 */
export const OUTCOME_COLOURS = {
  safe: '#009E73', // bluish green
  contained: '#56B4E9', // sky blue
  'iommu-fault': '#E69F00', // orange
  'stale-reach': '#CC79A7', // reddish purple
  'host-crash': '#D55E00', // vermillion
} as const;

export const CSS = `
.verdict-block { margin: 8px 0 14px; }
table.verdict { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
table.verdict th, table.verdict td { border: 1px solid var(--rule); padding: 4px 8px; text-align: left; vertical-align: top; }
table.verdict.small { font-size: 12px; }
table.verdict .cost, table.verdict .where { color: var(--muted); font-size: 11.5px; }
.outcome .glyph { display: inline-block; width: 1.3em; text-align: center; font-weight: 700; border-radius: 3px; color: #000; }
${Object.entries(OUTCOME_COLOURS)
  .map(([o, c]) => `.outcome.o-${o} .glyph { background: ${c}; }`)
  .join('\n')}
${Object.entries(OUTCOME_COLOURS)
  .map(
    ([o, c]) =>
      `.cell.o-${o}:not(.k-errno):not(.k-exit):not(.k-host-down):not(.k-error) .glyph { background: ${c}; color: #000; }`,
  )
  .join('\n')}
.lane-head { display: flex; gap: 6px; align-items: flex-start; }
.lane-head button.collapse { padding: 0 5px; line-height: 1.3; }
.lane[data-collapsed="true"] { padding-bottom: 2px; }
.scrubber label.zoom { white-space: nowrap; font-size: 12.5px; }
.pagemap .zoom-note { color: var(--muted); }
.verdict-legend { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; font-size: 12.5px; }
:root { color-scheme: light; --ink: ${COLOURS.ink}; --muted: ${COLOURS.muted}; --rule: ${COLOURS.rule}; --wash: ${COLOURS.wash};
  --shared: ${COLOURS.shared}; --private: ${COLOURS.private}; --hardware: ${COLOURS.hardware}; --live: ${COLOURS.live};
  --reach: ${COLOURS.reachesPrivate}; --stale: ${COLOURS.stale}; --errno: ${COLOURS.errno}; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink); background: #fff; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 20px 48px; }
h1 { font-size: 22px; margin: 4px 0 6px; }
h2 { font-size: 18px; margin: 18px 0 4px; }
h3 { font-size: 14px; margin: 14px 0 6px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
p { margin: 4px 0 8px; max-width: 90ch; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
.intro { color: #333; }
.muted { color: var(--muted); }
.controls { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: flex-start; padding: 10px 12px; background: var(--wash); border: 1px solid var(--rule); border-radius: 6px; margin: 10px 0; }
.controls fieldset { border: 0; margin: 0; padding: 0; min-width: 160px; }
.controls legend { font-weight: 600; padding: 0; margin-bottom: 4px; }
.controls label { display: block; white-space: nowrap; }
.controls label.scenario { white-space: normal; max-width: 52ch; }
.controls .actions { align-self: center; display: flex; gap: 10px; align-items: center; }
button { font: inherit; cursor: pointer; border: 1px solid #888; background: #fff; border-radius: 4px; padding: 3px 10px; }
button.primary { background: var(--ink); color: #fff; border-color: var(--ink); padding: 5px 18px; font-weight: 600; }
button:disabled { opacity: .5; cursor: progress; }
button:focus-visible, input:focus-visible { outline: 3px solid var(--hardware); outline-offset: 1px; }
.status { min-height: 1.4em; }
.status.error { color: #a00; font-weight: 600; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 18px; padding: 8px 0; border-bottom: 1px solid var(--rule); margin-bottom: 6px; font-size: 12.5px; }
.legend .item { display: inline-flex; align-items: center; gap: 6px; }
.legend svg { border: 1px solid #999; }
.legend .group { font-weight: 600; margin-right: -8px; }
.summary { font-weight: 600; margin: 8px 0; }
.tabs { display: flex; flex-wrap: wrap; gap: 6px; margin: 10px 0 4px; }
.tabs button[aria-selected="true"] { background: var(--ink); color: #fff; border-color: var(--ink); }
.tabs .badge { margin-left: 6px; font-size: 11px; }
.scenario-head .source { font-size: 12.5px; color: var(--muted); }
.scrubber { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--rule); padding: 8px 0 6px; display: grid; grid-template-columns: auto 1fr auto; gap: 4px 10px; align-items: center; }
.scrubber input[type=range] { width: 100%; }
.scrubber .where { grid-column: 1 / -1; }
.scrubber .where .call { font-weight: 600; }
.grid { display: grid; grid-template-columns: 230px 1fr; column-gap: 12px; align-items: start; }
.colheads, .cells { display: grid; gap: 2px; }
.colheads { margin-top: 6px; }
.colhead { font-size: 11px; text-align: center; color: var(--muted); border-bottom: 3px solid transparent; cursor: pointer; padding-bottom: 1px; overflow: hidden; white-space: nowrap; }
.colhead.differs { color: var(--ink); font-weight: 700; border-bottom-color: var(--ink); }
.colhead.selected, .cell.selected { outline: 3px solid var(--ink); outline-offset: 0; }
.contract { margin: 14px 0 2px; font-weight: 600; font-size: 13px; border-top: 2px solid var(--ink); padding-top: 4px; }
.contract .muted { font-weight: 400; }
.lane { border: 1px solid var(--rule); border-radius: 6px; margin: 6px 0; padding: 6px 8px; }
.lane.crashed { border-color: var(--ink); border-width: 2px; }
.lane.failed { border-color: #a00; border-style: dashed; border-width: 2px; }
.lane-name { font-weight: 700; }
.lane-name .id { font-weight: 400; color: var(--muted); }
.counters { font-size: 12px; color: #333; display: flex; flex-wrap: wrap; gap: 2px 10px; margin-top: 2px; }
.counters b { font-variant-numeric: tabular-nums; }
.verdict.ok { color: ${COLOURS.live}; font-weight: 600; }
.verdict.bad { color: #a00; font-weight: 700; }
.cell { height: 26px; border: 1px solid #b9b9b9; border-radius: 3px; padding: 0; display: flex; align-items: center; justify-content: center; position: relative; font-size: 13px; font-weight: 700; background: #fff; min-width: 0; }
.cell.differs { box-shadow: inset 0 -4px 0 var(--ink); }
.cell.k-ok { background: #eef3ee; color: #7a8f7a; }
.cell.k-errno { background: var(--errno); color: #000; }
.cell.k-exit { background: var(--shared); color: #000; }
.cell.k-fault { background: var(--private); color: #000; }
.cell.k-stale { background: repeating-linear-gradient(135deg, var(--stale) 0 4px, #fff 4px 6px); color: #000; }
.cell.k-crash { background: #000; color: #fff; }
.cell.k-host-down { background: repeating-linear-gradient(135deg, #888 0 3px, #ddd 3px 6px); color: #000; }
.cell.k-error { background: #a00; color: #fff; }
.cell .glyph { border-radius: 2px; padding: 0 2px; line-height: 1.1; }
.cell.k-stale .glyph, .cell.k-host-down .glyph { background: #fff; }
.cell .violation { position: absolute; top: -1px; right: -1px; width: 0; height: 0; border-top: 11px solid var(--stale); border-left: 11px solid transparent; }
.cell.fail { border: 2px solid #a00; }
.cell.empty { background: transparent; border-style: dotted; }
.at-step { display: grid; grid-template-columns: 230px 1fr; column-gap: 12px; margin-top: 8px; }
.outcome { font-size: 15px; }
.outcome .label { font-weight: 700; }
.outcome .label.k-crash, .outcome .label.k-stale, .outcome .label.k-error { color: #a00; }
.outcome .expected { font-size: 12px; color: var(--muted); }
.effects, .violations { margin: 4px 0; padding-left: 16px; font-size: 12px; }
.violations li { color: #8a2a00; font-weight: 600; }
.crash-note { background: #000; color: #fff; padding: 3px 6px; border-radius: 3px; font-size: 12px; margin: 4px 0; }
.failure-note { color: #a00; font-size: 12px; font-weight: 600; }
.pagemaps { display: flex; flex-direction: column; gap: 8px; }
figure.pagemap { margin: 0; }
figure.pagemap figcaption { font-size: 12px; color: #333; margin-bottom: 2px; }
.pm { display: grid; grid-template-columns: 84px 1fr; column-gap: 6px; }
.pm .rows { display: grid; font-size: 11px; color: #333; text-align: right; }
.pm svg { width: 100%; display: block; background: var(--wash); }
.pm .axis { grid-column: 2; display: flex; justify-content: space-between; font-size: 10.5px; color: var(--muted); }
.nopages { font-size: 12px; color: var(--muted); }
.skipped { font-size: 12.5px; color: var(--muted); margin: 4px 0; }
.report-note { font-size: 12.5px; color: var(--muted); border: 1px solid var(--rule); background: var(--wash); padding: 6px 10px; border-radius: 6px; }
footer { margin-top: 28px; font-size: 12px; color: var(--muted); }
@media (max-width: 820px) { .grid, .at-step { grid-template-columns: 1fr; } }
`;
