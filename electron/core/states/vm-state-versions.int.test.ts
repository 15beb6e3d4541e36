/**
 * Saved states on QEMU 7.2 and 10.0: on 10.0 a plain save is written by QEMU itself
 * (`file:` + mapped-ram + multifd), on 7.2 through the `exec:` pipeline; both restore with
 * the guest's memory intact, and each way's save and restore times are printed side by side.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { readTimeline } from '../recorder/timeline-reader';
import path from 'node:path';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { needQemu10, qemu10 } from '../../../test/support/qemu-versions';
import type { StateResult } from '../../../shared/model/saved-state';

const skip10 = needQemu10();
const figures: string[] = [];

describe('saved states across QEMU versions (real QEMU + demo guest)', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  const invoke = async <T>(channel: string, req: Record<string, unknown>): Promise<T> => {
    const r = await lab!.service.invoke(channel, req);
    if (!r.ok) throw Object.assign(new Error(r.error.message), r.error);
    return r.value as T;
  };

  async function verify(hostId: string): Promise<void> {
    const con = await lab!.guest(hostId);
    try {
      expect(await con.command('v', 30_000)).toMatchObject({ kind: 'verify', ok: true, bad: 0, stale: 0 });
    } finally {
      con.close();
    }
  }

  async function roundTrip(label: string, layout: 'auto' | 'stream', expected: 'stream' | 'mapped-ram'): Promise<void> {
    const saved = await invoke<StateResult>('states:save', { hostId: 'lab-a', vm: 'demo', file: `${layout}.state`, layout });
    expect(saved.layout).toBe(expected);
    const file = path.join(lab!.root, 'lab-a-states', `${layout}.state`);
    expect(statSync(file).size).toBe(saved.sizeBytes);
    const head = readFileSync(file).subarray(0, 4).toString('latin1');
    expect(head).toBe('QEVM');
    const meta = JSON.parse(readFileSync(`${file}.ferry.json`, 'utf8')) as { layout?: string };
    expect(meta.layout ?? 'stream').toBe(expected);
    const restored = await invoke<StateResult>('states:restore', { hostId: 'lab-a', file: `${layout}.state` });
    expect(restored).toMatchObject({ runState: 'running', layout: expected });
    await verify('lab-a');
    const qemuMs = (t: string) => readTimeline(t).samples.findLast((x) => x.status === 'completed')?.totalTimeMs;
    const allocated = Number(execFileSync('du', ['-B1', file], { encoding: 'utf8' }).split('\t')[0]);
    figures.push(`${label} ${expected}: save ${saved.tookMs} ms (QEMU's part ${qemuMs(saved.timeline) ?? '?'} ms), restore ${restored.tookMs} ms, file ${(saved.sizeBytes / 1048576).toFixed(1)} MiB (${(allocated / 1048576).toFixed(1)} MiB allocated; stream ${((saved.streamBytes ?? 0) / 1048576).toFixed(1)} MiB)`);
  }

  it('QEMU 7.2: a plain save goes through the exec: pipeline (no mapped-ram in its schema) and restores intact', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 128, rateMiBs: 20 } });
    await roundTrip('7.2', 'auto', 'stream');
  });

  it.skipIf(skip10 !== undefined)('QEMU 10.0: mapped-ram by default and the exec: stream on request, both restore intact; a 7.2 host refuses the mapped-ram file', async () => {
    const q = qemu10();
    if (!q.ok) return;
    lab = await makeTestLab();
    await lab.up({ qemuA: q.install, workload: { wsMiB: 128, rateMiBs: 20 } });
    await roundTrip(q.version, 'auto', 'mapped-ram');
    await roundTrip(q.version, 'stream', 'stream');
    // lab-b runs 7.2: it has neither the 10.0 machine type nor mapped-ram; it says so and leaves nothing running
    await invoke('states:save', { hostId: 'lab-a', vm: 'demo', file: 'for-b.state' });
    await expect(invoke('states:restore', { hostId: 'lab-b', file: path.join(lab.root, 'lab-a-states', 'for-b.state') }))
      .rejects.toMatchObject({ code: 'UNSUPPORTED', message: expect.stringMatching(/machine type pc-i440fx-10\.0 is not available in QEMU 7\.2\.\d+/) });
    expect(await lab.pidOn('lab-b')).toBeUndefined();
  });

  it('prints the figures', () => {
    console.log(`[states] ${figures.join('\n[states] ')}`);
  });
});
