import { execFileSync } from 'node:child_process';
import { expect, linePaths, phaseBands, shot, startServer, test } from './fixtures';
import { makeClientHome, startSshd } from '../test/support/sshd';

test('a request or WebSocket without the token is refused', async ({ server, request }) => {
  const bare = await request.get(`${server.origin}/`);
  expect(bare.status()).toBe(403);
  const wrong = await request.get(`${server.origin}/?token=nope`);
  expect(wrong.status()).toBe(403);
  const ok = await request.get(server.url);
  expect(ok.status()).toBe(200);
  // A foreign page cannot open the WebSocket even with the cookie (Origin check).
  const ws = await fetch(`${server.origin}/ws`, { headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', Origin: 'http://evil.example' } }).catch((e: Error) => e);
  expect(ws instanceof Error || ws.status === 403).toBe(true);
});

test('start the lab, drag the VM to lab-b, preflight, migrate, see it complete', async ({ server, page }) => {
  await page.goto(server.url);
  await expect(page.getByTestId('host-lab-a')).toBeVisible();
  await page.getByTestId('start-lab').click();
  await expect(page.getByTestId('vm-lab-a-demo')).toBeVisible({ timeout: 60_000 });
  await page.screenshot({ path: shot('hosts-board') });
  await page.getByTestId('vm-lab-a-demo').dragTo(page.getByTestId('host-lab-b'));
  const checks = page.getByTestId('preflight').locator('li');
  await expect(checks.first()).toBeVisible();
  await expect(page.getByTestId('preflight').locator('[data-status=fail]')).toHaveCount(0);
  expect(await checks.count()).toBeGreaterThanOrEqual(8);
  await page.screenshot({ path: shot('plan-dialog') });
  await page.getByRole('dialog').getByLabel('bandwidth in MB/s').fill('60');
  await page.getByRole('button', { name: 'Start migration' }).click();
  const view = page.locator('section.migration');
  await expect(view).toBeVisible();
  // the charts receive points while it runs
  await expect(view.locator('path.series-line[data-series=transferred]').first()).toBeVisible({ timeout: 20_000 });
  await page.screenshot({ path: shot('live-migration') });
  await expect(page.getByTestId('phase')).toHaveText('completed', { timeout: 90_000 });
  await expect(page.getByTestId('downtime')).toHaveText(/\d+ ms/);
  await expect(view.locator('.pass-marker').first()).toBeAttached();
  await expect(page.getByTestId('vm-lab-b-demo')).toBeVisible();
  await page.screenshot({ path: shot('completed'), fullPage: true });
});

test('any tab shows the whole story: one opened mid-migration, and one opened after it, draw exactly what the tab that watched it from the start draws', async ({ server, page, context }) => {
  await page.goto(server.url);
  await page.getByTestId('start-lab').click();
  await expect(page.getByTestId('vm-lab-a-demo')).toBeVisible({ timeout: 60_000 });
  await page.getByLabel('migrate demo to').selectOption('lab-b');
  await expect(page.getByTestId('preflight')).toBeVisible();
  // 512 MiB at 40 MB/s: long enough to open a tab in the middle, short enough to complete.
  await page.getByRole('dialog').getByLabel('bandwidth in MB/s').fill('40');
  await page.getByRole('button', { name: 'Start migration' }).click();
  const live = 'section.migration';
  await expect(page.locator(`${live} path.series-line[data-series=transferred]`).first()).toBeVisible({ timeout: 20_000 });
  await expect(page.getByTestId('progress-text')).toContainText('pass', { timeout: 20_000 });

  // A second tab, opened while it runs: before its history it would have empty charts and one log line.
  const late = await context.newPage();
  await late.goto(server.url);
  await expect(late.getByTestId('phase')).toHaveText(/setup|precopy/, { timeout: 20_000 });
  await expect(late.locator(`${live} path.series-line[data-series=transferred]`).first()).toBeVisible();
  await expect(late.locator(`${live} ol.log li`).filter({ hasText: '→ precopy' })).toHaveCount(1);
  expect(await late.locator(`${live} ol.log li`).count()).toBeGreaterThanOrEqual(3);
  await late.screenshot({ path: shot('late-tab-mid-migration') });

  for (const p of [page, late]) await expect(p.getByTestId('phase')).toHaveText('completed', { timeout: 120_000 });
  // The last samples may still be on their way: the two pictures converge, then stay equal.
  await expect.poll(async () => JSON.stringify(await linePaths(late, live)) === JSON.stringify(await linePaths(page, live)), { timeout: 10_000 }).toBe(true);
  const watched = await linePaths(page, live);
  expect(watched.flat().filter((d) => d.length > 20).length).toBeGreaterThanOrEqual(5);
  expect(await linePaths(late, live)).toEqual(watched);
  expect(await phaseBands(late, live)).toEqual(await phaseBands(page, live));
  expect((await phaseBands(page, live)).flat().length).toBeGreaterThanOrEqual(6);
  expect(await late.locator(`${live} .pass-marker`).count()).toBe(await page.locator(`${live} .pass-marker`).count());
  await expect(late.getByTestId('downtime')).toHaveText((await page.getByTestId('downtime').textContent())!);

  // A third, opened once it is over (the engine still holds it in memory): the same lines again.
  const after = await context.newPage();
  await after.goto(server.url);
  await expect(after.getByTestId('phase')).toHaveText('completed', { timeout: 20_000 });
  await expect(after.getByTestId('final-figures')).toBeVisible();
  await expect.poll(async () => JSON.stringify(await linePaths(after, live)), { timeout: 10_000 }).toBe(JSON.stringify(watched));
  expect(await phaseBands(after, live)).toEqual(await phaseBands(page, live));
  await after.screenshot({ path: shot('late-tab-after-migration'), fullPage: true });
});

test('raise the dirty rate, switch to postcopy by hand, complete; then cancel leaves the VM in place', async ({ server, page }) => {
  await page.goto(server.url);
  await page.getByTestId('start-lab').click();
  await expect(page.getByTestId('vm-lab-a-demo')).toBeVisible({ timeout: 60_000 });
  await page.getByLabel('dirty rate of demo in MiB/s').fill('300');
  await page.getByTestId('vm-lab-a-demo').getByRole('button', { name: 'Set' }).click();
  await expect(page.getByText('demo: r 300 → ok')).toBeVisible();
  await page.getByLabel('migrate demo to').selectOption('lab-b'); // the keyboard path
  await expect(page.getByTestId('preflight')).toBeVisible();
  await page.getByRole('dialog').getByLabel('mode').selectOption('postcopy-after');
  await page.getByRole('dialog').getByLabel('passes before postcopy').fill('100');
  await page.getByRole('dialog').getByLabel('bandwidth in MB/s').fill('30');
  await page.getByRole('button', { name: 'Start migration' }).click();
  const postcopy = page.getByRole('button', { name: 'Switch to postcopy' });
  await expect(postcopy).toBeEnabled({ timeout: 20_000 });
  await expect(page.getByTestId('progress-text')).toContainText('pass', { timeout: 20_000 });
  await postcopy.click();
  await page.getByRole('button', { name: 'Confirm: the VM cannot go back' }).click();
  await expect(page.getByTestId('phase')).toHaveText(/postcopy|commitment|activation|completed/);
  await expect(page.getByTestId('phase')).toHaveText('completed', { timeout: 90_000 });
  await page.screenshot({ path: shot('postcopy-completed'), fullPage: true });

  // back again, and cancel midway: the VM stays on lab-b
  await page.getByLabel('migrate demo to').selectOption('lab-a');
  await expect(page.getByTestId('preflight')).toBeVisible();
  await page.getByRole('dialog').getByLabel('bandwidth in MB/s').fill('10');
  await page.getByRole('button', { name: 'Start migration' }).click();
  await expect(page.getByRole('button', { name: 'Cancel' })).toBeEnabled({ timeout: 20_000 });
  await expect(page.getByTestId('phase')).toHaveText('precopy', { timeout: 20_000 });
  await page.getByRole('button', { name: 'Cancel' }).click();
  // The control's answer comes first, in the live log: "cancel: done", or why it was refused.
  await expect(page.locator('ol.log li').filter({ hasText: / cancel: / }).first()).toContainText('cancel: done', { timeout: 10_000 });
  await expect(page.getByTestId('phase')).toHaveText('cancelled', { timeout: 30_000 });
  await expect(page.getByTestId('vm-lab-b-demo')).toBeVisible();
  await expect(page.getByTestId('vm-lab-a-demo')).toHaveCount(0);
  await page.screenshot({ path: shot('cancelled'), fullPage: true });
});

test('adding an SSH host shows the unknown key fingerprint and trusts it only on confirmation', async ({ page }) => {
  const sshd = await startSshd();
  const home = makeClientHome([sshd]);
  const server = await startServer({ FERRY_SSH_HOME: home.home });
  try {
    await page.goto(server.url);
    await page.getByRole('button', { name: 'Add host' }).click();
    await page.getByLabel('host id').fill('hv1');
    await page.getByLabel('ssh host').fill('127.0.0.1');
    await page.getByLabel('ssh user').fill('root');
    await page.getByLabel('ssh port').fill(String(sshd.port));
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    const expected = execFileSync('ssh-keygen', ['-lf', '-', '-E', 'sha256'], { input: sshd.hostKeyPub }).toString().split(' ')[1]!;
    await expect(page.getByTestId('fingerprint')).toHaveText(expected);
    await page.screenshot({ path: shot('host-key-dialog') });
    await page.getByRole('button', { name: 'Trust this fingerprint' }).click();
    await expect(page.getByTestId('host-hv1').locator('.conn')).toHaveText('connected', { timeout: 20_000 });
  } finally {
    await server.stop();
    await sshd.stop();
    home.cleanup();
  }
});

test('an encrypted key asks for its passphrase (remembering refused in the browser, with the reason); editing a host reconnects with its new settings', async ({ page }) => {
  const sshd = await startSshd();
  const home = makeClientHome([sshd], { passphrase: 'open sesame' });
  home.trust(sshd);
  const server = await startServer({ FERRY_SSH_HOME: home.home });
  try {
    await page.goto(server.url);
    await page.getByRole('button', { name: 'Add host' }).click();
    await page.getByLabel('host id').fill('hv2');
    await page.getByLabel('ssh host').fill('127.0.0.1');
    await page.getByLabel('ssh user').fill('root');
    await page.getByLabel('ssh port').fill('99999');
    await expect(page.getByRole('button', { name: 'Add', exact: true })).toBeDisabled();
    await expect(page.getByRole('alert').filter({ hasText: 'port: a number from 1 to 65535' })).toBeVisible();
    await page.getByLabel('ssh port').fill(String(sshd.port));
    await page.getByLabel('identity file').fill(home.keyPath);
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Passphrase for hv2' });
    await expect(dialog).toBeVisible();
    await expect(dialog.getByLabel('remember the passphrase')).toBeDisabled();
    await expect(dialog).toContainText('needs the desktop app');
    await dialog.getByLabel('key passphrase').fill('wrong one');
    await dialog.getByRole('button', { name: 'Connect' }).click();
    await expect(dialog).toContainText('That passphrase did not open the key.');
    await dialog.getByLabel('key passphrase').fill('open sesame');
    await page.screenshot({ path: shot('passphrase-dialog') });
    await dialog.getByRole('button', { name: 'Connect' }).click();
    await expect(dialog).toHaveCount(0);
    await expect(page.getByTestId('host-hv2').locator('.conn')).toHaveText('connected', { timeout: 20_000 });

    // Edit: a port nothing listens on; the host is reconnected with it and fails, saying so.
    await page.getByRole('button', { name: 'edit host hv2' }).click();
    const form = page.getByRole('form', { name: 'edit host hv2' });
    await expect(form.getByLabel('host id')).toHaveValue('hv2');
    await expect(form.getByLabel('identity file')).toHaveValue(home.keyPath);
    await form.getByLabel('ssh port').fill('1');
    await form.getByRole('button', { name: 'Save' }).click();
    await expect(page.getByTestId('host-hv2').locator('.conn')).toHaveText('failed', { timeout: 20_000 });
  } finally {
    await server.stop();
    await sshd.stop();
    home.cleanup();
  }
});

test('evacuate a host: every VM moves to the chosen host, at most K at a time, progress shown', async ({ server, page }) => {
  await page.goto(server.url);
  await page.getByTestId('start-lab').click();
  await expect(page.getByTestId('vm-lab-a-demo')).toBeVisible({ timeout: 60_000 });
  // a second VM on lab-a, started with the CLI against the same lab
  execFileSync(process.execPath, ['--import', 'tsx', 'electron/cli.ts', 'vm', 'start', 'lab-a', 'small', '--memory', '128', '--ws', '16', '--rate', '10'], { env: { ...process.env, FERRY_LAB_DIR: server.labRoot, XDG_CONFIG_HOME: server.configDir }, stdio: 'ignore' });
  await page.keyboard.press('r');
  await expect(page.getByTestId('vm-lab-a-small')).toBeVisible({ timeout: 20_000 });
  await page.getByTestId('host-lab-a').getByRole('button', { name: 'Evacuate…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Evacuate lab-a' });
  await expect(dialog.getByRole('button', { name: 'Evacuate' })).toBeDisabled();
  await dialog.getByLabel('evacuate to lab-b').check();
  await dialog.getByLabel('migrations at a time').fill('2');
  await dialog.getByLabel('bandwidth per migration in MB/s').fill('200');
  await page.screenshot({ path: shot('evacuate-dialog') });
  await dialog.getByRole('button', { name: 'Evacuate' }).click();
  const panel = page.getByTestId('evacuation-lab-a');
  await expect(panel).toBeVisible();
  await expect(panel).toContainText('2/2 moved', { timeout: 90_000 });
  await expect(panel.locator('li[data-state=completed]')).toHaveCount(2);
  await expect(page.getByTestId('vm-lab-b-demo')).toBeVisible({ timeout: 20_000 });
  await expect(page.getByTestId('vm-lab-b-small')).toBeVisible();
  await expect(page.getByTestId('vm-lab-a-demo')).toHaveCount(0);
  await page.screenshot({ path: shot('evacuated') });
});
