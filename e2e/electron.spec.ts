/**
 * The golden path inside Electron: start, lab, migrate, complete. Runs where an Electron
 * binary exists; here (no binary can be downloaded) it is skipped with the reason printed.
 */
import { test, expect, _electron as electron } from '@playwright/test';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { killPidsMentioning } from './fixtures';

const pathFile = path.join('node_modules', 'electron', 'path.txt');
const binary = existsSync(pathFile) ? path.join('node_modules', 'electron', 'dist', readFileSync(pathFile, 'utf8').trim()) : undefined;
const reason = binary && existsSync(binary) ? undefined : 'no Electron binary installed (ELECTRON_SKIP_BINARY_DOWNLOAD): Electron e2e skipped';
if (reason) console.log(`[electron] ${reason}`);

test('Electron: start, start the lab, drag the VM to lab-b, migrate, see it complete', async () => {
  test.skip(reason !== undefined, reason);
  test.setTimeout(180_000);
  const labRoot = mkdtempSync(path.join(tmpdir(), 'ferry-electron-lab-'));
  const configDir = mkdtempSync(path.join(tmpdir(), 'ferry-electron-cfg-'));
  const app = await electron.launch({ args: ['dist/electron/main.cjs'], executablePath: binary!, env: { ...process.env, FERRY_LAB_DIR: labRoot, XDG_CONFIG_HOME: configDir } });
  try {
    const win = await app.firstWindow();
    await expect(win.getByText('Ferry', { exact: true })).toBeVisible();
    // The renderer got the preload's API, not the WebSocket bridge.
    expect(await win.evaluate(() => Object.keys((window as unknown as { ferry: object }).ferry).sort())).toEqual(['invoke', 'on']);
    await win.getByTestId('start-lab').click();
    await expect(win.getByTestId('vm-lab-a-demo')).toBeVisible({ timeout: 60_000 });
    await win.getByTestId('vm-lab-a-demo').dragTo(win.getByTestId('host-lab-b'));
    await expect(win.getByTestId('preflight').locator('li').first()).toBeVisible();
    await win.getByRole('button', { name: 'Start migration' }).click();
    await expect(win.getByTestId('phase')).toHaveText('completed', { timeout: 90_000 });
    await expect(win.getByTestId('vm-lab-b-demo')).toBeVisible();
  } finally {
    await app.close();
    killPidsMentioning(labRoot);
    rmSync(labRoot, { recursive: true, force: true });
    rmSync(configDir, { recursive: true, force: true });
  }
});
