/**
 * The web view in a real browser: Debian's chromium driven by playwright-core (its version in apps/demo/package.json). The BUILT
 * `gmemlab serve` runs on a free loopback port; the page runs a comparison; its lanes must show the outcome labels
 * `gmemlab compare --format json` reports for the same comparison, with violations and the crash marked, and the
 * page map must follow the scrubber. The `--format html` report, opened from a file:// URL with no server, must
 * show the same. Screenshots go to apps/demo/test-results/.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Comparison, PageMap, RunResult } from '../src/run/types.js';
import { focusOf, intersect, kindOf, runsText, scenarioViews } from '../src/web/model.js';
import { OUTCOME_TEXT } from '../src/run/verdict.js';
import { cli, cliCompare, FIXTURES, PACKAGE, requireBuild, RESULTS, serve, type Served } from './support.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const inCi = process.env.CI === 'true' || process.env.CI === '1';

const FIXTURE = join(FIXTURES, 'registry-then-punch.yaml');
const SCENARIOS = ['rfc-as-posted', 'registry-then-punch'];
const ARCHS = ['tdx', 'sev-snp'];
const CONTRACTS = ['vmm-driven', 'gmem-registry'];
const COMPARE_ARGS = ['rfc-as-posted', FIXTURE, '--arch', ARCHS.join(','), '--contract', CONTRACTS.join(',')];

/** The lanes of every scenario show the runs of `expected`: same lanes, same steps, same labels, same marks. */
async function expectLanesAsCli(page: Page, expected: Comparison): Promise<void> {
  for (const info of expected.scenarios) {
    const tab = page.locator(`button[data-tab="${info.id}"]`);
    if ((await tab.count()) > 0) await tab.click();
    const section = page.locator(`section[data-scenario="${info.id}"]`);
    await expect.poll(() => section.isVisible()).toBe(true);
    const runs = expected.runs.filter((r) => r.scenario.id === info.id && !r.skipped);
    const lanes = await section
      .locator('[data-lane]')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-lane')));
    expect(lanes.sort()).toEqual(runs.map((r) => `${r.arch}/${r.contract}`).sort());
    for (const run of runs) {
      const lane = section.locator(`[data-lane="${run.arch}/${run.contract}"]`);
      const cells = await lane.locator('.cells [data-step]').evaluateAll((els) =>
        els.map((e) => ({
          step: e.getAttribute('data-step'),
          label: e.getAttribute('data-label'),
          violations: Number(e.getAttribute('data-violations')),
          marked: e.querySelector('.violation') !== null,
          crash: e.getAttribute('data-crash') === 'true',
          verdict: e.getAttribute('data-verdict'),
        })),
      );
      expect(cells, `${info.id} ${run.arch}/${run.contract}`).toEqual(
        run.steps.map((s) => ({
          step: s.path,
          label: s.label,
          violations: s.violations.length,
          marked: s.violations.length > 0,
          crash: s.crash !== undefined,
          verdict: s.verdict,
        })),
      );
      expect(await lane.getAttribute('data-crashed')).toBe(run.crashed ? 'true' : null);
      expect(Number(await lane.getAttribute('data-violations'))).toBe(
        run.steps.reduce((n, s) => n + s.violations.length, 0),
      );
    }
  }
}

/** The first run with a crash and a violation: the RFC's argument on one lane. */
function crashingRun(expected: Comparison): RunResult {
  const run = expected.runs.find(
    (r) => r.scenario.id === 'rfc-as-posted' && r.crashed && r.steps.some((s) => s.violations.length > 0),
  );
  if (!run)
    throw new Error(
      'rfc-as-posted no longer crashes a host with a violation on the way: the browser test needs a new anchor',
    );
  return run;
}

const fileRuns = (pages: PageMap[] | undefined) => JSON.stringify(pages?.map((p) => p.attribute));

/** The column where a guest_memfd's attribute runs first change (the conversion). */
function conversionColumn(run: RunResult): number {
  let last: string | undefined;
  for (let i = 0; i < run.steps.length; i++) {
    const pages = run.steps[i]!.pages;
    if (!pages || pages.length === 0) continue;
    const now = fileRuns(pages);
    if (last !== undefined && now !== last && i > 0) return i;
    last = now;
  }
  throw new Error(`${run.arch}/${run.contract}: no step changes a page map's attributes`);
}

async function scrubberAt(page: Page, scenario: string, column: number): Promise<void> {
  const range = page.locator(`section[data-scenario="${scenario}"] input[data-scrubber]`);
  await range.evaluate((el, value) => {
    const input = el as HTMLInputElement;
    input.value = String(value);
    input.dispatchEvent(new Event('input', { bubbles: true }));
  }, column);
}

async function laneAtStep(
  page: Page,
  scenario: string,
  lane: string,
): Promise<{ step: string | null; label: string | null; file: string[]; iopte: string[] }> {
  const at = page.locator(`section[data-scenario="${scenario}"] [data-lane="${lane}"] .at-step`);
  return {
    step: await at.getAttribute('data-at-step'),
    label: await at.getAttribute('data-label'),
    file: await at
      .locator('figure.pagemap g[data-row="file"]')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-runs') ?? '')),
    iopte: await at
      .locator('figure.pagemap g[data-row="iopte"]')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-runs') ?? '')),
  };
}

/** Scrub across the conversion on the crashing lane: with the range input, then the arrow keys and the buttons. */
async function expectScrubbing(page: Page, expected: Comparison): Promise<void> {
  const run = crashingRun(expected);
  const key = `${run.arch}/${run.contract}`;
  await page.locator('button[data-tab="rfc-as-posted"]').click();
  const at = conversionColumn(run);
  await scrubberAt(page, 'rfc-as-posted', at - 1);
  const before = await laneAtStep(page, 'rfc-as-posted', key);
  expect(before.step).toBe(run.steps[at - 1]!.path);
  expect(before.file.length).toBeGreaterThan(0);

  // The keyboard moves the selection when the focus is on the page (not in a field).
  await page.locator('h1').click();
  await page.keyboard.press('ArrowRight');
  const after = await laneAtStep(page, 'rfc-as-posted', key);
  expect(after.step).toBe(run.steps[at]!.path);
  expect(after.label).toBe(run.steps[at]!.label);
  expect(after.file).not.toEqual(before.file);
  expect(after.file).toEqual(
    run.steps[at]!.pages!.map((p) =>
      expect.stringContaining(`${p.attribute.map(([a, b, v]) => `${a}-${b}:${v}`).join(',')};`),
    ),
  );

  // The RFC's risk, as the page shows it: private pages the device can still reach through live IOPTEs.
  const reachable = run.steps[at]!.pages!.map((p) =>
    intersect(
      p.iopte.filter(([, , v]) => v.state === 'live'),
      p.attribute.filter(([, , v]) => v === 'private'),
    ).reduce((n, [a, b]) => n + b - a, 0),
  );
  expect(reachable.some((n) => n > 0)).toBe(true);
  const figures = page.locator(`section[data-scenario="rfc-as-posted"] [data-lane="${key}"] .at-step figure.pagemap`);
  expect(await figures.evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-iopte-private'))))).toEqual(
    reachable,
  );

  await page.keyboard.press('ArrowLeft');
  expect((await laneAtStep(page, 'rfc-as-posted', key)).file).toEqual(before.file);
  await page.locator('section[data-scenario="rfc-as-posted"] button[data-action="next"]').click();
  expect((await laneAtStep(page, 'rfc-as-posted', key)).step).toBe(run.steps[at]!.path);

  // The crash step: the cell, the lane and the step's detail all say so.
  const crashAt = run.steps.findIndex((s) => s.crash);
  await scrubberAt(page, 'rfc-as-posted', crashAt);
  const lane = page.locator(`section[data-scenario="rfc-as-posted"] [data-lane="${key}"]`);
  expect(await lane.locator('.at-step').getAttribute('data-label')).toBe(run.steps[crashAt]!.label);
  expect(await lane.locator('.at-step [data-crash="true"]').count()).toBe(1);
  await expect.poll(() => lane.locator(`.cell.selected[data-step="${run.steps[crashAt]!.path}"]`).count()).toBe(1);
}

async function openPage(context: BrowserContext, url: string, requests: string[]): Promise<Page> {
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(url);
  await page.waitForSelector('body[data-state="ready"], body[data-state="error"]');
  expect(errors).toEqual([]);
  expect(await page.evaluate(() => document.body.dataset.state)).toBe('ready');
  return page;
}

const chromiumMissing = !existsSync(CHROMIUM);

if (chromiumMissing && !inCi) {
  it.skip(`web view in a browser: ${CHROMIUM} is missing (apt-get install -y chromium)`, () => {});
} else if (chromiumMissing) {
  it('web view in a browser: CI needs Debian chromium at /usr/bin/chromium (.ci/run installs it)', () => {
    expect.fail(`${CHROMIUM} is missing under CI=true`);
  });
} else {
  describe('the web view in chromium', () => {
    let served: Served;
    let context: BrowserContext;
    let profile: string;
    let expected: Comparison;

    beforeAll(async () => {
      requireBuild();
      mkdirSync(RESULTS, { recursive: true });
      expected = cliCompare(COMPARE_ARGS);
      served = await serve([FIXTURE]);
      profile = mkdtempSync(join(tmpdir(), 'gmemlab-chromium-'));
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
        viewport: { width: 1400, height: 1000 },
      });
    }, 60_000);

    afterAll(async () => {
      await context?.close();
      if (served) expect(await served.stop()).toBe(0);
      if (profile) rmSync(profile, { recursive: true, force: true });
    });

    it('the CLI comparison this test compares against has the RFC argument in it (a violation and a host crash)', () => {
      expect(expected.scenarios.map((s) => s.id)).toEqual(SCENARIOS);
      const run = crashingRun(expected);
      expect(run.arch).toBe('tdx');
    });

    it('gmemlab serve: choosing two scenarios, tdx and sev-snp, both contracts and Run shows the CLI outcomes, violations and the crash marked', async () => {
      const requests: string[] = [];
      const page = await openPage(context, served.url, requests);
      const generation = Number(await page.locator('#results').getAttribute('data-generation'));
      for (const [name, wanted] of [
        ['scenario', SCENARIOS],
        ['arch', ARCHS],
        ['contract', CONTRACTS],
      ] as const) {
        for (const box of await page.locator(`input[name="${name}"]`).all())
          await box.setChecked(wanted.includes((await box.getAttribute('value'))!));
      }
      await page.locator('button[data-action="run"]').click();
      await page.waitForSelector(`#results[data-generation="${generation + 1}"]`);
      await page.waitForSelector('body[data-state="ready"]');

      await expectLanesAsCli(page, expected);
      await page.locator('button[data-tab="rfc-as-posted"]').click();
      await page.screenshot({ path: join(RESULTS, 'serve-rfc-as-posted.png'), fullPage: true });
      await expectScrubbing(page, expected);
      await page.screenshot({ path: join(RESULTS, 'serve-rfc-as-posted-crash-step.png'), fullPage: true });
      await page.locator('button[data-tab="registry-then-punch"]').click();
      await page.keyboard.press('End');
      await page.screenshot({ path: join(RESULTS, 'serve-registry-contract.png'), fullPage: true });

      // Only the server's own routes were asked for.
      const origin = served.url.replace(/\/$/, '');
      expect(requests.every((u) => u.startsWith(origin))).toBe(true);
      expect([...new Set(requests.map((u) => u.slice(origin.length)))].sort()).toEqual([
        '/',
        '/api/backends',
        '/api/compare',
        '/api/scenarios',
        '/app.js',
      ]);
      await page.close();
    });

    it('gmemlab compare --format html: the file opens straight into the same lanes, with no server and no request', async () => {
      const report = join(RESULTS, 'report.html');
      const r = cli(['compare', ...COMPARE_ARGS, '--format', 'html', '-o', report]);
      expect([0, 1]).toContain(r.status);
      expect(r.stderr).toBe('');
      const requests: string[] = [];
      const page = await openPage(context, pathToFileURL(report).href, requests);
      expect(requests).toEqual([pathToFileURL(report).href]);
      expect(await page.locator('#controls input').count()).toBe(0);
      await expectLanesAsCli(page, expected);
      await page.locator('button[data-tab="rfc-as-posted"]').click();
      await page.screenshot({ path: join(RESULTS, 'report-rfc-as-posted.png'), fullPage: true });
      await expectScrubbing(page, expected);
      await page.close();
    });

    it("the verdict matrix leads the page: a cell per architecture and design, the CLI's outcome in each, one glyph and one colour per outcome", async () => {
      const report = join(RESULTS, 'report-verdict.html');
      const r = cli(['compare', ...COMPARE_ARGS, '--format', 'html', '-o', report]);
      expect([0, 1]).toContain(r.status);
      const page = await openPage(context, pathToFileURL(report).href, []);
      // The first table on the page is the whole comparison's verdict, above the summary and the lanes.
      const first = page.locator('table.verdict').first();
      expect(await first.getAttribute('data-verdict')).toBe('all');
      const cells = await first.locator('td[data-verdict-cell]').evaluateAll((tds) =>
        tds.map((td) => ({
          key: td.getAttribute('data-verdict-cell'),
          outcome: td.getAttribute('data-outcome'),
          glyph: td.querySelector('.glyph')!.textContent,
          colour: getComputedStyle(td.querySelector('.glyph')!).backgroundColor,
        })),
      );
      const want = expected.verdict!;
      expect(cells.map((c) => c.key)).toEqual(
        want.rows.flatMap((row) => want.contracts.map((d) => `${row.arch}/${d}`)),
      );
      expect(cells.map((c) => c.outcome)).toEqual(want.rows.flatMap((row) => row.cells.map((c) => c!.outcome)));
      // Under vmm-driven tdx crashes and sev-snp's stale DMA reaches another owner; the registry faults both in
      // the IOMMU: three outcomes, three glyphs.
      const byOutcome = new Map(cells.map((c) => [c.outcome, c]));
      expect(byOutcome.get('host-crash')?.glyph).toBe('✖');
      expect(byOutcome.get('stale-reach')?.glyph).toBe('▲');
      expect(byOutcome.get('iommu-fault')?.glyph).toBe('■');
      // The legend shows every outcome, each with its own glyph and colour (an IOMMU fault and a contained fault
      // no longer share one).
      const legend = await page.locator('.verdict-legend .outcome').evaluateAll((els) =>
        els.map((e) => ({
          o: e.getAttribute('data-outcome'),
          glyph: e.querySelector('.glyph')!.textContent,
          colour: getComputedStyle(e.querySelector('.glyph')!).backgroundColor,
        })),
      );
      expect(legend.map((l) => l.o)).toEqual(['safe', 'contained', 'iommu-fault', 'stale-reach', 'host-crash']);
      expect(new Set(legend.map((l) => l.glyph)).size).toBe(5);
      expect(new Set(legend.map((l) => l.colour)).size).toBe(5);
      for (const c of cells) expect(c.colour).toBe(legend.find((l) => l.o === c.outcome)!.colour);
      await page.close();
    });

    it("each step of a lane wears the verdict legend's glyph and colour for its outcome (the CLI's), errno, exit and host down their own", async () => {
      const report = join(RESULTS, 'report-marks.html');
      const r = cli(['compare', ...COMPARE_ARGS, '--format', 'html', '-o', report]);
      expect([0, 1]).toContain(r.status);
      const page = await openPage(context, pathToFileURL(report).href, []);
      const legend = new Map(
        await page.locator('.verdict-legend .outcome').evaluateAll((els) =>
          els.map(
            (e) =>
              [
                e.getAttribute('data-outcome')!,
                {
                  glyph: e.querySelector('.glyph')!.textContent!,
                  colour: getComputedStyle(e.querySelector('.glyph')!).backgroundColor,
                },
              ] as const,
          ),
        ),
      );
      // The page's own legend of step marks shows the same five outcomes with the same glyphs and colours.
      const stepLegend = await page.locator('[data-legend-outcome]').evaluateAll((els) =>
        els.map((e) => ({
          o: e.getAttribute('data-legend-outcome')!,
          glyph: e.textContent,
          colour: getComputedStyle(e.querySelector('.glyph')!).backgroundColor,
        })),
      );
      expect(stepLegend.map((l) => l.o)).toEqual(['safe', 'contained', 'iommu-fault', 'stale-reach', 'host-crash']);
      for (const l of stepLegend) expect({ glyph: l.glyph, colour: l.colour }).toEqual(legend.get(l.o));
      const seen = new Set<string>();
      for (const run of expected.runs.filter((x) => !x.skipped)) {
        const tab = page.locator(`button[data-tab="${run.scenario.id}"]`);
        if ((await tab.count()) > 0) await tab.click();
        const cells = await page
          .locator(
            `section[data-scenario="${run.scenario.id}"] [data-lane="${run.arch}/${run.contract}"] .cells [data-step]`,
          )
          .evaluateAll((els) =>
            els.map((e) => ({
              outcome: e.getAttribute('data-outcome'),
              glyph: e.querySelector('.glyph')!.textContent,
              colour: getComputedStyle(e.querySelector('.glyph')!).backgroundColor,
            })),
          );
        expect(cells).toHaveLength(run.steps.length);
        run.steps.forEach((s, i) => {
          const kind = kindOf(s)!;
          expect(cells[i]!.outcome, `${run.arch}/${run.contract} ${s.path}`).toBe(s.outcome);
          if (['errno', 'exit', 'host-down', 'error'].includes(kind))
            return expect(cells[i]!.glyph).not.toBe(OUTCOME_TEXT[s.outcome!].glyph);
          seen.add(s.outcome!);
          expect({ glyph: cells[i]!.glyph, colour: cells[i]!.colour }, `${run.arch}/${run.contract} ${s.path}`).toEqual(
            legend.get(s.outcome!),
          );
        });
      }
      // The RFC on TDX: a crash step, and steps that are safe; with sev-snp, more than two outcomes in the lanes.
      expect(seen.has('host-crash') && seen.has('safe')).toBe(true);
      expect(seen.size).toBeGreaterThan(2);
      await page.close();
    });

    it('a lane collapses to its row of steps and opens again', async () => {
      const report = join(RESULTS, 'report-collapse.html');
      cli(['compare', ...COMPARE_ARGS, '--format', 'html', '-o', report]);
      const page = await openPage(context, pathToFileURL(report).href, []);
      await page.locator('button[data-tab="rfc-as-posted"]').click();
      const section = page.locator('section[data-scenario="rfc-as-posted"]');
      const lane = section.locator('[data-lane="tdx/vmm-driven"]');
      const other = section.locator('[data-lane="sev-snp/vmm-driven"]');
      const tall = (await lane.boundingBox())!.height;
      expect(await lane.locator('figure.pagemap').first().isVisible()).toBe(true);
      await lane.locator('button[data-action="collapse"]').click();
      expect(await lane.getAttribute('data-collapsed')).toBe('true');
      expect(await lane.locator('button[data-action="collapse"]').getAttribute('aria-expanded')).toBe('false');
      expect(await lane.locator('.at-step-slot').isVisible()).toBe(false);
      expect(await lane.locator('.cells [data-step]').first().isVisible()).toBe(true);
      expect((await lane.boundingBox())!.height).toBeLessThan(tall / 2);
      expect(await other.locator('figure.pagemap').first().isVisible()).toBe(true);
      // Scrubbing keeps it collapsed; opening it shows the step chosen meanwhile.
      await section.locator('button[data-action="next"]').click();
      expect(await lane.locator('.at-step-slot').isVisible()).toBe(false);
      await lane.locator('button[data-action="collapse"]').click();
      expect(await lane.getAttribute('data-collapsed')).toBeNull();
      expect(await lane.locator('.at-step').getAttribute('data-at-step')).toBe(
        await section.getAttribute('data-selected'),
      );
      expect(await lane.locator('figure.pagemap').first().isVisible()).toBe(true);
      await page.close();
    });

    it('the page map zooms to where the scenario acts (8 MiB mapped of a 16 MiB file), and shows the whole file on request', async () => {
      const args = ['copy-revoked-with-pages', '--arch', 'tdx', '--contract', 'vmm-driven'];
      const want = cliCompare(args);
      const focus = focusOf(scenarioViews(want)[0]!);
      const run = want.runs[0]!;
      const last = run.steps.filter((s) => s.pages && s.pages.length > 0).at(-1)!.pages!;
      const ino = last[0]!.ino;
      const npages = last[0]!.npages;
      const [start, end] = focus.get(ino)!;
      // The IOPTEs and the GPU's copy are in the first 8 MiB: the window is that and a margin, not the file.
      expect(start).toBe(0);
      expect(end).toBeGreaterThanOrEqual(2048);
      expect(end).toBeLessThan(npages);
      const report = join(RESULTS, 'report-zoom.html');
      cli(['compare', ...args, '--format', 'html', '-o', report]);
      const page = await openPage(context, pathToFileURL(report).href, []);
      const figure = page
        .locator('section[data-scenario="copy-revoked-with-pages"] [data-lane="tdx/vmm-driven"] figure.pagemap')
        .first();
      const ioptes = async () => {
        const svgWidth = (await figure.locator('svg').boundingBox())!.width;
        const widths = await figure
          .locator('g[data-row="iopte"] rect')
          .evaluateAll((els) => els.map((e) => e.getBoundingClientRect().width));
        return widths.reduce((a, b) => a + b, 0) / svgWidth;
      };
      expect(Number(await figure.getAttribute('data-view-start'))).toBe(start);
      expect(Number(await figure.getAttribute('data-view-end'))).toBe(end);
      expect(await figure.locator('.zoom-note').textContent()).toMatch(/showing offset/);
      const zoomed = await ioptes();
      await page.screenshot({ path: join(RESULTS, 'report-zoom.png'), fullPage: true });
      await page.locator('section[data-scenario="copy-revoked-with-pages"] input[data-action="whole-file"]').check();
      expect(Number(await figure.getAttribute('data-view-start'))).toBe(0);
      expect(Number(await figure.getAttribute('data-view-end'))).toBe(npages);
      expect(await figure.locator('.zoom-note').count()).toBe(0);
      const whole = await ioptes();
      // The same IOPTEs take a larger share of the map when zoomed: in proportion to the window.
      expect(zoomed).toBeGreaterThan(whole * 1.3);
      expect(whole).toBeCloseTo(zoomed * ((end - start) / npages), 1);
      await page.locator('section[data-scenario="copy-revoked-with-pages"] input[data-action="whole-file"]').uncheck();
      expect(Number(await figure.getAttribute('data-view-end'))).toBe(end);
      await page.close();
    });

    it("today's path: the page map's shared-side row shows the VMM's memory and each page allocated on both sides, as the CLI says, step by step", async () => {
      const args = ['qemu-today', '--arch', 'tdx', '--contract', 'today'];
      const run = cliCompare(args).runs[0]!;
      const report = join(RESULTS, 'report-today.html');
      cli(['compare', ...args, '--format', 'html', '-o', report]);
      const page = await openPage(context, pathToFileURL(report).href, []);
      const rowAt = async (column: number) => {
        await scrubberAt(page, 'qemu-today', column);
        const at = page.locator('section[data-scenario="qemu-today"] [data-lane="tdx/today"] .at-step');
        await expect.poll(() => at.getAttribute('data-at-step')).toBe(run.steps[column]!.path);
        const row = at.locator('figure.pagemap g[data-row="sharedSide"]');
        return {
          runs: await row.evaluateAll((els) => els.map((e) => e.getAttribute('data-runs') ?? '')),
          // The outlined bars (pages allocated twice): the pages each one covers, from where it is drawn.
          outlined: await row.locator('rect[stroke]').evaluateAll(
            (els, npages) =>
              els.map((e) => {
                const width = (e as SVGElement).ownerSVGElement!.viewBox.baseVal.width;
                const x = Number(e.getAttribute('x'));
                const w = Number(e.getAttribute('width'));
                return [Math.round((x / width) * npages), Math.round(((x + w) / width) * npages)];
              }),
            run.steps[column]!.pages![0]!.npages,
          ),
        };
      };
      // The CLI's page maps, as the row writes them: the populated shared side, then the pages allocated twice.
      const expected = (column: number) =>
        (run.steps[column]!.pages ?? [])
          .filter((p) => p.sharedBacking)
          .map(
            (p) =>
              `${runsText(p.sharedBacking!.map(([a, b]) => [a, b, 'populated']))};double=${runsText(p.doubleAllocated ?? [])}`,
          );
      // After the conversion to shared and VFIO's map: page 0 is in guest_memfd and in the memfd behind the IOPTE.
      const mapped = run.steps.map((s) => s.call).lastIndexOf('ioas.map');
      expect(run.steps[mapped]!.pages![0]!.doubleAllocated).toEqual([[0, 1, true]]);
      const atMap = await rowAt(mapped);
      expect(atMap.runs).toEqual(expected(mapped));
      expect(atMap.runs[0]).toMatch(/;double=0-1$/);
      expect(atMap.outlined).toEqual([[0, 1]]);
      // The punch frees the guest_memfd side: nothing is allocated twice, the shared side stays.
      const punched = run.steps.findIndex((s) => s.call === 'gmem.fallocate');
      const atPunch = await rowAt(punched);
      expect(atPunch.runs).toEqual(expected(punched));
      expect(atPunch.runs[0]).toMatch(/;double=$/);
      expect(atPunch.outlined).toEqual([]);
      // QEMU discards the old side: no shared side left, no row.
      const discarded = run.steps.findIndex((s) => s.call === 'memfd.fallocate');
      expect((await rowAt(discarded)).runs).toEqual(expected(discarded));
      expect(expected(discarded)).toEqual([]);
      await page.close();
    });

    it('a report of a scenario whose title holds </script> shows it as text and runs none of it', async () => {
      const hostile = '</script><script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><!--';
      const file = join(profile, 'hostile.yaml');
      writeFileSync(
        file,
        readFileSync(join(PACKAGE, 'scenarios', 'rfc-as-posted.yaml'), 'utf8').replace(
          /^title: .*$/m,
          `title: ${JSON.stringify(hostile)}`,
        ),
      );
      const report = join(profile, 'hostile.html');
      cli(['compare', file, '--arch', 'tdx', '--format', 'html', '-o', report]);
      const requests: string[] = [];
      const page = await openPage(context, pathToFileURL(report).href, requests);
      expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
      expect(await page.locator('section[data-scenario="hostile"] h2').textContent()).toBe(hostile);
      expect(requests).toEqual([pathToFileURL(report).href]);
      await page.close();
    });

    it('gmemlab run --format html: the same view for one scenario', async () => {
      const report = join(RESULTS, 'run-report.html');
      const r = cli(['run', 'rfc-as-posted', '--arch', ARCHS.join(','), '--format', 'html', '-o', report]);
      expect([0, 1]).toContain(r.status);
      const page = await openPage(context, pathToFileURL(report).href, []);
      const runs = cliCompare(['rfc-as-posted', '--arch', ARCHS.join(','), '--contract', 'vmm-driven']);
      await expectLanesAsCli(page, runs);
      await page.screenshot({ path: join(RESULTS, 'run-report.png'), fullPage: true });
      await page.close();
    });
  });
}
