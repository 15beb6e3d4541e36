/**
 * Ferry on the real-host fixture: two SSH hypervisors behind a jump host, sshd with its
 * default limits. The shapes users have, not the lab's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { execFileSync } from 'node:child_process';
import { fleetAvailable, startDemo, startFleet } from '../support/fleet';
import type { Fleet } from '../support/fleet';
import type { ConsoleService } from '../../electron/core/console-service';
import { SshTransport } from '../../electron/core/transport/ssh-transport';
import { measureClock, offsetBetween } from '../../electron/core/hosts/clock-offset';
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

  beforeAll(async () => {
    fleet = await startFleet();
    service = fleet.service();
  });

  afterAll(async () => {
    await service?.dispose();
    await fleet?.stop();
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

  it('keeps within MaxSessions: 40 concurrent commands all run, sshd refuses none', async () => {
    const t = new SshTransport({ host: 'hv2' }, { homeDir: fleet.home, agent: false });
    try {
      await t.connect();
      const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => t.exec(['sh', '-c', `sleep 0.05; echo ${i}`])));
      expect(rs.map((r) => Number(r.stdout))).toEqual(Array.from({ length: 40 }, (_, i) => i));
      expect(t.sessions.peak).toBe(8);
      expect(t.sessions.refusals).toBe(0);
      expect(fleet.sshdLogLines(fleet.hv2, /no more sessions/)).toEqual([]);
    } finally {
      await t.close();
    }
  });

  it('a server limit below the budget is learned from its refusals; every command still runs', async () => {
    // Configured above sshd's MaxSessions 10: the server refuses, Ferry lowers its limit and retries.
    const t = new SshTransport({ host: 'hv2', maxSessions: 14 }, { homeDir: fleet.home, agent: false });
    try {
      await t.connect();
      const rs = await Promise.all(Array.from({ length: 30 }, (_, i) => t.exec(['sh', '-c', `sleep 0.2; echo ${i}`])));
      expect(rs.map((r) => Number(r.stdout))).toEqual(Array.from({ length: 30 }, (_, i) => i));
      expect(t.sessions.refusals).toBeGreaterThan(0);
      expect(t.sessions.limit).toBeLessThanOrEqual(10);
      expect(fleet.sshdLogLines(fleet.hv2, /no more sessions/).length).toBe(t.sessions.refusals);
    } finally {
      await t.close();
    }
  });

  it('reads two hosts sharing one clock, through the jump host, as well under 50 ms apart', async () => {
    const [a, b] = await Promise.all([measureClock(await service.transportOf('hv1')), measureClock(await service.transportOf('hv2'))]);
    const d = offsetBetween(a, b);
    console.log(`[fleet] clock offset hv1/hv2 ${d.offsetMs.toFixed(2)} ± ${d.uncertaintyMs.toFixed(2)} ms (round trips ${a.rttMs.toFixed(2)}, ${b.rttMs.toFixed(2)} ms)`);
    expect(Math.abs(d.offsetMs)).toBeLessThan(50);
    expect(Math.abs(d.offsetMs)).toBeLessThanOrEqual(d.uncertaintyMs + 2);
  });

  it('migrates the demo guest from hv1 to hv2 over the migration network, memory verified', async () => {
    await startDemo(service, 'hv1', { wsMiB: 32, rateMiBs: 20 });
    const m = await service.engine.start({ vm: 'demo', from: 'hv1', to: 'hv2', maxBandwidth: 200_000_000 });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    if (kvmUsable()) expect(final.verify).toMatchObject({ ok: true });
    expect(m.summary().timeline).toBeTruthy();
    const vms = await service.call('vms:list', { hostId: 'hv2' });
    expect(vms.ok && vms.value.map((v) => v.name)).toEqual(['demo']);
  });
});

describe.skipIf(!avail.ok)('a console session on the fleet stays inside sshd\'s MaxSessions', () => {
  let fleet: Fleet;
  let service: ConsoleService;

  beforeAll(async () => {
    fleet = await startFleet();
    service = fleet.service();
  });

  afterAll(async () => {
    await service?.dispose();
    await fleet?.stop();
  });

  it('board refreshes, host facts, preflight and a live migration together: no channel refused, no wrong fact', async () => {
    await startDemo(service, 'hv1', { wsMiB: 64, rateMiBs: 40 });
    // What two console tabs do: the board every 5 s (here: as fast as it can), facts, one plan dialog.
    let stop = false;
    const wrong: string[] = [];
    const board = async () => {
      while (!stop) {
        const [hosts, a, b] = await Promise.all([service.call('hosts:list', {}), service.call('vms:list', { hostId: 'hv1' }), service.call('vms:list', { hostId: 'hv2' })]);
        if (hosts.ok) for (const h of hosts.value) if (h.state === 'connected' && h.facts && !h.facts.qemuVersion && !h.facts.unavailable) wrong.push(`${h.config.id}: facts without QEMU`);
        for (const r of [a, b]) if (!r.ok && r.error.code !== 'HOST_BUSY') wrong.push(`vms:list: ${r.error.message}`);
      }
    };
    const tabs = [board(), board()];
    const pre = await service.call('migrations:preflight', { vm: 'demo', from: 'hv1', to: 'hv2' });
    expect(pre.ok).toBe(true);
    if (pre.ok) {
      const byId = Object.fromEntries(pre.value.checks.map((c) => [c.id, c]));
      expect(byId['source-vm']?.status).toBe('pass');
      expect(byId['destination-qemu']?.status).toBe('pass');
      expect(byId.clock?.status).toBe('pass');
      expect(Number(/^(\d+) ±/.exec(byId.clock?.reason ?? '')?.[1])).toBeLessThan(50);
    }
    const m = await service.engine.start({ vm: 'demo', from: 'hv1', to: 'hv2', maxBandwidth: 60_000_000 });
    const pre2 = service.call('migrations:preflight', { vm: 'demo', from: 'hv1', to: 'hv2' });
    const final = await m.whenDone();
    await pre2;
    stop = true;
    await Promise.all(tabs);
    expect(final.outcome).toBe('completed');
    expect(wrong).toEqual([]);
    for (const h of [fleet.jump, fleet.hv1, fleet.hv2]) expect(fleet.sshdLogLines(h, /no more sessions|open failed|refused/i)).toEqual([]);
  });
});
