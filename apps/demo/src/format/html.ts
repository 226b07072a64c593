/**
 * The web view's page. `gmemlab serve` sends it with the script by URL; the html report is one self-contained file
 * (no network, no CDN, no server): the same script inlined and the comparison embedded as JSON, so it opens
 * straight into the result. Without JavaScript the report still shows the markdown matrix.
 */
import type { Comparison } from '../run/types.js';
import { webBundle } from '../web-bundle.js';
import { renderCompareMarkdown, shownFile } from './markdown.js';

/** The comparison with scenario files by base name: no path of the user's machine in a report unless asked. */
function withShownFiles(comparison: Comparison, fullPaths: boolean): Comparison {
  if (fullPaths) return comparison;
  return {
    ...comparison,
    scenarios: comparison.scenarios.map((s) => ({ ...s, file: shownFile(s.file) })),
    runs: comparison.runs.map((r) => ({ ...r, scenario: { ...r.scenario, file: shownFile(r.scenario.file) } })),
  };
}

const escapeText = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * JSON inside <script type="application/json">: no '<' at all, so neither '</script>' nor '<!--' can end or
 * change the element (the HTML standard's "restrictions for contents of script elements").
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** A classic script's text made safe to inline: '</script' and '<!--' cannot appear inside the element. */
export function scriptForInline(code: string): string {
  return code.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
}

/** Content-Security-Policy of the report: inline script and styles only; nothing may be fetched. */
export const REPORT_CSP =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

const head = (title: string, extra = '') =>
  `<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n${extra}<title>${escapeText(title)}</title>\n</head>\n`;

/** The page `gmemlab serve` answers GET / with: the script comes from /app.js, the data from /api. */
export function servedPageHtml(): string {
  return `${head('gmemlab')}<body>\n<div id="app"><p>Loading the gmemlab web view… (it needs JavaScript)</p></div>\n<script src="/app.js"></script>\n</body>\n</html>\n`;
}

export function renderCompareHtml(original: Comparison, options: { fullPaths?: boolean } = {}): string {
  const comparison = withShownFiles(original, options.fullPaths === true);
  const title =
    comparison.scenarios.length === 1
      ? `gmemlab: ${comparison.scenarios[0]!.title}`
      : `gmemlab: ${comparison.scenarios.length} scenarios compared`;
  return (
    `${head(title, `<meta http-equiv="Content-Security-Policy" content="${REPORT_CSP}">\n`)}<body>\n` +
    `<div id="app"><noscript><pre>${escapeText(renderCompareMarkdown(comparison))}</pre></noscript></div>\n` +
    `<script type="application/json" id="gmemlab-data">${jsonForScript(comparison)}</script>\n` +
    `<script>${scriptForInline(webBundle())}</script>\n</body>\n</html>\n`
  );
}

/** `gmemlab run --format html`: the same view (lanes of one scenario). */
export const renderRunHtml = renderCompareHtml;
