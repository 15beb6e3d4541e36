/**
 * Migrations across QEMU versions: the same real migrations of the demo guest on 7.2→7.2,
 * 10.0→10.0 and 7.2→10.0 (the host upgrade path), and 10.0→7.2 refused. QEMU 10.0 comes
 * from scripts/fetch-qemu.mjs; where it cannot be had those runs are skipped, saying why.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { migrationPairs, needQemu10, qemu10 } from '../../../test/support/qemu-versions';
import { kvmUsable } from '../../../test/support/qemu';
import { readTimeline } from '../recorder/timeline-reader';
import { readArgvRecord, vmFiles } from '../hosts/vm-launcher';
import { LocalTransport } from '../transport/local-transport';
import { DIRTY_LIMIT_RING } from '../lab/local-lab';

const figures: string[] = [];

describe.each(migrationPairs())('migration $pair.name (real QEMU + demo guest)', ({ pair, skip }) => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  it.skipIf(skip !== undefined)('converging precopy: concrete machine type on both ends, versions recorded, memory verified', async () => {
    lab = await makeTestLab();
    await lab.up({ qemuA: pair.a ?? null, qemuB: pair.b ?? null, workload: { wsMiB: 48, rateMiBs: 20 } });
    const local = new LocalTransport();
    const src = await readArgvRecord(local, vmFiles(`${lab.root}/lab-a`, 'demo').argvFile);
    // The launcher resolved `pc` on lab-a's QEMU: the record never holds an alias.
    expect(src?.spec.machine).toMatch(/^pc-i440fx-\d+\.\d+$/);
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 60_000_000, downtimeLimitMs: 50 });
    const final = await m.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true, bad: 0, stale: 0 } });
    const dst = await readArgvRecord(local, vmFiles(`${lab.root}/lab-b`, 'demo').argvFile);
    expect(dst?.spec.machine).toBe(src?.spec.machine);
    expect(dst?.spec.cpu).toBe(src?.spec.cpu);
    expect(dst?.argv[0]).toBe(pair.b?.binary ?? 'qemu-system-x86_64');
    const t = readTimeline(m.timelineFile);
    const [sv, dv] = [t.header?.source.qemuVersion, t.header?.destination?.qemuVersion];
    expect(sv).toBe(pair.a ? (qemu10() as { version: string }).version : src?.qemuVersion);
    expect(dv).toBe(pair.b ? (qemu10() as { version: string }).version : sv);
    // Since 8.2 the destination announces its migration states only with `events` on: Ferry turns it on at both ends.
    const destEvents = t.records.filter((r) => r.type === 'event' && r.side === 'destination' && r.event === 'MIGRATION').map((r) => (r as { data?: { status?: string } }).data?.status);
    expect(destEvents).toContain('active');
    expect(destEvents).toContain('completed');
    const notes = t.records.filter((r) => r.type === 'note').map((r) => (r as { text: string }).text);
    expect(notes.some((n) => n.startsWith(`destination started as ${src?.spec.machine}`))).toBe(true);
    figures.push(`${pair.name} precopy (48 MiB @ 20 MiB/s, 60 MB/s cap): total ${final.totalTimeMs} ms, downtime ${final.downtimeMs} ms, ${final.passes} passes`);
  });

  it.skipIf(skip !== undefined)('postcopy after two passes completes, page requests served', async () => {
    lab = await makeTestLab();
    await lab.up({ qemuA: pair.a ?? null, qemuB: pair.b ?? null, workload: { wsMiB: 96, rateMiBs: null } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', mode: 'postcopy-after', postcopyAfterPasses: 2, maxBandwidth: 40_000_000 });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    expect(m.samples.some((s) => s.phase === 'postcopy')).toBe(true);
    expect(final.postcopyRequests).toBeGreaterThan(0);
    if (kvmUsable()) expect(final.verify).toMatchObject({ ok: true });
    figures.push(`${pair.name} postcopy (96 MiB flat out, 40 MB/s cap): total ${final.totalTimeMs} ms, downtime ${final.downtimeMs} ms, ${final.postcopyRequests} page requests`);
  });
});

describe('migration to an older QEMU', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
    if (figures.length) console.log(`[versions] ${figures.join('\n[versions] ')}`);
    figures.length = 0;
  });

  it.skipIf(needQemu10() !== undefined)('10.0 → 7.2 is refused by preflight and by the engine, naming both versions; the VM keeps running', async () => {
    const q = qemu10();
    if (!q.ok) return;
    lab = await makeTestLab();
    await lab.up({ qemuA: q.install, workload: { wsMiB: 8, rateMiBs: 5 } });
    const pf = await lab.service.invoke('migrations:preflight', { vm: 'demo', from: 'lab-a', to: 'lab-b' });
    expect(pf.ok).toBe(true);
    const result = (pf as { value: { ok: boolean; checks: { id: string; status: string; reason: string }[] } }).value;
    expect(result.ok).toBe(false);
    const versions = result.checks.find((c) => c.id === 'qemu-versions');
    expect(versions).toMatchObject({ status: 'fail' });
    expect(versions?.reason).toContain(q.version);
    expect(versions?.reason).toMatch(/7\.2\.\d+/);
    const started = await lab.service.invoke('migrations:start', { vm: 'demo', from: 'lab-a', to: 'lab-b' });
    expect(started).toMatchObject({ ok: false, error: { code: 'UNSUPPORTED', message: expect.stringMatching(new RegExp(`older than the source's QEMU ${q.version.replace(/\./g, '\\.')}`)) } });
    expect(await lab.pidOn('lab-a')).toBeGreaterThan(0);
    expect(await lab.pidOn('lab-b')).toBeUndefined();
  });
});

describe('newer QEMU features, offered where the schema has them', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  it.skipIf(needQemu10() !== undefined || !kvmUsable())('dirty-limit on 10.0 (KVM dirty ring): vCPUs held to the limit, throttle time per round sampled, memory verified', async () => {
    const q = qemu10();
    if (!q.ok) return;
    lab = await makeTestLab();
    await lab.up({ qemuA: q.install, qemuB: q.install, dirtyRingSize: DIRTY_LIMIT_RING, workload: { wsMiB: 64, rateMiBs: 150 } });
    const plan = { vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 50_000_000, downtimeLimitMs: 1000, dirtyLimitMBps: 5 };
    const pf = await lab.service.invoke('migrations:preflight', plan);
    expect(pf).toMatchObject({ ok: true, value: { ok: true } });
    const m = await lab.service.engine.start(plan);
    const final = await m.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    const header = readTimeline(m.timelineFile).header!;
    expect(header.capabilities).toMatchObject({ 'dirty-limit': true });
    expect(header.parameters).toMatchObject({ 'vcpu-dirty-limit': 5 });
    expect(m.samples.some((s) => (s.dirtyLimitThrottleUs ?? 0) > 0)).toBe(true);
    figures.push(`10.0 dirty-limit 5 MB/s (64 MiB @ 150 MiB/s, 50 MB/s cap, 1000 ms limit): total ${final.totalTimeMs} ms, downtime ${final.downtimeMs} ms, ${final.passes} passes, max throttle/round ${Math.max(...m.samples.map((s) => s.dirtyLimitThrottleUs ?? 0))} µs`);
  });

  it.skipIf(needQemu10() !== undefined)('avail-switchover-bandwidth on 10.0 is fed from the switchover Ferry learned between the two hosts', async () => {
    const q = qemu10();
    if (!q.ok) return;
    lab = await makeTestLab();
    await lab.up({ qemuA: q.install, qemuB: q.install, workload: { wsMiB: 32, rateMiBs: 10 } });
    const first = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 60_000_000, switchoverBandwidth: 'auto' });
    expect(await first.whenDone()).toMatchObject({ outcome: 'completed' });
    const firstNotes = readTimeline(first.timelineFile).records.filter((r) => r.type === 'note').map((r) => (r as { text: string }).text);
    expect(firstNotes.some((n) => /no link estimate yet/.test(n))).toBe(true);
    const back = await lab.service.engine.start({ vm: 'demo', from: 'lab-b', to: 'lab-a', maxBandwidth: 60_000_000 });
    expect(await back.whenDone()).toMatchObject({ outcome: 'completed' });
    // lab-a -> lab-b has a learned switchover now: it becomes QEMU's avail-switchover-bandwidth
    const second = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 60_000_000, switchoverBandwidth: 'auto' });
    expect(await second.whenDone()).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    const p = readTimeline(second.timelineFile).header?.parameters as Record<string, number>;
    // what the last switchover between these hosts achieved (final copy bytes over its time), whatever the cap
    expect(p['avail-switchover-bandwidth']).toBeGreaterThan(1_000_000);
    expect(readTimeline(second.timelineFile).records.some((r) => r.type === 'note' && /avail-switchover-bandwidth \d+ MB\/s \(Ferry's link estimate/.test((r as { text: string }).text))).toBe(true);
    figures.push(`10.0 avail-switchover-bandwidth from the learned link estimate: ${Math.round(p['avail-switchover-bandwidth']! / 1e6)} MB/s (cap 60 MB/s)`);
  });

  it.skipIf(needQemu10() !== undefined)('a 7.2 source is refused dirty-limit and a 10.0 destination a removed capability, each naming the QEMU', async () => {
    const q = qemu10();
    if (!q.ok) return;
    lab = await makeTestLab();
    await lab.up({ qemuB: q.install, workload: { wsMiB: 8, rateMiBs: 5 } });
    const pf = (plan: Record<string, unknown>) => lab!.service.invoke('migrations:preflight', { vm: 'demo', from: 'lab-a', to: 'lab-b', ...plan });
    const caps = async (plan: Record<string, unknown>) => ((await pf(plan)) as { value: { checks: { id: string; status: string; reason: string }[] } }).value.checks.find((c) => c.id === 'capabilities');
    expect(await caps({ dirtyLimitMBps: 10 })).toMatchObject({ status: 'fail', reason: expect.stringMatching(/dirty-limit.*lab-a's QEMU 7\.2\.\d+ does not have/) });
    // `compress` was removed in 9.1: the 7.2 source has it, the 10.0 destination does not
    expect(await caps({ capabilities: { compress: true } })).toMatchObject({ status: 'fail', reason: expect.stringMatching(new RegExp(`lab-b's QEMU ${q.version.replace(/\./g, '\\.')} has no compress`)) });
    // turned off, it is simply not sent to the QEMU that has no such thing
    expect(await caps({ capabilities: { compress: false } })).toMatchObject({ status: 'pass' });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', capabilities: { compress: false }, maxBandwidth: 100_000_000 });
    expect(await m.whenDone()).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    console.log(`[versions] ${figures.join('\n[versions] ')}`);
  });
});
