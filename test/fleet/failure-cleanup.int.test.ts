/**
 * A failed migration leaves nothing behind: the guest runs on the source and no QEMU is left
 * on the destination, even when the destination could not be reached at the moment of the
 * failure. A preflight afterwards always ends.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { fleetAvailable, startDemo, startFleet } from '../support/fleet';
import type { Fleet } from '../support/fleet';
import type { ConsoleService } from '../../electron/core/console-service';
import { readPid, vmFiles } from '../../electron/core/hosts/vm-launcher';
import { LocalTransport } from '../../electron/core/transport/local-transport';
import { readTimeline } from '../../electron/core/recorder/timeline-reader';
import { isAlive, waitFor } from '../support/processes';
import { kvmUsable } from '../support/qemu';

const avail = fleetAvailable();
if (!avail.ok) console.log(`[fleet] failure cleanup tests skipped: ${avail.reason}`);

describe.skipIf(!avail.ok)('a failed migration on real hosts leaves nothing behind', () => {
  let fleet: Fleet;
  let service: ConsoleService;

  beforeEach(async () => {
    fleet = await startFleet();
    // A dead link shows in seconds instead of TCP's long retransmit timeout (LAB-NOTES).
    for (const h of [fleet.hv1, fleet.hv2]) fleet.run(h, ['sysctl', '-qw', 'net.ipv4.tcp_retries2=3']);
    service = fleet.service({ ssh: { keepaliveIntervalMs: 1000, keepaliveCountMax: 3 }, reconnectDelayMs: 300 });
    await startDemo(service, 'hv1', { wsMiB: 128, rateMiBs: 60 });
  });

  afterEach(async () => {
    await service?.dispose();
    await fleet?.stop();
  });

  const destPid = async () => readPid(new LocalTransport(), vmFiles(path.join(fleet.hv2.root, 'run'), 'demo').pidFile);

  it('the migration link is cut mid-precopy: failed, guest intact on the source, destination stopped', async () => {
    const m = await service.engine.start({ vm: 'demo', from: 'hv1', to: 'hv2', maxBandwidth: 20_000_000 });
    await waitFor(() => (m.samples.at(-1)?.pass ?? 0) >= 2, 'a second pass', 60_000);
    const pid = (await destPid())!;
    expect(isAlive(pid)).toBe(true);
    fleet.setMigrationLink(false);
    const final = await m.whenDone();
    expect(final.outcome).toBe('failed');
    expect(final.reason).toMatch(/socket|timed out|reset|broken/i);
    if (kvmUsable()) expect(final.verify).toMatchObject({ ok: true });
    expect(isAlive(pid)).toBe(false);
    expect(await destPid()).toBeUndefined();
    expect(service.cleanups.list()).toEqual([]);
  });

  it('the destination is unreachable when the migration fails: its QEMU is stopped once it is back; preflight ends meanwhile', async () => {
    const m = await service.engine.start({ vm: 'demo', from: 'hv1', to: 'hv2', maxBandwidth: 20_000_000 });
    await waitFor(() => (m.samples.at(-1)?.pass ?? 0) >= 2, 'a second pass', 60_000);
    const pid = (await destPid())!;
    // The destination drops off the network entirely: migration link and SSH path at once.
    fleet.setMigrationLink(false);
    fleet.setManagementLink(fleet.hv2, false);
    const final = await m.whenDone();
    expect(final.outcome).toBe('failed');
    expect(isAlive(pid)).toBe(true); // nobody could reach it yet
    expect(service.cleanups.list('hv2').map((c) => c.vm)).toEqual(['demo']);
    const notes = readTimeline(m.timelineFile).records.filter((r) => r.type === 'note').map((r) => (r as { text: string }).text);
    expect(notes.some((t) => /could not stop the destination QEMU on hv2 yet/.test(t))).toBe(true);
    // A preflight while the destination is unreachable ends, saying so.
    const t0 = Date.now();
    const pre = await service.call('migrations:preflight', { vm: 'demo', from: 'hv1', to: 'hv2' });
    console.log(`[fleet] preflight with the destination unreachable took ${Date.now() - t0} ms: ${JSON.stringify(pre.ok && pre.value.checks.filter((c) => c.status !== 'pass'))}`);
    expect(pre.ok).toBe(true);
    if (pre.ok) expect(pre.value.ok).toBe(false);
    fleet.setManagementLink(fleet.hv2, true);
    fleet.setMigrationLink(true);
    const t1 = Date.now();
    await waitFor(() => !isAlive(pid), 'the leftover destination QEMU stopped after hv2 came back', 90_000);
    console.log(`[fleet] leftover destination stopped ${Date.now() - t1} ms after hv2 came back`);
    await waitFor(() => service.cleanups.list().length === 0, 'the cleanup ledger empty', 10_000);
    const again = await service.call('migrations:preflight', { vm: 'demo', from: 'hv1', to: 'hv2' });
    expect(again.ok && again.value.checks.find((c) => c.id === 'name-free')?.status).toBe('pass');
    expect(again.ok && again.value.checks.find((c) => c.id === 'source-vm')?.status).toBe('pass');
  }, 240_000);
});
