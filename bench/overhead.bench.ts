/**
 * Engine overhead: the same lab migration (demo guest, 64 MiB working set at 20 MiB/s, no
 * cap) done by a bare QMP script and by Ferry's engine, seven times each (three were too noisy), alternating, the
 * VM moving back and forth between lab-a and lab-b. Compared: QEMU's total migration time
 * and the wall time from "go" to `migrate` issued, destination start included.
 * Last line: one JSON object. Targets: total time <= 1.03x bare; go -> migrate <= 1.0 s (KVM).
 */
import path from 'node:path';
import { makeTestLab } from '../test/support/lab';
import { LocalTransport } from '../electron/core/transport/local-transport';
import { QmpClient } from '../electron/core/qmp/qmp-client';
import { launchVm, readArgvRecord, stopVm, vmFiles } from '../electron/core/hosts/vm-launcher';
import { readTimeline } from '../electron/core/recorder/timeline-reader';

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
process.stdout.on('error', () => {});
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const lab = await makeTestLab();
const local = new LocalTransport();
const addr: Record<string, string> = { 'lab-a': '127.0.0.2', 'lab-b': '127.0.0.3' };

async function bare(from: string, to: string): Promise<{ totalMs: number; goToMigrateMs: number; reservationMs: number }> {
  const src = vmFiles(path.join(lab.root, from), 'demo');
  const rec = (await readArgvRecord(local, src.argvFile))!;
  const t0 = performance.now();
  const dest = await launchVm(local, path.join(lab.root, to), { ...rec.spec, accel: rec.accel, paused: false, extraArgs: [...(rec.spec.extraArgs ?? []).filter((a, i, arr) => a !== '-incoming' && arr[i - 1] !== '-incoming'), '-incoming', 'defer'] });
  const sq = await QmpClient.connect(await local.openUnix(src.qmpSocket));
  const dq = await QmpClient.connect(await local.openUnix(dest.qmpSocket));
  for (const q of [sq, dq]) await q.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
  await sq.execute('migrate-set-parameters', { 'max-bandwidth': 10_000_000_000 });
  await dq.execute('migrate-incoming', { uri: `tcp:${addr[to]}:0` });
  const port = (await dq.execute<{ 'socket-address': { port: string }[] }>('query-migrate'))['socket-address'][0]!.port;
  const reservationMs = performance.now() - t0;
  const done = sq.waitForEvent('MIGRATION', { predicate: (e) => ['completed', 'failed', 'cancelled'].includes(String(e.data.status)), timeoutMs: 120_000 });
  await sq.execute('migrate', { uri: `tcp:${addr[to]}:${port}` });
  const goToMigrateMs = performance.now() - t0;
  const ev = await done;
  if (ev.data.status !== 'completed') throw new Error(`bare migration ${ev.data.status}`);
  await sleep(300);
  const info = await sq.execute<{ 'total-time': number }>('query-migrate');
  sq.close();
  dq.close();
  await stopVm(local, path.join(lab.root, from), 'demo');
  return { totalMs: info['total-time'], goToMigrateMs, reservationMs };
}

async function engine(from: string, to: string): Promise<{ totalMs: number; goToMigrateMs: number }> {
  const t0 = Date.now();
  const m = await lab.service.engine.start({ vm: 'demo', from, to });
  const final = await m.whenDone();
  if (final.outcome !== 'completed') throw new Error(`engine migration ${final.outcome}: ${final.reason}`);
  const setup = readTimeline(m.timelineFile).records.find((r) => r.type === 'phase' && (r as { phase: string }).phase === 'setup') as { t: number };
  return { totalMs: final.totalTimeMs!, goToMigrateMs: setup.t - t0 };
}

try {
  await lab.up({ workload: { wsMiB: 64, rateMiBs: 20 } });
  await sleep(1000);
  let where = 'lab-a';
  const other = () => (where === 'lab-a' ? 'lab-b' : 'lab-a');
  const b: Awaited<ReturnType<typeof bare>>[] = [];
  const e: Awaited<ReturnType<typeof engine>>[] = [];
  for (let i = 0; i < RUNS; i++) {
    b.push(await bare(where, other()));
    where = other();
    await sleep(500);
    e.push(await engine(where, other()));
    where = other();
    await sleep(500);
    console.log(`run ${i + 1}: bare total ${b.at(-1)!.totalMs} ms (go->migrate ${b.at(-1)!.goToMigrateMs.toFixed(0)} ms), engine total ${e.at(-1)!.totalMs} ms (go->migrate ${e.at(-1)!.goToMigrateMs} ms)`);
  }
  const bt = median(b.map((x) => x.totalMs));
  const et = median(e.map((x) => x.totalMs));
  const bg = median(b.map((x) => x.goToMigrateMs));
  const eg = median(e.map((x) => x.goToMigrateMs));
  console.log(JSON.stringify({
    bench: 'overhead', runs: RUNS, accel: (await readArgvRecord(local, vmFiles(path.join(lab.root, where), 'demo').argvFile))?.accel,
    bare: { totalMsMedian: bt, goToMigrateMsMedian: Math.round(bg), reservationMsMedian: Math.round(median(b.map((x) => x.reservationMs))) },
    engine: { totalMsMedian: et, goToMigrateMsMedian: eg },
    totalRatio: Math.round((et / bt) * 1000) / 1000,
    goToMigrateRatio: Math.round((eg / bg) * 100) / 100,
    targets: { totalRatioMax: 1.03, engineGoToMigrateMsMax: 1000 },
    met: et / bt <= 1.03 && eg <= 1000,
  }));
} finally {
  await lab.close();
}
