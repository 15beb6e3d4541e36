/**
 * The fault-injection ground: the netns lab, where the migration stream crosses a real veth
 * link that can be shaped and cut.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { netnsAvailable, readLabState, setLink, shapeLink } from '../lab/local-lab';
import { LocalTransport } from '../transport/local-transport';
import { waitFor } from '../../../test/support/processes';
import { kvmUsable } from '../../../test/support/qemu';
import { readTimeline } from '../recorder/timeline-reader';

const avail = await netnsAvailable();
if (!avail.ok) console.log(`[netns] migration tests skipped: ${avail.reason}`);

describe.skipIf(!avail.ok)('migrations in the netns lab', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  it('recovers a postcopy migration after the link is cut and restored', async () => {
    lab = await makeTestLab();
    await lab.up({ netns: true, netnsPrefix: `frec${process.pid % 10000}`, workload: { wsMiB: 128, rateMiBs: null } });
    const ns = readLabState(lab.root)!.netns!;
    // Make a dead link visible in ~3 s instead of TCP's long retransmit timeout.
    for (const n of ns.namespaces) await new LocalTransport().exec(['ip', 'netns', 'exec', n, 'sysctl', '-qw', 'net.ipv4.tcp_retries2=3']);
    await shapeLink(ns, 60e6);
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', mode: 'postcopy-after', postcopyAfterPasses: 1 });
    // Cut once the destination runs the guest and pulls pages (not in the switchover window itself).
    await waitFor(() => m.phase === 'postcopy' && (m.samples.at(-1)?.postcopyRequests ?? 0) > 50 && (m.samples.at(-1)?.remainingBytes ?? 0) > 40e6, 'postcopy pulling pages', 40_000);
    await setLink(ns, false);
    await waitFor(() => m.phase === 'postcopy-paused', 'postcopy-paused', 30_000);
    await setLink(ns, true);
    await m.control({ action: 'recover' });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    const phases = readTimeline(m.timelineFile).records.filter((r) => r.type === 'phase').map((r) => (r as { phase: string }).phase);
    expect(phases).toEqual(expect.arrayContaining(['postcopy', 'postcopy-paused', 'completed']));
    if (kvmUsable()) expect(final.verify).toMatchObject({ ok: true });
  });
});
