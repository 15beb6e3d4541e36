/** Several migrations at once, QEMU's optional features, and pause-before-switchover. */
import { afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { demoVmSpec } from '../lab/local-lab';
import { launchVm } from '../hosts/vm-launcher';
import { LocalTransport } from '../transport/local-transport';
import { waitFor } from '../../../test/support/processes';
import { readTimeline } from '../recorder/timeline-reader';

describe('more migration plans (real QEMU + demo guest)', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  it('runs two migrations at once, in opposite directions, both verified', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 32, rateMiBs: 10 } });
    // a second demo VM on lab-b
    await launchVm(new LocalTransport(), path.join(lab.root, 'lab-b'), demoVmSpec({ name: 'demo2', wsMiB: 32, rateMiBs: 10 }));
    await lab.waitGuest('lab-b', 'demo2');
    const [a, b] = await Promise.all([
      lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 60_000_000 }),
      lab.service.engine.start({ vm: 'demo2', from: 'lab-b', to: 'lab-a', maxBandwidth: 60_000_000 }),
    ]);
    expect(lab.service.engine.list().filter((m) => !['completed', 'failed', 'cancelled'].includes(m.phase))).toHaveLength(2);
    const [fa, fb] = await Promise.all([a.whenDone(), b.whenDone()]);
    expect(fa).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    expect(fb).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    expect(await lab.pidOn('lab-b', 'demo')).toBeGreaterThan(0);
    expect(await lab.pidOn('lab-a', 'demo2')).toBeGreaterThan(0);
    expect(a.timelineFile).not.toBe(b.timelineFile);
  });

  it('uses auto-converge, xbzrle and multifd when planned, and waits before switchover until told to continue', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 48, rateMiBs: 40 } });
    const m = await lab.service.engine.start({
      vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 60_000_000, autoConverge: true, xbzrleCacheBytes: 32 << 20, multifdChannels: 2, pauseBeforeSwitchover: true,
    });
    const header = readTimeline(m.timelineFile).header!;
    expect(header.capabilities).toMatchObject({ 'auto-converge': true, xbzrle: true, multifd: true, 'pause-before-switchover': true });
    expect(header.parameters).toMatchObject({ 'xbzrle-cache-size': 32 << 20, 'multifd-channels': 2 });
    await waitFor(() => m.samples.at(-1)?.status === 'pre-switchover', 'pre-switchover', 60_000);
    expect(m.phase).toBe('stop-and-copy');
    await m.control({ action: 'continue' });
    const final = await m.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    expect(m.samples.some((s) => s.xbzrle !== undefined)).toBe(true);
  });
});
