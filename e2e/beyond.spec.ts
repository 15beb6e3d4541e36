import { expect, shot, test } from './fixtures';

test('save the demo VM to a file from its host, see it listed, restore it', async ({ server, page }) => {
  await page.goto(server.url);
  await page.getByTestId('start-lab').click();
  await expect(page.getByTestId('vm-lab-a-demo')).toBeVisible({ timeout: 60_000 });
  const states = page.getByTestId('states-lab-a');
  await states.locator('summary').click();
  await expect(states).toContainText('None in this host');
  await states.getByLabel('VM to save').selectOption('demo');
  await states.getByRole('button', { name: 'Save to file' }).click();
  await expect(states.locator('li')).toHaveCount(1, { timeout: 60_000 });
  await expect(states.locator('li')).toContainText(/demo-\d{8}T\d{6}\.state demo · [\d.]+ MB · .* · zstd/);
  await expect(page.getByTestId('vm-lab-a-demo')).toHaveCount(0, { timeout: 20_000 }); // parked: it is in the file now
  await page.screenshot({ path: shot('saved-states') });
  await states.getByRole('button', { name: 'Restore' }).click();
  await expect(page.getByTestId('vm-lab-a-demo')).toBeVisible({ timeout: 60_000 });
});

test('plan a migration through the SSH tunnel option; the live view says which transport carries it', async ({ server, page }) => {
  await page.goto(server.url);
  await page.getByTestId('start-lab').click();
  await expect(page.getByTestId('vm-lab-a-demo')).toBeVisible({ timeout: 60_000 });
  await page.getByTestId('vm-lab-a-demo').dragTo(page.getByTestId('host-lab-b'));
  const dialog = page.getByRole('dialog');
  await expect(dialog.getByTestId('preflight').locator('li').first()).toBeVisible();
  await dialog.getByLabel('ssh tunnel').check();
  // preflight runs again with the tunnel: both lab hosts are this machine, so it warns
  await expect(dialog.getByTestId('preflight')).toContainText('Migration stream through SSH', { timeout: 30_000 });
  await expect(dialog.getByTestId('preflight')).toContainText('both this machine');
  await dialog.getByLabel('copy storage').check();
  await expect(dialog.getByTestId('preflight')).toContainText('the VM has no disks', { timeout: 30_000 });
  await page.screenshot({ path: shot('plan-beyond-options') });
  await dialog.getByLabel('copy storage').uncheck();
  await expect(dialog.getByTestId('preflight').locator('[data-status=fail]')).toHaveCount(0, { timeout: 30_000 });
  await dialog.getByRole('button', { name: 'Start migration' }).click();
  await expect(page.getByTestId('transport')).toContainText('Stream: inside SSH');
  await expect(page.getByTestId('phase')).toHaveText('completed', { timeout: 90_000 });
  await expect(page.getByTestId('transport')).toContainText(/MB relayed/);
  await page.screenshot({ path: shot('tunnel-completed') });
});
