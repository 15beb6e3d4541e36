/**
 * The migration engine: one migration is a state machine over the seeds' phases, driven
 * through QMP on both hosts, sampled on a timer, recorded to a timeline, and controllable
 * at any moment. A failed or cancelled migration leaves the guest running on the source
 * and the destination torn down.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { FerryException, toFerryError } from '../../../shared/errors';
import type { HostConfig } from '../../../shared/model/host';
import { MigrationPlanSchema, TERMINAL_PHASES, migrationRunning, phaseForStatus, planAllowsPostcopy, put, sampleFromQueryMigrate } from '../../../shared/model/migration';
import { capabilitiesFor, featuresOf, parametersFor } from '../qmp/qmp-schema';
import { checkDirection, destinationSpec, linkEstimate, newerFeatureSettings, sourceIdentity } from './cross-version';
import { qemuOf, qemuVersionOf } from '../hosts/qemu-install';
import { makePolicies } from './policies';
import { openStreamTunnel } from './stream-tunnel';
import type { StreamTunnel } from './stream-tunnel';
import { StorageCopy, planDiskCopies } from './storage-copy';
import type { PolicyRunner } from './policies';
import type { GuestFigures, MigrationFinal, MigrationPhase, MigrationPlan, MigrationPlanInput, MigrationSample } from '../../../shared/model/migration';
import { TIMELINE_FORMAT, TIMELINE_VERSION } from '../../../shared/model/timeline';
import type { TimelineHeader, TimelineRecord } from '../../../shared/model/timeline';
import { describeIssues } from '../../../shared/contract';
import type { HostTransport } from '../transport/host-transport';
import { QmpClient } from '../qmp/qmp-client';
import type { QmpEvent } from '../qmp/qmp-client';
import { killVmByPid, launchVm, processAlive, withIncomingDefer, readArgvRecord, readPid, stopVm, vmFiles } from '../hosts/vm-launcher';
import type { CleanupLedger } from '../hosts/cleanup-ledger';
import { rootLog } from '../log';
import type { ArgvRecord, LaunchedVm, VmFiles } from '../hosts/vm-launcher';
import { runtimeDirOf, memoryMiBFromArgv } from '../hosts/vm-discovery';
import { GuestConsole } from '../lab/demo-guest';
import { TimelineWriter } from '../recorder/timeline-writer';
import { project, switchoverModel } from '../../../shared/analysis/projection';
import { LinkProbe } from './link-probe';
import { touchedGuestBytes } from './guest-memory';
import type { SwitchoverMemory } from './switchover-store';
import { readTimeline } from '../recorder/timeline-reader';
import type { PreflightResult } from '../../../shared/model/preflight';

export const FERRY_VERSION = '0.1.0';

const engineLog = rootLog.child('engine');

export interface EngineHosts {
  host(id: string): Promise<HostConfig>;
  transport(id: string): Promise<HostTransport>;
}

export interface EngineOptions {
  /** Where timelines go when the plan names no file. */
  timelineDir: string;
  /** What finished switchovers taught about each pair of hosts (shared by the engine's migrations). */
  switchovers?: SwitchoverMemory;
  /** Destination QEMUs that could not be stopped when their migration failed, stopped later. */
  cleanups?: CleanupLedger;
}

export type MigrationControl =
  | { action: 'cancel' }
  | { action: 'set-bandwidth'; bytesPerSecond: number }
  | { action: 'set-downtime'; ms: number }
  | { action: 'postcopy' }
  | { action: 'stop-vm' }
  | { action: 'pause-postcopy' }
  | { action: 'recover' }
  | { action: 'continue' };

/** What `migration.json` beside the source VM holds while a migration runs. */
export interface MigrationState {
  version: 1;
  id: string;
  plan: MigrationPlan;
  startedAt: number;
  timelineFile: string;
  sourceWasRunning: boolean;
  stoppedByControl: boolean;
  destAddress: string;
  incomingUri: string;
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
}

type Listener<T> = (v: T) => void;

/** Samples the projection looks at (60 s at 10 Hz): enough for rates and pass sizes. */
const PROJECTION_WINDOW = 600;

/** 'active' statuses in which QEMU is still moving memory. */
const RUNNING_PHASES: readonly MigrationPhase[] = ['setup', 'precopy', 'stop-and-copy', 'postcopy', 'postcopy-paused'];

export function migrationAddressOf(host: HostConfig, transport: HostTransport): string {
  if (host.migrationAddress) return host.migrationAddress;
  if (host.transport.kind === 'local') return '127.0.0.1';
  const label = transport.label; // user@host:port once connected
  const m = /@(.+):\d+$/.exec(label);
  return m ? m[1]! : host.transport.ssh.host;
}

/** Ferry's monitor first; the aux one when another Ferry client holds it. */
export async function openVmQmp(transport: HostTransport, files: VmFiles): Promise<QmpClient> {
  let last: unknown;
  for (const sock of [files.qmpSocket, files.auxQmpSocket]) {
    try {
      return await QmpClient.connect(await transport.openUnix(sock), { handshakeTimeoutMs: 3000 });
    } catch (e) {
      last = e;
    }
  }
  throw last instanceof Error ? last : new FerryException('QMP_GREETING', 'no QMP monitor answered');
}

interface Side {
  host: HostConfig;
  transport: HostTransport;
  files: VmFiles;
  qmp?: QmpClient;
  console?: GuestConsole;
  qemuVersion?: string;
}

export class Migration {
  readonly id: string;
  phase: MigrationPhase = 'preflight';
  readonly samples: MigrationSample[] = [];
  final: MigrationFinal | undefined;
  readonly timelineFile: string;
  private writer: TimelineWriter | undefined;
  private readonly sampleListeners = new Set<Listener<MigrationSample>>();
  private readonly phaseListeners = new Set<Listener<{ phase: MigrationPhase; from: MigrationPhase; reason?: string; t: number }>>();
  private readonly endListeners = new Set<Listener<MigrationFinal>>();
  private source!: Side;
  private dest: Side | undefined;
  private destVm: LaunchedVm | undefined;
  private record!: ArgvRecord;
  private sourceStopped = false;
  private sourceWasRunning = true;
  private destStarted = false;
  private downtimeLimitMs = 300;
  /** The migration connection's speed, read on the source host while pre-copy runs (tcp transport). */
  private link: LinkProbe | undefined;
  /** Guest memory the source QEMU has touched (its RSS less its own footprint), read at start. */
  private touchedBytes: number | undefined;
  private maxBandwidth: number | undefined;
  private waitingForStart = false;
  private stoppedByControl = false;
  private destRunning = false;
  private incomingUri = '';
  private destAddress = '';
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;
  private postcopySwitched = false;
  private finishing: Promise<void> | undefined;
  private lastGuest: GuestFigures | undefined;
  private lastSourceHeartbeatAt: number | undefined;
  private firstDestHeartbeat: { at: number; stallMs: number } | undefined;
  private guestSeen = false;
  /** transport ssh-tunnel: the relays (the first, then one per postcopy recovery). */
  private tunnels: StreamTunnel[] = [];
  /** copyStorage: the disk copy, and why it stopped early (cancel or a failure's reason). */
  private storage: StorageCopy | undefined;
  private storageStop: 'cancel' | undefined;
  private storageSwitching = false;
  /** The destination has started running the guest (its RESUME event). */
  private destResumed = false;
  private abortReason: string | undefined;
  private readonly done: Promise<MigrationFinal>;
  private resolveDone!: (f: MigrationFinal) => void;

  readonly startedAt: number;
  /** 'engine': Ferry runs it; 'attach': Ferry only watches a migration someone else started. */
  readonly mode: 'engine' | 'attach';

  constructor(readonly plan: MigrationPlan, private readonly hosts: EngineHosts, private readonly options: EngineOptions, resumed?: { id: string; startedAt: number; timelineFile: string; mode?: 'engine' | 'attach' }) {
    this.startedAt = resumed?.startedAt ?? Date.now();
    this.mode = resumed?.mode ?? 'engine';
    this.id = resumed?.id ?? `${new Date(this.startedAt).toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${plan.vm}-${randomBytes(3).toString('hex')}`;
    this.timelineFile = resumed?.timelineFile ?? plan.recordPath ?? path.join(options.timelineDir, `${this.id}.ferry.jsonl`);
    this.done = new Promise((r) => (this.resolveDone = r));
    this.downtimeLimitMs = plan.downtimeLimitMs ?? 300;
    this.maxBandwidth = plan.maxBandwidth;
    this.policies = makePolicies(plan);
  }

  private readonly policies: PolicyRunner[];

  private get pairKey(): string {
    return `${this.plan.from}->${this.plan.to}`;
  }

  private projectionFor(samples: readonly MigrationSample[]) {
    // The link measured now, calibrated by what earlier switchovers on the same link cost.
    const fit = switchoverModel(this.options.switchovers?.get(this.pairKey) ?? [], this.link?.rate);
    const availBandwidth = this.newerCaps?.sourceParams['avail-switchover-bandwidth'];
    // Every estimator looks back seconds, not hours: keep the per-sample work bounded.
    return project(samples.slice(-PROJECTION_WINDOW), {
      downtimeLimitMs: this.downtimeLimitMs,
      ...(this.maxBandwidth !== undefined ? { maxBandwidth: this.maxBandwidth } : {}),
      ...(fit.finalCopyRate !== undefined ? { finalCopyRate: fit.finalCopyRate } : {}),
      ...(fit.overheadMs !== undefined ? { switchoverOverheadMs: fit.overheadMs } : {}),
      ...(this.touchedBytes !== undefined ? { touchedBytes: this.touchedBytes } : {}),
      ...(typeof availBandwidth === 'number' && availBandwidth > 0 ? { switchoverBandwidth: availBandwidth } : {}),
    });
  }

  /** Keeps the preflight the user saw with the migration's timeline (for its report). */
  recordPreflight(result: PreflightResult): void {
    this.rec({ type: 'preflight', t: Date.now(), result });
  }

  /** Settles when the migration has ended (completed, failed or cancelled). */
  whenDone(): Promise<MigrationFinal> {
    return this.done;
  }

  onSample(l: Listener<MigrationSample>): () => void {
    this.sampleListeners.add(l);
    return () => this.sampleListeners.delete(l);
  }
  onPhase(l: Listener<{ phase: MigrationPhase; from: MigrationPhase; reason?: string; t: number }>): () => void {
    this.phaseListeners.add(l);
    return () => this.phaseListeners.delete(l);
  }
  onEnd(l: Listener<MigrationFinal>): () => void {
    this.endListeners.add(l);
    return () => this.endListeners.delete(l);
  }

  summary(): MigrationSummary {
    const s: MigrationSummary = { id: this.id, plan: this.plan, transport: this.plan.transport ?? 'tcp', phase: this.phase, startedAt: this.startedAt, timeline: this.timelineFile };
    const last = this.samples.at(-1);
    if (last) s.last = last;
    if (this.final) s.final = this.final;
    return s;
  }

  /** Records that happen before the header can be written (reservation) wait here. */
  private early: TimelineRecord[] = [];
  /** Every record but samples, guest lines and the header: the story a console joining late is told. */
  private readonly story: TimelineRecord[] = [];

  private rec(r: TimelineRecord): void {
    if (isStory(r)) this.story.push(r);
    if (this.writer) this.writer.append(r);
    else this.early.push(r);
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
    const src = this.source;
    const mem = this.record ? memoryMiBFromArgv(this.record.argv) : undefined;
    const h: TimelineHeader = {
      type: 'header', format: TIMELINE_FORMAT, version: TIMELINE_VERSION, ferryVersion: FERRY_VERSION, migrationId: this.id,
      createdAt: this.startedAt, mode: 'engine', plan: this.plan,
      source: { id: this.plan.from, label: src?.transport.label ?? this.plan.from, ...(src?.qemuVersion ? { qemuVersion: src.qemuVersion } : {}) },
      destination: {
        id: this.plan.to, label: this.dest?.transport.label ?? this.plan.to,
        ...(this.destAddress ? { migrationAddress: this.destAddress } : {}),
        ...(this.dest?.qemuVersion ? { qemuVersion: this.dest.qemuVersion } : {}),
      },
      vm: { name: this.plan.vm, ...(this.record ? { argv: this.record.argv } : {}), ...(mem !== undefined ? { memoryMiB: mem } : {}) },
    };
    const caps = this.capabilities();
    h.capabilities = { ...caps.source, ...this.newerCaps?.sourceCaps };
    h.parameters = { ...this.parameters().source, ...this.newerCaps?.sourceParams };
    return h;
  }

  private setPhase(phase: MigrationPhase, reason?: string): void {
    if (phase === this.phase) return;
    const from = this.phase;
    this.phase = phase;
    const t = Date.now();
    const r: TimelineRecord = reason ? { type: 'phase', t, phase, from, reason } : { type: 'phase', t, phase, from };
    this.rec(r);
    for (const l of [...this.phaseListeners]) l(reason ? { phase, from, reason, t } : { phase, from, t });
  }

  /** Validation, reservation (destination started and listening), then `migrate`. */
  async start(): Promise<void> {
    const plan = this.plan;
    const [srcHost, dstHost] = await Promise.all([this.hosts.host(plan.from), this.hosts.host(plan.to)]);
    const [srcT, dstT] = await Promise.all([this.hosts.transport(plan.from), this.hosts.transport(plan.to)]);
    const srcFiles = vmFiles(runtimeDirOf(srcHost), plan.vm);
    const dstFiles = vmFiles(runtimeDirOf(dstHost), plan.vm);
    this.source = { host: srcHost, transport: srcT, files: srcFiles };
    this.destTarget = { host: dstHost, transport: dstT };
    const record = await readArgvRecord(srcT, srcFiles.argvFile);
    const pid = await readPid(srcT, srcFiles.pidFile);
    if (!record || !pid || !(await processAlive(srcT, pid))) {
      throw new FerryException('NOT_FOUND', `no running VM "${plan.vm}" started by Ferry on ${plan.from}`, { vm: plan.vm, host: plan.from });
    }
    this.record = record;
    this.touchedBytes = await touchedGuestBytes(srcT, pid, memoryMiBFromArgv(record.argv));
    // A destination left over by an earlier failed migration goes first.
    await this.options.cleanups?.runFor(plan.to, dstT);
    const dstPid = await readPid(dstT, dstFiles.pidFile);
    if (dstPid && (await processAlive(dstT, dstPid))) {
      throw new FerryException('ALREADY_EXISTS', `VM "${plan.vm}" is already running on ${plan.to} (pid ${dstPid})`, { vm: plan.vm, host: plan.to });
    }
    this.source.qmp = await openVmQmp(srcT, srcFiles);
    const srcStatus = await this.source.qmp.execute<{ status: string; running: boolean }>('query-status');
    const prior = await this.source.qmp.execute<{ status?: string }>('query-migrate');
    if (migrationRunning(prior.status)) {
      this.source.qmp.close();
      throw new FerryException('ALREADY_EXISTS', `VM "${plan.vm}" on ${plan.from} is already migrating (status ${prior.status})`);
    }
    this.sourceWasRunning = srcStatus.running;
    const sv = versionOf(this.source.qmp);
    if (sv) this.source.qemuVersion = sv;
    if (plan.copyStorage) {
      try {
        if (planAllowsPostcopy(plan)) throw new FerryException('INVALID_REQUEST', 'Ferry does not combine postcopy with copyStorage yet: plan precopy');
        const disks = await planDiskCopies({ host: srcHost, qmp: this.source.qmp }, { host: dstHost }, record.spec.disks);
        this.storage = new StorageCopy(disks, dstT, (text) => this.rec({ type: 'note', t: Date.now(), text }));
      } catch (e) {
        this.source.qmp.close();
        throw e;
      }
    }

    this.setPhase('reservation');
    try {
      // Same VM, same accelerator, host-local paths rewritten by launching into the destination's runtime dir.
      if (this.storage) await this.storage.createTargets();
      const disks = this.storage ? { disks: this.storage.targetSpecDisks(record.spec.disks ?? []) } : {};
      // Cross-version: the source's concrete machine type, CPU model and firmware; never to an older QEMU.
      checkDirection(this.source.qemuVersion, (await qemuVersionOf(dstT, qemuOf(dstHost)))?.join('.'), plan.from, plan.to);
      const identity = await sourceIdentity(record, this.source.qmp);
      const spec = { ...destinationSpec(record, identity, srcHost, dstHost), ...disks, accel: record.accel, paused: false, extraArgs: withIncomingDefer(record.spec.extraArgs) };
      this.destVm = await launchVm(dstT, runtimeDirOf(dstHost), spec, dstHost.qemu);
      const dq = await openVmQmp(dstT, dstFiles);
      this.dest = { host: dstHost, transport: dstT, files: dstFiles, qmp: dq };
      const dv = versionOf(dq);
      if (dv) this.dest.qemuVersion = dv;
      // Capabilities and parameters as each end's own QMP schema has them.
      const [sf, df] = await Promise.all([featuresOf(this.source.qmp), featuresOf(dq)]);
      const newer = newerFeatureSettings(plan, sf, df, linkEstimate(this.options.switchovers?.get(this.pairKey) ?? []));
      const caps = this.capabilities();
      this.newerCaps = newer;
      await this.source.qmp.execute('migrate-set-capabilities', { capabilities: capabilitiesFor({ ...caps.source, ...newer.sourceCaps }, sf, plan.from) });
      await dq.execute('migrate-set-capabilities', { capabilities: capabilitiesFor({ ...caps.dest, ...newer.destCaps }, df, plan.to) });
      const params = this.parameters();
      await this.source.qmp.execute('migrate-set-parameters', parametersFor({ ...params.source, ...newer.sourceParams }, sf, plan.from));
      if (Object.keys(params.dest).length) await dq.execute('migrate-set-parameters', parametersFor(params.dest, df, plan.to));
      for (const text of [`destination started as ${identity.machine}, CPU ${identity.cpu}${spec.bios ? `, firmware ${spec.bios}` : ''} (QEMU ${this.source.qemuVersion ?? '?'} -> ${dv ?? '?'})`, ...newer.notes]) this.rec({ type: 'note', t: Date.now(), text });
      this.destAddress = migrationAddressOf(dstHost, dstT);
      if (plan.transport === 'ssh-tunnel') {
        this.incomingUri = await this.openTunnel('migrate', (uri) => dq.execute('migrate-incoming', { uri }));
        this.openWriter(this.header());
        this.rec({ type: 'note', t: Date.now(), text: `migration stream through SSH: source ${this.incomingUri} -> Ferry -> destination ${this.tunnelDestUri('migrate')}` });
      } else {
        await dq.execute('migrate-incoming', { uri: `tcp:${bracket(this.destAddress)}:${plan.port ?? 0}` });
        const incoming = await dq.execute<{ 'socket-address'?: { type: string; port?: string }[] }>('query-migrate');
        const port = incoming['socket-address']?.find((a) => a.port)?.port ?? (plan.port ? String(plan.port) : undefined);
        if (!port) throw new FerryException('INTERNAL', 'the destination did not say which port it listens on');
        this.incomingUri = `tcp:${bracket(this.destAddress)}:${port}`;
        this.link = new LinkProbe(srcT, { address: this.destAddress, port: Number(port) }, 500, (text) => this.rec({ type: 'note', t: Date.now(), text }));
        this.openWriter(this.header());
        this.rec({ type: 'note', t: Date.now(), text: `destination listening on ${this.incomingUri}` });
      }
      await this.openGuestConsoles();
      this.listen();
      if (this.storage) {
        const via = plan.transport === 'ssh-tunnel' ? { kind: 'tunnel' as const, src: srcT, sourceDir: srcFiles.dir, destDir: dstFiles.dir } : { kind: 'tcp' as const, address: this.destAddress };
        const uriFor = await this.storage.startExports(dq, via);
        await this.storage.startMirrors(this.source.qmp, uriFor, plan.storageBandwidth);
        this.setPhase('storage-copy');
        this.rec({ type: 'note', t: Date.now(), text: `copying ${this.storage.disks.map((d) => `${d.device} ${d.source} -> ${plan.to}:${d.target}`).join(', ')}` });
      } else {
        this.setPhase('setup');
        await this.source.qmp.execute('migrate', { uri: this.incomingUri });
      }
    } catch (e) {
      await this.abortBeforeMigrate(e);
      throw e;
    }
    await this.saveState();
    this.startSampling();
    if (this.storage) void this.afterStorageCopy(this.storage);
  }

  /** copyStorage: once every mirror is ready, the RAM migration; a failure or cancel ends it all. */
  private async afterStorageCopy(storage: StorageCopy): Promise<void> {
    try {
      await storage.waitReady(() => this.storageStop !== undefined || TERMINAL_PHASES.includes(this.phase));
      if (this.storageStop) throw new FerryException('INVALID_REQUEST', 'cancelled');
      this.rec({ type: 'note', t: Date.now(), text: `disks in sync after ${(storage.readyAt ?? Date.now()) - storage.startedAt} ms: migrating the RAM` });
      this.setPhase('setup');
      await this.source.qmp!.execute('migrate', { uri: this.incomingUri });
    } catch (e) {
      if (this.finishing || TERMINAL_PHASES.includes(this.phase)) return;
      const cancelled = this.storageStop === 'cancel';
      if (!cancelled) this.abortReason = toFerryError(e).message;
      this.finishing = this.finish(cancelled ? 'cancelled' : 'failed').catch((err) => {
        this.rec({ type: 'note', t: Date.now(), text: `finishing failed: ${toFerryError(err).message}` });
      });
    }
  }

  /**
   * copyStorage, in pre-switchover (source stopped, destination not yet running): the
   * mirrors make their final sync and end without pivot, then the migration continues.
   */
  private async switchoverStorage(storage: StorageCopy): Promise<void> {
    const src = this.source.qmp!;
    try {
      await storage.finalize(src);
      this.rec({ type: 'note', t: Date.now(), text: 'disks final: mirrors synchronised and ended (the source keeps its images)' });
      if (!this.plan.pauseBeforeSwitchover) await src.execute('migrate-continue', { state: 'pre-switchover' });
    } catch (e) {
      this.abortReason = `storage switchover failed: ${toFerryError(e).message}`;
      this.rec({ type: 'note', t: Date.now(), text: this.abortReason });
      await src.execute('migrate_cancel').catch(() => undefined);
    }
  }

  private tunnelDestUri(name: string): string {
    return `unix:${this.dest!.files.dir}/${name}-in.sock`;
  }

  /**
   * transport ssh-tunnel: the destination listens on a unix socket (`listen` issues
   * migrate-incoming or migrate-recover with its URI), the source host gets a unix socket
   * relayed to it through SSH. Returns the URI the source migrates to.
   */
  private async openTunnel(name: string, listen: (uri: string) => Promise<unknown>): Promise<string> {
    const dest = this.dest!;
    const destUri = this.tunnelDestUri(name);
    await listen(destUri);
    const t = await openStreamTunnel(this.source.transport, `${this.source.files.dir}/${name}-out.sock`, dest.transport, destUri.slice('unix:'.length), (text) => this.rec({ type: 'note', t: Date.now(), text }));
    this.tunnels.push(t);
    return t.sourceUri;
  }

  private startSampling(): void {
    this.timer = setInterval(() => void this.tick(), this.plan.sampleIntervalMs ?? 100);
    this.timer.unref?.();
  }

  private stateFile(): string {
    return `${this.source.files.dir}/migration.json`;
  }

  /** Beside the source VM: lets a restarted Ferry find this migration and record it to the end. */
  private async saveState(): Promise<void> {
    if (this.mode !== 'engine') return;
    const state: MigrationState = {
      version: 1, id: this.id, plan: this.plan, startedAt: this.startedAt, timelineFile: this.timelineFile,
      sourceWasRunning: this.sourceWasRunning, stoppedByControl: this.stoppedByControl, destAddress: this.destAddress, incomingUri: this.incomingUri,
    };
    await this.source.transport.writeFile(this.stateFile(), `${JSON.stringify(state, null, 2)}\n`, 0o600).catch(() => undefined);
  }

  /** Picks up a migration a previous Ferry process started (its state file), and records it to the end. */
  async resume(state: MigrationState): Promise<void> {
    const plan = this.plan;
    const [srcHost, dstHost] = await Promise.all([this.hosts.host(plan.from), this.hosts.host(plan.to)]);
    const [srcT, dstT] = await Promise.all([this.hosts.transport(plan.from), this.hosts.transport(plan.to)]);
    this.source = { host: srcHost, transport: srcT, files: vmFiles(runtimeDirOf(srcHost), plan.vm) };
    this.destTarget = { host: dstHost, transport: dstT };
    this.sourceWasRunning = state.sourceWasRunning;
    this.stoppedByControl = state.stoppedByControl;
    this.destAddress = state.destAddress;
    this.incomingUri = state.incomingUri;
    const record = await readArgvRecord(srcT, this.source.files.argvFile);
    if (record) this.record = record;
    const srcPid = await readPid(srcT, this.source.files.pidFile);
    if (srcPid === undefined || !(await processAlive(srcT, srcPid))) return this.finaliseWithoutSource();
    this.source.qmp = await openVmQmp(srcT, this.source.files);
    const dstFiles = vmFiles(runtimeDirOf(dstHost), plan.vm);
    this.dest = { host: dstHost, transport: dstT, files: dstFiles };
    this.destStarted = true;
    this.dest.qmp = await openVmQmp(dstT, dstFiles).catch(() => undefined);
    let lastT = this.startedAt;
    try {
      const previous = readTimeline(this.timelineFile);
      lastT = (previous.records.at(-1) as { t?: number } | undefined)?.t ?? lastT;
      const lastPhase = [...previous.records].reverse().find((r) => r.type === 'phase') as { phase?: MigrationPhase } | undefined;
      if (lastPhase?.phase) this.phase = lastPhase.phase;
      this.samples.push(...previous.samples);
      this.story.push(...previous.records.filter(isStory));
    } catch {
      // the old timeline is gone or unreadable: carry on in a fresh one
    }
    this.writer = new TimelineWriter(this.timelineFile, undefined);
    this.rec({ type: 'gap', t: Date.now(), side: 'source', fromT: lastT, toT: Date.now(), reason: 'Ferry restarted; migration found running and resumed' });
    const st = await this.source.qmp.execute<{ running: boolean }>('query-status');
    this.sourceStopped = !st.running;
    if (plan.copyStorage && record && !TERMINAL_PHASES.includes(this.phase)) {
      // The mirrors run in the source QEMU: this process finishes (or removes) the copy.
      this.storage = new StorageCopy(await planDiskCopies({ host: srcHost, qmp: this.source.qmp }, { host: dstHost }, record.spec.disks), dstT, (text) => this.rec({ type: 'note', t: Date.now(), text }));
      this.storage.adopt();
    }
    await this.openGuestConsoles();
    this.listen();
    const q = await this.source.qmp.execute<{ status?: string }>('query-migrate');
    if (q.status) this.onStatus(q.status);
    if (!this.finishing) this.startSampling();
    if (this.storage && this.phase === 'storage-copy') void this.afterStorageCopy(this.storage);
  }

  /**
   * The migration ended while no Ferry watched, and its source QEMU is gone too: the guest
   * either runs on the destination (completed) or nowhere Ferry can save (failed, and the
   * destination, if any, is torn down). The outcome is recorded; the state file removed.
   */
  private async finaliseWithoutSource(): Promise<void> {
    const dest = this.destTarget!;
    const dstFiles = vmFiles(runtimeDirOf(dest.host), this.plan.vm);
    this.dest = { host: dest.host, transport: dest.transport, files: dstFiles };
    this.destStarted = true;
    const dpid = await readPid(dest.transport, dstFiles.pidFile);
    const alive = dpid !== undefined && (await processAlive(dest.transport, dpid));
    const dq = alive ? await openVmQmp(dest.transport, dstFiles).catch(engineLog.dropped(`${this.id}: the destination monitor`)) : undefined;
    const st = dq ? await dq.execute<{ status: string; running: boolean }>('query-status').catch(engineLog.dropped(`${this.id}: query-status on the destination`)) : undefined;
    dq?.close();
    this.writer = new TimelineWriter(this.timelineFile, undefined);
    const lastT = (readTimeline(this.timelineFile).records.at(-1) as { t?: number } | undefined)?.t ?? this.startedAt;
    this.rec({ type: 'gap', t: Date.now(), side: 'source', fromT: lastT, toT: Date.now(), reason: 'Ferry restarted; the migration had ended meanwhile and the source QEMU is gone' });
    const completed = st !== undefined && st.status !== 'inmigrate';
    const reason = completed ? `ended while Ferry was away: the guest runs on ${this.plan.to} (${st.status})` : `ended while Ferry was away: the source QEMU on ${this.plan.from} is gone and the destination ${st ? `is still ${st.status}` : 'does not run the guest'}`;
    if (!completed) await this.teardownDest();
    this.setPhase(completed ? 'completed' : 'failed', reason);
    this.end({ outcome: completed ? 'completed' : 'failed', reason });
  }

  /** Watch-only: records a migration someone else started on `qmpSocket` (or the VM's own monitors). */
  async attach(target: { host: HostConfig; transport: HostTransport; qmpSocket?: string }): Promise<void> {
    const files = vmFiles(runtimeDirOf(target.host), this.plan.vm);
    this.source = { host: target.host, transport: target.transport, files: target.qmpSocket ? { ...files, qmpSocket: target.qmpSocket, auxQmpSocket: target.qmpSocket } : files };
    this.source.qmp = await openVmQmp(target.transport, this.source.files);
    const sv = versionOf(this.source.qmp);
    if (sv) this.source.qemuVersion = sv;
    const record = await readArgvRecord(target.transport, files.argvFile);
    if (record) this.record = record;
    const st = await this.source.qmp.execute<{ running: boolean }>('query-status');
    this.sourceStopped = !st.running;
    this.sourceWasRunning = st.running;
    const header = this.header();
    delete header.destination;
    delete header.capabilities;
    delete header.parameters;
    const caps = await this.source.qmp.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities').catch(() => []);
    header.capabilities = Object.fromEntries(caps.map((c) => [c.capability, c.state]));
    header.parameters = await this.source.qmp.execute<Record<string, unknown>>('query-migrate-parameters').catch(() => ({}));
    header.mode = 'attach';
    this.openWriter(header);
    this.listenSource();
    const q = await this.source.qmp.execute<{ status?: string }>('query-migrate');
    this.setPhase(q.status ? phaseForStatus(q.status, this.sourceStopped, 'setup') : 'preflight', 'attached (watch-only)');
    if (q.status && ['completed', 'failed', 'cancelled'].includes(q.status) && this.samples.length === 0) {
      // Nothing running right now: wait for the next migration to start.
      this.setPhase('preflight', `last migration ${q.status}; waiting for the next one`);
      this.waitingForStart = true;
    }
    this.startSampling();
  }

  private capabilities(): { source: Record<string, boolean>; dest: Record<string, boolean> } {
    const p = this.plan;
    const both: Record<string, boolean> = {
      events: true,
      'postcopy-ram': planAllowsPostcopy(p),
      multifd: p.multifdChannels !== undefined,
    };
    const source: Record<string, boolean> = { ...both, 'auto-converge': !!p.autoConverge, xbzrle: p.xbzrleCacheBytes !== undefined, 'pause-before-switchover': !!p.pauseBeforeSwitchover || !!p.copyStorage };
    // The plan's extra capabilities go to both ends; Ferry's own choices above win.
    const extra = Object.fromEntries(Object.entries(p.capabilities ?? {}).filter(([k]) => !(k in source)));
    return { source: { ...extra, ...source }, dest: { ...extra, ...both } };
  }

  private parameters(): { source: Record<string, unknown>; dest: Record<string, unknown> } {
    const p = this.plan;
    // Without max-bandwidth QEMU 7.2 caps at ~1 Gbit/s: "unlimited" is 10 GB/s.
    const source: Record<string, unknown> = { 'max-bandwidth': p.maxBandwidth ?? 10_000_000_000 };
    if (p.downtimeLimitMs !== undefined) source['downtime-limit'] = p.downtimeLimitMs;
    if (p.xbzrleCacheBytes !== undefined) source['xbzrle-cache-size'] = p.xbzrleCacheBytes;
    if (p.cpuThrottleInitial !== undefined) source['cpu-throttle-initial'] = p.cpuThrottleInitial;
    if (p.cpuThrottleIncrement !== undefined) source['cpu-throttle-increment'] = p.cpuThrottleIncrement;
    const dest: Record<string, unknown> = {};
    if (p.multifdChannels !== undefined) {
      source['multifd-channels'] = p.multifdChannels;
      dest['multifd-channels'] = p.multifdChannels;
    }
    return { source, dest };
  }

  private async openGuestConsoles(): Promise<void> {
    const attach = async (side: Side, which: 'source' | 'destination') => {
      try {
        side.console = await GuestConsole.open(side.transport, side.files.serialSocket);
      } catch {
        return; // no serial console (or someone else holds it): no guest figures
      }
      side.console.onLine((l) => {
        if (!l.parsed) return;
        this.guestSeen = true;
        if (l.parsed.kind === 'heartbeat') {
          this.lastGuest = { side: which, seq: l.parsed.seq, achievedBytesPerS: l.parsed.achievedKiBs * 1024, stallMs: l.parsed.stallUs / 1000 };
          if (which === 'source') this.lastSourceHeartbeatAt = l.at;
          else if (!this.firstDestHeartbeat) this.firstDestHeartbeat = { at: l.at, stallMs: l.parsed.stallUs / 1000 };
        } else {
          this.rec({ type: 'guest', t: l.at, side: which, line: l.raw });
        }
      });
    };
    await attach(this.source, 'source');
    if (this.dest) {
      await attach(this.dest, 'destination');
      // A line printed during switchover is split: its head ends the source's stream.
      const srcCon = this.source.console;
      if (srcCon && this.dest.console) {
        const destCon = this.dest.console;
        this.source.qmp?.onEvent('STOP', () => {
          setTimeout(() => {
            const head = srcCon.partialLine;
            if (head) destCon.prepend(head);
          }, 0);
        });
      }
    }
  }

  private recordEvents(q: QmpClient, side: 'source' | 'destination'): void {
    q.onEvent('*', (e: QmpEvent) => {
      if (['MIGRATION', 'MIGRATION_PASS', 'STOP', 'RESUME', 'SHUTDOWN'].includes(e.event)) {
        this.rec({ type: 'event', t: e.timeMs, side, event: e.event, data: e.data });
      }
    });
  }

  private listen(): void {
    if (this.dest?.qmp) this.recordEvents(this.dest.qmp, 'destination');
    this.dest?.qmp?.onEvent('RESUME', () => {
      this.destResumed = true;
    });
    this.listenSource();
  }

  private listenSource(): void {
    const src = this.source.qmp!;
    this.recordEvents(src, 'source');
    src.onEvent('STOP', () => {
      this.sourceStopped = true;
      if (this.phase === 'precopy') this.setPhase('stop-and-copy');
    });
    src.onEvent('RESUME', () => {
      this.sourceStopped = false;
    });
    src.onEvent('MIGRATION', (e) => {
      const status = String(e.data.status ?? '');
      this.onStatus(status);
    });
    src.onClose(() => {
      // Closed by Ferry itself at the end, or lost: only a loss is reconnected.
      if (!TERMINAL_PHASES.includes(this.phase) && !this.finishing) void this.reconnectSource();
    });
  }

  private onStatus(status: string): void {
    if (TERMINAL_PHASES.includes(this.phase) || this.finishing) return;
    if (this.waitingForStart) {
      if (['completed', 'failed', 'cancelled', 'none'].includes(status)) return;
      this.waitingForStart = false;
    }
    if (this.phase === 'storage-copy') return; // the RAM migration has not begun: an old status means nothing
    if (status === 'pre-switchover' && this.storage && !this.storageSwitching) {
      this.storageSwitching = true;
      void this.switchoverStorage(this.storage);
    }
    const next = phaseForStatus(status, this.sourceStopped, this.phase);
    if (status === 'completed' || status === 'failed' || status === 'cancelled') {
      this.finishing = this.finish(status).catch((e) => {
        this.rec({ type: 'note', t: Date.now(), text: `finishing failed: ${toFerryError(e).message}` });
      });
      return;
    }
    this.setPhase(next);
  }

  private async tick(): Promise<void> {
    if (this.sampling || TERMINAL_PHASES.includes(this.phase) || !this.source.qmp || this.source.qmp.closed) return;
    this.sampling = true;
    try {
      const copying = this.phase === 'storage-copy';
      // Before the RAM migration begins, query-migrate can only tell of an earlier one.
      const raw = copying ? { status: 'none' } : await this.source.qmp.execute<Record<string, unknown>>('query-migrate', undefined, { timeoutMs: 5000 });
      const now = Date.now();
      const status = typeof raw.status === 'string' ? raw.status : 'none';
      if (this.waitingForStart) {
        this.onStatus(status);
        if (this.waitingForStart) return;
      }
      const phase = this.finishing ? this.phase : phaseForStatus(status, this.sourceStopped, this.phase);
      const sample = sampleFromQueryMigrate(raw, now, now - this.startedAt, phase);
      if (phase === 'setup' || phase === 'precopy') this.link?.poll(now);
      if (this.link?.rate !== undefined) sample.linkRate = this.link.rate;
      if (this.phase.startsWith('postcopy') && this.dest?.qmp && !this.dest.qmp.closed) {
        const d = await this.dest.qmp.execute<Record<string, unknown>>('query-migrate', undefined, { timeoutMs: 2000 }).catch(() => undefined);
        const req = (d?.ram as Record<string, unknown> | undefined)?.['postcopy-requests'];
        if (typeof req === 'number' && sample.postcopyRequests === undefined) sample.postcopyRequests = req;
      }
      if (this.lastGuest) sample.guest = this.lastGuest;
      if (this.storage && !this.storage.finalized) {
        const f = await this.storage.figures(this.source.qmp).catch(() => undefined);
        if (f) sample.storage = f;
      }
      this.pushSample(sample);
      if (!this.finishing && !copying) {
        if (status !== this.samples.at(-2)?.status) this.onStatus(status);
        await this.applyPolicies(sample);
      }
    } catch {
      // a slow or lost sample is not fatal: the next tick tries again
    } finally {
      this.sampling = false;
    }
  }

  private pushSample(sample: MigrationSample): void {
    this.samples.push(sample);
    if (!TERMINAL_PHASES.includes(sample.phase) && sample.phase !== 'activation' && sample.phase !== 'commitment') {
      sample.projection = this.projectionFor(this.samples);
    }
    this.rec({ type: 'sample', ...sample });
    for (const l of [...this.sampleListeners]) l(sample);
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

  /** A control from the user (or a script); refused with the reason where QEMU would not take it. */
  async control(c: MigrationControl, who = 'user'): Promise<void> {
    const args = { ...c } as Record<string, unknown>;
    delete args.action;
    try {
      await this.applyControl(c);
      this.rec({ type: 'control', t: Date.now(), who, action: c.action, args, result: { ok: true } });
    } catch (e) {
      const fe = toFerryError(e);
      this.rec({ type: 'control', t: Date.now(), who, action: c.action, args, result: { ok: false, error: fe.message } });
      throw e;
    }
  }

  private refuse(action: string, why: string): never {
    throw new FerryException('INVALID_REQUEST', `cannot ${action} now (phase ${this.phase}): ${why}`, { phase: this.phase, action });
  }

  private async applyControl(c: MigrationControl): Promise<void> {
    const src = this.source?.qmp;
    if (TERMINAL_PHASES.includes(this.phase)) this.refuse(c.action, 'the migration has ended');
    if (!src || src.closed) this.refuse(c.action, 'the source QMP connection is down (reconnecting)');
    switch (c.action) {
      case 'cancel':
        if (this.phase.startsWith('postcopy')) this.refuse('cancel', 'in postcopy the guest already runs on the destination; cancelling would lose it');
        if (this.phase === 'storage-copy') {
          this.storageStop = 'cancel';
          return;
        }
        if (!['setup', 'precopy', 'stop-and-copy'].includes(this.phase)) this.refuse('cancel', 'nothing to cancel yet');
        await src.execute('migrate_cancel');
        return;
      case 'set-bandwidth':
        if (!(Number.isFinite(c.bytesPerSecond) && c.bytesPerSecond > 0)) this.refuse('set bandwidth', `bandwidth must be a positive number of bytes/s, got ${c.bytesPerSecond}`);
        await src.execute('migrate-set-parameters', { 'max-bandwidth': Math.round(c.bytesPerSecond), ...(this.phase.startsWith('postcopy') ? { 'max-postcopy-bandwidth': Math.round(c.bytesPerSecond) } : {}) });
        this.maxBandwidth = Math.round(c.bytesPerSecond);
        return;
      case 'set-downtime':
        if (!(Number.isInteger(c.ms) && c.ms >= 1 && c.ms <= 2_000_000)) this.refuse('set the downtime limit', `it must be an integer from 1 to 2000000 ms, got ${c.ms}`);
        if (!['setup', 'precopy'].includes(this.phase)) this.refuse('set the downtime limit', 'it only matters while precopy iterates');
        await src.execute('migrate-set-parameters', { 'downtime-limit': c.ms });
        this.downtimeLimitMs = c.ms;
        return;
      case 'postcopy':
        if (!planAllowsPostcopy(this.plan)) this.refuse('switch to postcopy', 'postcopy was not enabled when the migration started (plan mode precopy)');
        if (!['setup', 'precopy'].includes(this.phase)) this.refuse('switch to postcopy', 'only possible during precopy');
        this.postcopySwitched = true;
        await src.execute('migrate-start-postcopy');
        return;
      case 'stop-vm':
        if (!['setup', 'precopy'].includes(this.phase)) this.refuse('stop the VM', 'only during precopy');
        this.stoppedByControl = true;
        await this.saveState();
        await src.execute('stop');
        return;
      case 'pause-postcopy':
        if (this.phase !== 'postcopy') this.refuse('pause postcopy', 'only during postcopy');
        // Until the destination runs the guest, a broken stream fails the migration (the guest
        // then stays on the source) instead of pausing it.
        if (!this.destResumed && this.mode === 'engine') this.refuse('pause postcopy', 'the switchover to the destination is still under way; try again in a moment');
        await src.executeOob('migrate-pause');
        return;
      case 'recover': {
        if (this.phase !== 'postcopy-paused') this.refuse('recover', 'only when postcopy is paused');
        const dq = this.dest?.qmp;
        if (!dq || dq.closed) this.refuse('recover', 'the destination QMP connection is down');
        // Each end notices a broken stream on its own; a destination with nothing in flight may
        // wait forever, so pause it explicitly (migrate-pause works on the incoming side too).
        const deadline = Date.now() + 15_000;
        let paused = false;
        for (;;) {
          const st = await dq.execute<{ status?: string }>('query-migrate');
          if (st.status === 'postcopy-paused') break;
          if (st.status === 'postcopy-active' && !paused) {
            paused = true;
            await dq.executeOob('migrate-pause').catch(() => undefined);
            this.rec({ type: 'note', t: Date.now(), text: 'destination had not noticed the broken stream: paused it' });
          }
          if (Date.now() > deadline) this.refuse('recover', `the destination is still ${st.status ?? 'unknown'}, not paused`);
          await sleep(50);
        }
        if (this.plan.transport === 'ssh-tunnel') {
          const uri = await this.openTunnel(`recover${this.tunnels.length}`, (u) => dq.executeOob('migrate-recover', { uri: u }));
          await src.execute('migrate', { uri, resume: true });
          return;
        }
        await dq.executeOob('migrate-recover', { uri: `tcp:${bracket(this.destAddress)}:0` });
        const q = await dq.execute<{ 'socket-address'?: { port?: string }[] }>('query-migrate');
        const port = q['socket-address']?.find((a) => a.port)?.port;
        if (!port) throw new FerryException('INTERNAL', 'the destination did not say where it listens for recovery');
        await src.execute('migrate', { uri: `tcp:${bracket(this.destAddress)}:${port}`, resume: true });
        return;
      }
      case 'continue': {
        const st = await src.execute<{ status?: string }>('query-migrate');
        if (st.status !== 'pre-switchover') this.refuse('continue', 'the migration is not paused before switchover');
        await src.execute('migrate-continue', { state: 'pre-switchover' });
        return;
      }
    }
  }

  private async reconnectSource(): Promise<void> {
    const gapFrom = Date.now();
    let delay = 200;
    while (!TERMINAL_PHASES.includes(this.phase)) {
      try {
        await this.source.transport.connect();
        const q = await openVmQmp(this.source.transport, this.source.files);
        this.source.qmp = q;
        this.listenSource();
        this.rec({ type: 'gap', t: Date.now(), side: 'source', fromT: gapFrom, toT: Date.now(), reason: 'source connection lost and re-established' });
        const st = await q.execute<{ status?: string }>('query-migrate');
        if (st.status) this.onStatus(st.status);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  private async finish(status: 'completed' | 'failed' | 'cancelled'): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const src = this.source.qmp;
    const final: MigrationFinal = { outcome: status };
    if (status === 'completed' && this.mode === 'engine') {
      this.setPhase('commitment');
      const dq = this.dest?.qmp;
      if (dq) {
        // The destination leaves 'inmigrate' running (or paused, if the source was paused).
        const deadline = Date.now() + 10_000;
        let st: { status: string; running: boolean } | undefined;
        for (;;) {
          st = await dq.execute<{ status: string; running: boolean }>('query-status').catch(() => undefined);
          if ((st && st.status !== 'inmigrate') || Date.now() > deadline) break;
          await sleep(20);
        }
        if (st && !st.running && this.stoppedByControl && this.sourceWasRunning) {
          // "Stop the VM" forced the offline finish: the guest was running, so it runs again.
          await dq.execute('cont').catch(() => undefined);
          this.rec({ type: 'note', t: Date.now(), text: 'the VM was stopped to force completion: resumed it on the destination' });
          st = await dq.execute<{ status: string; running: boolean }>('query-status').catch(() => st);
        }
        this.destRunning = st?.running === true;
        this.setPhase('activation');
        if (this.storage) await this.storage.stopExports(dq);
        await dq.execute('announce-self', { initial: 50, max: 550, rounds: 5, step: 50 }).catch(() => undefined);
      }
      // QEMU 7.2 reports total-time/downtime 0 right after `completed`: ask again a bit later.
      await sleep(300);
    }
    // Ended during the storage copy: the RAM migration never began, query-migrate would tell of an older one.
    const ramBegan = this.phase !== 'storage-copy';
    const raw = ramBegan && src && !src.closed ? await src.execute<Record<string, unknown>>('query-migrate').catch(() => undefined) : undefined;
    if (raw) {
      const s = sampleFromQueryMigrate(raw, Date.now(), Date.now() - this.startedAt, status === 'completed' ? 'activation' : this.phase);
      if (this.lastGuest) s.guest = this.lastGuest;
      this.pushSample(s);
      put(final, 'totalTimeMs', s.totalTimeMs);
      put(final, 'setupTimeMs', s.setupTimeMs);
      put(final, 'downtimeMs', s.downtimeMs);
      put(final, 'transferredBytes', s.transferredBytes);
      put(final, 'precopyBytes', s.precopyBytes);
      put(final, 'downtimeBytes', s.downtimeBytes);
      put(final, 'postcopyBytes', s.postcopyBytes);
      put(final, 'passes', s.pass);
      put(final, 'postcopyRequests', s.postcopyRequests || undefined);
      if (s.errorDesc) final.reason = s.errorDesc;
      if (status === 'completed' && this.mode === 'engine' && s.downtimeMs && s.downtimeBytes !== undefined) {
        const list = [...(this.options.switchovers?.get(this.pairKey) ?? [])];
        list.push({ bytes: s.downtimeBytes, downtimeMs: s.downtimeMs, at: Date.now(), ...(this.link?.rate !== undefined ? { linkRate: this.link.rate } : {}) });
        this.options.switchovers?.set(this.pairKey, list.slice(-20));
      }
    }
    if (this.abortReason && !final.reason) final.reason = this.abortReason;
    const dest = this.dest;
    if (this.mode === 'engine') await this.awaitGuestSign();
    if (this.mode === 'attach') {
      this.setPhase(status, final.reason);
      this.end(final);
      return;
    }
    if (status === 'completed') {
      if (dest?.console) {
        // Downtime as the guest and an observer saw it: the first heartbeat on the destination.
        const deadline = Date.now() + 3000;
        while (!this.firstDestHeartbeat && this.guestSeen && Date.now() < deadline) await sleep(20);
        if (this.firstDestHeartbeat) {
          final.guestDowntimeMs = this.firstDestHeartbeat.stallMs;
          if (this.lastSourceHeartbeatAt) final.observedDowntimeMs = this.firstDestHeartbeat.at - this.lastSourceHeartbeatAt;
        }
        if (this.guestSeen && this.destRunning) {
          const v = await dest.console.command('v', 20_000).catch(() => undefined);
          if (v?.kind === 'verify') final.verify = { ok: v.ok, bad: v.bad, stale: v.stale, pages: v.pages };
        }
      }
      const dreq = dest?.qmp ? await dest.qmp.execute<{ ram?: { 'postcopy-requests'?: number } }>('query-migrate').catch(() => undefined) : undefined;
      if (!final.postcopyRequests) put(final, 'postcopyRequests', dreq?.ram?.['postcopy-requests']);
      this.source.console?.close();
      if (!this.plan.keepSource) {
        src?.close();
        await stopVm(this.source.transport, runtimeDirOf(this.source.host), this.plan.vm).catch(() => undefined);
      }
      this.setPhase('completed');
    } else {
      // The guest stays on the source: make sure it runs, tear the destination down.
      if (src && !src.closed) {
        const st = await src.execute<{ status: string; running: boolean }>('query-status').catch(() => undefined);
        if (st && !st.running && this.sourceWasRunning && st.status !== 'inmigrate') {
          await src.execute('cont').catch(() => undefined);
          this.rec({ type: 'note', t: Date.now(), text: `source was ${st.status}; resumed it` });
        }
      }
      await this.teardownDest();
      if (this.source.console && this.guestSeen && this.sourceWasRunning) {
        const v = await this.source.console.command('v', 20_000).catch(() => undefined);
        if (v?.kind === 'verify') final.verify = { ok: v.ok, bad: v.bad, stale: v.stale, pages: v.pages };
      }
      this.setPhase(status, final.reason);
    }
    this.end(final);
  }

  /**
   * Whether the guest is the demo guest is known from its first line; a migration that ends
   * very early may have ended before one arrived: give the consoles a moment to speak.
   */
  private async awaitGuestSign(): Promise<void> {
    if (this.guestSeen) return;
    const consoles = [this.source?.console, this.dest?.console].filter((c): c is GuestConsole => c !== undefined);
    if (consoles.length === 0) return;
    await Promise.any(consoles.map((c) => c.waitFor((l) => l.parsed !== undefined, 2000, 'a first guest line'))).catch(() => undefined);
  }

  private async teardownDest(): Promise<void> {
    const dest = this.dest;
    // A storage copy stops first: the source keeps its own images, never pivoting.
    await this.storage?.abort(this.source?.qmp);
    dest?.console?.close();
    dest?.qmp?.close();
    const target = this.destTarget;
    if ((this.destVm || this.destStarted) && target) {
      // By pid over Ferry's own connection to the destination, whatever the stream's state.
      const runtimeDir = runtimeDirOf(target.host);
      try {
        await killVmByPid(target.transport, runtimeDir, this.plan.vm);
      } catch (e) {
        const why = toFerryError(e).message;
        this.rec({ type: 'note', t: Date.now(), text: `could not stop the destination QEMU on ${this.plan.to} yet (${why}); Ferry stops it when ${this.plan.to} is reachable again` });
        await this.options.cleanups?.add({ hostId: this.plan.to, vm: this.plan.vm, runtimeDir, reason: `migration ${this.id} ${this.phase}: ${why}`, migrationId: this.id, since: Date.now() });
      }
    }
    const removed = await this.storage?.removeTargets();
    if (removed?.length) {
      this.removedTargets = removed;
      this.rec({ type: 'note', t: Date.now(), text: `removed the partial copies on ${this.plan.to}: ${removed.join(', ')}` });
    }
  }

  private removedTargets: string[] | undefined;
  /** The plan's newer-QEMU features as set on each end (cross-version.ts). */
  private newerCaps: ReturnType<typeof newerFeatureSettings> | undefined;
  /** The destination host, known as soon as the plan is checked (before anything is started there). */
  private destTarget: { host: HostConfig; transport: HostTransport } | undefined;

  private async abortBeforeMigrate(e: unknown): Promise<void> {
    const fe = toFerryError(e);
    await this.teardownDest();
    this.source.console?.close();
    this.source.qmp?.close();
    if (!this.writer) this.openWriter(this.header());
    this.setPhase('failed', fe.message);
    this.end({ outcome: 'failed', reason: fe.message });
  }

  /** Ends a migration refused before reservation: announced, nothing started, no timeline written. */
  refused(reason: string): void {
    if (this.final) return;
    this.keepStateFile = true; // another migration of this VM may own it
    this.setPhase('failed', reason);
    this.end({ outcome: 'failed', reason });
  }

  private keepStateFile = false;

  private end(final: MigrationFinal): void {
    if (this.final) return;
    if (this.storage) {
      const last = [...this.samples].reverse().find((s) => s.storage)?.storage;
      final.storage = {
        copiedBytes: last?.copiedBytes ?? 0,
        disks: this.storage.disks.map((d) => ({ source: d.source, target: d.target })),
        ...(this.storage.readyAt !== undefined ? { readyMs: this.storage.readyAt - this.storage.startedAt } : {}),
        ...(this.removedTargets ? { removedTargets: this.removedTargets } : {}),
      };
    }
    if (this.tunnels.length) {
      final.tunnel = {
        forwardBytes: this.tunnels.reduce((a, t) => a + t.bytes.forward, 0),
        backBytes: this.tunnels.reduce((a, t) => a + t.bytes.back, 0),
        connections: this.tunnels.reduce((a, t) => a + t.connections, 0),
      };
      for (const t of this.tunnels) void t.close();
    }
    this.final = final;
    if (this.timer) clearInterval(this.timer);
    this.rec({ type: 'end', t: Date.now(), ...final });
    this.writer?.close();
    if (this.mode === 'engine' && this.source && !this.keepStateFile) void this.source.transport.exec(['rm', '-f', this.stateFile()]).catch(engineLog.dropped(`${this.id}: removing ${this.stateFile()}`));
    this.source?.console?.close();
    this.dest?.console?.close();
    this.dest?.qmp?.close();
    if (this.mode === 'attach' || this.plan.keepSource || final.outcome !== 'completed') this.source?.qmp?.close();
    for (const l of [...this.endListeners]) l(final);
    this.resolveDone(final);
  }
}

export class MigrationEngine {
  private readonly migrations = new Map<string, Migration>();
  private readonly startedListeners = new Set<(m: Migration) => void>();

  /** Called for each migration as soon as it exists (before `migrate` is issued). */
  onStarted(l: (m: Migration) => void): () => void {
    this.startedListeners.add(l);
    return () => this.startedListeners.delete(l);
  }

  constructor(private readonly hosts: EngineHosts, private readonly options: EngineOptions) {
    this.options = { ...options, switchovers: options.switchovers ?? new Map() };
  }

  /** Validates the plan, reserves the destination and issues `migrate`; throws (cleaned up) on any failure. */
  async start(input: MigrationPlanInput, extras: { preflight?: PreflightResult } = {}): Promise<Migration> {
    const parsed = MigrationPlanSchema.safeParse(input);
    if (!parsed.success) throw new FerryException('INVALID_REQUEST', `invalid migration plan: ${describeIssues(parsed.error)}`);
    const plan = parsed.data;
    for (const m of this.migrations.values()) {
      if (!TERMINAL_PHASES.includes(m.phase) && m.plan.vm === plan.vm && (m.plan.from === plan.from || m.plan.to === plan.from)) {
        throw new FerryException('ALREADY_EXISTS', `VM "${plan.vm}" is already being migrated (${m.id})`, { id: m.id });
      }
    }
    const m = new Migration(plan, this.hosts, this.options);
    if (extras.preflight) m.recordPreflight(extras.preflight);
    this.migrations.set(m.id, m);
    for (const l of [...this.startedListeners]) l(m);
    try {
      await m.start();
    } catch (e) {
      this.migrations.delete(m.id);
      // Refused before anything moved (the VM is not there, or already migrating): whoever saw
      // it announced sees it end too, so no console keeps a tab stuck in preflight.
      m.refused(toFerryError(e).message);
      throw e;
    }
    return m;
  }

  /**
   * Finds migrations a previous Ferry process started on these hosts (their state files)
   * and records them to the end. Returns the ones picked up.
   */
  async recover(hostIds: string[]): Promise<Migration[]> {
    const found: Migration[] = [];
    for (const id of hostIds) {
      let files: string[];
      let transport: HostTransport;
      try {
        const host = await this.hosts.host(id);
        transport = await this.hosts.transport(id);
        const r = await transport.exec(['find', runtimeDirOf(host), '-mindepth', '2', '-maxdepth', '2', '-name', 'migration.json', '-type', 'f']);
        files = r.stdout.split('\n').filter(Boolean);
      } catch (e) {
        engineLog.warn(`${id}: cannot look for migrations to pick up: ${toFerryError(e).message}`);
        continue;
      }
      for (const f of files) {
        let state: MigrationState;
        try {
          state = JSON.parse((await transport.readFile(f)).toString()) as MigrationState;
        } catch (e) {
          engineLog.warn(`${id}: unreadable migration state ${f}: ${toFerryError(e).message}`);
          continue;
        }
        if (state.version !== 1 || this.migrations.has(state.id)) continue;
        const m = new Migration(state.plan, this.hosts, this.options, { id: state.id, startedAt: state.startedAt, timelineFile: state.timelineFile });
        this.migrations.set(m.id, m);
        for (const l of [...this.startedListeners]) l(m);
        try {
          await m.resume(state);
          found.push(m);
          engineLog.info(`${m.id}: picked up from ${f} (${m.phase})`);
        } catch (e) {
          engineLog.error(`${state.id}: could not pick up the migration in ${f}: ${toFerryError(e).message}`);
          this.migrations.delete(m.id);
        }
      }
    }
    return found;
  }

  /** Watch-only recording of a migration someone else runs on `hostId`/`vm` (or a given QMP socket). */
  async attach(options: { hostId: string; vm: string; qmpSocket?: string; recordPath?: string }): Promise<Migration> {
    const host = await this.hosts.host(options.hostId);
    const transport = await this.hosts.transport(options.hostId);
    const plan = MigrationPlanSchema.parse({ vm: options.vm, from: options.hostId, to: options.hostId === 'unknown' ? 'unknown-destination' : 'unknown', ...(options.recordPath ? { recordPath: options.recordPath } : {}) });
    const m = new Migration(plan, this.hosts, this.options, { id: `attach-${Date.now().toString(36)}-${options.vm}`, startedAt: Date.now(), timelineFile: options.recordPath ?? path.join(this.options.timelineDir, `attach-${Date.now().toString(36)}-${options.vm}.ferry.jsonl`), mode: 'attach' });
    this.migrations.set(m.id, m);
    for (const l of [...this.startedListeners]) l(m);
    try {
      await m.attach({ host, transport, ...(options.qmpSocket ? { qmpSocket: options.qmpSocket } : {}) });
    } catch (e) {
      this.migrations.delete(m.id);
      throw e;
    }
    return m;
  }

  /** Migrations still running (QEMU moves memory; Ferry only watches). */
  active(): MigrationSummary[] {
    return this.list().filter((m) => !TERMINAL_PHASES.includes(m.phase));
  }

  /** The migration with this id, if this process knows it. */
  find(id: string): Migration | undefined {
    return this.migrations.get(id);
  }

  get(id: string): Migration {
    const m = this.migrations.get(id);
    if (!m) throw new FerryException('NOT_FOUND', `no migration with id "${id}"`, { id });
    return m;
  }

  list(): MigrationSummary[] {
    return [...this.migrations.values()].map((m) => m.summary());
  }

  /** Waits for running migrations to end (they are QEMU's; Ferry only watches). */
  async dispose(): Promise<void> {
    await Promise.all([...this.migrations.values()].filter((m) => RUNNING_PHASES.includes(m.phase)).map((m) => Promise.race([m.whenDone(), sleep(100)])));
  }
}

/** Records a console's history carries (samples travel on their own; guest lines and the header are not drawn). */
function isStory(r: TimelineRecord): boolean {
  return r.type !== 'sample' && r.type !== 'guest' && r.type !== 'header';
}

function versionOf(q: QmpClient): string | undefined {
  const v = q.greeting.version?.qemu;
  return v ? `${v.major}.${v.minor}.${v.micro}` : undefined;
}

function bracket(addr: string): string {
  return addr.includes(':') && !addr.startsWith('[') ? `[${addr}]` : addr;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
