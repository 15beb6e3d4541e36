/** Each policy on the lab, against workloads that need it. */
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { readTimeline } from '../recorder/timeline-reader';
import { kvmUsable } from '../../../test/support/qemu';

type PolicyRec = { type: 'policy'; policy: string; action: string; why: string; t: number };
const policiesIn = (file: string) => readTimeline(file).records.filter((r) => r.type === 'policy') as PolicyRec[];

describe('policies (real QEMU + demo guest)', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  it('postcopy-when-never completes a workload plain precopy cannot', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 64, rateMiBs: 300 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 30_000_000, downtimeLimitMs: 50, policy: { name: 'postcopy-when-never' } });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    // plain precopy would not have converged: the projection said so before the switch
    expect(m.samples.some((s) => s.phase === 'precopy' && s.projection?.verdict === 'never')).toBe(true);
    const recs = policiesIn(m.timelineFile);
    expect(recs).toEqual([expect.objectContaining({ policy: 'postcopy-when-never', action: 'postcopy', why: expect.stringMatching(/never converge/) })]);
    expect(m.samples.some((s) => s.phase === 'postcopy')).toBe(true);
    if (kvmUsable()) expect(final.verify).toMatchObject({ ok: true });
  });

  it('deadline finishes before its deadline, escalating step by step', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 64, rateMiBs: 300 } });
    const deadlineMs = 12_000;
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 20_000_000, downtimeLimitMs: 30, policy: { name: 'deadline', deadlineMs, ceilingDowntimeMs: 60, allowPostcopy: false } });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    const t = readTimeline(m.timelineFile);
    const completedAt = (t.records.find((r) => r.type === 'phase' && (r as { phase: string }).phase === 'commitment') as { t: number }).t;
    expect(completedAt - m.startedAt).toBeLessThanOrEqual(deadlineMs);
    const actions = policiesIn(m.timelineFile).map((r) => r.action);
    expect(actions[0]).toBe('set-bandwidth');
    expect(actions.length).toBeGreaterThanOrEqual(1);
    expect(final.verify).toMatchObject({ ok: true });
  });

  it('downtime-steps raises the limit pass by pass, visibly, until it converges', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 64, rateMiBs: 60 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 60_000_000, downtimeLimitMs: 10, policy: { name: 'downtime-steps', stepMs: 150, ceilingMs: 1500, everyPasses: 1 } });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    const steps = policiesIn(m.timelineFile).filter((r) => r.action === 'set-downtime');
    expect(steps.length).toBeGreaterThanOrEqual(1);
    const limits = steps.map((r) => Number(/→ (\d+) ms/.exec(r.why)![1]));
    expect(limits).toEqual([...limits].sort((a, b) => a - b));
    expect(limits[0]).toBe(160);
    const controls = readTimeline(m.timelineFile).records.filter((r) => r.type === 'control' && (r as { who: string }).who === 'policy downtime-steps');
    expect(controls.length).toBe(steps.length);
  });

  it('dynamic-rate starts at the minimum and follows the dirty rate up to the maximum', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 64, rateMiBs: 40 } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', downtimeLimitMs: 300, policy: { name: 'dynamic-rate', minBandwidth: 20_000_000, maxBandwidth: 200_000_000, marginBandwidth: 25_000_000 } });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    const bw = policiesIn(m.timelineFile).filter((r) => r.action === 'set-bandwidth');
    expect(bw[0]!.why).toMatch(/start at the minimum 20\.0 MB\/s/);
    expect(bw.length).toBeGreaterThanOrEqual(2);
    expect(bw[1]!.why).toMatch(/dirty rate .* \+ margin/);
    // A margin of 25 MB/s over a 40 MiB/s guest: it converges seconds after the first raise
    // (with 6.25 MB/s it took 28 s on a busy machine, and over 60 s on a busier one).
  }, 120_000);
});
