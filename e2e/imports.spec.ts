/// <reference lib="dom" />
/**
 * Other tools' files in the console's timeline viewer (browser mode, Debian Chromium): a
 * Proxmox VE task log and a guestperf report open with their charts and say what they lack;
 * a timeline with a bad line says which; the OpenMetrics export ends in # EOF.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Download } from '@playwright/test';
import { expect, shot, test } from './fixtures';

const PROXMOX = path.resolve('test/fixtures/imports/proxmox-migrate-100.log');
const GUESTPERF = path.resolve('test/fixtures/imports/guestperf-postcopy.json');

test('a Proxmox task log and a guestperf report open as timelines, with what they lack shown as absent', async ({ server, page }) => {
  await page.goto(server.url);
  await page.getByTestId('timeline-file').setInputFiles(PROXMOX);
  const view = page.locator('section.timeline-view');
  await expect(view).toBeVisible();
  await expect(view.locator('h2')).toHaveText('100: ? → pve2');
  await expect(view.getByTestId('phase')).toHaveText('completed');
  await expect(view.getByTestId('downtime')).toHaveText('61 ms');
  await expect(view.getByTestId('imported')).toContainText('Imported from a Proxmox VE migration task log (proxmox-migrate-100.log)');
  await expect(view.getByTestId('imported-absent')).toContainText('remaining memory');
  await expect(view.locator('path.series-line[data-series=xfer]').first()).toBeVisible();
  await expect(view.locator('path.series-line[data-series=transferred]').first()).toBeVisible();
  await expect(view.locator('path.series-line[data-series=remaining]')).toHaveCount(0);
  await expect(view.getByTestId('cursor-values').locator('[data-field=pass] dd')).toHaveText('?');
  await page.screenshot({ path: shot('import-proxmox'), fullPage: true });

  const [dl] = await Promise.all([page.waitForEvent('download'), view.getByRole('button', { name: 'OpenMetrics' }).click()]) as [Download, void];
  expect(dl.suggestedFilename()).toBe('proxmox-migrate-100.om.txt');
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'ferry-dl-')), dl.suggestedFilename());
  await dl.saveAs(file);
  const om = readFileSync(file, 'utf8');
  expect(om).toContain('kubevirt_vmi_migration_data_processed_bytes{name="100"');
  expect(om.endsWith('# EOF\n')).toBe(true);

  await page.getByTestId('timeline-file').setInputFiles(GUESTPERF);
  await expect(view.locator('h2')).toHaveText('postcopy-iters-2: localhost → localhost');
  await expect(view.getByTestId('imported')).toContainText('Imported from a QEMU guestperf report');
  await expect(view.locator('path.series-line[data-series=remaining]').first()).toBeVisible();
  await expect(view.getByTestId('downtime')).toHaveText('22 ms');

  // A timeline with a broken line opens, and says which line and why.
  const fixture = readFileSync('test/fixtures/timelines/converging.ferry.jsonl', 'utf8').split('\n');
  fixture.splice(3, 0, '{"type":"sample","t":"later"}');
  await page.getByTestId('timeline-file').setInputFiles({ name: 'broken.ferry.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(fixture.join('\n')) });
  await expect(view.getByTestId('timeline-notice')).toContainText('1 line could not be read and was left out: line 4 (sample: t:');
  await view.getByTestId('timeline-problems').locator('summary').click();
  await expect(view.getByTestId('timeline-problems')).toContainText('line 4: sample: t:');
  await page.screenshot({ path: shot('timeline-bad-line') });

  // Neither a timeline nor a log Ferry knows: refused with one line, nothing opened.
  await page.getByTestId('timeline-file').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('shopping list\n') });
  await expect(page.getByRole('alert').filter({ hasText: 'notes.txt is not a Ferry timeline' })).toBeVisible();
});
