/**
 * Drives one DriverMigration the way the engine's run does (reserve → start → sample every
 * 100 ms → activate/finalSample/complete or finalSample/rollback → close), recording what the
 * driver reports. For a driver's own integration tests: the run itself is tested elsewhere.
 */
import type { DriverContext, DriverMigration, DriverReading, EngineHosts, HypervisorDriver, ReportedState } from '../../electron/core/migration/drivers/hypervisor-driver';
import type { MigrationFinal, MigrationPhase, MigrationPlan } from '../../shared/model/migration';
import { rootLog } from '../../electron/core/log';

export interface DriverRun {
  dm: DriverMigration;
  phase(): MigrationPhase;
  reports: { state: ReportedState; reason?: string; t: number }[];
  events: { side: string; event: string; data?: Record<string, unknown>; t: number }[];
  notes: string[];
  samples: DriverReading['sample'][];
  sampleMs: number[];
  /** Resolves when the driver reported the end and the run's finishing steps are done. */
  done: Promise<{ outcome: MigrationFinal['outcome']; reason?: string; final?: DriverReading['sample']; destinationRunning?: boolean; sourceRunning?: boolean }>;
  waitFor(pred: () => boolean, what: string, ms?: number): Promise<void>;
}

const END: ReportedState[] = ['completed', 'failed', 'cancelled'];

/** Runs whose end has not come (a test that failed half-way leaves one). */
const unfinished = new Set<DriverRun>();

/**
 * For afterEach: brings every run a failed test left behind to an end, so the next test
 * starts from a guest that runs somewhere. A paused postcopy is recovered, a postcopy is
 * let finish at full speed, anything else is cancelled; failing that, the driver is closed.
 * Says what it did (a rescue is never silent); resolves to the number of runs it met.
 */
export async function settleRuns(ms = 60_000): Promise<number> {
  const runs = [...unfinished];
  for (const r of runs) {
    const phase = r.phase();
    console.warn(`driver-run: a test left a migration in ${phase}: ending it`);
    const step = phase === 'postcopy-paused' ? { action: 'recover' as const } : phase === 'postcopy' ? { action: 'set-bandwidth' as const, bytesPerSecond: 10e9 } : { action: 'cancel' as const };
    try {
      if (r.dm.controls.includes(step.action)) await r.dm.control(step, phase);
      if (step.action === 'recover') await r.waitFor(() => r.phase() === 'postcopy', 'postcopy again', 20_000).then(() => r.dm.control({ action: 'set-bandwidth', bytesPerSecond: 10e9 }, 'postcopy'));
      await Promise.race([r.done, new Promise((_, rej) => setTimeout(() => rej(new Error(`no end within ${ms} ms`)), ms).unref())]);
    } catch (e) {
      console.warn(`driver-run: could not end it (${(e as Error).message}); closing the driver`);
      await r.dm.close().catch((x: unknown) => console.warn(`driver-run: closing: ${(x as Error).message}`));
      unfinished.delete(r);
    }
  }
  return runs.length;
}

export async function runDriver(driver: HypervisorDriver, plan: MigrationPlan, hosts: EngineHosts, options: { intervalMs?: number; attach?: { hostId: string; vm: string } } = {}): Promise<DriverRun> {
  let phase: MigrationPhase = 'preflight';
  let ending: { state: ReportedState; reason?: string } | undefined;
  let resolveEnd!: (v: { state: ReportedState; reason?: string }) => void;
  const ended = new Promise<{ state: ReportedState; reason?: string }>((r) => (resolveEnd = r));
  const run: Omit<DriverRun, 'dm' | 'done'> = {
    phase: () => phase, reports: [], events: [], notes: [], samples: [], sampleMs: [],
    async waitFor(pred, what, ms = 60_000) {
      const deadline = Date.now() + ms;
      while (!pred()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (phase ${phase}, reports ${run.reports.map((r) => r.state).join(',')})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
  const ctx: DriverContext = {
    run: { id: `test-${Date.now()}`, plan, startedAt: Date.now(), timelineFile: '/dev/null', mode: options.attach ? 'attach' : 'engine' },
    hosts, log: rootLog.child('driver-run'),
    phase: () => phase,
    ended: () => ending !== undefined,
    report: (state, reason) => {
      run.reports.push({ state, ...(reason ? { reason } : {}), t: Date.now() });
      if (ending) return;
      if (END.includes(state)) {
        ending = { state, ...(reason ? { reason } : {}) };
        resolveEnd(ending);
      } else phase = state;
    },
    sourceStopped: () => undefined,
    event: (side, event, data, t) => run.events.push({ side, event, ...(data ? { data } : {}), t }),
    note: (text) => run.notes.push(text),
    gap: () => undefined,
    switchovers: () => [],
  };
  const dm = options.attach ? await driver.attach(options.attach, ctx) : await driver.open(plan, ctx);
  if (!options.attach) phase = 'reservation';
  try {
    if (!options.attach) await dm.reserve();
    await dm.start();
  } catch (e) {
    // As the run does: a failed reserve or start is rolled back, then closed.
    await dm.rollback().catch(() => undefined); // cleanup after a test run: the test's own failure is what matters
    await dm.close().catch(() => undefined); // likewise: the start's error is thrown
    throw e;
  }
  const timer = setInterval(() => {
    if (ending) return;
    const t0 = performance.now();
    dm.sample().then((r) => {
      run.sampleMs.push(performance.now() - t0);
      if (!r || ending) return;
      run.samples.push(r.sample);
      if (r.state) ctx.report(r.state);
    }, () => undefined); // a failed sample: the next tick tries again, as in the run
  }, options.intervalMs ?? 100);
  const done: DriverRun['done'] = ended.then(async (end) => {
    clearInterval(timer);
    const outcome = end.state as MigrationFinal['outcome'];
    if (options.attach) {
      const final = await dm.finalSample(outcome);
      await dm.close();
      phase = outcome;
      return { outcome, ...(end.reason ? { reason: end.reason } : {}), ...(final ? { final } : {}) };
    }
    if (outcome === 'completed') {
      phase = 'commitment';
      const { destinationRunning } = await dm.activate();
      phase = 'activation';
      const final = await dm.finalSample(outcome);
      await dm.complete();
      await dm.close();
      phase = 'completed';
      return { outcome, ...(end.reason ? { reason: end.reason } : {}), ...(final ? { final } : {}), destinationRunning };
    }
    const final = await dm.finalSample(outcome);
    const rb = await dm.rollback();
    await dm.close();
    phase = outcome;
    return { outcome, ...(end.reason ? { reason: end.reason } : {}), ...(final ? { final } : {}), sourceRunning: rb.sourceRunning };
  });
  const r = { ...run, dm, done } as DriverRun;
  unfinished.add(r);
  void done.finally(() => unfinished.delete(r)).catch(() => undefined); // a failing finish is the test's to see, through r.done
  return r;
}
