/**
 * The trainer's demo through the console service (real QEMU on the loopback lab): precopy
 * then postcopy of one workload, both recorded; the console can list and read the
 * timelines; each migration is announced before its first phase or sample.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { parseTimeline } from '../../../shared/model/timeline';
import { compareData } from '../../../shared/report/compare';
import { entryFromTimeline } from '../../../shared/report/picture';

let lab: TestLab;
beforeAll(async () => {
  lab = await makeTestLab();
}, 120_000);
afterAll(async () => {
  await lab?.close();
}, 120_000);

describe('lab demo', () => {
  it('runs precopy then postcopy of the same workload; both complete verified and are listed and readable', async () => {
    const events: string[] = [];
    const offs = [
      lab.service.on('migration:started', (s) => events.push(`started ${s.id}`)),
      lab.service.on('migration:phase', (p) => events.push(`phase ${p.id} ${p.phase}`)),
      lab.service.on('migration:sample', (p) => events.push(`sample ${p.id}`)),
    ];
    const t0 = Date.now();
    const r = await lab.service.invoke('lab:demo', { bandwidthMBps: 60 });
    const took = Date.now() - t0;
    offs.forEach((o) => o());
    if (!r.ok) throw new Error(r.error.message);
    const runs = (r.value as { runs: { label: string; id: string; timeline: string; outcome: string }[] }).runs;
    expect(runs.map((x) => [x.label, x.outcome])).toEqual([['precopy', 'completed'], ['postcopy', 'completed']]);
    console.log(`lab demo (boot + precopy + postcopy at 60 MB/s): ${(took / 1000).toFixed(1)} s`);

    // Each migration is announced before anything else about it.
    for (const run of runs) {
      const mine = events.filter((e) => e.includes(run.id));
      expect(mine[0]).toBe(`started ${run.id}`);
      expect(mine.some((e) => e.startsWith('sample'))).toBe(true);
    }

    const list = await lab.service.invoke('timelines:list', {});
    if (!list.ok) throw new Error(list.error.message);
    const names = (list.value as { name: string; outcome?: string }[]);
    for (const run of runs) expect(names.find((n) => n.name === run.timeline)?.outcome).toBe('completed');

    const entries = [];
    for (const run of runs) {
      const t = await lab.service.invoke('timelines:read', { name: run.timeline });
      if (!t.ok) throw new Error(t.error.message);
      const parsed = parseTimeline((t.value as { text: string }).text);
      expect(parsed.truncated).toBe(false);
      const e = entryFromTimeline(parsed);
      expect(e.final?.verify?.ok).toBe(true);
      entries.push(e);
    }
    // Same workload, same cap: precopy needs more passes; postcopy moved the guest after one.
    const [pre, post] = entries;
    expect(pre!.summary.plan.maxBandwidth).toBe(post!.summary.plan.maxBandwidth);
    expect(post!.phases.map((p) => p.phase)).toContain('postcopy');
    expect(pre!.phases.map((p) => p.phase)).not.toContain('postcopy');
    expect(pre!.final!.passes!).toBeGreaterThan(2);
    const c = compareData([{ name: 'precopy', entry: pre! }, { name: 'postcopy', entry: post! }]);
    expect(c.table.find((x) => x.label === 'Mode')!.values).toEqual(['precopy', 'postcopy after 1 pass']);

    // The console refuses names outside its timeline directory.
    const bad = await lab.service.invoke('timelines:read', { name: '../lab-state.jsonl' });
    expect(bad.ok).toBe(false);
  }, 240_000);

  it('a preflight shown for a plan is recorded with the migration started from it, and only with that one', async () => {
    const pf = await lab.service.invoke('migrations:preflight', { vm: 'demo', from: 'lab-a', to: 'lab-b' });
    if (!pf.ok) throw new Error(pf.error.message);
    const recordedOf = async (start: { vm: string; from: string; to: string; maxBandwidth: number }) => {
      const r = await lab.service.invoke('migrations:start', start);
      if (!r.ok) throw new Error(r.error.message);
      const m = lab.service.engine.get((r.value as { id: string }).id);
      expect((await m.whenDone()).outcome).toBe('completed');
      const t = await lab.service.invoke('timelines:read', { name: m.timelineFile.slice(m.timelineFile.lastIndexOf('/') + 1) });
      if (!t.ok) throw new Error(t.error.message);
      return entryFromTimeline(parseTimeline((t.value as { text: string }).text));
    };
    const there = await recordedOf({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 200e6 });
    expect(there.preflight?.checks.map((c) => c.id)).toEqual((pf.value as { checks: { id: string }[] }).checks.map((c) => c.id));
    // Back again: no preflight was shown for this plan, so none is recorded.
    const back = await recordedOf({ vm: 'demo', from: 'lab-b', to: 'lab-a', maxBandwidth: 200e6 });
    expect(back.preflight).toBeUndefined();
  }, 180_000);

  it('runs from whatever state the lab is in: the VM moved to lab-b by hand; a refused start leaves no tab and no VM', async () => {
    const moved = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 200e6 });
    expect((await moved.whenDone()).outcome).toBe('completed');
    expect(await lab.pidOn('lab-a')).toBeUndefined();
    // A start from where the VM is not: announced, then ended at once (no tab stuck in preflight).
    const seen: string[] = [];
    const offs = [lab.service.on('migration:started', (x) => seen.push(`started ${x.id}`)), lab.service.on('migration:ended', (x) => seen.push(`ended ${x.id} ${x.final.outcome}`))];
    const refused = await lab.service.call('migrations:start', { vm: 'demo', from: 'lab-a', to: 'lab-b' });
    offs.forEach((o) => o());
    expect(refused.ok).toBe(false);
    expect(seen).toHaveLength(2);
    expect(seen[1]).toMatch(/^ended \S+ failed$/);
    expect(seen[0]!.slice('started '.length)).toBe(seen[1]!.split(' ')[1]);
    const listed = await lab.service.call('migrations:list', {});
    expect(listed.ok && listed.value.filter((m) => !['completed', 'failed', 'cancelled'].includes(m.phase))).toEqual([]);
    const r = await lab.service.call('lab:demo', { bandwidthMBps: 80 });
    if (!r.ok) throw new Error(r.error.message);
    expect(r.value.runs.map((x) => x.outcome)).toEqual(['completed', 'completed']);
    // Precopy went lab-b -> lab-a and postcopy back: one demo VM, on lab-b.
    expect(await lab.pidOn('lab-b')).toBeGreaterThan(0);
    expect(await lab.pidOn('lab-a')).toBeUndefined();
  }, 240_000);
});
