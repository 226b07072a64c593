/**
 * The html report: one self-contained file (no network, no CDN): the comparison's JSON and the web view's
 * script inlined, so it opens anywhere and shows the same lanes and page maps as `gmemlab serve`.
 */
import type { Comparison } from '../run/types.js';
import { renderCompareMarkdown } from './markdown.js';

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderCompareHtml(comparison: Comparison): string {
  // Placeholder layout until the web view lands: the markdown report in a <pre>, with the data embedded.
  const data = JSON.stringify(comparison).replace(/</g, '\\u003c');
  return `<!doctype html><html lang="en"><meta charset="utf-8"><title>gmemlab report</title><pre>${escape(renderCompareMarkdown(comparison))}</pre><script type="application/json" id="gmemlab-data">${data}</script></html>`;
}

export const renderRunHtml = renderCompareHtml;
