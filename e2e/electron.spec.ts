/**
 * The same console inside Electron. Runs where an Electron binary exists; here (no binary can
 * be downloaded) it is skipped with the reason printed.
 */
import { test, expect, _electron as electron } from '@playwright/test';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const pathFile = path.join('node_modules', 'electron', 'path.txt');
const binary = existsSync(pathFile) ? path.join('node_modules', 'electron', 'dist', readFileSync(pathFile, 'utf8').trim()) : undefined;
const reason = binary && existsSync(binary) ? undefined : 'no Electron binary installed (ELECTRON_SKIP_BINARY_DOWNLOAD): Electron e2e skipped';
if (reason) console.log(`[electron] ${reason}`);

test('the Electron window shows the hosts board', async () => {
  test.skip(reason !== undefined, reason);
  const app = await electron.launch({ args: ['dist/electron/main.cjs'], executablePath: binary! });
  const win = await app.firstWindow();
  await expect(win.getByText('Ferry', { exact: true })).toBeVisible();
  await expect(win.getByTestId('host-lab-a')).toBeVisible();
  await app.close();
});
