/**
 * Ferry on the real-host fixture: two SSH hypervisors behind a jump host, sshd with its
 * default limits. The shapes users have, not the lab's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fleetAvailable, startFleet } from '../support/fleet';
import type { Fleet } from '../support/fleet';
import { ConsoleService } from '../../electron/core/console-service';
import { launchVm, vmFiles } from '../../electron/core/hosts/vm-launcher';
import { demoVmSpec, waitGuestReady } from '../../electron/core/lab/local-lab';
import { kvmUsable } from '../support/qemu';

const avail = fleetAvailable();
if (!avail.ok) console.log(`[fleet] real-host tests skipped: ${avail.reason}`);

function tcpReachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: 2000 });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

describe.skipIf(!avail.ok)('the SSH fleet (jump host + two hypervisors, default sshd)', () => {
  let fleet: Fleet;
  let service: ConsoleService;
  let configDir: string;

  beforeAll(async () => {
    fleet = await startFleet();
    configDir = mkdtempSync(path.join(tmpdir(), 'ferry-fleetcfg-'));
    service = new ConsoleService({ configDir, builtinHosts: fleet.hostConfigs(), ssh: { homeDir: fleet.home, agent: false }, reconnectDelayMs: 200 });
  });

  afterAll(async () => {
    await service?.dispose();
    await fleet?.stop();
    if (configDir) rmSync(configDir, { recursive: true, force: true });
  });

  it('reaches the hypervisors only through the jump host', async () => {
    expect(await tcpReachable(fleet.jump.sshAddress, 22)).toBe(true);
    // No route from Ferry's namespace to the hypervisors' network but the machine's default
    // one (never tried: it leads off this machine), and the jump host does not forward.
    expect(execFileSync('ip', ['route', 'get', fleet.hv1.sshAddress], { encoding: 'utf8' })).not.toMatch(new RegExp(`dev ${fleet.jump.ns.split('-')[0]}r\\b`));
    expect(fleet.run(fleet.jump, ['sysctl', '-n', 'net.ipv4.ip_forward']).trim()).toBe('0');
    const t = await service.transportOf('hv1');
    expect(t.label).toBe(`root@${fleet.hv1.sshAddress}:22`);
    const r = await t.exec(['ip', '-o', '-4', 'addr', 'show']);
    expect(r.stdout).toContain(fleet.hv1.migrationAddress);
    expect(r.stdout).not.toContain(fleet.hv2.migrationAddress);
  });

  it('migrates the demo guest from hv1 to hv2 over the migration network, memory verified', async () => {
    const hv1 = service.registry;
    const h1 = await hv1.get('hv1');
    const t1 = await service.transportOf('hv1');
    await launchVm(t1, h1.runtimeDir!, demoVmSpec({ wsMiB: 32, rateMiBs: 20 }));
    await waitGuestReady(t1, vmFiles(h1.runtimeDir!, 'demo').serialSocket);
    const m = await service.engine.start({ vm: 'demo', from: 'hv1', to: 'hv2', maxBandwidth: 200_000_000 });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    if (kvmUsable()) expect(final.verify).toMatchObject({ ok: true });
    expect(m.summary().timeline).toBeTruthy();
    const vms = await service.invoke('vms:list', { hostId: 'hv2' });
    expect(vms.ok && vms.value.map((v) => v.name)).toEqual(['demo']);
  });
});
