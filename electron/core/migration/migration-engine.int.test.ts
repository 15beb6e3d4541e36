/**
 * Real migrations of the demo guest between the two hosts of a throwaway local lab.
 * After each: guest memory verified where the guest should be alive, no stray QEMU, and no
 * impossible transition met (QEMU's events and replies, raced as they come, fit the table).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { readTimeline } from '../recorder/timeline-reader';
import { kvmUsable } from '../../../test/support/qemu';
import { isAlive, waitFor } from '../../../test/support/processes';
import type { Migration } from './migration-engine';
import type { MigrationPhase } from '../../../shared/model/migration';

const phasesOf = (file: string) => readTimeline(file).records.filter((r) => r.type === 'phase').map((r) => (r as { phase: MigrationPhase }).phase);
const waitPhase = (m: Migration, ok: (p: MigrationPhase) => boolean, what: string, ms = 30_000) => waitFor(() => ok(m.phase), what, ms);

describe('migration engine on the local lab (real QEMU + demo guest)', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  it('completes a converging precopy: passes sampled, downtime recorded, guest intact on the destination', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 48, rateMiBs: 20 } });
    const srcPid = (await lab.pidOn('lab-a'))!;
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 60_000_000, downtimeLimitMs: 50 });
    const final = await m.whenDone();
    expect(m.refused).toEqual([]);
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true, bad: 0, stale: 0 } });
    expect(final.downtimeMs).toBeGreaterThan(0);
    expect(final.totalTimeMs).toBeGreaterThan(0);
    expect(Math.max(...m.samples.map((s) => s.pass ?? 0))).toBeGreaterThanOrEqual(3);
    expect(m.samples.some((s) => s.phase === 'precopy' && (s.transferRate ?? 0) > 0)).toBe(true);
    expect(final.guestDowntimeMs).toBeGreaterThan(0);
    // the guest lives on lab-b, the source QEMU is gone
    expect(await lab.pidOn('lab-b')).toBeGreaterThan(0);
    expect(isAlive(srcPid)).toBe(false);
    const t = readTimeline(m.timelineFile);
    expect(t.truncated).toBe(false);
    expect(t.records[0]?.type).toBe('header');
    expect(t.header?.destination?.qemuVersion).toMatch(/^\d+\.\d+/);
    expect(phasesOf(m.timelineFile)).toEqual(['reservation', 'setup', 'precopy', 'stop-and-copy', 'commitment', 'activation', 'completed']);
    const events = t.records.filter((r) => r.type === 'event').map((r) => (r as { event: string }).event);
    expect(events).toContain('MIGRATION_PASS');
    expect(events).toContain('STOP');
    const times = t.records.slice(1).map((r) => (r as { t: number }).t);
    expect(t.samples.length).toBeGreaterThanOrEqual(3);
    expect(times.at(-1)).toBeGreaterThanOrEqual(times[0]!);
  });

  it('switches a non-converging workload to postcopy and completes with page requests served', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 128, rateMiBs: null } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', mode: 'postcopy-after', postcopyAfterPasses: 2, maxBandwidth: 40_000_000 });
    const final = await m.whenDone();
    expect(m.refused).toEqual([]);
    expect(final.outcome).toBe('completed');
    expect(m.samples.some((s) => s.phase === 'postcopy')).toBe(true);
    const t = readTimeline(m.timelineFile);
    expect(t.records.some((r) => r.type === 'policy' && (r as { action: string }).action === 'postcopy')).toBe(true);
    expect(final.postcopyRequests).toBeGreaterThan(0);
    if (kvmUsable()) expect(final.verify).toMatchObject({ ok: true });
    else console.log(`TCG: postcopy memory check not asserted (QEMU 7.2 TCG delivers stale pages in postcopy); verify said ${JSON.stringify(final.verify)}`);
  });

  it('cancels mid-precopy: the guest keeps running on the source, the destination is gone', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 96, rateMiBs: 20 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 10_000_000 });
    await waitPhase(m, (p) => p === 'precopy', 'precopy');
    const destPid = (await lab.pidOn('lab-b'))!;
    expect(destPid).toBeGreaterThan(0);
    await m.control({ action: 'cancel' });
    const final = await m.whenDone();
    expect(m.refused).toEqual([]);
    expect(final.outcome).toBe('cancelled');
    expect(final.verify).toMatchObject({ ok: true });
    expect(isAlive(destPid)).toBe(false);
    expect(existsSync(`${lab.root}/lab-b/demo`)).toBe(false);
    const con = await lab.guest('lab-a');
    const st = await con.command('s');
    const later = await con.command('s');
    con.close();
    expect(st.kind === 'status' && later.kind === 'status' && later.seq >= st.seq).toBe(true);
    await expect(m.control({ action: 'cancel' })).rejects.toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringMatching(/has ended/) });
  });

  it('stopping the VM forces completion of a migration that would not converge', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 64, rateMiBs: 200 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 100_000_000, downtimeLimitMs: 20 });
    await waitFor(() => (m.samples.at(-1)?.pass ?? 0) >= 2, 'second pass', 30_000);
    await m.control({ action: 'stop-vm' });
    const final = await m.whenDone();
    expect(m.refused).toEqual([]);
    expect(final.outcome).toBe('completed');
    expect(final.verify).toMatchObject({ ok: true });
    const t = readTimeline(m.timelineFile);
    expect(t.records.some((r) => r.type === 'control' && (r as { action: string }).action === 'stop-vm')).toBe(true);
  });

  it('fails with a named reason when the destination QEMU dies, leaving the guest on the source', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 96, rateMiBs: 20 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 10_000_000 });
    await waitPhase(m, (p) => p === 'precopy', 'precopy');
    process.kill((await lab.pidOn('lab-b'))!, 'SIGKILL');
    const final = await m.whenDone();
    expect(m.refused).toEqual([]);
    expect(final.outcome).toBe('failed');
    expect(final.reason).toBeTruthy();
    expect(final.verify).toMatchObject({ ok: true });
    expect(await lab.pidOn('lab-a')).toBeGreaterThan(0);
    expect(await lab.pidOn('lab-b')).toBeUndefined();
  });

  it('refuses bad input with a clear error and starts nothing', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 8, rateMiBs: 0 } });
    const start = (plan: Record<string, unknown>) => lab!.service.invoke('migrations:start', plan);
    expect(await start({ vm: 'nope', from: 'lab-a', to: 'lab-b' })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND', message: expect.stringMatching(/no running VM "nope"/) } });
    expect(await start({ vm: 'demo', from: 'lab-a', to: 'mars' })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND', message: expect.stringMatching(/mars/) } });
    expect(await start({ vm: 'demo', from: 'lab-a', to: 'lab-a' })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST', message: expect.stringMatching(/different hosts/) } });
    expect(await start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: -5 })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST', message: expect.stringMatching(/bandwidth must be positive/) } });
    expect(await start({ vm: '../x', from: 'lab-a', to: 'lab-b' })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    // the destination already runs a VM of that name
    await lab.up(); // no-op: demo already runs on lab-a
    const { launchVm } = await import('../hosts/vm-launcher');
    const { LocalTransport } = await import('../transport/local-transport');
    await launchVm(new LocalTransport(), `${lab.root}/lab-b`, { name: 'demo', memoryKiB: 65_500, paused: true });
    expect(await start({ vm: 'demo', from: 'lab-a', to: 'lab-b' })).toMatchObject({ ok: false, error: { code: 'ALREADY_EXISTS', message: expect.stringMatching(/already running on lab-b/) } });
    expect(await lab.service.invoke('migrations:list', {})).toEqual({ ok: true, value: [] });
    expect(await lab.service.invoke('migrations:control', { id: 'nope', control: { action: 'cancel' } })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(await lab.service.invoke('migrations:control', { id: 'x', control: { action: 'set-bandwidth', bytesPerSecond: -1 } })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
  });

  it('refuses controls in phases that do not accept them, naming why', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 64, rateMiBs: 10 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 20_000_000 });
    await waitPhase(m, (p) => p === 'precopy', 'precopy');
    await expect(m.control({ action: 'postcopy' })).rejects.toThrow(/postcopy was not enabled/);
    await expect(m.control({ action: 'pause-postcopy' })).rejects.toThrow(/only during postcopy/);
    await expect(m.control({ action: 'recover' })).rejects.toThrow(/only when postcopy is paused/);
    await expect(m.control({ action: 'continue' })).rejects.toThrow(/not paused before switchover/);
    await expect(m.control({ action: 'set-bandwidth', bytesPerSecond: 0 })).rejects.toThrow(/positive/);
    // valid controls change what QEMU does
    await m.control({ action: 'set-downtime', ms: 500 });
    await m.control({ action: 'set-bandwidth', bytesPerSecond: 1_000_000_000 });
    const final = await m.whenDone();
    expect(m.refused).toEqual([]);
    expect(final.outcome).toBe('completed');
    const controls = readTimeline(m.timelineFile).records.filter((r) => r.type === 'control') as { action: string; result: { ok: boolean } }[];
    expect(controls.map((c) => [c.action, c.result.ok])).toEqual([
      ['postcopy', false], ['pause-postcopy', false], ['recover', false], ['continue', false], ['set-bandwidth', false], ['set-downtime', true], ['set-bandwidth', true],
    ]);
  });
});
