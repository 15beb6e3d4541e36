/**
 * The console on real SSH hosts (the fleet: a jump host and two hypervisors in network
 * namespaces, stock sshd limits): hosts connect by themselves, the VM is dragged from hv1 to
 * hv2, preflight passes, the migration completes, sshd refused no session channel, and the
 * Copy diagnostics button hands over what a support ticket needs.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, shot, startServer, test } from './fixtures';
import { fleetAvailable, startDemo, startFleet } from '../test/support/fleet';
import type { Fleet } from '../test/support/fleet';

const avail = fleetAvailable();

test.describe('the console on SSH hosts behind a jump host', () => {
  test.skip(!avail.ok, `the SSH fleet cannot run here: ${avail.reason}`);
  let fleet: Fleet;

  test.beforeAll(async () => {
    fleet = await startFleet();
    const service = fleet.service();
    try {
      await startDemo(service, 'hv1', { wsMiB: 32, rateMiBs: 20 });
    } finally {
      await service.dispose();
    }
  });

  test.afterAll(async () => {
    await fleet?.stop();
  });

  test('hosts connect through the jump host; drag demo from hv1 to hv2; it completes within sshd\'s session limit', async ({ page, context }) => {
    const cfg = path.join(fleet.root, 'console-cfg');
    mkdirSync(path.join(cfg, 'ferry'), { recursive: true });
    writeFileSync(path.join(cfg, 'ferry', 'hosts.json'), JSON.stringify({ version: 1, hosts: fleet.hostConfigs() }));
    const server = await startServer({ XDG_CONFIG_HOME: cfg, FERRY_SSH_HOME: fleet.home });
    try {
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.origin });
      await page.goto(server.url);
      for (const id of ['hv1', 'hv2']) {
        await expect(page.getByTestId(`host-${id}`).locator('.conn')).toHaveText('connected', { timeout: 30_000 });
        await expect(page.getByTestId(`facts-${id}`)).toContainText(/QEMU \d+\.\d+/, { timeout: 30_000 });
      }
      await expect(page.getByTestId('vm-hv1-demo')).toBeVisible({ timeout: 30_000 });
      await page.getByTestId('vm-hv1-demo').dragTo(page.getByTestId('host-hv2'));
      await expect(page.getByTestId('preflight').locator('li').first()).toBeVisible({ timeout: 60_000 });
      await expect(page.getByTestId('preflight').locator('[data-status=fail]')).toHaveCount(0);
      await page.screenshot({ path: shot('fleet-plan-dialog') });
      await page.getByRole('dialog').getByLabel('bandwidth in MB/s').fill('80');
      await page.getByRole('button', { name: 'Start migration' }).click();
      await expect(page.getByTestId('phase')).toHaveText('completed', { timeout: 120_000 });
      await expect(page.getByTestId('vm-hv2-demo')).toBeVisible({ timeout: 30_000 });
      // The board follows at once (not at its next 5 s refresh): the guest is on hv2 only.
      await expect(page.getByTestId('vm-hv1-demo')).toHaveCount(0, { timeout: 4000 });
      await page.screenshot({ path: shot('fleet-completed'), fullPage: true });
      for (const h of [fleet.jump, fleet.hv1, fleet.hv2]) expect(fleet.sshdLogLines(h, /no more sessions/)).toEqual([]);

      await page.getByTestId('copy-diagnostics').click();
      await expect(page.locator('.toast').filter({ hasText: 'Diagnostics copied' })).toBeVisible();
      const text = await page.evaluate(() => navigator.clipboard.readText());
      expect(text).toMatch(/hv1\tconnected\troot@10\.77\.1\.11:22 sessions \d+\/8 \(peak [1-8], 0 refused/);
      expect(text).toMatch(/demo hv1 -> hv2\tcompleted/);
      expect(text).not.toMatch(/token=[A-Za-z0-9_-]{10}/);
    } finally {
      await server.stop();
    }
  });
});
