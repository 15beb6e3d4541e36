/**
 * Policies against a workload dirtying at twice the bandwidth cap: plain precopy (cancelled
 * after PRECOPY_LIMIT_S, reported as not converged), "postcopy when never converges" and
 * "deadline". For each: completion, downtime (limit 300 ms), total time, and total time ÷ the
 * floor (bytes actually sent ÷ the cap). Last line: one JSON object.
 * Targets: the policies complete, downtime within the limit, total <= 1.3x the floor.
 */
import { makeTestLab } from '../test/support/lab';
import type { MigrationPlanInput } from '../shared/model/migration';

process.stdout.on('error', () => {});
const CAP = 20_000_000;
const LIMIT_MS = 300;
const PRECOPY_LIMIT_S = Number(process.env.PRECOPY_LIMIT_S ?? 60);

const runs: Record<string, unknown>[] = [];
for (const [name, extra] of [
  ['plain precopy', {}],
  ['postcopy-when-never', { policy: { name: 'postcopy-when-never' } }],
  ['deadline 20 s', { policy: { name: 'deadline', deadlineMs: 20_000, ceilingDowntimeMs: LIMIT_MS, allowPostcopy: true } }],
] as [string, Partial<MigrationPlanInput>][]) {
  const lab = await makeTestLab();
  try {
    await lab.up({ memoryKiB: 131_000, workload: { wsMiB: 48, rateMiBs: Math.round((2 * CAP) / (1 << 20)) } });
    await new Promise((r) => setTimeout(r, 1500));
    const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: CAP, downtimeLimitMs: LIMIT_MS, ...extra });
    const timer = setTimeout(() => void m.control({ action: 'cancel' }, 'bench time limit').catch(() => undefined), PRECOPY_LIMIT_S * 1000);
    const f = await m.whenDone();
    clearTimeout(timer);
    const sent = f.transferredBytes ?? Math.max(0, ...m.samples.map((s) => s.transferredBytes ?? 0));
    const floorMs = (sent / CAP) * 1000;
    const r = {
      run: name, completed: f.outcome === 'completed', outcome: f.outcome, downtimeMs: f.downtimeMs, totalMs: f.totalTimeMs ?? Date.now() - m.startedAt,
      sentMB: Math.round(sent / 1e5) / 10, totalOverFloor: f.totalTimeMs ? Math.round((f.totalTimeMs / floorMs) * 100) / 100 : undefined, verified: f.verify?.ok,
    };
    runs.push(r);
    console.log(JSON.stringify(r));
  } finally {
    await lab.close();
  }
}
const policies = runs.slice(1);
console.log(JSON.stringify({
  bench: 'policy', capMBs: CAP / 1e6, dirtyMiBs: Math.round((2 * CAP) / (1 << 20)), downtimeLimitMs: LIMIT_MS, runs,
  targets: { completes: true, downtimeWithinLimit: true, totalOverFloorMax: 1.3 },
  met: policies.every((r) => r.completed && (r.downtimeMs as number) <= LIMIT_MS && (r.totalOverFloor as number) <= 1.3),
}));
