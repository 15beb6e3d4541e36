/**
 * One migration's run, whatever the hypervisor driver: its phases, its samples and their
 * projection, its policies, its controls, its timeline and the guest's console.
 *
 * The phases change in one place only, `advance`, through one guard that every report of
 * the driver and every step of the run goes through. The TRANSITIONS table lists each move
 * (from, on what, to); a report that names a phase the run has already passed is late news
 * (a query-migrate reply computed before the event that moved the run on) and changes
 * nothing; anything else is an impossible transition: logged and noted in the timeline,
 * never silently dropped. Controls go through their own guard (CONTROLS: in which phases
 * each is taken, and why not otherwise) before the driver applies them.
 *
 * A failed or cancelled migration leaves the guest running on the source and the
 * destination torn down (the driver's rollback); a completed one leaves it running on the
 * destination and the source as its owner expects (the driver's complete).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { toFerryError } from '../../../shared/errors';
import { TERMINAL_PHASES, planAllowsPostcopy, put } from '../../../shared/model/migration';
import type { GuestFigures, MigrationFinal, MigrationPhase, MigrationPlan, MigrationSample } from '../../../shared/model/migration';
import { LIVE_RECORD_TYPES, TIMELINE_FORMAT, TIMELINE_VERSION } from '../../../shared/model/timeline';
import type { LiveRecord, TimelineHeader, TimelineRecord } from '../../../shared/model/timeline';
import type { PreflightResult } from '../../../shared/model/preflight';
import { project, SampleDigest, switchoverModel } from '../../../shared/analysis/projection';
import type { SwitchoverMemory } from './switchover-store';
import { GuestConsole } from '../lab/demo-guest';
import { TimelineWriter } from '../recorder/timeline-writer';
import { readTimeline } from '../recorder/timeline-reader';
import { rootLog } from '../log';
import type { Logger } from '../log';
import { makePolicies } from './policies';
import type { PolicyRunner } from './policies';
import { capabilitiesNeeded, refuseControl, requireCapabilities } from './drivers/hypervisor-driver';
import type {
  AttachTarget, DriverContext, DriverMigration, DriverSample, EngineHosts, HypervisorDriver, MigrationControl, MigrationControlAction,
  RecoveredMigration, ReportedState, RunRecord, Side,
} from './drivers/hypervisor-driver';

export const FERRY_VERSION = '0.1.0';

export interface RunOptions {
  /** Where timelines go when the plan names no file. */
  timelineDir: string;
  /** What finished switchovers taught about each pair of hosts (shared by the engine's runs). */
  switchovers?: SwitchoverMemory;
}

export interface MigrationSummary {
  id: string;
  plan: MigrationPlan;
  /** How the stream travels (the plan's choice, `tcp` when it made none). */
  transport: 'tcp' | 'ssh-tunnel';
  phase: MigrationPhase;
  startedAt: number;
  timeline: string;
  last?: MigrationSample;
  final?: MigrationFinal;
  /** The driver carrying it out. */
  driver: string;
  /** The controls its driver takes for it (none while watching). */
  controls: MigrationControlAction[];
}

export interface PhaseChange {
  phase: MigrationPhase;
  from: MigrationPhase;
  reason?: string;
  t: number;
}

type Listener<T> = (v: T) => void;

/** What moves a phase: the hypervisor's report (via the driver) or one of the run's own steps. */
export type Trigger =
  | ReportedState
  /** The run begins reserving the destination. */
  | 'reserve'
  /** The destination took over the guest (completed → activation). */
  | 'activated'
  /** Everything after the end is done: the run ends in its terminal phase. */
  | 'finished'
  /** Reservation or start failed: nothing migrates. */
  | 'aborted';

export interface Transition {
  from: readonly MigrationPhase[];
  on: Trigger;
  to: MigrationPhase;
  /** Why it exists, for the reader. */
  note: string;
}

const RUNNING: readonly MigrationPhase[] = ['setup', 'precopy', 'stop-and-copy', 'postcopy', 'postcopy-paused'];
const LIVE: readonly MigrationPhase[] = ['reservation', 'storage-copy', ...RUNNING];

/** Every phase change a run can make. Nothing else changes a phase. */
export const TRANSITIONS: readonly Transition[] = [
  { from: ['preflight'], on: 'reserve', to: 'reservation', note: 'the plan is accepted: the destination is being made ready' },
  { from: ['reservation'], on: 'storage-copy', to: 'storage-copy', note: 'copyStorage: the disks are mirrored before the RAM' },
  { from: ['reservation', 'storage-copy'], on: 'setup', to: 'setup', note: 'the migration is issued' },
  { from: ['setup'], on: 'precopy', to: 'precopy', note: 'memory is copied while the guest runs' },
  { from: ['setup', 'precopy'], on: 'stop-and-copy', to: 'stop-and-copy', note: 'the source stopped: the final copy' },
  { from: ['setup', 'precopy', 'stop-and-copy', 'postcopy-paused'], on: 'postcopy', to: 'postcopy', note: 'the guest runs on the destination, pages follow on demand (or again, after recovery)' },
  { from: ['postcopy'], on: 'postcopy-paused', to: 'postcopy-paused', note: 'the postcopy stream broke or was paused' },
  { from: RUNNING, on: 'completed', to: 'commitment', note: 'the hypervisor says the copy is complete' },
  { from: ['commitment'], on: 'activated', to: 'activation', note: 'the destination runs the guest' },
  { from: ['commitment', 'activation'], on: 'finished', to: 'completed', note: 'the source is left as its owner expects' },
  { from: [...LIVE, 'commitment', 'activation'], on: 'failed', to: 'failed', note: 'the hypervisor gave up: the guest runs on the source again (or, after the copy, the destination did not take it over)' },
  { from: LIVE, on: 'cancelled', to: 'cancelled', note: 'cancelled: the guest runs on the source again' },
  { from: ['preflight', ...LIVE], on: 'aborted', to: 'failed', note: 'the plan was refused, or the destination could not be made ready, or the migration not issued' },
  // Watching (attach): a migration someone else runs is found in whatever state it is.
  { from: ['preflight'], on: 'setup', to: 'setup', note: 'attach: a watched migration begins' },
  { from: ['preflight'], on: 'precopy', to: 'precopy', note: 'attach: found in precopy' },
  { from: ['preflight'], on: 'stop-and-copy', to: 'stop-and-copy', note: 'attach: found in its final copy' },
  { from: ['preflight'], on: 'postcopy', to: 'postcopy', note: 'attach: found in postcopy' },
  { from: ['preflight'], on: 'postcopy-paused', to: 'postcopy-paused', note: 'attach: found with postcopy paused' },
];

/**
 * Order of the phases: a report naming a phase below the current one is late news. Postcopy
 * and postcopy-paused alternate (their moves are in the table).
 */
const RANK: Record<MigrationPhase, number> = {
  preflight: 0, reservation: 1, 'storage-copy': 1.5, setup: 2, precopy: 3, 'stop-and-copy': 4, postcopy: 5, 'postcopy-paused': 5,
  commitment: 6, activation: 7, completed: 8, failed: 8, cancelled: 8,
};
const RANK_OF_REPORT: Partial<Record<Trigger, number>> = {
  'storage-copy': RANK['storage-copy'], setup: RANK.setup, precopy: RANK.precopy, 'stop-and-copy': RANK['stop-and-copy'], postcopy: RANK.postcopy, 'postcopy-paused': RANK['postcopy-paused'],
};

/** The transition `on` makes from `from`, or why there is none (late news, or impossible). */
export function transitionFor(from: MigrationPhase, on: Trigger): { to: MigrationPhase } | { late: true } | { impossible: true } {
  const t = TRANSITIONS.find((x) => x.on === on && x.from.includes(from));
  if (t) return { to: t.to };
  if (on === from) return { late: true }; // the same news again
  const rank = RANK_OF_REPORT[on];
  if (rank !== undefined && rank <= RANK[from]) return { late: true };
  // Watching, before a migration shows: the end of an earlier one.
  if (from === 'preflight' && (on === 'completed' || on === 'failed' || on === 'cancelled')) return { late: true };
  return { impossible: true };
}

/** In which phases each control is taken, and what the user is told otherwise. */
export const CONTROLS: Record<MigrationControlAction, { words: string; in: readonly MigrationPhase[]; otherwise: (phase: MigrationPhase) => string }> = {
  cancel: {
    words: 'cancel', in: ['storage-copy', 'setup', 'precopy', 'stop-and-copy'],
    otherwise: (p) => (p.startsWith('postcopy') ? 'in postcopy the guest already runs on the destination; cancelling would lose it' : 'nothing to cancel yet'),
  },
  'set-bandwidth': { words: 'set bandwidth', in: [...LIVE, 'commitment', 'activation'], otherwise: () => 'the migration is not under way' },
  'set-downtime': { words: 'set the downtime limit', in: ['setup', 'precopy'], otherwise: () => 'it only matters while precopy iterates' },
  postcopy: { words: 'switch to postcopy', in: ['setup', 'precopy'], otherwise: () => 'only possible during precopy' },
  'stop-vm': { words: 'stop the VM', in: ['setup', 'precopy'], otherwise: () => 'only during precopy' },
  'pause-postcopy': { words: 'pause postcopy', in: ['postcopy'], otherwise: () => 'only during postcopy' },
  recover: { words: 'recover', in: ['postcopy-paused'], otherwise: () => 'only when postcopy is paused' },
  continue: { words: 'continue', in: ['setup', 'precopy', 'stop-and-copy'], otherwise: () => 'the migration is not paused before switchover' },
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class MigrationRun {
  readonly id: string;
  readonly plan: MigrationPlan;
  readonly startedAt: number;
  readonly timelineFile: string;
  /** 'engine': Ferry runs it; 'attach': Ferry only watches a migration someone else started. */
  readonly mode: 'engine' | 'attach';
  phase: MigrationPhase = 'preflight';
  readonly samples: MigrationSample[] = [];
  /** The samples as the projection needs them, folded in as they arrive (see SampleDigest). */
  private readonly digest = new SampleDigest();
  final: MigrationFinal | undefined;
  /** Impossible transitions the guard refused (also logged and noted in the timeline). */
  readonly refused: { from: MigrationPhase; on: Trigger; t: number }[] = [];

  private dm: DriverMigration | undefined;
  private readonly log: Logger;
  private writer: TimelineWriter | undefined;
  /** Records that happen before the header can be written (reservation) wait here. */
  private early: TimelineRecord[] = [];
  /** Every record but samples, guest lines and the header: the story a console joining late is told. */
  private readonly story: TimelineRecord[] = [];
  private readonly sampleListeners = new Set<Listener<MigrationSample>>();
  private readonly recordListeners = new Set<Listener<LiveRecord>>();
  private readonly phaseListeners = new Set<Listener<PhaseChange>>();
  private readonly endListeners = new Set<Listener<MigrationFinal>>();
  private readonly openListeners = new Set<Listener<MigrationRun>>();
  private readonly done: Promise<MigrationFinal>;
  private resolveDone!: (f: MigrationFinal) => void;
  private readonly policies: PolicyRunner[];
  /** Settings in force after the controls so far (the projection and the policies read them). */
  private downtimeLimitMs: number;
  private maxBandwidth: number | undefined;
  /** The migration connection's speed as the driver last measured it (bytes/s), if it measures it. */
  private linkRate: number | undefined;
  private postcopySwitched = false;
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;
  /** Set once the driver reported the end: the run is finishing (the terminal phase comes when everything is done). */
  private ending: MigrationFinal['outcome'] | undefined;
  private endingReason: string | undefined;
  private finishing: Promise<void> | undefined;
  private consoles: Partial<Record<Side, GuestConsole>> = {};
  private lastGuest: GuestFigures | undefined;
  private lastSourceHeartbeatAt: number | undefined;
  private firstDestHeartbeat: { at: number; stallMs: number } | undefined;
  private guestSeen = false;

  constructor(plan: MigrationPlan, readonly driver: HypervisorDriver, private readonly hosts: EngineHosts, private readonly options: RunOptions, resumed?: Partial<Pick<RunRecord, 'id' | 'startedAt' | 'timelineFile' | 'mode'>>) {
    this.plan = plan;
    this.startedAt = resumed?.startedAt ?? Date.now();
    this.mode = resumed?.mode ?? 'engine';
    this.id = resumed?.id ?? `${new Date(this.startedAt).toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${plan.vm}-${randomBytes(3).toString('hex')}`;
    this.timelineFile = resumed?.timelineFile ?? plan.recordPath ?? path.join(options.timelineDir, `${this.id}.ferry.jsonl`);
    this.done = new Promise((r) => (this.resolveDone = r));
    this.downtimeLimitMs = plan.downtimeLimitMs ?? 300;
    this.maxBandwidth = plan.maxBandwidth;
    this.policies = makePolicies(plan);
    this.log = rootLog.child(`migration ${this.id}`);
  }

  // ---- listeners, summary -------------------------------------------------------------

  whenDone(): Promise<MigrationFinal> {
    return this.done;
  }
  onSample(l: Listener<MigrationSample>): () => void {
    this.sampleListeners.add(l);
    return () => this.sampleListeners.delete(l);
  }
  /** The records a live console shows in its log besides phases (hypervisor events, gaps, notes, policy decisions), as recorded. */
  onRecord(l: Listener<LiveRecord>): () => void {
    this.recordListeners.add(l);
    return () => this.recordListeners.delete(l);
  }
  onPhase(l: Listener<PhaseChange>): () => void {
    this.phaseListeners.add(l);
    return () => this.phaseListeners.delete(l);
  }
  onEnd(l: Listener<MigrationFinal>): () => void {
    this.endListeners.add(l);
    return () => this.endListeners.delete(l);
  }
  /**
   * Once its driver has found the VM (before any phase change or sample): the moment a
   * console is told the migration exists. A plan refused before that is never announced.
   */
  onOpened(l: Listener<MigrationRun>): () => void {
    this.openListeners.add(l);
    return () => this.openListeners.delete(l);
  }

  private opened(): void {
    for (const l of [...this.openListeners]) l(this);
  }

  summary(): MigrationSummary {
    const s: MigrationSummary = {
      id: this.id, plan: this.plan, transport: this.plan.transport ?? 'tcp', phase: this.phase, startedAt: this.startedAt, timeline: this.timelineFile,
      driver: this.driver.name, controls: [...(this.dm?.controls ?? [])],
    };
    const last = this.samples.at(-1);
    if (last) s.last = last;
    if (this.final) s.final = this.final;
    return s;
  }

  /** Keeps the preflight the user saw with the migration's timeline (for its report). */
  recordPreflight(result: PreflightResult): void {
    this.rec({ type: 'preflight', t: Date.now(), result });
  }

  // ---- the guard ------------------------------------------------------------------------

  /**
   * The one place phases change. Returns whether the phase moved. A late report changes
   * nothing; an impossible one is logged and noted, and changes nothing either.
   */
  private advance(on: Trigger, reason?: string): boolean {
    const from = this.phase;
    const r = transitionFor(from, on);
    if ('late' in r) return false;
    if ('impossible' in r) {
      this.refused.push({ from, on, t: Date.now() });
      const text = `impossible transition ignored: ${on} in phase ${from}${reason ? ` (${reason})` : ''}`;
      this.log.warn(text, { driver: this.driver.name });
      this.rec({ type: 'note', t: Date.now(), text });
      return false;
    }
    this.phase = r.to;
    const t = Date.now();
    this.rec(reason ? { type: 'phase', t, phase: r.to, from, reason } : { type: 'phase', t, phase: r.to, from });
    for (const l of [...this.phaseListeners]) l(reason ? { phase: r.to, from, reason, t } : { phase: r.to, from, t });
    return true;
  }

  /** What the driver reports: a phase change, or the end (which the run then carries out). */
  private onReport(state: ReportedState, reason?: string): void {
    if (this.final) return;
    if (this.ending) {
      // The end is being carried out: later news only matters in the timeline.
      if (state !== this.ending) this.log.debug(`report ${state} while ending (${this.ending}): after the end, nothing moves`);
      return;
    }
    if (state === 'completed' || state === 'failed' || state === 'cancelled') {
      const r = transitionFor(this.phase, state);
      // Resumed after a restart in the middle of the end: that end is carried out now.
      const endBegun = state === 'completed' && (this.phase === 'commitment' || this.phase === 'activation');
      if (!('to' in r) && !endBegun) {
        this.advance(state, reason); // late or impossible: says so
        return;
      }
      this.ending = state;
      this.endingReason = reason;
      this.finishing = this.finish(state).catch(async (e: unknown) => {
        const why = toFerryError(e).message;
        this.rec({ type: 'note', t: Date.now(), text: `finishing failed: ${why}` });
        this.log.error(`finishing failed: ${why}`);
        // The run still ends, in the phase the hypervisor said.
        if (!TERMINAL_PHASES.includes(this.phase)) this.advance(state === 'completed' ? 'finished' : state, why);
        await this.conclude({ outcome: state, reason: why }).catch(this.log.dropped('ending the run'));
      });
      return;
    }
    this.advance(state, reason);
  }

  private context(): DriverContext {
    const run: RunRecord = { id: this.id, plan: this.plan, startedAt: this.startedAt, timelineFile: this.timelineFile, mode: this.mode };
    return {
      run,
      hosts: this.hosts,
      log: this.log,
      phase: () => this.phase,
      ended: () => this.final !== undefined || this.ending !== undefined,
      report: (state, reason) => this.onReport(state, reason),
      sourceStopped: () => this.onSourceStopped(),
      event: (side, event, data, t) => this.rec(data ? { type: 'event', t, side, event, data } : { type: 'event', t, side, event }),
      note: (text) => this.rec({ type: 'note', t: Date.now(), text }),
      gap: (side, fromT, toT, reason) => this.rec({ type: 'gap', t: Date.now(), side, fromT, toT, reason }),
      switchovers: () => this.options.switchovers?.get(this.pairKey) ?? [],
    };
  }

  // ---- starting: engine, attach, resume -------------------------------------------------

  /** Finds the VM, reserves the destination and issues the migration; throws (cleaned up) on any failure. */
  async start(): Promise<void> {
    try {
      this.dm = await this.driver.open(this.plan, this.context());
      requireCapabilities(`${this.plan.vm} (${this.driver.name} driver)`, this.dm.capabilities, capabilitiesNeeded(this.plan));
    } catch (e) {
      // Nothing was changed on either host: the plan was refused, no timeline is written.
      // Whoever is told of it sees it end at once (no console keeps a tab stuck in preflight).
      await this.dm?.close().catch(this.log.dropped('closing a refused migration'));
      this.dm = undefined;
      this.opened();
      this.advance('aborted', toFerryError(e).message);
      await this.conclude({ outcome: 'failed', reason: toFerryError(e).message });
      throw e;
    }
    const dm = this.dm;
    this.opened();
    this.advance('reserve');
    try {
      await dm.reserve();
      this.openWriter(this.header());
      await this.openConsoles();
      await dm.start();
    } catch (e) {
      await this.abort(e);
      throw e;
    }
    this.startSampling();
  }

  /** Watch-only: a migration someone else runs (present or to come). Issues nothing. */
  async attach(target: AttachTarget): Promise<void> {
    try {
      this.dm = await this.driver.attach(target, this.context());
      this.opened();
      const header = this.header();
      delete header.destination;
      this.openWriter(header);
      await this.dm.start();
    } catch (e) {
      await this.conclude({ outcome: 'failed', reason: toFerryError(e).message });
      throw e;
    }
    if (this.phase === 'preflight' && !this.ending) this.rec({ type: 'note', t: Date.now(), text: 'no migration running: waiting for the next one' });
    this.startSampling();
  }

  /** Picks up a migration a previous Ferry process started, and records it to the end. */
  async resume(found: RecoveredMigration): Promise<void> {
    let lastT = this.startedAt;
    try {
      const previous = readTimeline(this.timelineFile);
      lastT = (previous.records.at(-1) as { t?: number } | undefined)?.t ?? lastT;
      const lastPhase = [...previous.records].reverse().find((r) => r.type === 'phase') as { phase?: MigrationPhase } | undefined;
      // Restored, not a transition: the phase the previous process had reached.
      if (lastPhase?.phase) this.phase = lastPhase.phase;
      this.samples.push(...previous.samples);
      for (const x of previous.samples) this.digest.push(x);
      this.story.push(...previous.records.filter(isStory));
    } catch (e) {
      this.log.warn(`the previous timeline is gone or unreadable, carrying on in a fresh one: ${toFerryError(e).message}`);
    }
    try {
      this.dm = await this.driver.resume(found, this.phase, this.context());
      this.opened();
      this.writer = new TimelineWriter(this.timelineFile, undefined);
      this.rec({ type: 'gap', t: Date.now(), side: 'source', fromT: lastT, toT: Date.now(), reason: 'Ferry restarted; migration found running and resumed' });
      await this.openConsoles();
      await this.dm.start();
    } catch (e) {
      this.closeConsoles();
      // Nothing of it is this process's: release what was opened, leave its files as they are.
      await this.dm?.close().catch(this.log.dropped('releasing a migration that could not be resumed'));
      this.writer?.close();
      throw e;
    }
    // Its timeline already ended it (Ferry stopped between the end and removing its state): release what is left.
    if (TERMINAL_PHASES.includes(this.phase) && !this.ending) await this.conclude({ outcome: this.phase as MigrationFinal['outcome'], reason: 'it had ended before Ferry restarted' });
    if (!this.ending && !this.final) this.startSampling();
  }

  /** Reservation or start failed: the driver undoes what it did; the run ends failed. */
  private async abort(e: unknown): Promise<void> {
    const fe = toFerryError(e);
    this.ending = 'failed';
    this.stopSampling();
    const rb = await this.dm!.rollback().catch((err: unknown) => {
      this.log.error(`rolling back a failed start: ${toFerryError(err).message}`);
      return { sourceRunning: false, final: {} };
    });
    this.closeConsoles();
    if (!this.writer) this.openWriter(this.header());
    this.advance('aborted', fe.message);
    await this.conclude({ ...rb.final, outcome: 'failed', reason: fe.message });
  }

  // ---- the timeline -----------------------------------------------------------------------

  private rec(r: TimelineRecord): void {
    if (isStory(r)) this.story.push(r);
    if (this.writer) this.writer.append(r);
    else this.early.push(r);
    if (!LIVE_RECORD_TYPES.has(r.type)) return;
    for (const l of [...this.recordListeners]) {
      try {
        l(r as LiveRecord);
      } catch (e) {
        // a console that cannot take it must not stop the migration or its recording: logged, the timeline has it
        this.log.warn(`a ${r.type} record was not sent to the consoles: ${toFerryError(e).message}`);
      }
    }
  }

  /** The whole picture so far, from memory: summary, every sample, and the story records in order. */
  history(): { summary: MigrationSummary; samples: MigrationSample[]; records: TimelineRecord[] } {
    return { summary: this.summary(), samples: this.samples.slice(), records: this.story.slice() };
  }

  private openWriter(header: TimelineHeader): void {
    this.writer = new TimelineWriter(this.timelineFile, header);
    for (const r of this.early) this.writer.append(r);
    this.early = [];
  }

  private header(): TimelineHeader {
    const f = this.dm?.facts();
    const h: TimelineHeader = {
      type: 'header', format: TIMELINE_FORMAT, version: TIMELINE_VERSION, ferryVersion: FERRY_VERSION, migrationId: this.id,
      createdAt: this.startedAt, mode: this.mode, driver: this.driver.name, plan: this.plan,
      source: { id: this.plan.from, label: f?.source.label ?? this.plan.from, ...(f?.source.qemuVersion ? { qemuVersion: f.source.qemuVersion } : {}) },
      destination: { id: this.plan.to, label: f?.destination?.label ?? this.plan.to, ...(f?.destination?.migrationAddress ? { migrationAddress: f.destination.migrationAddress } : {}), ...(f?.destination?.qemuVersion ? { qemuVersion: f.destination.qemuVersion } : {}) },
      vm: { name: this.plan.vm, ...(f?.vm.argv ? { argv: f.vm.argv } : {}), ...(f?.vm.memoryMiB !== undefined ? { memoryMiB: f.vm.memoryMiB } : {}) },
    };
    if (f?.capabilities) h.capabilities = f.capabilities;
    if (f?.parameters) h.parameters = f.parameters;
    return h;
  }

  // ---- the guest's console (the demo guest's heartbeats, verify) ------------------------------

  private async openConsoles(): Promise<void> {
    if (this.mode !== 'engine') return;
    for (const side of ['source', 'destination'] as const) {
      const where = this.dm?.serialConsole(side);
      if (!where) continue;
      let con: GuestConsole;
      try {
        con = await GuestConsole.open(where.transport, where.socket);
      } catch (e) {
        this.log.debug(`no guest console on the ${side} (${where.socket}): ${toFerryError(e).message}`);
        continue; // no serial console (or someone else holds it): no guest figures
      }
      this.consoles[side] = con;
      con.onLine((l) => {
        if (!l.parsed) return;
        this.guestSeen = true;
        if (l.parsed.kind === 'heartbeat') {
          this.lastGuest = { side, seq: l.parsed.seq, achievedBytesPerS: l.parsed.achievedKiBs * 1024, stallMs: l.parsed.stallUs / 1000 };
          if (side === 'source') this.lastSourceHeartbeatAt = l.at;
          else if (!this.firstDestHeartbeat) this.firstDestHeartbeat = { at: l.at, stallMs: l.parsed.stallUs / 1000 };
        } else {
          this.rec({ type: 'guest', t: l.at, side, line: l.raw });
        }
      });
    }
  }

  /** A line printed during switchover is split: its head ends the source's stream. */
  private onSourceStopped(): void {
    const src = this.consoles.source;
    const dst = this.consoles.destination;
    if (!src || !dst) return;
    setTimeout(() => {
      const head = src.partialLine;
      if (head) dst.prepend(head);
    }, 0);
  }

  private closeConsoles(side?: Side): void {
    for (const s of side ? [side] : (['source', 'destination'] as const)) {
      this.consoles[s]?.close();
      delete this.consoles[s];
    }
  }

  /**
   * Whether the guest is the demo guest is known from its first line; a migration that ends
   * very early may have ended before one arrived: give the consoles a moment to speak.
   */
  private async awaitGuestSign(): Promise<void> {
    if (this.guestSeen) return;
    const consoles = Object.values(this.consoles);
    if (consoles.length === 0) return;
    await Promise.any(consoles.map((c) => c.waitFor((l) => l.parsed !== undefined, 2000, 'a first guest line'))).catch(() => undefined); // not the demo guest: no figures to wait for
  }

  private async verify(side: Side): Promise<MigrationFinal['verify']> {
    const v = await this.consoles[side]?.command('v', 20_000).catch(this.log.dropped(`the guest's verify on the ${side}`));
    return v?.kind === 'verify' ? { ok: v.ok, bad: v.bad, stale: v.stale, pages: v.pages } : undefined;
  }

  // ---- sampling, projection, policies ---------------------------------------------------------

  /**
   * Samples on the clock's multiples of the interval (every 100 ms at .000, .100, ...):
   * migrations running together sample together, so their samples leave for the consoles in
   * one message (see browser-server's batching) instead of one network write each.
   */
  private startSampling(): void {
    if (this.timer || this.final) return;
    const every = this.plan.sampleIntervalMs ?? 100;
    let slot = -Infinity;
    const next = () => {
      const at = nextSampleSlot(Date.now(), every, slot);
      slot = at.slot;
      this.timer = setTimeout(() => {
        next();
        void this.tick();
      }, at.delayMs);
      this.timer.unref?.();
    };
    next();
  }

  private stopSampling(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    if (this.sampling || this.ending || this.final || !this.dm) return;
    this.sampling = true;
    try {
      const reading = await this.dm.sample();
      if (!reading || this.final) return;
      if (reading.state) this.onReport(reading.state);
      // Watching before a migration shows: nothing to plot.
      if (this.phase === 'preflight' || this.final) return;
      const sample = this.pushSample(reading.sample, this.phase);
      if (!this.ending) await this.applyPolicies(sample);
    } catch (e) {
      this.log.debug(`a sample failed (the next tick tries again): ${toFerryError(e).message}`);
    } finally {
      this.sampling = false;
    }
  }

  private projectionFor(samples: readonly MigrationSample[]) {
    // The link as the driver measured it now (samples' linkRate), calibrated by what earlier
    // switchovers on the same link cost.
    const fit = switchoverModel(this.options.switchovers?.get(this.pairKey) ?? [], this.linkRate);
    const facts = this.dm?.facts();
    const touched = facts?.vm.touchedBytes;
    const avail = facts?.parameters?.['avail-switchover-bandwidth'];
    // What needs the whole history is folded into the digest as samples arrive; the rest looks back seconds.
    return project(samples, {
      downtimeLimitMs: this.downtimeLimitMs,
      ...(this.maxBandwidth !== undefined ? { maxBandwidth: this.maxBandwidth } : {}),
      ...(fit.finalCopyRate !== undefined ? { finalCopyRate: fit.finalCopyRate } : {}),
      ...(fit.overheadMs !== undefined ? { switchoverOverheadMs: fit.overheadMs } : {}),
      ...(touched !== undefined ? { touchedBytes: touched } : {}),
      ...(typeof avail === 'number' && avail > 0 ? { switchoverBandwidth: avail } : {}),
    }, this.digest);
  }

  private get pairKey(): string {
    return `${this.plan.from}->${this.plan.to}`;
  }

  private pushSample(ds: DriverSample, phase: MigrationPhase): MigrationSample {
    // Sample times strictly increase: consoles take a sample no newer than their last as one
    // they already have, so two readings in one millisecond (the end's own reading right
    // after a tick's) would otherwise draw one point fewer live than the timeline replays.
    const prev = this.samples.at(-1);
    const t = prev && ds.t <= prev.t ? prev.t + 1 : ds.t;
    const sample: MigrationSample = { ...ds, t, elapsedMs: t - this.startedAt, phase };
    if (ds.linkRate !== undefined) this.linkRate = ds.linkRate;
    if (this.lastGuest) sample.guest = this.lastGuest;
    this.samples.push(sample);
    this.digest.push(sample);
    if (!TERMINAL_PHASES.includes(phase) && phase !== 'activation' && phase !== 'commitment') sample.projection = this.projectionFor(this.samples);
    this.rec({ type: 'sample', ...sample });
    for (const l of [...this.sampleListeners]) l(sample);
    return sample;
  }

  private async applyPolicies(s: MigrationSample): Promise<void> {
    if (this.mode !== 'engine') return;
    for (const policy of this.policies) {
      const d = policy.decide({
        sample: s, projection: s.projection, plan: this.plan, downtimeLimitMs: this.downtimeLimitMs, maxBandwidth: this.maxBandwidth,
        postcopyAllowed: planAllowsPostcopy(this.plan), postcopyStarted: this.postcopySwitched,
      });
      if (!d) continue;
      this.rec({ type: 'policy', t: Date.now(), policy: policy.name, action: d.act.action, why: d.why });
      try {
        await this.control(d.act, `policy ${policy.name}`);
      } catch (e) {
        this.rec({ type: 'note', t: Date.now(), text: `policy ${policy.name}: ${d.act.action} failed: ${toFerryError(e).message}` });
      }
      return; // one decision per sample
    }
  }

  // ---- controls ------------------------------------------------------------------------------

  /** A control from the user, a policy or a script; refused with the reason where it cannot apply. */
  async control(c: MigrationControl, who = 'user'): Promise<void> {
    const args = { ...c } as Record<string, unknown>;
    delete args.action;
    try {
      this.admit(c);
      await this.dm!.control(c, this.phase);
      this.applied(c);
      this.rec({ type: 'control', t: Date.now(), who, action: c.action, args, result: { ok: true } });
      this.log.info(`${who}: ${c.action}${Object.keys(args).length ? ` ${JSON.stringify(args)}` : ''}`);
    } catch (e) {
      const fe = toFerryError(e);
      this.rec({ type: 'control', t: Date.now(), who, action: c.action, args, result: { ok: false, error: fe.message } });
      this.log.info(`${who}: ${c.action} refused: ${fe.message}`);
      throw e;
    }
  }

  /** The control guard: ended, offered by the driver, sound values, allowed by the plan, taken in this phase. */
  private admit(c: MigrationControl): void {
    const rule = CONTROLS[c.action];
    const phase = this.phase;
    if (this.final || this.ending || TERMINAL_PHASES.includes(phase)) refuseControl(rule.words, phase, 'the migration has ended');
    if (!this.dm) refuseControl(rule.words, phase, 'the migration is not under way yet');
    if (!this.dm.controls.includes(c.action)) {
      refuseControl(rule.words, phase, this.mode === 'attach' ? 'watch-only: Ferry issues no control to a migration it did not start' : `the ${this.driver.name} driver does not offer it for this migration`);
    }
    if (c.action === 'set-bandwidth' && !(Number.isFinite(c.bytesPerSecond) && c.bytesPerSecond > 0)) refuseControl(rule.words, phase, `bandwidth must be a positive number of bytes/s, got ${c.bytesPerSecond}`);
    if (c.action === 'set-downtime' && !(Number.isInteger(c.ms) && c.ms >= 1 && c.ms <= 2_000_000)) refuseControl(rule.words, phase, `it must be an integer from 1 to 2000000 ms, got ${c.ms}`);
    if (c.action === 'postcopy' && !planAllowsPostcopy(this.plan)) refuseControl(rule.words, phase, 'postcopy was not enabled when the migration started (plan mode precopy)');
    if (!rule.in.includes(phase)) refuseControl(rule.words, phase, rule.otherwise(phase));
  }

  /** What a control the driver applied changes in the run's own settings. */
  private applied(c: MigrationControl): void {
    if (c.action === 'set-bandwidth') this.maxBandwidth = Math.round(c.bytesPerSecond);
    else if (c.action === 'set-downtime') this.downtimeLimitMs = c.ms;
    else if (c.action === 'postcopy') this.postcopySwitched = true;
  }

  // ---- the end ----------------------------------------------------------------------------------

  private async finish(outcome: MigrationFinal['outcome']): Promise<void> {
    this.stopSampling();
    if (outcome === 'completed' && this.phase !== 'commitment' && this.phase !== 'activation') this.advance('completed');
    // A sample in flight finishes before the end's own reading.
    for (let i = 0; this.sampling && i < 100; i++) await sleep(10);
    const dm = this.dm!;
    const final: MigrationFinal = { outcome };
    let destinationRunning = false;
    if (outcome === 'completed' && this.mode === 'engine') {
      destinationRunning = (await dm.activate()).destinationRunning;
      if (this.phase === 'commitment') this.advance('activated');
    }
    const s = await dm.finalSample(outcome);
    if (s) {
      const sample = this.pushSample(s, outcome === 'completed' && this.mode === 'engine' ? 'activation' : this.phase);
      put(final, 'totalTimeMs', sample.totalTimeMs);
      put(final, 'setupTimeMs', sample.setupTimeMs);
      put(final, 'downtimeMs', sample.downtimeMs);
      put(final, 'transferredBytes', sample.transferredBytes);
      put(final, 'precopyBytes', sample.precopyBytes);
      put(final, 'downtimeBytes', sample.downtimeBytes);
      put(final, 'postcopyBytes', sample.postcopyBytes);
      put(final, 'passes', sample.pass);
      put(final, 'postcopyRequests', sample.postcopyRequests || undefined);
      if (sample.errorDesc) final.reason = sample.errorDesc;
      if (outcome === 'completed' && this.mode === 'engine' && sample.downtimeMs && sample.downtimeBytes !== undefined) {
        const list = [...(this.options.switchovers?.get(this.pairKey) ?? [])];
        list.push({ bytes: sample.downtimeBytes, downtimeMs: sample.downtimeMs, at: Date.now(), ...(this.linkRate !== undefined ? { linkRate: this.linkRate } : {}) });
        this.options.switchovers?.set(this.pairKey, list.slice(-20));
      }
    }
    // Counters reported during this run still stand when the last answer lacks them.
    const most = (pick: (x: MigrationSample) => number | undefined) => this.samples.reduce<number | undefined>((m, x) => {
      const v = pick(x);
      return v !== undefined && (m === undefined || v > m) ? v : m;
    }, undefined);
    if (final.passes === undefined) put(final, 'passes', most((x) => x.pass));
    if (final.transferredBytes === undefined) put(final, 'transferredBytes', most((x) => x.transferredBytes));
    if (!final.postcopyRequests) put(final, 'postcopyRequests', most((x) => x.postcopyRequests) || undefined);
    if (this.endingReason && !final.reason) final.reason = this.endingReason;
    if (this.mode === 'attach') {
      this.advance(outcome === 'completed' ? 'finished' : outcome, final.reason);
      await this.conclude(final);
      return;
    }
    await this.awaitGuestSign();
    if (outcome === 'completed') {
      if (this.consoles.destination) {
        // Downtime as the guest and an observer saw it: the first heartbeat on the destination.
        const deadline = Date.now() + 3000;
        while (!this.firstDestHeartbeat && this.guestSeen && Date.now() < deadline) await sleep(20);
        if (this.firstDestHeartbeat) {
          final.guestDowntimeMs = this.firstDestHeartbeat.stallMs;
          if (this.lastSourceHeartbeatAt) final.observedDowntimeMs = this.firstDestHeartbeat.at - this.lastSourceHeartbeatAt;
        }
        if (this.guestSeen && destinationRunning) {
          const v = await this.verify('destination');
          if (v) final.verify = v;
        }
      }
      this.closeConsoles('source');
      const extra = await dm.complete();
      if (!final.postcopyRequests && extra.postcopyRequests) final.postcopyRequests = extra.postcopyRequests;
      this.advance('finished');
    } else {
      const rb = await dm.rollback();
      Object.assign(final, rb.final, { outcome });
      if (this.consoles.source && this.guestSeen && rb.sourceRunning) {
        const v = await this.verify('source');
        if (v) final.verify = v;
      }
      this.advance(outcome, final.reason);
    }
    await this.conclude(final);
  }

  /** The end record, listeners told, everything released. */
  private async conclude(final: MigrationFinal): Promise<void> {
    if (this.final) return;
    this.stopSampling();
    const extra = this.dm ? await this.dm.close().catch((e: unknown) => {
      this.log.warn(`releasing the migration: ${toFerryError(e).message}`);
      return {};
    }) : {};
    Object.assign(final, { ...extra, ...final });
    this.final = final;
    this.rec({ type: 'end', t: Date.now(), ...final });
    this.writer?.close();
    this.closeConsoles();
    this.log.info(`${final.outcome}${final.reason ? `: ${final.reason}` : ''}`);
    for (const l of [...this.endListeners]) l(final);
    this.resolveDone(final);
  }

  /** Settles once the run's end (if one was reported) has been carried out. */
  async settled(): Promise<void> {
    await this.finishing;
  }
}

/**
 * When the next sample is due: the next multiple of `every` ms on the wall clock after the
 * slot last taken. A timer may fire a little early by the wall clock (Node's timers run on the
 * monotonic clock), and "the next multiple" from there is the slot just taken: without the
 * guard a second reading followed within a millisecond.
 */
export function nextSampleSlot(now: number, every: number, lastSlot: number): { slot: number; delayMs: number } {
  const slot = Math.max(Math.floor(now / every) + 1, lastSlot + 1);
  return { slot, delayMs: Math.max(0, slot * every - now) };
}

/** Records a console's history carries (samples travel on their own; guest lines and the header are not drawn). */
function isStory(r: TimelineRecord): boolean {
  return r.type !== 'sample' && r.type !== 'guest' && r.type !== 'header';
}
