/**
 * The QMP driver: migrations carried out by talking QMP to both QEMUs, for VMs Ferry
 * launched (a runtime dir with argv.json) and for QEMUs it adopted (started by a script or a
 * unit, found through the host's QMP socket globs, argv read from /proc/PID/cmdline).
 *
 * How one migration goes here:
 *   open      the VM is found on the source (Ferry's runtime dir, else the globs), its QMP
 *             monitor opened, its run state and QEMU version read; nothing is changed yet.
 *   reserve   the destination QEMU is started with the same arguments and `-incoming defer`
 *             in Ferry's runtime dir there (an adopted QEMU's host-local paths rewritten),
 *             capabilities and parameters set on both ends, and it listens: on TCP, or on a
 *             unix socket relayed through Ferry's SSH connections (transport ssh-tunnel).
 *   start     `migrate` (after the disks are mirrored, with copyStorage); QMP events
 *             (MIGRATION, MIGRATION_PASS, STOP, RESUME) are recorded and reported.
 *   sample    `query-migrate` on the source (and the destination's page requests in postcopy).
 *   controls  migrate_cancel, migrate-set-parameters, migrate-start-postcopy, stop,
 *             migrate-pause (OOB), migrate-recover + migrate resume, migrate-continue.
 *   finish    completed: the destination runs (resumed if "stop the VM" forced the end), the
 *             source quits (kept paused with keepSource). failed/cancelled: the source runs
 *             again, the destination QEMU is stopped and its dir removed.
 *   restart   `migration.json` beside the source VM lets a restarted Ferry resume recording.
 *
 * A lost QMP connection to the source is re-established (a gap in the timeline).
 */
import { FerryException, toFerryError } from '../../../../shared/errors';
import type { HostConfig } from '../../../../shared/model/host';
import { migrationRunning, phaseForStatus, planAllowsPostcopy, sampleFromQueryMigrate } from '../../../../shared/model/migration';
import type { MigrationFinal, MigrationPhase, MigrationPlan } from '../../../../shared/model/migration';
import type { PreflightResult } from '../../../../shared/model/preflight';
import type { VmInfo } from '../../../../shared/model/vm';
import type { HostTransport } from '../../transport/host-transport';
import { QmpClient } from '../../qmp/qmp-client';
import type { QmpEvent } from '../../qmp/qmp-client';
import { killVmByPid, launchVm, processAlive, readPid, runtimeDirOf, stopVm, vmFiles, withIncomingDefer } from '../../hosts/vm-launcher';
import type { VmFiles } from '../../hosts/vm-launcher';
import { listVms, memoryMiBFromArgv } from '../../hosts/vm-discovery';
import type { VmStateCache } from '../../hosts/vm-discovery';
import type { CleanupLedger } from '../../hosts/cleanup-ledger';
import { findQemuVm, noSuchVm } from '../../hosts/adopted-qemu';
import type { QemuVm } from '../../hosts/adopted-qemu';
import { rootLog } from '../../log';
import { openStreamTunnel } from '../stream-tunnel';
import type { StreamTunnel } from '../stream-tunnel';
import { StorageCopy, planDiskCopies } from '../storage-copy';
import { preflight } from '../preflight';
import { LINK_PROBE_EVERY_MS, LinkProbe } from '../link-probe';
import { touchedGuestBytes } from '../guest-memory';
import { capabilitiesFor, featuresOf, parametersFor } from '../../qmp/qmp-schema';
import { checkDirection, destinationSpec, linkEstimate, newerFeatureSettings, sourceIdentity } from '../cross-version';
import { qemuOf, qemuVersionOf } from '../../hosts/qemu-install';
import { capabilitiesNeeded, migrationAddressOf, refuseControl, requireCapabilities } from './hypervisor-driver';
import type {
  AttachTarget, DriverCapability, DriverContext, DriverMigration, DriverReading, DriverSample, EngineHosts, HypervisorDriver,
  MigrationControl, MigrationControlAction, RecoveredMigration, ReportedState, RunFacts, SerialConsole, Side,
} from './hypervisor-driver';

const log = rootLog.child('qmp-driver');

/** Ferry's monitor first; the aux one when another Ferry client holds it. */
export async function openVmQmp(transport: HostTransport, files: Pick<VmFiles, 'qmpSocket' | 'auxQmpSocket'>): Promise<QmpClient> {
  return openQmp(transport, [files.qmpSocket, files.auxQmpSocket]);
}

/** The first of `sockets` whose QMP monitor answers. */
export async function openQmp(transport: HostTransport, sockets: readonly string[]): Promise<QmpClient> {
  let last: unknown;
  for (const sock of new Set(sockets)) {
    try {
      return await QmpClient.connect(await transport.openUnix(sock), { handshakeTimeoutMs: 3000 });
    } catch (e) {
      last = e;
    }
  }
  throw last instanceof Error ? last : new FerryException('QMP_GREETING', 'no QMP monitor answered');
}

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
  /** An adopted source: the QMP socket Ferry found it by. */
  adoptedSocket?: string;
}

/**
 * What a QEMU status means in the run's words. `active` with the source's vCPUs stopped is
 * the final copy; statuses that say nothing new (`cancelling`, unknown ones) are not reported.
 */
export function reportOfStatus(status: string, sourceStopped: boolean): ReportedState | undefined {
  // phaseForStatus from 'preflight' (nothing to stay behind) is the plain meaning of a status.
  const p = phaseForStatus(status, sourceStopped, 'preflight');
  if (p === 'preflight') return undefined;
  if (p === 'commitment') return 'completed';
  return p as ReportedState;
}

const versionOf = (q: QmpClient): string | undefined => {
  const v = q.greeting.version?.qemu;
  return v ? `${v.major}.${v.minor}.${v.micro}` : undefined;
};

const bracket = (addr: string) => (addr.includes(':') && !addr.startsWith('[') ? `[${addr}]` : addr);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface SourceEnd {
  host: HostConfig;
  transport: HostTransport;
  vm: QemuVm;
  qmp?: QmpClient;
  qemuVersion?: string;
}

interface DestinationEnd {
  host: HostConfig;
  transport: HostTransport;
  files: VmFiles;
  qmp?: QmpClient;
  qemuVersion?: string;
}

export interface QmpDriverOptions {
  /** Destination QEMUs that could not be stopped when their migration failed, stopped later. */
  cleanups?: CleanupLedger;
  /** Run states (and adopted QEMUs' facts) of listed VMs, kept a while so the board polls little. */
  vmStates?: Pick<VmStateCache, 'get' | 'socketFacts'>;
}

/** One migration over QMP (see the file's header). */
class QmpMigration implements DriverMigration {
  capabilities: DriverCapability[] = [];
  controls: MigrationControlAction[] = [];
  private readonly plan: MigrationPlan;
  private dest: DestinationEnd | undefined;
  private destLaunched = false;
  private sourceWasRunning = true;
  private sourceStopped = false;
  private stoppedByControl = false;
  /** The destination has started running the guest (its RESUME event). */
  private destResumed = false;
  private destAddress = '';
  private incomingUri = '';
  private lastStatus = 'none';
  /** Guest memory the source QEMU has touched (guest-memory.ts), read at open. */
  private touchedBytes: number | undefined;
  /** The migration connection's speed, read on the source host while pre-copy runs (transport tcp). */
  private link: LinkProbe | undefined;
  /** transport ssh-tunnel: the relays (the first, then one per postcopy recovery). */
  private tunnels: StreamTunnel[] = [];
  /** copyStorage: the disk copy; 'storage' until the RAM migration is issued. */
  private storage: StorageCopy | undefined;
  private stage: 'storage' | 'ram' = 'ram';
  private storageStop: 'cancel' | undefined;
  private storageSwitching = false;
  private removedTargets: string[] | undefined;
  /** The plan's newer-QEMU features as set on each end (cross-version.ts). */
  private newer: ReturnType<typeof newerFeatureSettings> | undefined;
  /** resume(): the source QEMU was gone when Ferry came back (the migration ended meanwhile). */
  private sourceGone = false;
  private closing = false;
  /** Picked up after a restart (resume): start() listens again instead of issuing `migrate`. */
  private resumed = false;
  /** attach: what the source's QEMU has set (someone else's choices), for the header. */
  private watchedSettings: { capabilities: Record<string, boolean>; parameters: Record<string, unknown> } | undefined;
  private readonly offs: (() => void)[] = [];

  constructor(private readonly ctx: DriverContext, private readonly options: QmpDriverOptions, private readonly source: SourceEnd, dest?: DestinationEnd) {
    this.plan = ctx.run.plan;
    this.dest = dest;
  }

  private get watching(): boolean {
    return this.ctx.run.mode === 'attach';
  }

  private get src(): QmpClient {
    const q = this.source.qmp;
    if (!q || q.closed) throw new FerryException('QMP_DISCONNECTED', 'the source QMP connection is down (reconnecting)');
    return q;
  }

  /** Whether this migration wrote migration.json (only then is it its to remove). */
  private stateSaved = false;
  /** Whether Ferry made the scratch dir beside an adopted source (only then is it its to remove). */
  private scratchMade = false;

  /** Capabilities and controls of this migration: this VM, this QEMU. */
  private describe(): void {
    const recover = this.source.qmp?.oob === true;
    const caps: DriverCapability[] = ['postcopy', 'ssh-tunnel', 'pause-before-switchover', 'auto-converge', 'xbzrle', 'multifd', 'qemu-capabilities', 'fixed-port', 'attach', 'resume-after-restart'];
    if (recover) caps.push('postcopy-recover');
    // Storage copy knows a Ferry spec's disks (-drive id=diskN); an adopted QEMU's disks are its own.
    if (this.source.vm.spec.disks?.length && !this.source.vm.spec.argv) caps.push('storage-copy');
    this.capabilities = caps;
    this.controls = this.watching ? [] : [
      'cancel', 'set-bandwidth', 'set-downtime', 'postcopy', 'stop-vm',
      ...(recover ? (['pause-postcopy', 'recover'] as const) : []),
      'continue',
    ];
  }

  /** Opens the source's monitor and reads what every mode needs: run state, QEMU version, what it can do. */
  async openSource(): Promise<void> {
    const { transport: t, vm } = this.source;
    this.touchedBytes = await touchedGuestBytes(t, vm.pid, memoryMiBFromArgv(vm.argv));
    const q = await openQmp(t, vm.qmpSockets);
    this.source.qmp = q;
    try {
      const st = await q.execute<{ status: string; running: boolean }>('query-status');
      this.sourceWasRunning = st.running;
      this.sourceStopped = !st.running;
      const v = versionOf(q);
      if (v) this.source.qemuVersion = v;
      this.describe();
    } catch (e) {
      q.close();
      throw e;
    }
  }

  /** Engine runs: the destination is free and the source not already migrating; the storage copy planned. */
  async checkReady(): Promise<void> {
    const dest = this.dest!;
    const plan = this.plan;
    const q = this.src;
    try {
      // A destination left over by an earlier failed migration goes first.
      await this.options.cleanups?.runFor(plan.to, dest.transport);
      const dstPid = await readPid(dest.transport, dest.files.pidFile);
      if (dstPid && (await processAlive(dest.transport, dstPid))) {
        throw new FerryException('ALREADY_EXISTS', `VM "${plan.vm}" is already running on ${plan.to} (pid ${dstPid})`, { vm: plan.vm, host: plan.to });
      }
      const prior = await q.execute<{ status?: string }>('query-migrate');
      if (migrationRunning(prior.status)) {
        throw new FerryException('ALREADY_EXISTS', `VM "${plan.vm}" on ${plan.from} is already migrating (status ${prior.status})`);
      }
      if (plan.copyStorage) {
        if (planAllowsPostcopy(plan)) throw new FerryException('INVALID_REQUEST', 'Ferry does not combine postcopy with copyStorage yet: plan precopy');
        const disks = await planDiskCopies({ host: this.source.host, qmp: q }, { host: dest.host }, this.source.vm.spec.disks);
        this.storage = new StorageCopy(disks, dest.transport, (text) => this.ctx.note(text));
      }
    } catch (e) {
      q.close();
      throw e;
    }
  }

  /** attach: the capabilities and parameters someone else set, as QEMU reports them. */
  async readSettings(): Promise<void> {
    const q = this.src;
    const caps = await q.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities').catch(log.dropped('query-migrate-capabilities', 'debug'));
    const parameters = await q.execute<Record<string, unknown>>('query-migrate-parameters').catch(log.dropped('query-migrate-parameters', 'debug'));
    this.watchedSettings = { capabilities: Object.fromEntries((caps ?? []).map((c) => [c.capability, c.state])), parameters: parameters ?? {} };
  }

  facts(): RunFacts {
    const { vm, transport, qemuVersion } = this.source;
    const mem = memoryMiBFromArgv(vm.argv);
    const f: RunFacts = {
      source: { label: transport.label, ...(qemuVersion ? { qemuVersion } : {}) },
      vm: { argv: vm.argv, ...(mem !== undefined ? { memoryMiB: mem } : {}), ...(this.touchedBytes !== undefined ? { touchedBytes: this.touchedBytes } : {}) },
    };
    if (!this.watching) {
      const d = this.dest;
      f.destination = {
        label: d?.transport.label ?? this.plan.to,
        ...(this.destAddress ? { migrationAddress: this.destAddress } : {}),
        ...(d?.qemuVersion ? { qemuVersion: d.qemuVersion } : {}),
      };
      f.capabilities = { ...this.capabilitiesToSet().source, ...this.newer?.sourceCaps };
      f.parameters = { ...this.parametersToSet().source, ...this.newer?.sourceParams };
    } else if (this.watchedSettings) {
      f.capabilities = this.watchedSettings.capabilities;
      f.parameters = this.watchedSettings.parameters;
    }
    return f;
  }

  serialConsole(side: Side): SerialConsole | undefined {
    if (side === 'source') return this.source.vm.serialSocket ? { transport: this.source.transport, socket: this.source.vm.serialSocket } : undefined;
    return this.dest && (this.destLaunched || this.dest.qmp) ? { transport: this.dest.transport, socket: this.dest.files.serialSocket } : undefined;
  }

  private capabilitiesToSet(): { source: Record<string, boolean>; dest: Record<string, boolean> } {
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

  private parametersToSet(): { source: Record<string, unknown>; dest: Record<string, unknown> } {
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

  async reserve(): Promise<void> {
    const dest = this.dest!;
    const src = this.src;
    const plan = this.plan;
    // Same VM, same accelerator, host-local paths rewritten by launching into the destination's runtime dir.
    if (this.storage) await this.storage.createTargets();
    // Cross-version: the source's concrete machine type, CPU model and firmware; never to an older QEMU.
    checkDirection(this.source.qemuVersion, (await qemuVersionOf(dest.transport, qemuOf(dest.host)))?.join('.'), plan.from, plan.to);
    const record = this.source.vm.record;
    const identity = await sourceIdentity(record, src);
    const disks = this.storage ? { disks: this.storage.targetSpecDisks(record.spec.disks ?? []) } : {};
    const spec = { ...destinationSpec(record, identity, this.source.host, dest.host), ...disks, accel: this.source.vm.accel, paused: false, extraArgs: withIncomingDefer(record.spec.extraArgs) };
    try {
      await launchVm(dest.transport, runtimeDirOf(dest.host), spec, dest.host.qemu);
    } catch (e) {
      // Another VM of that name there is not ours to stop; anything else left a dir to remove.
      if (!(e instanceof FerryException && e.code === 'ALREADY_EXISTS')) this.destLaunched = true;
      throw e;
    }
    this.destLaunched = true;
    if (this.source.vm.manager === 'qemu') this.ctx.note(`adopted QEMU (pid ${this.source.vm.pid}, ${this.source.vm.adoptedSocket}): destination started from its command line, host-local paths moved into ${dest.files.dir}`);
    const dq = await openVmQmp(dest.transport, dest.files);
    dest.qmp = dq;
    const dv = versionOf(dq);
    if (dv) dest.qemuVersion = dv;
    // Capabilities and parameters as each end's own QMP schema has them.
    const [sf, df] = await Promise.all([featuresOf(src), featuresOf(dq)]);
    const newer = newerFeatureSettings(plan, sf, df, linkEstimate(this.ctx.switchovers()));
    this.newer = newer;
    const caps = this.capabilitiesToSet();
    await src.execute('migrate-set-capabilities', { capabilities: capabilitiesFor({ ...caps.source, ...newer.sourceCaps }, sf, plan.from) });
    await dq.execute('migrate-set-capabilities', { capabilities: capabilitiesFor({ ...caps.dest, ...newer.destCaps }, df, plan.to) });
    const params = this.parametersToSet();
    await src.execute('migrate-set-parameters', parametersFor({ ...params.source, ...newer.sourceParams }, sf, plan.from));
    if (Object.keys(params.dest).length) await dq.execute('migrate-set-parameters', parametersFor(params.dest, df, plan.to));
    for (const text of [`destination started as ${identity.machine}, CPU ${identity.cpu}${spec.bios ? `, firmware ${spec.bios}` : ''} (QEMU ${this.source.qemuVersion ?? '?'} -> ${dv ?? '?'})`, ...newer.notes]) this.ctx.note(text);
    this.destAddress = migrationAddressOf(dest.host, dest.transport);
    if (plan.transport === 'ssh-tunnel') {
      this.incomingUri = await this.openTunnel('migrate', (uri) => dq.execute('migrate-incoming', { uri }));
      this.ctx.note(`migration stream through SSH: source ${this.incomingUri} -> Ferry -> destination ${this.tunnelDestUri('migrate')}`);
    } else {
      await dq.execute('migrate-incoming', { uri: `tcp:${bracket(this.destAddress)}:${plan.port ?? 0}` });
      const incoming = await dq.execute<{ 'socket-address'?: { type: string; port?: string }[] }>('query-migrate');
      const port = incoming['socket-address']?.find((a) => a.port)?.port ?? (plan.port ? String(plan.port) : undefined);
      if (!port) throw new FerryException('INTERNAL', 'the destination did not say which port it listens on');
      this.incomingUri = `tcp:${bracket(this.destAddress)}:${port}`;
      this.probeLink();
      this.ctx.note(`destination listening on ${this.incomingUri}`);
    }
  }

  /**
   * Measures the migration connection from the source host (transport tcp). Through the SSH
   * tunnel the source's connection ends at a local relay: nothing of the link to read there.
   */
  private probeLink(): void {
    const port = /^tcp:.*:(\d+)$/.exec(this.incomingUri)?.[1];
    if (this.plan.transport === 'ssh-tunnel' || !port || !this.destAddress) return;
    this.link = new LinkProbe(this.source.transport, { address: this.destAddress, port: Number(port) }, LINK_PROBE_EVERY_MS, (text) => this.ctx.note(text));
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
    await this.ensureScratchDir();
    const t = await openStreamTunnel(this.source.transport, `${this.source.vm.files.dir}/${name}-out.sock`, dest.transport, destUri.slice('unix:'.length), (text) => this.ctx.note(text));
    this.tunnels.push(t);
    return t.sourceUri;
  }

  /** An adopted QEMU has no Ferry dir on its host: make Ferry's scratch dir for it. */
  private async ensureScratchDir(): Promise<void> {
    if (this.source.vm.manager !== 'qemu') return;
    if (this.scratchMade) return;
    const dir = this.source.vm.files.dir;
    const r = await this.source.transport.exec(['mkdir', '-p', '-m', '0700', '--', dir]);
    if (r.code !== 0) throw new FerryException('IO_ERROR', `cannot create ${dir} on ${this.plan.from}: ${r.stderr.trim()}`);
    this.scratchMade = true;
  }

  async start(): Promise<void> {
    if (this.sourceGone) return this.finaliseGone();
    if (this.resumed) return this.restart();
    if (this.watching) {
      this.listenSource();
      const q = await this.src.execute<{ status?: string }>('query-migrate');
      if (q.status) this.onStatus(q.status, 'attached (watch-only)');
      return;
    }
    this.listenDest();
    this.listenSource();
    const src = this.src;
    if (this.storage) {
      const dest = this.dest!;
      this.stage = 'storage';
      await this.ensureScratchDir();
      const via = this.plan.transport === 'ssh-tunnel'
        ? { kind: 'tunnel' as const, src: this.source.transport, sourceDir: this.source.vm.files.dir, destDir: dest.files.dir }
        : { kind: 'tcp' as const, address: this.destAddress };
      const uriFor = await this.storage.startExports(dest.qmp!, via);
      await this.storage.startMirrors(src, uriFor, this.plan.storageBandwidth);
      this.ctx.report('storage-copy');
      this.ctx.note(`copying ${this.storage.disks.map((d) => `${d.device} ${d.source} -> ${this.plan.to}:${d.target}`).join(', ')}`);
      await this.saveState();
      void this.afterStorageCopy(this.storage);
      return;
    }
    this.ctx.report('setup');
    await src.execute('migrate', { uri: this.incomingUri });
    await this.saveState();
  }

  /** copyStorage: once every mirror is ready, the RAM migration; a failure or cancel ends it all. */
  private async afterStorageCopy(storage: StorageCopy): Promise<void> {
    try {
      await storage.waitReady(() => this.storageStop !== undefined || this.ctx.ended());
      if (this.storageStop) throw new FerryException('INVALID_REQUEST', 'cancelled');
      this.ctx.note(`disks in sync after ${(storage.readyAt ?? Date.now()) - storage.startedAt} ms: migrating the RAM`);
      this.stage = 'ram';
      this.ctx.report('setup');
      await this.src.execute('migrate', { uri: this.incomingUri });
    } catch (e) {
      if (this.ctx.ended()) return;
      if (this.storageStop === 'cancel') this.ctx.report('cancelled');
      else this.ctx.report('failed', toFerryError(e).message);
    }
  }

  /**
   * copyStorage, in pre-switchover (source stopped, destination not yet running): the
   * mirrors make their final sync and end without pivot, then the migration continues.
   */
  private async switchoverStorage(storage: StorageCopy): Promise<void> {
    const src = this.src;
    try {
      await storage.finalize(src);
      this.ctx.note('disks final: mirrors synchronised and ended (the source keeps its images)');
      if (!this.plan.pauseBeforeSwitchover) await src.execute('migrate-continue', { state: 'pre-switchover' });
    } catch (e) {
      const why = `storage switchover failed: ${toFerryError(e).message}`;
      this.ctx.note(why);
      await src.execute('migrate_cancel').catch(log.dropped('migrate_cancel after a failed storage switchover'));
      this.ctx.report('failed', why);
    }
  }

  private recordEvents(q: QmpClient, side: Side): void {
    this.offs.push(q.onEvent('*', (e: QmpEvent) => {
      if (['MIGRATION', 'MIGRATION_PASS', 'STOP', 'RESUME', 'SHUTDOWN'].includes(e.event)) this.ctx.event(side, e.event, e.data, e.timeMs);
    }));
  }

  private listenDest(): void {
    const dq = this.dest?.qmp;
    if (!dq) return;
    this.recordEvents(dq, 'destination');
    this.offs.push(dq.onEvent('RESUME', () => {
      this.destResumed = true;
    }));
  }

  private listenSource(): void {
    const src = this.source.qmp!;
    this.recordEvents(src, 'source');
    this.offs.push(src.onEvent('STOP', () => {
      this.sourceStopped = true;
      this.ctx.sourceStopped();
      if (this.lastStatus === 'active') this.ctx.report('stop-and-copy');
    }));
    this.offs.push(src.onEvent('RESUME', () => {
      this.sourceStopped = false;
    }));
    this.offs.push(src.onEvent('MIGRATION', (e) => this.onStatus(String(e.data.status ?? ''))));
    this.offs.push(src.onClose(() => {
      // Closed by Ferry itself at the end, or lost: only a loss is reconnected.
      if (!this.closing && !this.ctx.ended()) void this.reconnectSource();
    }));
  }

  private onStatus(status: string, reason?: string): void {
    if (this.stage === 'storage') return; // the RAM migration has not begun: an old status means nothing
    this.lastStatus = status;
    if (status === 'pre-switchover' && this.storage && !this.storageSwitching) {
      this.storageSwitching = true;
      void this.switchoverStorage(this.storage);
    }
    const r = reportOfStatus(status, this.sourceStopped);
    if (r) this.ctx.report(r, reason);
  }

  private async reconnectSource(): Promise<void> {
    const gapFrom = Date.now();
    let delay = 200;
    while (!this.ctx.ended() && !this.closing) {
      try {
        await this.source.transport.connect();
        const q = await openQmp(this.source.transport, this.source.vm.qmpSockets);
        this.source.qmp = q;
        this.listenSource();
        this.ctx.gap('source', gapFrom, Date.now(), 'source connection lost and re-established');
        const st = await q.execute<{ status?: string }>('query-migrate');
        if (st.status) this.onStatus(st.status);
        return;
      } catch (e) {
        log.debug(`reconnecting to the source of ${this.ctx.run.id}: ${toFerryError(e).message}`);
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  async sample(): Promise<DriverReading | undefined> {
    const q = this.source.qmp;
    if (!q || q.closed) return undefined;
    // Before the RAM migration begins, query-migrate can only tell of an earlier one.
    const copying = this.stage === 'storage';
    const raw = copying ? { status: 'none' } : await q.execute<Record<string, unknown>>('query-migrate', undefined, { timeoutMs: 5000 });
    const now = Date.now();
    const sample = toDriverSample(raw, now);
    const phase = this.ctx.phase();
    if (phase === 'setup' || phase === 'precopy') this.link?.poll(now);
    if (this.link?.rate !== undefined) sample.linkRate = this.link.rate;
    if (phase.startsWith('postcopy') && this.dest?.qmp && !this.dest.qmp.closed) {
      const d = await this.dest.qmp.execute<Record<string, unknown>>('query-migrate', undefined, { timeoutMs: 2000 }).catch(log.dropped('the destination\'s page requests', 'debug'));
      const req = (d?.ram as Record<string, unknown> | undefined)?.['postcopy-requests'];
      if (typeof req === 'number' && sample.postcopyRequests === undefined) sample.postcopyRequests = req;
    }
    if (this.storage && !this.storage.finalized) {
      const f = await this.storage.figures(q).catch(log.dropped('the storage copy\'s figures', 'debug'));
      if (f) sample.storage = f;
    }
    if (copying) return { sample };
    if (sample.status !== this.lastStatus) {
      this.lastStatus = sample.status;
      const state = reportOfStatus(sample.status, this.sourceStopped);
      return state ? { sample, state } : { sample };
    }
    return { sample };
  }

  async control(c: MigrationControl, phase: MigrationPhase): Promise<void> {
    const src = this.source.qmp;
    if (!src || src.closed) refuseControl(c.action, phase, 'the source QMP connection is down (reconnecting)');
    switch (c.action) {
      case 'cancel':
        if (phase === 'storage-copy') {
          this.storageStop = 'cancel';
          return;
        }
        await src.execute('migrate_cancel');
        return;
      case 'set-bandwidth':
        await src.execute('migrate-set-parameters', { 'max-bandwidth': Math.round(c.bytesPerSecond), ...(phase.startsWith('postcopy') ? { 'max-postcopy-bandwidth': Math.round(c.bytesPerSecond) } : {}) });
        return;
      case 'set-downtime':
        await src.execute('migrate-set-parameters', { 'downtime-limit': c.ms });
        return;
      case 'postcopy':
        await src.execute('migrate-start-postcopy');
        return;
      case 'stop-vm':
        this.stoppedByControl = true;
        await this.saveState();
        await src.execute('stop');
        return;
      case 'pause-postcopy':
        // Until the destination runs the guest, a broken stream fails the migration (the guest
        // then stays on the source) instead of pausing it.
        if (!this.destResumed) refuseControl('pause postcopy', phase, 'the switchover to the destination is still under way; try again in a moment');
        await src.executeOob('migrate-pause');
        return;
      case 'recover':
        return this.recover(src, phase);
      case 'continue': {
        const st = await src.execute<{ status?: string }>('query-migrate');
        if (st.status !== 'pre-switchover') refuseControl('continue', phase, 'the migration is not paused before switchover');
        await src.execute('migrate-continue', { state: 'pre-switchover' });
        return;
      }
    }
  }

  private async recover(src: QmpClient, phase: MigrationPhase): Promise<void> {
    const dq = this.dest?.qmp;
    if (!dq || dq.closed) refuseControl('recover', phase, 'the destination QMP connection is down');
    // Each end notices a broken stream on its own; a destination with nothing in flight may
    // wait forever, so pause it explicitly (migrate-pause works on the incoming side too).
    const deadline = Date.now() + 15_000;
    let paused = false;
    for (;;) {
      const st = await dq.execute<{ status?: string }>('query-migrate');
      if (st.status === 'postcopy-paused') break;
      if (st.status === 'postcopy-active' && !paused) {
        paused = true;
        await dq.executeOob('migrate-pause').catch(log.dropped('pausing the destination for recovery'));
        this.ctx.note('destination had not noticed the broken stream: paused it');
      }
      if (Date.now() > deadline) refuseControl('recover', phase, `the destination is still ${st.status ?? 'unknown'}, not paused`);
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
  }

  async activate(): Promise<{ destinationRunning: boolean }> {
    const dq = this.dest?.qmp;
    if (!dq) return { destinationRunning: false };
    // The destination leaves 'inmigrate' running (or paused, if the source was paused).
    const deadline = Date.now() + 10_000;
    let st: { status: string; running: boolean } | undefined;
    for (;;) {
      st = await dq.execute<{ status: string; running: boolean }>('query-status').catch(log.dropped('the destination\'s status', 'debug'));
      if ((st && st.status !== 'inmigrate') || Date.now() > deadline) break;
      await sleep(20);
    }
    if (st && !st.running && this.stoppedByControl && this.sourceWasRunning) {
      // "Stop the VM" forced the offline finish: the guest was running, so it runs again.
      await dq.execute('cont').catch(log.dropped('resuming the destination'));
      this.ctx.note('the VM was stopped to force completion: resumed it on the destination');
      st = await dq.execute<{ status: string; running: boolean }>('query-status').catch(() => st);
    }
    if (this.storage) await this.storage.stopExports(dq);
    await dq.execute('announce-self', { initial: 50, max: 550, rounds: 5, step: 50 }).catch(log.dropped('announce-self on the destination', 'debug'));
    return { destinationRunning: st?.running === true };
  }

  async finalSample(outcome: MigrationFinal['outcome']): Promise<DriverSample | undefined> {
    // Ended during the storage copy: the RAM migration never began, query-migrate would tell of an older one.
    if (this.stage === 'storage') return undefined;
    // QEMU 7.2 reports total-time/downtime 0 right after `completed`: ask again a bit later.
    if (outcome === 'completed' && !this.watching) await sleep(300);
    // The final figures: asked again while QEMU has not filled them in (total-time 0) or the
    // monitor is slow under load, a few times, then taken as they are.
    let raw: Record<string, unknown> | undefined;
    for (let i = 0; i < 4; i++) {
      const q = this.source.qmp;
      if (!q || q.closed) break;
      raw = await q.execute<Record<string, unknown>>('query-migrate', undefined, { timeoutMs: 5000 }).catch(log.dropped(`the final query-migrate (try ${i + 1})`));
      if (raw && (outcome !== 'completed' || (typeof raw['total-time'] === 'number' && raw['total-time'] > 0))) break;
      await sleep(300);
    }
    return raw ? toDriverSample(raw, Date.now()) : undefined;
  }

  async complete(): Promise<Partial<MigrationFinal>> {
    const final: Partial<MigrationFinal> = {};
    const dreq = this.dest?.qmp ? await this.dest.qmp.execute<{ ram?: { 'postcopy-requests'?: number } }>('query-migrate').catch(log.dropped('the destination\'s final figures', 'debug')) : undefined;
    const req = dreq?.ram?.['postcopy-requests'];
    if (req) final.postcopyRequests = req;
    if (!this.plan.keepSource) {
      this.closing = true;
      this.source.qmp?.close();
      await this.quitSource();
    }
    return final;
  }

  /** The migrated-away source quits: Ferry's VM with its runtime dir; an adopted QEMU as its owner would see a clean exit. */
  private async quitSource(): Promise<void> {
    const { transport, vm } = this.source;
    if (vm.manager === 'ferry') {
      // (Gone already after a restart: only its dir is left to remove.)
      await stopVm(transport, runtimeDirOf(this.source.host), vm.name).catch(log.dropped(`stopping the source QEMU of ${vm.name}`));
      return;
    }
    if (!(await processAlive(transport, vm.pid))) return; // gone already (ended while Ferry was away)
    // QMP quit (exit status 0: a unit with Restart=on-failure does not restart it), its own
    // files left to it (QEMU removes its pid file and sockets on the way out).
    try {
      const q = await openQmp(transport, vm.qmpSockets);
      await q.execute('quit', undefined, { timeoutMs: 2000 }).catch(log.dropped('QMP quit on the adopted source', 'debug'));
      q.close();
    } catch (e) {
      log.warn(`the adopted source ${vm.name} (pid ${vm.pid}) did not take QMP quit: ${toFerryError(e).message}`);
    }
    const deadline = Date.now() + 5000;
    while ((await processAlive(transport, vm.pid)) && Date.now() < deadline) await sleep(50);
    if (await processAlive(transport, vm.pid)) {
      log.warn(`the adopted source ${vm.name} (pid ${vm.pid}) is still there after quit: SIGTERM`);
      await transport.exec(['kill', '-TERM', String(vm.pid)]);
    }
    this.ctx.note(`the adopted source QEMU (pid ${vm.pid}) quit after completion`);
  }

  async rollback(): Promise<{ sourceRunning: boolean; final: Partial<MigrationFinal> }> {
    const src = this.source.qmp;
    let running = false;
    // The guest stays on the source: make sure it runs, tear the destination down.
    if (src && !src.closed) {
      const st = await src.execute<{ status: string; running: boolean }>('query-status').catch(log.dropped('the source\'s status'));
      running = st?.running === true;
      if (st && !st.running && this.sourceWasRunning && st.status !== 'inmigrate') {
        await src.execute('cont').catch(log.dropped('resuming the source'));
        this.ctx.note(`source was ${st.status}; resumed it`);
        running = true;
      }
    }
    await this.teardownDest();
    return { sourceRunning: running && this.sourceWasRunning, final: {} };
  }

  private async teardownDest(): Promise<void> {
    const dest = this.dest;
    // A storage copy stops first: the source keeps its own images, never pivoting.
    await this.storage?.abort(this.source.qmp);
    dest?.qmp?.close();
    if (this.destLaunched && dest) {
      // By pid over Ferry's own connection to the destination, whatever the stream's state.
      const runtimeDir = runtimeDirOf(dest.host);
      try {
        await killVmByPid(dest.transport, runtimeDir, this.plan.vm);
      } catch (e) {
        const why = toFerryError(e).message;
        this.ctx.note(`could not stop the destination QEMU on ${this.plan.to} yet (${why}); Ferry stops it when ${this.plan.to} is reachable again`);
        await this.options.cleanups?.add({ hostId: this.plan.to, vm: this.plan.vm, runtimeDir, reason: `migration ${this.ctx.run.id} ${this.ctx.phase()}: ${why}`, migrationId: this.ctx.run.id, since: Date.now() });
      }
    }
    const removed = await this.storage?.removeTargets();
    if (removed?.length) {
      this.removedTargets = removed;
      this.ctx.note(`removed the partial copies on ${this.plan.to}: ${removed.join(', ')}`);
    }
  }

  async close(): Promise<Partial<MigrationFinal>> {
    this.closing = true;
    for (const off of this.offs.splice(0)) off();
    const final: Partial<MigrationFinal> = {};
    if (this.storage) {
      const last = this.storage.lastReported;
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
      for (const t of this.tunnels) void t.close().catch(log.dropped('closing the SSH stream tunnel'));
    }
    if (this.stateSaved) await this.source.transport.exec(['rm', '-f', this.stateFile()]).catch(log.dropped('removing migration.json'));
    // An adopted QEMU's scratch dir goes once empty (it never holds the VM itself).
    if (this.scratchMade) await this.source.transport.exec(['rmdir', '--ignore-fail-on-non-empty', '--', this.source.vm.files.dir]).catch(log.dropped('removing the scratch dir', 'debug'));
    this.dest?.qmp?.close();
    this.source.qmp?.close();
    return final;
  }

  private stateFile(): string {
    return `${this.source.vm.files.dir}/migration.json`;
  }

  /** Beside the source VM: lets a restarted Ferry find this migration and record it to the end. */
  private async saveState(): Promise<void> {
    const { run } = this.ctx;
    const state: MigrationState = {
      version: 1, id: run.id, plan: run.plan, startedAt: run.startedAt, timelineFile: run.timelineFile,
      sourceWasRunning: this.sourceWasRunning, stoppedByControl: this.stoppedByControl, destAddress: this.destAddress, incomingUri: this.incomingUri,
      ...(this.source.vm.adoptedSocket ? { adoptedSocket: this.source.vm.adoptedSocket } : {}),
    };
    try {
      await this.ensureScratchDir();
      await this.source.transport.writeFile(this.stateFile(), `${JSON.stringify(state, null, 2)}\n`, 0o600);
      this.stateSaved = true;
    } catch (e) {
      log.warn(`cannot write ${this.stateFile()} on ${this.plan.from} (a restarted Ferry will not find this migration): ${toFerryError(e).message}`);
    }
  }

  /** What a previous Ferry saved of this migration, taken back on resume (source running or gone). */
  private restoreState(state: MigrationState): void {
    this.sourceWasRunning = state.sourceWasRunning;
    this.stoppedByControl = state.stoppedByControl;
    this.destAddress = state.destAddress;
    this.incomingUri = state.incomingUri;
    this.destLaunched = true;
    this.resumed = true;
  }

  /** resume(): the state a previous Ferry saved, the destination's monitor, the storage copy if one runs. */
  async adopt(state: MigrationState, phase: MigrationPhase): Promise<void> {
    this.restoreState(state);
    this.probeLink();
    const dest = this.dest!;
    dest.qmp = await openVmQmp(dest.transport, dest.files).catch(log.dropped(`opening the destination's monitor on ${this.plan.to}`));
    if (this.plan.copyStorage && !['completed', 'failed', 'cancelled'].includes(phase)) {
      // The mirrors run in the source QEMU: this process finishes (or removes) the copy.
      this.storage = new StorageCopy(await planDiskCopies({ host: this.source.host, qmp: this.src }, { host: dest.host }, this.source.vm.spec.disks), dest.transport, (text) => this.ctx.note(text));
      this.storage.adopt();
      if (phase === 'storage-copy') this.stage = 'storage';
    }
  }

  /**
   * resume() found the source QEMU gone: the migration ended while no Ferry watched. The guest
   * either runs on the destination (completed) or nowhere Ferry can save (failed: the
   * destination, if any, is torn down). Reported so that the run ends it as usual.
   */
  async adoptGone(state: MigrationState): Promise<void> {
    this.restoreState(state);
    this.sourceGone = true;
    this.describe();
    const dest = this.dest!;
    const pid = await readPid(dest.transport, dest.files.pidFile);
    if (pid !== undefined && (await processAlive(dest.transport, pid))) dest.qmp = await openVmQmp(dest.transport, dest.files).catch(log.dropped(`opening the destination's monitor on ${this.plan.to}`));
  }

  private async finaliseGone(): Promise<void> {
    this.stateSaved = true;
    this.scratchMade = this.source.vm.manager === 'qemu';
    const dq = this.dest?.qmp;
    const st = dq && !dq.closed ? await dq.execute<{ status: string; running: boolean }>('query-status').catch(log.dropped('query-status on the destination')) : undefined;
    this.ctx.note('Ferry restarted; the migration had ended meanwhile and the source QEMU is gone');
    if (st && st.status !== 'inmigrate') this.ctx.report('completed', `ended while Ferry was away: the guest runs on ${this.plan.to} (${st.status})`);
    else this.ctx.report('failed', `ended while Ferry was away: the source QEMU on ${this.plan.from} is gone and the destination ${st ? `is still ${st.status}` : 'does not run the guest'}`);
  }

  /** resume(): listening again, and where the migration is now. */
  private async restart(): Promise<void> {
    this.listenDest();
    this.listenSource();
    // The previous process's files are this one's now, to remove at the end.
    this.stateSaved = true;
    this.scratchMade = this.source.vm.manager === 'qemu';
    if (this.storage && this.stage === 'storage') {
      void this.afterStorageCopy(this.storage);
      return;
    }
    const q = await this.src.execute<{ status?: string }>('query-migrate');
    if (q.status) this.onStatus(q.status);
  }
}

/** What is known of a source QEMU that is gone (its migration ended while no Ferry watched). */
function goneQemu(host: HostConfig, name: string, state: MigrationState): QemuVm {
  const spec = { name, memoryKiB: 4096 };
  const vm: QemuVm = {
    manager: state.adoptedSocket ? 'qemu' : 'ferry', name, pid: 0, argv: [], accel: 'tcg', record: { version: 1, name, argv: [], spec, accel: 'tcg' }, spec,
    qmpSockets: [], files: vmFiles(runtimeDirOf(host), name),
  };
  if (state.adoptedSocket) vm.adoptedSocket = state.adoptedSocket;
  return vm;
}

/** A DriverSample from a query-migrate reply. */
function toDriverSample(raw: Record<string, unknown>, t: number): DriverSample {
  const { phase: _phase, elapsedMs: _elapsed, ...s } = sampleFromQueryMigrate(raw, t, 0, 'setup');
  return s;
}


export class QmpDriver implements HypervisorDriver {
  readonly name = 'qmp';

  constructor(private readonly options: QmpDriverOptions = {}) {}

  readonly capabilities: readonly DriverCapability[] = [
    'postcopy', 'postcopy-recover', 'storage-copy', 'ssh-tunnel', 'pause-before-switchover', 'auto-converge', 'xbzrle', 'multifd',
    'qemu-capabilities', 'fixed-port', 'attach', 'resume-after-restart',
  ];

  /** Every host no other driver claims: Ferry's own VMs and the QEMUs its globs find. */
  manages(_host: HostConfig): boolean {
    return true;
  }

  listVms(host: HostConfig, transport: HostTransport): Promise<VmInfo[]> {
    return listVms(host, transport, this.options.vmStates);
  }

  preflight(plan: MigrationPlan, hosts: EngineHosts): Promise<PreflightResult> {
    return preflight(plan, hosts);
  }

  async open(plan: MigrationPlan, ctx: DriverContext): Promise<DriverMigration> {
    const [srcHost, dstHost] = await Promise.all([ctx.hosts.host(plan.from), ctx.hosts.host(plan.to)]);
    const [srcT, dstT] = await Promise.all([ctx.hosts.transport(plan.from), ctx.hosts.transport(plan.to)]);
    const vm = await findQemuVm(srcHost, srcT, plan.vm);
    if (!vm) throw noSuchVm(plan.vm, plan.from);
    const m = new QmpMigration(ctx, this.options, { host: srcHost, transport: srcT, vm }, { host: dstHost, transport: dstT, files: vmFiles(runtimeDirOf(dstHost), plan.vm) });
    await m.openSource();
    try {
      requireCapabilities(`${plan.vm} (${vm.manager === 'qemu' ? 'a QEMU Ferry adopted' : 'a Ferry VM'}, QMP)`, m.capabilities, capabilitiesNeeded(plan));
    } catch (e) {
      await m.close();
      throw e;
    }
    await m.checkReady();
    return m;
  }

  async attach(target: AttachTarget, ctx: DriverContext): Promise<DriverMigration> {
    const host = await ctx.hosts.host(target.hostId);
    const transport = await ctx.hosts.transport(target.hostId);
    const vm = await findQemuVm(host, transport, target.vm, target.qmpSocket ? { qmpSocket: target.qmpSocket } : {});
    if (!vm) {
      throw new FerryException('NOT_FOUND', target.qmpSocket
        ? `no QEMU answers on ${target.qmpSocket} on ${target.hostId} (or its process cannot be read)`
        : `no running VM "${target.vm}" on ${target.hostId} (neither started by Ferry nor found through the host's qmpSocketGlobs; --qmp-socket PATH names one)`, { vm: target.vm, host: target.hostId });
    }
    const m = new QmpMigration(ctx, this.options, { host, transport, vm });
    await m.openSource();
    await m.readSettings();
    return new WatchedQmpMigration(m);
  }

  async recoverable(hostId: string, hosts: EngineHosts): Promise<RecoveredMigration[]> {
    const host = await hosts.host(hostId);
    const transport = await hosts.transport(hostId);
    const r = await transport.exec(['find', runtimeDirOf(host), '-mindepth', '2', '-maxdepth', '2', '-name', 'migration.json', '-type', 'f']);
    const found: RecoveredMigration[] = [];
    for (const f of r.stdout.split('\n').filter(Boolean)) {
      let state: MigrationState;
      try {
        state = JSON.parse((await transport.readFile(f)).toString()) as MigrationState;
      } catch (e) {
        log.warn(`${hostId}: ${f} is not a migration state: ${toFerryError(e).message}`);
        continue;
      }
      if (state.version !== 1) continue;
      found.push({ run: { id: state.id, plan: state.plan, startedAt: state.startedAt, timelineFile: state.timelineFile, mode: 'engine' }, state });
    }
    return found;
  }

  async resume(found: RecoveredMigration, phase: MigrationPhase, ctx: DriverContext): Promise<DriverMigration> {
    const state = found.state as MigrationState;
    const plan = found.run.plan;
    const [srcHost, dstHost] = await Promise.all([ctx.hosts.host(plan.from), ctx.hosts.host(plan.to)]);
    const [srcT, dstT] = await Promise.all([ctx.hosts.transport(plan.from), ctx.hosts.transport(plan.to)]);
    const vm = await findQemuVm(srcHost, srcT, plan.vm, state.adoptedSocket ? { qmpSocket: state.adoptedSocket } : {});
    const dest = { host: dstHost, transport: dstT, files: vmFiles(runtimeDirOf(dstHost), plan.vm) };
    if (!vm) {
      // Its source QEMU is gone: the migration ended while no Ferry watched; it is finalised.
      const m = new QmpMigration(ctx, this.options, { host: srcHost, transport: srcT, vm: goneQemu(srcHost, plan.vm, state) }, dest);
      await m.adoptGone(state);
      return m;
    }
    const m = new QmpMigration(ctx, this.options, { host: srcHost, transport: srcT, vm }, dest);
    await m.openSource();
    await m.adopt(state, phase);
    return m;
  }
}

/** attach: the same QMP migration, seen from the source only, issuing nothing. */
class WatchedQmpMigration implements DriverMigration {
  constructor(private readonly m: QmpMigration) {}
  get capabilities() {
    return this.m.capabilities;
  }
  readonly controls: MigrationControlAction[] = [];
  facts(): RunFacts {
    return this.m.facts();
  }
  serialConsole(): SerialConsole | undefined {
    return undefined; // watching: the guest's console is its owner's
  }
  async reserve(): Promise<void> {
    throw new FerryException('INTERNAL', 'a watched migration reserves nothing');
  }
  start(): Promise<void> {
    return this.m.start();
  }
  sample(): Promise<DriverReading | undefined> {
    return this.m.sample();
  }
  async control(c: MigrationControl, phase: MigrationPhase): Promise<void> {
    refuseControl(c.action, phase, 'watch-only: Ferry issues no control to a migration it did not start');
  }
  async activate(): Promise<{ destinationRunning: boolean }> {
    return { destinationRunning: false };
  }
  finalSample(outcome: MigrationFinal['outcome']): Promise<DriverSample | undefined> {
    return this.m.finalSample(outcome);
  }
  async complete(): Promise<Partial<MigrationFinal>> {
    return {};
  }
  async rollback(): Promise<{ sourceRunning: boolean; final: Partial<MigrationFinal> }> {
    return { sourceRunning: false, final: {} };
  }
  close(): Promise<Partial<MigrationFinal>> {
    return this.m.close();
  }
}
