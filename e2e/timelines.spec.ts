/// <reference lib="dom" />
/**
 * Recorded migrations in the console (browser mode, Debian Chromium): open a timeline by file
 * picker and by drag-and-drop, scrub and read values under the cursor, export every format
 * and check the files, a truncated file, the lab demo with its overlay, and live = replay.
 */
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Download, Page } from '@playwright/test';
import { expect, linePaths, shot, test } from './fixtures';
import { parseTimeline } from '../shared/model/timeline';
import { entryFromTimeline, sampleAt } from '../shared/report/picture';
import { CSV_COLUMNS } from '../shared/report/export';
import { formatBytes, formatRate } from '../shared/analysis/units';

const FIXTURE = path.resolve('test/fixtures/timelines/postcopy.ferry.jsonl');
const fixtureText = readFileSync(FIXTURE, 'utf8');

async function saved(page: Page, click: () => Promise<void>): Promise<{ file: string; name: string }> {
  const [dl] = await Promise.all([page.waitForEvent('download'), click()]) as [Download, void];
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'ferry-dl-')), dl.suggestedFilename());
  await dl.saveAs(file);
  return { file, name: dl.suggestedFilename() };
}

test('open a timeline with the file picker, scrub, read the values, export CSV, JSON, PNG and the HTML report', async ({ server, page, browser }) => {
  await page.goto(server.url);
  await page.getByTestId('timeline-file').setInputFiles(FIXTURE);
  const view = page.locator('section.timeline-view');
  await expect(view).toBeVisible();
  await expect(view.getByTestId('phase')).toHaveText('completed');
  await expect(view.getByTestId('downtime')).toHaveText('61 ms');
  await expect(view.locator('path.series-line[data-series=transferred]').first()).toBeVisible();
  await expect(view.getByTestId('truncated')).toHaveCount(0);

  // Scrub to 2.0 s: the panel shows the sample at or before that moment.
  const parsed = parseTimeline(fixtureText);
  const entry = entryFromTimeline(parsed);
  await view.getByTestId('scrub').fill('2');
  const at = sampleAt(entry.samples, entry.summary.startedAt, 2)!;
  const values = view.getByTestId('cursor-values');
  await expect(values.locator('[data-field=time] dd')).toHaveText(`+${((at.t - entry.summary.startedAt) / 1000).toFixed(2)} s`);
  await expect(values.locator('[data-field=remaining] dd')).toHaveText(formatBytes(at.remainingBytes));
  await expect(values.locator('[data-field=transfer] dd')).toHaveText(formatRate(at.transferRate));
  await expect(values.locator('[data-field=pass] dd')).toHaveText(String(at.pass));
  await expect(values.locator('[data-field=phase] dd')).toHaveText(at.phase);
  await expect(view.locator('.cursor-line').first()).toBeAttached();
  // Zoom in around the cursor: the window narrows and says so.
  await view.getByRole('button', { name: 'zoom in around the cursor' }).click();
  await expect(view.getByTestId('zoom-window')).toContainText('showing');
  await page.screenshot({ path: shot('timeline-viewer'), fullPage: true });
  await page.locator('body').press('t');
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'dark');
  await page.screenshot({ path: shot('timeline-viewer-dark') });
  await page.locator('body').press('t');
  await view.getByRole('button', { name: 'Whole run' }).click();
  await expect(view.getByTestId('zoom-window')).toHaveCount(0);

  const csv = await saved(page, () => view.getByRole('button', { name: 'CSV' }).click());
  expect(csv.name).toBe('postcopy.csv');
  const lines = readFileSync(csv.file, 'utf8').trim().split('\n');
  expect(lines[0]).toBe(CSV_COLUMNS.join(','));
  expect(lines.length - 1).toBe(parsed.samples.length);
  const passCol = CSV_COLUMNS.indexOf('pass');
  expect(lines.slice(1).every((l) => l.split(',').length === CSV_COLUMNS.length)).toBe(true);
  expect(lines.at(-1)!.split(',')[passCol]).toBe(String(parsed.samples.at(-1)!.pass));

  const json = await saved(page, () => view.getByRole('button', { name: 'JSON' }).click());
  const doc = JSON.parse(readFileSync(json.file, 'utf8')) as { header: { migrationId: string }; records: unknown[]; truncated: boolean };
  expect(doc.header.migrationId).toBe(parsed.header!.migrationId);
  expect(doc.records).toHaveLength(parsed.records.length - 1);
  expect(doc.truncated).toBe(false);

  const png = await saved(page, () => view.getByRole('button', { name: 'PNG' }).click());
  const bytes = readFileSync(png.file);
  expect(bytes.subarray(1, 4).toString('latin1')).toBe('PNG');
  expect(bytes.readUInt32BE(16)).toBe(2000); // width at 2× of the 1000-px stack
  expect(bytes.readUInt32BE(20)).toBeGreaterThan(1000);

  const html = await saved(page, () => view.getByRole('button', { name: 'HTML report' }).click());
  // Offline: a fresh context with every network request recorded and refused.
  const ctx = await browser.newContext({ offline: true });
  const requests: string[] = [];
  ctx.on('request', (r) => requests.push(r.url()));
  const report = await ctx.newPage();
  await report.goto(`file://${html.file}`);
  await expect(report.locator('h1')).toContainText('demo lab-a → lab-b');
  expect(await report.locator('svg.chart-svg').count()).toBeGreaterThanOrEqual(4);
  expect(await report.locator('svg.chart-svg path.series').count()).toBeGreaterThanOrEqual(6);
  await expect(report.locator('#final-figures [data-figure=downtime] dd')).toHaveText('61 ms');
  expect(await report.locator('#events tbody tr').count()).toBe(entry.log.length);
  await report.screenshot({ path: shot('report'), fullPage: true });
  expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]);
  await ctx.close();
});

test('drop a timeline on the window; a truncated one opens with its complete records and says so', async ({ server, page }) => {
  await page.goto(server.url);
  await expect(page.getByTestId('bridge-state')).toHaveText('connected');
  // A real drop event carrying a File, as the browser makes it when a file is dragged in.
  await page.evaluate(async (text) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], 'dropped.ferry.jsonl', { type: 'application/jsonl' }));
    window.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
    document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, fixtureText);
  const view = page.locator('section.timeline-view');
  await expect(view).toBeVisible();
  await expect(view).toHaveAttribute('aria-label', 'Timeline dropped.ferry.jsonl');
  await expect(view.getByTestId('downtime')).toHaveText('61 ms');

  // Cut the file in the middle of a line: every complete line still opens.
  const cut = fixtureText.slice(0, Math.floor(fixtureText.length * 0.6));
  const complete = cut.slice(0, cut.lastIndexOf('\n') + 1).split('\n').filter((l) => l.trim()).length;
  await page.getByTestId('timeline-file').setInputFiles({ name: 'cut.ferry.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(cut) });
  const cutView = page.locator('section.timeline-view[aria-label="Timeline cut.ferry.jsonl"]');
  await expect(cutView).toBeVisible();
  await expect(cutView.getByTestId('truncated')).toContainText(`Showing its ${complete} complete records`);
  await expect(cutView.locator('path.series-line[data-series=remaining]').first()).toBeVisible();
  await expect(cutView.getByTestId('final-figures')).toHaveCount(0);
  await page.screenshot({ path: shot('timeline-truncated') });

  // Not a timeline at all: refused with a message, nothing opened.
  await page.getByTestId('timeline-file').setInputFiles({ name: 'notes.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from('{"hello":1}\n') });
  await expect(page.getByRole('alert').filter({ hasText: 'notes.jsonl is not a Ferry timeline' })).toBeVisible();
});

test('lab demo: precopy then postcopy of one workload, overlaid; a replayed timeline draws exactly like the live view', async ({ server, page }) => {
  test.setTimeout(240_000);
  await page.goto(server.url);
  await expect(page.getByTestId('bridge-state')).toHaveText('connected');
  const t0 = Date.now();
  await page.getByTestId('run-demo').click();
  await expect(page.getByTestId('run-demo')).toHaveText('Demo running…');
  const cmp = page.locator('section.compare-view');
  await expect(cmp).toBeVisible({ timeout: 180_000 });
  const demoMs = Date.now() - t0;
  const table = cmp.getByTestId('compare-table');
  await expect(table.locator('thead th')).toHaveCount(3);
  await expect(table.locator('[data-row=Mode] td').nth(0)).toHaveText('precopy');
  await expect(table.locator('[data-row=Mode] td').nth(1)).toHaveText(/^postcopy after 1 pass$/);
  await expect(table.locator('[data-row=Outcome] td').nth(0)).toHaveText('completed');
  await expect(table.locator('[data-row=Outcome] td').nth(1)).toHaveText('completed');
  await expect(table.locator('[data-row="Guest memory"] td').nth(0)).toHaveText('verified');
  await expect(table.locator('[data-row="Guest memory"] td').nth(1)).toHaveText('verified');
  // Each overlay chart carries one line per run (each line drawn in chunks of buckets: count series, not paths).
  const perChart = await linePaths(page, 'section.compare-view');
  expect(perChart.length).toBeGreaterThanOrEqual(3);
  const drawn = await cmp.locator('figure.chart').first().evaluate((f) => [...new Set(Array.from(f.querySelectorAll('path.series-line')).filter((p) => (p.getAttribute('d') ?? '').length > 0).map((p) => p.getAttribute('data-series')))]);
  expect(drawn).toHaveLength(2);
  await page.screenshot({ path: shot('compare'), fullPage: true });
  console.log(`lab demo (lab start + precopy + postcopy) took ${(demoMs / 1000).toFixed(1)} s`);

  // Live = replay: the precopy run's live view, then its recorded timeline, same lines.
  await page.locator('nav.tabs[aria-label=migrations] button').filter({ hasText: 'lab-a→lab-b' }).first().click();
  const live = page.locator('section.migration:not(.timeline-view):not(.compare-view)');
  await expect(live.getByTestId('phase')).toHaveText('completed');
  const livePaths = await linePaths(page, 'section.migration:not(.timeline-view):not(.compare-view)');
  expect(livePaths.flat().filter((d) => d.length > 20).length).toBeGreaterThanOrEqual(5);
  await live.getByRole('button', { name: 'Open timeline' }).click();
  await expect(page.locator('section.timeline-view')).toBeVisible();
  const replayPaths = await linePaths(page, 'section.timeline-view');
  expect(replayPaths).toEqual(livePaths);
});
