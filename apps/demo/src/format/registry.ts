/**
 * The output formats of `compare` and `run`, by name: each renders a comparison as the whole report (`compare`)
 * or as the timeline of each run (`run`). A new format is one entry here and one name in FORMATS.
 */
import type { Comparison } from '../run/types.js';
import type { Format } from './common.js';
import { renderCompareHtml, renderRunHtml } from './html.js';
import { renderCompareMarkdown, renderRunMarkdown } from './markdown.js';
import { renderCompareText, renderRunText, styleFor } from './text.js';

export interface RenderOptions {
  /** text and table: each scenario's step table after the verdict (the other formats always have them). */
  details: boolean;
  /** markdown and html: scenario files by their full path, not their name only. */
  fullPaths: boolean;
}

export interface Renderer {
  compare(comparison: Comparison, options: RenderOptions): string;
  run(comparison: Comparison, options: RenderOptions): string;
}

const json: Renderer = {
  compare: (comparison) => JSON.stringify(comparison, null, 2),
  run: (comparison) => JSON.stringify(comparison, null, 2),
};

/** Text and table differ only in style: a table on a terminal is coloured (NO_COLOR aside). */
const text = (format: 'table' | 'text'): Renderer => ({
  compare: (comparison, { details }) => renderCompareText(comparison, styleFor(process.stdout, format), { details }),
  run: (comparison) => renderRunText(comparison.runs, styleFor(process.stdout, format), comparison),
});

export const RENDERERS: Readonly<Record<Format, Renderer>> = {
  table: text('table'),
  text: text('text'),
  markdown: {
    compare: (comparison, { fullPaths }) => renderCompareMarkdown(comparison, { fullPaths }),
    run: (comparison) => renderRunMarkdown(comparison.runs),
  },
  html: {
    compare: (comparison, { fullPaths }) => renderCompareHtml(comparison, { fullPaths }),
    run: (comparison, { fullPaths }) => renderRunHtml(comparison, { fullPaths }),
  },
  json,
};
