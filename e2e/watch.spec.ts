import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, shot, test } from './fixtures';

test('watch a VM from its card: a migration someone else runs is shown live, with no controls', async ({ server, page }) => {
  await page.goto(server.url);
  await page.getByTestId('start-lab').click();
  const card = page.getByTestId('vm-lab-a-demo');
  await expect(card).toBeVisible({ timeout: 60_000 });
  await card.getByRole('button', { name: 'watch demo' }).click();
  const view = page.locator('section.migration');
  await expect(view).toBeVisible();
  await expect(page.getByTestId('watch-only')).toBeVisible();
  await expect(view.getByRole('group', { name: 'migration controls' })).toHaveCount(0);

  // Someone else: another Ferry (the command line, its own config) on the same lab.
  const other = mkdtempSync(path.join(tmpdir(), 'ferry-e2e-other-'));
  try {
    const cli = spawn(path.resolve('bin/ferry.mjs'), ['migrate', 'demo', '--from', 'lab-a', '--to', 'lab-b', '--bandwidth', '60'], {
      env: { ...process.env, FERRY_LAB_DIR: server.labRoot, XDG_CONFIG_HOME: other },
      stdio: 'ignore',
    });
    const code = await new Promise<number | null>((resolve) => cli.once('exit', resolve));
    expect(code).toBe(0);
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
  await expect(page.getByTestId('phase')).toHaveText('completed', { timeout: 60_000 });
  await expect(view.locator('path.series-line[data-series=transferred]')).toBeVisible();
  await expect(view.getByRole('group', { name: 'migration controls' })).toHaveCount(0);
  await page.screenshot({ path: shot('watched-migration'), fullPage: true });
});
