/**
 * The run's state machine, driven by a scripted driver (the real QMP driver is exercised by
 * the *.int.test.ts files against real QEMUs): transitions, late and impossible reports,
 * the control guard, and what a refused plan or a failed reservation leaves behind.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MIGRATION_PHASES, MigrationPlanSchema, TERMINAL_PHASES } from '../../../shared/model/migration';
import type { MigrationFinal, MigrationPhase } from '../../../shared/model/migration';
import { readTimeline } from '../recorder/timeline-reader';
import { recentLogLines } from '../log';
import { MigrationRun, TRANSITIONS, nextSampleSlot, transitionFor } from './migration-run';
import type { DriverCapability, DriverContext, DriverMigration, DriverReading, HypervisorDriver, MigrationControl, MigrationControlAction } from './drivers/hypervisor-driver';

const ALL_CONTROLS: MigrationControlAction[] = ['cancel', 'set-bandwidth', 'set-downtime', 'postcopy', 'stop-vm', 'pause-postcopy', 'recover', 'continue'];

/** A driver whose migration does what the test tells it, and says what it was asked. */
class ScriptedMigration implements DriverMigration {
  readonly calls: string[] = [];
  failReserve: Error | undefined;
  constructor(readonly ctx: DriverContext, readonly capabilities: DriverCapability[], readonly controls: MigrationControlAction[]) {}
  facts() {
    return { source: { label: 'src' }, destination: { label: 'dst' }, vm: { memoryMiB: 64 } };
  }
  serialConsole() {
    return undefined;
  }
  async reserve() {
    this.calls.push('reserve');
    this.ctx.note('destination listening');
    if (this.failReserve) throw this.failReserve;
  }
  async start() {
    this.calls.push('start');
    this.ctx.report('setup');
  }
  async sample(): Promise<DriverReading> {
    return { sample: { t: Date.now(), status: 'active', pass: 1, remainingBytes: 1e6, totalBytes: 1e7, transferredBytes: 1e5 } };
  }
  async control(c: MigrationControl, phase: MigrationPhase) {
    this.calls.push(`control ${c.action} in ${phase}`);
  }
  async activate() {
    this.calls.push('activate');
    return { destinationRunning: true };
  }
  async finalSample(outcome: MigrationFinal['outcome']) {
    this.calls.push(`finalSample ${outcome}`);
    return { t: Date.now(), status: outcome, downtimeMs: 12, totalTimeMs: 900, pass: 3 };
  }
  async complete() {
    this.calls.push('complete');
    return {};
  }
  async rollback() {
    this.calls.push('rollback');
    return { sourceRunning: true, final: {} };
  }
  async close() {
    this.calls.push('close');
    return {};
  }
}

class ScriptedDriver implements HypervisorDriver {
  readonly name = 'scripted';
  last: ScriptedMigration | undefined;
  constructor(readonly capabilities: DriverCapability[] = ['postcopy'], readonly controls: MigrationControlAction[] = ALL_CONTROLS) {}
  manages() {
    return true;
  }
  async listVms() {
    return [];
  }
  async preflight() {
    return { ok: true, checks: [], tookMs: 0 };
  }
  async open(_plan: unknown, ctx: DriverContext) {
    this.last = new ScriptedMigration(ctx, [...this.capabilities], this.controls);
    return this.last;
  }
  async attach(): Promise<DriverMigration> {
    throw new Error('not scripted');
  }
  async recoverable() {
    return [];
  }
  async resume(_found: unknown, _phase: MigrationPhase, ctx: DriverContext): Promise<DriverMigration> {
    this.last = new ScriptedMigration(ctx, [...this.capabilities], this.controls);
    this.last.start = async () => {
      this.last!.calls.push('start');
      ctx.report('completed');
    };
    return this.last;
  }
}

const hosts = { host: async () => { throw new Error('unused'); }, transport: async () => { throw new Error('unused'); } };
const phasesOf = (file: string) => readTimeline(file).records.filter((r) => r.type === 'phase').map((r) => (r as { phase: MigrationPhase }).phase);
const until = async (ok: () => boolean) => {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(ok()).toBe(true);
};

describe('the transition table', () => {
  it('moves phases forward only (postcopy and postcopy-paused alternate), and nothing leaves a terminal phase', () => {
    const order = MIGRATION_PHASES.indexOf.bind(MIGRATION_PHASES);
    for (const t of TRANSITIONS) {
      for (const from of t.from) {
        expect(TERMINAL_PHASES).not.toContain(from);
        if (!(from === 'postcopy-paused' && t.to === 'postcopy')) expect(order(t.to), `${from} -${t.on}-> ${t.to}`).toBeGreaterThan(order(from));
      }
    }
  });

  it('tells a move, late news and an impossible report apart', () => {
    expect(transitionFor('precopy', 'stop-and-copy')).toEqual({ to: 'stop-and-copy' });
    expect(transitionFor('postcopy-paused', 'postcopy')).toEqual({ to: 'postcopy' });
    expect(transitionFor('stop-and-copy', 'completed')).toEqual({ to: 'commitment' });
    // A reply computed before the event that moved the run on
    expect(transitionFor('stop-and-copy', 'precopy')).toEqual({ late: true });
    expect(transitionFor('postcopy', 'stop-and-copy')).toEqual({ late: true });
    expect(transitionFor('precopy', 'precopy')).toEqual({ late: true });
    // Watching before a migration shows: the end of an earlier one
    expect(transitionFor('preflight', 'completed')).toEqual({ late: true });
    // Things that cannot happen
    expect(transitionFor('precopy', 'postcopy-paused')).toEqual({ impossible: true });
    expect(transitionFor('storage-copy', 'precopy')).toEqual({ impossible: true });
    expect(transitionFor('completed', 'activated')).toEqual({ impossible: true });
    expect(transitionFor('reservation', 'completed')).toEqual({ impossible: true });
  });
});

describe('the sampling clock', () => {
  it('takes the next multiple of the interval, never the slot just taken when a timer fires a little early', () => {
    expect(nextSampleSlot(1_000_040, 100, -Infinity)).toEqual({ slot: 10_001, delayMs: 60 });
    // Fired at 1 000 099.6 by the monotonic clock, read as 1 000 099 by the wall clock: not 1 ms later again.
    expect(nextSampleSlot(1_000_099, 100, 10_001)).toEqual({ slot: 10_002, delayMs: 101 });
    expect(nextSampleSlot(1_000_100, 100, 10_001)).toEqual({ slot: 10_002, delayMs: 100 });
    // Late by more than an interval (a busy loop): the next one due, not a burst to catch up.
    expect(nextSampleSlot(1_000_350, 100, 10_001)).toEqual({ slot: 10_004, delayMs: 50 });
  });
});

describe('a run', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ferry-run-test-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const plan = (extra: Record<string, unknown> = {}) => MigrationPlanSchema.parse({ vm: 'demo', from: 'a', to: 'b', sampleIntervalMs: 20, ...extra });

  it('goes through the phases the driver reports, and finishes in the driver\'s order', async () => {
    const driver = new ScriptedDriver();
    const run = new MigrationRun(plan(), driver, hosts, { timelineDir: dir });
    let announcedAt: MigrationPhase | undefined;
    run.onOpened((m) => (announcedAt = m.phase));
    await run.start();
    expect(announcedAt).toBe('preflight');
    const m = driver.last!;
    m.ctx.report('precopy');
    await until(() => run.samples.length >= 2);
    m.ctx.report('setup'); // late: changes nothing, says nothing
    m.ctx.report('stop-and-copy');
    m.ctx.report('completed');
    const final = await run.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', downtimeMs: 12, totalTimeMs: 900, passes: 3 });
    expect(phasesOf(run.timelineFile)).toEqual(['reservation', 'setup', 'precopy', 'stop-and-copy', 'commitment', 'activation', 'completed']);
    expect(m.calls).toEqual(['reserve', 'start', 'activate', 'finalSample completed', 'complete', 'close']);
    expect(run.refused).toEqual([]);
    const t = readTimeline(run.timelineFile);
    expect(t.header).toMatchObject({ driver: 'scripted', source: { label: 'src' }, destination: { label: 'dst' } });
    expect(t.samples.every((s) => s.phase !== 'preflight')).toBe(true);
    expect(run.summary()).toMatchObject({ driver: 'scripted', controls: ALL_CONTROLS, phase: 'completed' });
  });

  it('gives every sample a time later than the one before, even two readings in one millisecond', async () => {
    const driver = new ScriptedDriver();
    const run = new MigrationRun(plan(), driver, hosts, { timelineDir: dir });
    await run.start();
    const m = driver.last!;
    const frozen = Date.now();
    m.sample = async () => ({ sample: { t: frozen, status: 'active', pass: 1, remainingBytes: 1e6, totalBytes: 1e7, transferredBytes: 1e5 } });
    m.finalSample = async (outcome) => ({ t: frozen, status: outcome, downtimeMs: 12, totalTimeMs: 900, pass: 3 });
    m.ctx.report('precopy');
    await until(() => run.samples.length >= 3);
    m.ctx.report('cancelled');
    await run.whenDone();
    const ts = run.samples.map((x) => x.t);
    expect(ts.length).toBeGreaterThanOrEqual(4);
    expect(ts.every((t, i) => i === 0 || t > ts[i - 1]!)).toBe(true);
    expect(readTimeline(run.timelineFile).samples.map((x) => x.t)).toEqual(ts);
  });

  it('logs and notes an impossible report, and changes nothing', async () => {
    const driver = new ScriptedDriver();
    const run = new MigrationRun(plan(), driver, hosts, { timelineDir: dir });
    await run.start();
    const m = driver.last!;
    m.ctx.report('precopy');
    m.ctx.report('postcopy-paused', 'broken pipe');
    expect(run.phase).toBe('precopy');
    expect(run.refused).toEqual([expect.objectContaining({ from: 'precopy', on: 'postcopy-paused' })]);
    expect(recentLogLines(50).some((l) => / WARN .*migration .*impossible transition ignored: postcopy-paused in phase precopy \(broken pipe\)/.test(l))).toBe(true);
    m.ctx.report('cancelled');
    const final = await run.whenDone();
    expect(final.outcome).toBe('cancelled');
    const notes = readTimeline(run.timelineFile).records.filter((r) => r.type === 'note').map((r) => (r as { text: string }).text);
    expect(notes).toContain('impossible transition ignored: postcopy-paused in phase precopy (broken pipe)');
    expect(m.calls).toEqual(['reserve', 'start', 'finalSample cancelled', 'rollback', 'close']);
  });

  it('puts every control through one guard: offered, sound, allowed by the plan, taken in this phase', async () => {
    const driver = new ScriptedDriver(['postcopy'], ['cancel', 'set-bandwidth', 'set-downtime', 'postcopy']);
    const run = new MigrationRun(plan(), driver, hosts, { timelineDir: dir });
    await run.start();
    const m = driver.last!;
    m.ctx.report('precopy');
    await expect(run.control({ action: 'recover' })).rejects.toThrow('cannot recover now (phase precopy): the scripted driver does not offer it for this migration');
    await expect(run.control({ action: 'set-bandwidth', bytesPerSecond: -3 })).rejects.toThrow(/bandwidth must be a positive number/);
    await expect(run.control({ action: 'postcopy' })).rejects.toThrow(/postcopy was not enabled when the migration started/);
    await run.control({ action: 'set-downtime', ms: 400 });
    m.ctx.report('stop-and-copy');
    await expect(run.control({ action: 'set-downtime', ms: 500 })).rejects.toMatchObject({ code: 'INVALID_REQUEST', message: 'cannot set the downtime limit now (phase stop-and-copy): it only matters while precopy iterates' });
    await run.control({ action: 'cancel' }, 'cli');
    expect(m.calls.filter((c) => c.startsWith('control'))).toEqual(['control set-downtime in precopy', 'control cancel in stop-and-copy']);
    m.ctx.report('cancelled');
    await run.whenDone();
    await expect(run.control({ action: 'cancel' })).rejects.toThrow(/has ended/);
    const controls = readTimeline(run.timelineFile).records.filter((r) => r.type === 'control') as { action: string; who: string; result: { ok: boolean } }[];
    expect(controls.map((c) => [c.action, c.who, c.result.ok])).toEqual([
      ['recover', 'user', false], ['set-bandwidth', 'user', false], ['postcopy', 'user', false], ['set-downtime', 'user', true], ['set-downtime', 'user', false], ['cancel', 'cli', true],
    ]);
  });

  it('refuses a plan its driver cannot carry out before anything happens: announced and ended at once, no timeline', async () => {
    const driver = new ScriptedDriver([]);
    const run = new MigrationRun(plan({ copyStorage: true, transport: 'ssh-tunnel' }), driver, hosts, { timelineDir: dir });
    const told: string[] = [];
    run.onOpened((m) => {
      told.push(`opened ${m.phase}`);
      m.onEnd((f) => told.push(`ended ${f.outcome}`));
    });
    await expect(run.start()).rejects.toMatchObject({ code: 'INVALID_REQUEST', message: 'demo (scripted driver) cannot copy storage (copyStorage), carry the stream through SSH (transport ssh-tunnel)' });
    expect(told).toEqual(['opened preflight', 'ended failed']);
    expect(run.summary().controls).toEqual([]);
    expect(driver.last!.calls).toEqual(['close']);
    expect(run.phase).toBe('failed');
    expect(existsSync(run.timelineFile)).toBe(false);
  });

  it('rolls back a failed reservation: the guest stays on the source, the timeline says why', async () => {
    const driver = new ScriptedDriver();
    const run = new MigrationRun(plan(), driver, hosts, { timelineDir: dir });
    const opened = driver.open.bind(driver);
    driver.open = async (p, ctx) => {
      const m = await opened(p, ctx);
      m.failReserve = new Error('QEMU did not start VM "demo" on b: no such device');
      return m;
    };
    await expect(run.start()).rejects.toThrow(/no such device/);
    expect(driver.last!.calls).toEqual(['reserve', 'rollback', 'close']);
    const t = readTimeline(run.timelineFile);
    expect(phasesOf(run.timelineFile)).toEqual(['reservation', 'failed']);
    expect(t.end).toMatchObject({ outcome: 'failed', reason: expect.stringMatching(/no such device/) });
    expect(t.records.some((r) => r.type === 'note' && (r as { text: string }).text === 'destination listening')).toBe(true);
  });

  it('picked up after a restart in the middle of its end, carries that end out', async () => {
    const driver = new ScriptedDriver();
    const plan0 = plan();
    const file = path.join(dir, 'restart.ferry.jsonl');
    const t0 = Date.now() - 5000;
    writeFileSync(file, [
      { type: 'header', format: 'ferry-timeline', version: 1, ferryVersion: '0.1.0', migrationId: 'm-restart', createdAt: t0, mode: 'engine', plan: plan0, source: { id: 'a', label: 'a' }, vm: { name: 'demo' } },
      { type: 'phase', t: t0 + 10, phase: 'precopy', from: 'setup' },
      { type: 'phase', t: t0 + 20, phase: 'commitment', from: 'precopy' },
    ].map((r) => JSON.stringify(r)).join('\n') + '\n');
    const run = new MigrationRun(plan0, driver, hosts, { timelineDir: dir }, { id: 'm-restart', startedAt: t0, timelineFile: file, mode: 'engine' });
    await run.resume({ run: { id: 'm-restart', plan: plan0, startedAt: t0, timelineFile: file, mode: 'engine' }, state: {} });
    const final = await run.whenDone();
    expect(final.outcome).toBe('completed');
    expect(run.refused).toEqual([]);
    expect(phasesOf(file)).toEqual(['precopy', 'commitment', 'activation', 'completed']);
    expect(driver.last!.calls).toEqual(['start', 'activate', 'finalSample completed', 'complete', 'close']);
  });
});
