/**
 * The libvirt driver: a libvirt domain migrates through libvirt only, never behind its
 * back (no QMP to its monitor, no `qemu-monitor-command`).
 *
 * Ferry is libvirt's *client* for a managed migration (virDomainMigrate with both
 * connections): `virsh` on Ferry's machine is connected to both daemons (each daemon's unix
 * socket relayed through that host's transport, see libvirt-connection.ts), so libvirt
 * runs Begin on the source, Prepare on the destination (which starts the incoming QEMU),
 * Perform, Finish and Confirm, and the hosts need no SSH trust between them. The memory
 * stream goes straight from QEMU to QEMU, to the destination's migration address.
 *
 * How one migration goes here:
 *   open      the domain is found on the source by its exact name (then always addressed
 *             by UUID), its state, persistence and XML facts read; the destination is
 *             checked for a domain of that name or UUID; nothing is changed.
 *   reserve   the downtime limit set on the source (libvirt keeps it into the job; the old
 *             value is put back on rollback), missing disk images created on the
 *             destination for copyStorage. libvirt prepares the destination itself.
 *   start     `virsh migrate --live ...` with the plan's options, and event streams on both
 *             daemons (migration-iteration, lifecycle, job-completed) into the timeline;
 *             start returns once the destination's incoming domain exists.
 *   sample    `domjobinfo UUID --rawstats` through the source's long-lived shell.
 *   controls  migrate-setspeed, migrate-setmaxdowntime, migrate-postcopy, suspend,
 *             domjobabort, domjobabort --postcopy, migrate --postcopy-resume.
 *   finish    completed: libvirt has ended the source QEMU; the destination domain runs
 *             (resumed if "stop the VM" forced the end). failed/cancelled: the source runs
 *             again, anything left on the destination is destroyed/undefined, the speed and
 *             downtime limit Ferry changed are put back.
 *   restart   not resumable: libvirt aborts a managed migration whose client is gone (the
 *             domain keeps running on the source), so there is nothing to pick up.
 */
import { FerryException } from '../../../../shared/errors';
import path from 'node:path';
import type { HostConfig } from '../../../../shared/model/host';
import type { MigrationFinal, MigrationPhase, MigrationPlan } from '../../../../shared/model/migration';
import { LIBVIRT_JOB_TYPE, lifecycleMeaning, sampleFromJobStats, statusForJob } from '../../../../shared/model/libvirt';
import type { JobFields } from '../../../../shared/model/libvirt';
import type { PreflightResult } from '../../../../shared/model/preflight';
import type { VmInfo } from '../../../../shared/model/vm';
import type { HostTransport } from '../../transport/host-transport';
import type { LibvirtConnection, LibvirtPool } from '../../libvirt/libvirt-connection';
import { domainDisks, domainInfo, findDomain, listLibvirtVms, qemuPidsOfDomain, requireDomain, serialSocketOf } from '../../libvirt/libvirt-domains';
import { touchedGuestBytes } from '../guest-memory';
import type { DomainDisk } from '../../libvirt/libvirt-domains';
import { libvirtPreflight } from '../../libvirt/libvirt-preflight';
import { EventWatch, VirshProcess } from '../../libvirt/virsh-process';
import type { VirshExit } from '../../libvirt/virsh-process';
import { VirshError } from '../../libvirt/virsh-shell';
import { parseColonTable, parseRawJobStats, parseVersion } from '../../libvirt/virsh-text';
import type { VirshEvent } from '../../libvirt/virsh-text';
import { rootLog } from '../../log';
import { DEFAULT_DOWNTIME_MS, cmpVersion, mibPerSecond, migrateOptions, tcpMigrateUri, unsupportedByLibvirt } from '../../libvirt/libvirt-plan';
import type { MigrateOptions } from '../../libvirt/libvirt-plan';
import { capabilitiesNeeded, migrationAddressOf, refuseControl, requireCapabilities } from './hypervisor-driver';
import { LINK_PROBE_EVERY_MS, LinkProbe } from '../link-probe';
import type {
  AttachTarget, DriverCapability, DriverContext, DriverMigration, DriverReading, DriverSample, EngineHosts, HypervisorDriver,
  MigrationControl, MigrationControlAction, RecoveredMigration, ReportedState, RunFacts, SerialConsole, Side,
} from './hypervisor-driver';

const log = rootLog.child('libvirt-driver');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * libvirt's refusals of a postcopy resume that pass once QEMU itself has noticed the broken
 * stream: libvirt may mark the domain "post-copy failed" (the destination told it) while the
 * source QEMU's migration thread, asleep in its rate limit, still says postcopy-active.
 * Seen under load: "Requested operation is not valid: QEMU reports migration is still running".
 */
const NOT_PAUSED_YET = /QEMU reports migration is still running|post-copy migration of domain .* has not failed/;

/**
 * Starts a postcopy resume (`launch`), again while libvirt refuses it with NOT_PAUSED_YET,
 * for at most `waitMs`; `onRetry` hears the first such refusal. Resolves with the attempt
 * libvirt took (still running after `takenAfterMs`, or ended well); a refusal that stays
 * rejects with libvirt's reason.
 */
export async function startResume<P extends { exited: Promise<VirshExit> }>(launch: () => P, onRetry: (reason: string) => void, o = { waitMs: 10_000, takenAfterMs: 1500, retryMs: 200 }): Promise<P> {
  const deadline = Date.now() + o.waitMs;
  for (let attempt = 1; ; attempt++) {
    const p = launch();
    // A resume that libvirt refuses at once says why; one it takes runs until the migration ends.
    const first = await Promise.race([p.exited, sleep(o.takenAfterMs).then(() => undefined)]);
    if (!first || first.code === 0) return p;
    const reason = first.reason ?? 'the resume failed';
    if (!NOT_PAUSED_YET.test(reason) || Date.now() + o.retryMs > deadline) throw new FerryException('MIGRATION_FAILED', reason);
    if (attempt === 1) onRetry(reason);
    await sleep(o.retryMs);
  }
}

interface End {
  host: HostConfig;
  transport: HostTransport;
  conn: LibvirtConnection;
  version?: { library?: string; hypervisor?: string; daemon?: string };
}

/** One migration through libvirt (see the file's header). */
class LibvirtMigration implements DriverMigration {
  capabilities: DriverCapability[] = [];
  controls: MigrationControlAction[] = [];
  private readonly plan: MigrationPlan;
  private uuid = '';
  private name = '';
  private persistent = false;
  private memoryKiB: number | undefined;
  /** The source QEMU's pid, when the source host would tell (see qemuPidsOfDomain). */
  private sourcePid: number | undefined;
  /** Guest RAM the source QEMU has touched (guest-memory.ts): untouched pages are zero pages. */
  private touchedBytes: number | undefined;
  private serialPath: string | undefined;
  private sourceWasRunning = true;
  private options: MigrateOptions | undefined;
  private migrateUri: string | undefined;
  /** The migration connection's speed, read on the source (see link-probe.ts). */
  private link: LinkProbe | undefined;
  /** The process running `virsh migrate` (then `--postcopy-resume`, after a recovery). */
  private proc: VirshProcess | undefined;
  private watches: EventWatch[] = [];
  private postcopy: 'no' | 'active' | 'paused' = 'no';
  private sourceSuspended = false;
  private stoppedByControl = false;
  private cancelRequested = false;
  private destStarted = false;
  private destResumed = false;
  /** The job-completed event's statistics (the real downtime, the totals). */
  private completedStats: JobFields | undefined;
  /** What the source had before Ferry changed it, put back on rollback. */
  private previous: { downtimeMs?: number; speedMiBs?: number } = {};
  private speedChanged = false;
  /** Was a domain with this UUID already defined on the destination (then it is not Ferry's to undefine)? */
  private destHadDefinition = false;
  /** copyStorage: images Ferry created on the destination (removed again on rollback). */
  private createdImages: string[] = [];
  private disks: DomainDisk[] = [];
  private starting = false;
  private closed = false;

  constructor(private readonly ctx: DriverContext, private readonly src: End, private readonly dst: End | undefined) {
    this.plan = ctx.run.plan;
  }

  private get watching(): boolean {
    return this.ctx.run.mode === 'attach';
  }

  /** open(): the domain, its state and facts; the destination free of it. Changes nothing. */
  async openSource(): Promise<void> {
    const { conn } = this.src;
    const d = await requireDomain(conn, this.plan.vm);
    this.uuid = d.uuid;
    this.name = d.name;
    const info = await domainInfo(conn, d.uuid, d.name);
    this.persistent = info.persistent;
    this.memoryKiB = info.memoryKiB;
    if (info.state !== 'running' && info.state !== 'paused') {
      throw new FerryException('INVALID_REQUEST', `libvirt domain ${JSON.stringify(d.name)} is ${info.state} on ${this.plan.from}: only a running (or paused) domain migrates live`, { vm: d.name, state: info.state });
    }
    this.sourceWasRunning = info.state === 'running';
    this.sourceSuspended = !this.sourceWasRunning;
    this.serialPath = await serialSocketOf(conn, d.uuid).catch(log.dropped('reading the serial console from the domain XML', 'debug'));
    await this.findSourceQemu();
    this.src.version = parseVersion(await conn.run(['version', '--daemon']));
    const job = parseRawJobStats(await conn.run(['domjobinfo', d.uuid, '--rawstats']));
    if (!this.watching && (job.jobType === LIBVIRT_JOB_TYPE.bounded || job.jobType === LIBVIRT_JOB_TYPE.unbounded)) {
      throw new FerryException('ALREADY_EXISTS', `libvirt domain ${JSON.stringify(d.name)} on ${this.plan.from} already has a job running (operation ${job.fields.operation ?? '?'})`);
    }
    this.describe();
  }

  /**
   * The source QEMU, before any destination QEMU with the same UUID exists: what of its
   * guest RAM is touched (the projection's bound on real pages) and, later, whose connection
   * the link probe reads. Neither is needed to migrate: a host that cannot tell is noted.
   */
  private async findSourceQemu(): Promise<void> {
    const t = this.src.transport;
    const found = await qemuPidsOfDomain(t, this.uuid).catch((e: unknown) => ({ unavailable: e instanceof Error ? e.message : String(e) }));
    if (!Array.isArray(found) || found.length !== 1) {
      log.debug(`${t.label}: the QEMU of ${this.name} not told apart (${Array.isArray(found) ? `${found.length} candidates` : found.unavailable}): no touched-memory figure`);
      return;
    }
    this.sourcePid = found[0];
    const memMiB = this.memoryKiB !== undefined ? this.memoryKiB / 1024 : undefined;
    this.touchedBytes = await touchedGuestBytes(t, this.sourcePid!, memMiB).catch(log.dropped(`the touched memory of ${this.name}'s QEMU`, 'debug'));
  }

  private describe(): void {
    const recover = cmpVersion(this.src.version?.daemon ?? this.src.version?.library ?? '0', '8.5.0') >= 0
      && (!this.dst?.version || cmpVersion(this.dst.version.daemon ?? this.dst.version.library ?? '0', '8.5.0') >= 0);
    const caps: DriverCapability[] = ['postcopy', 'storage-copy', 'auto-converge', 'xbzrle', 'multifd', 'fixed-port', 'attach'];
    if (recover) caps.push('postcopy-recover');
    this.capabilities = caps;
    this.controls = this.watching ? [] : ['cancel', 'set-bandwidth', 'set-downtime', 'postcopy', 'stop-vm', ...(recover ? (['pause-postcopy', 'recover'] as const) : [])];
  }

  /** open(), engine runs: the destination has no other domain by this name or UUID, and the plan is one libvirt can carry. */
  async checkDestination(): Promise<void> {
    const dst = this.dst!;
    const bad = unsupportedByLibvirt(this.plan);
    if (bad.length) throw new FerryException('INVALID_REQUEST', `through libvirt: ${bad.join('; ')}`);
    dst.version = parseVersion(await dst.conn.run(['version', '--daemon']));
    this.describe();
    const byName = await findDomain(dst.conn, this.name);
    if (byName && byName.uuid !== this.uuid) {
      throw new FerryException('ALREADY_EXISTS', `${this.plan.to} already has a domain named ${JSON.stringify(this.name)} (uuid ${byName.uuid}); libvirt would refuse the migration`, { vm: this.name, host: this.plan.to });
    }
    const existing = await domainInfo(dst.conn, this.uuid).catch((e: unknown) => {
      if (e instanceof VirshError) return undefined; // no such domain there: the usual case
      throw e;
    });
    if (existing) {
      if (existing.state !== 'shut off') {
        throw new FerryException('ALREADY_EXISTS', `libvirt domain ${JSON.stringify(existing.name)} (uuid ${this.uuid}) is already ${existing.state} on ${this.plan.to}`, { vm: this.name, host: this.plan.to });
      }
      this.destHadDefinition = true;
    }
    const address = migrationAddressOf(dst.host, dst.transport);
    this.migrateUri = tcpMigrateUri(address, this.plan.port || undefined);
    this.link = new LinkProbe(this.src.transport, this.plan.port ? { address, port: this.plan.port } : { address, owner: async () => (this.sourcePid !== undefined ? [this.sourcePid] : qemuPidsOfDomain(this.src.transport, this.uuid)) }, LINK_PROBE_EVERY_MS, (text) => this.ctx.note(text));
    this.options = migrateOptions(this.plan, this.persistent, this.migrateUri);
    if (this.plan.copyStorage) this.disks = (await domainDisks(this.src.conn, this.uuid)).filter((d) => d.device === 'disk' && d.source && !d.readonly && !d.shareable);
  }

  facts(): RunFacts {
    const f: RunFacts = {
      source: { label: `${this.src.transport.label} · libvirt ${this.src.version?.daemon ?? this.src.version?.library ?? '?'}`, ...(this.src.version?.hypervisor ? { qemuVersion: this.src.version.hypervisor } : {}) },
      vm: {
        ...(this.memoryKiB !== undefined ? { memoryMiB: Math.round((this.memoryKiB / 1024) * 100) / 100 } : {}),
        ...(this.touchedBytes !== undefined ? { touchedBytes: this.touchedBytes } : {}),
      },
    };
    if (!this.watching && this.dst) {
      f.destination = {
        label: `${this.dst.transport.label} · libvirt ${this.dst.version?.daemon ?? this.dst.version?.library ?? '?'}`,
        ...(this.migrateUri ? { migrationAddress: this.migrateUri.slice('tcp://'.length) } : {}),
        ...(this.dst.version?.hypervisor ? { qemuVersion: this.dst.version.hypervisor } : {}),
      };
    }
    if (this.options) {
      f.capabilities = Object.fromEntries(this.options.flags.filter((x) => x.startsWith('--') && !['--bandwidth', '--migrateuri', '--comp-methods', '--comp-xbzrle-cache', '--parallel-connections', '--auto-converge-initial', '--auto-converge-increment'].includes(x)).map((x) => [x.slice(2), true]));
      f.parameters = { ...this.options.parameters, uuid: this.uuid };
    }
    return f;
  }

  serialConsole(side: Side): SerialConsole | undefined {
    if (!this.serialPath) return undefined;
    if (side === 'source') return { transport: this.src.transport, socket: this.serialPath };
    // The destination's copy exists once libvirt's Prepare has started the incoming QEMU.
    return this.dst && this.destStarted ? { transport: this.dst.transport, socket: this.serialPath } : undefined;
  }

  async reserve(): Promise<void> {
    const { conn } = this.src;
    const dt = Number(/\d+/.exec(await conn.run(['migrate-getmaxdowntime', this.uuid]))?.[0]);
    if (Number.isFinite(dt)) this.previous.downtimeMs = dt;
    const sp = Number(/\d+/.exec(await conn.run(['migrate-getspeed', this.uuid]))?.[0]);
    if (Number.isFinite(sp)) this.previous.speedMiBs = sp;
    const want = this.plan.downtimeLimitMs ?? DEFAULT_DOWNTIME_MS;
    if (this.previous.downtimeMs !== want) await conn.run(['migrate-setmaxdowntime', this.uuid, String(want)]);
    if (this.plan.copyStorage) await this.createDestinationImages();
    this.ctx.note(`managed migration through libvirt, driven from this machine (no SSH trust between the hosts): ${this.plan.from} libvirt ${this.src.version?.daemon ?? '?'} (QEMU ${this.src.version?.hypervisor ?? '?'}) -> ${this.plan.to} libvirt ${this.dst?.version?.daemon ?? '?'} (QEMU ${this.dst?.version?.hypervisor ?? '?'}); domain ${this.uuid}`);
  }

  /** copyStorage: libvirt copies into images that exist on the destination; Ferry creates the missing ones, same size and format. */
  private async createDestinationImages(): Promise<void> {
    const dst = this.dst!;
    for (const d of this.disks) {
      const file = d.source!;
      const exists = (await dst.transport.exec(['test', '-e', file])).code === 0;
      if (exists) continue;
      const info = parseColonTable(await this.src.conn.run(['domblkinfo', this.uuid, d.target]));
      const capacity = Number(info.get('Capacity'));
      if (!Number.isFinite(capacity) || capacity <= 0) throw new FerryException('INTERNAL', `libvirt gave no capacity for ${d.target} (${file})`);
      const mk = await dst.transport.exec(['mkdir', '-p', '--', path.posix.dirname(file)]);
      if (mk.code !== 0) throw new FerryException('IO_ERROR', `cannot create ${path.posix.dirname(file)} on ${this.plan.to}: ${mk.stderr.trim()}`);
      const r = await dst.transport.exec(['qemu-img', 'create', '-q', '-f', d.format ?? 'raw', '--', file, String(capacity)]);
      if (r.code !== 0) throw new FerryException('EXEC_FAILED', `qemu-img create ${file} on ${this.plan.to}: ${r.stderr.trim()}`);
      this.createdImages.push(file);
      this.ctx.note(`created ${file} (${d.format ?? 'raw'}, ${capacity} bytes) on ${this.plan.to} for libvirt to copy ${d.target} into`);
    }
  }

  async start(): Promise<void> {
    if (this.watching) return this.watch();
    const dst = this.dst!;
    const opts = this.options!;
    this.watches.push(new EventWatch(this.src.conn, () => [this.name], (e) => this.onEvent('source', e), this.ctx.log, this.uuid));
    this.watches.push(new EventWatch(dst.conn, () => [this.name], (e) => this.onEvent('destination', e), this.ctx.log));
    await Promise.all(this.watches.map((w) => w.ready));
    const args = ['migrate', ...opts.flags, '--domain', this.uuid, '--desturi', dst.conn.uri];
    this.ctx.note(`virsh ${args.map((a) => (a === dst.conn.uri ? `<${this.plan.to}>` : a)).join(' ')}`);
    this.starting = true;
    this.reportExit(this.launch(args));
    this.report('setup');
    // The run opens the destination's console after start: wait until libvirt's Prepare made the domain there.
    const deadline = Date.now() + 60_000;
    try {
      while (!this.destStarted && this.proc?.running && Date.now() < deadline) await sleep(10);
      const done = this.proc?.done;
      if (done && done.code !== 0) {
        throw new FerryException('MIGRATION_FAILED', done.reason ?? 'virsh migrate failed', { errors: done.errors });
      }
    } finally {
      this.starting = false;
    }
    if (this.proc?.done) this.onExit(this.proc, this.proc.done);
  }

  /** Runs a virsh migrate (the first, or a postcopy resume): the migration's process from now on. */
  private launch(args: string[]): VirshProcess {
    const p = new VirshProcess(this.src.conn, args);
    this.proc = p;
    return p;
  }

  /** How a launched virsh migrate ends is how the migration ends (a resume attempt libvirt refused is not). */
  private reportExit(p: VirshProcess): void {
    void p.exited.then((x) => {
      if (!this.starting) this.onExit(p, x);
    });
  }

  private onExit(p: VirshProcess, x: NonNullable<VirshProcess['done']>): void {
    if (p !== this.proc || this.closed || this.ctx.ended()) return;
    if (x.code === 0) {
      this.report('completed');
      return;
    }
    const reason = x.reason ?? `virsh migrate ended (${x.signal ?? `exit ${x.code}`})`;
    void this.endedBadly(reason);
  }

  /** virsh migrate failed: in postcopy libvirt keeps both ends paused for a recovery; otherwise the migration is over. */
  private async endedBadly(reason: string): Promise<void> {
    if (this.postcopy !== 'no') {
      const st = await this.src.conn.run(['domstate', this.uuid, '--reason']).catch(log.dropped('the source state after a failed postcopy', 'debug'));
      if (st && /post-copy/i.test(st)) {
        this.postcopy = 'paused';
        this.ctx.note(`postcopy interrupted (${reason}); the domain waits on both hosts for a recovery`);
        this.report('postcopy-paused', reason);
        return;
      }
    }
    this.report(this.cancelRequested || /cancel+ed by client|operation aborted/i.test(reason) ? 'cancelled' : 'failed', reason);
  }

  private onEvent(side: Side, e: VirshEvent): void {
    const data: Record<string, unknown> = e.stats ? { ...e.stats } : { detail: e.detail };
    this.ctx.event(side, e.event, data, e.t);
    if (e.event === 'job-completed' && side === 'source') {
      this.completedStats = e.stats ?? {};
      return;
    }
    if (e.event !== 'lifecycle') return;
    const m = lifecycleMeaning(e.detail);
    if (side === 'source') {
      if (m === 'source-paused-for-switchover') {
        this.sourceSuspended = true;
        this.ctx.sourceStopped();
        if (this.postcopy === 'no') this.report('stop-and-copy');
      } else if (m === 'postcopy-started') {
        this.postcopy = 'active';
        this.sourceSuspended = true;
        this.report('postcopy');
      } else if (m === 'postcopy-failed') {
        this.postcopy = 'paused';
        this.report('postcopy-paused', e.detail);
      } else if (m === 'suspended') {
        this.sourceSuspended = true;
        this.ctx.sourceStopped();
      } else if (m === 'resumed') {
        this.sourceSuspended = false;
      }
    } else {
      if (m === 'destination-started') this.destStarted = true;
      else if (m === 'destination-resumed') this.destResumed = true;
      else if (m === 'postcopy-started') {
        // The guest runs on the destination now (in postcopy, before the last page is there).
        this.destResumed = true;
        if (this.postcopy === 'paused') {
          this.postcopy = 'active';
          this.report('postcopy');
        }
      } else if (m === 'postcopy-failed' && this.postcopy === 'active') {
        this.postcopy = 'paused';
        this.report('postcopy-paused', e.detail);
      }
    }
  }

  /** Where the job is, in the run's words. */
  private stateOf(jobType: number, fields: JobFields): ReportedState | undefined {
    if (jobType === LIBVIRT_JOB_TYPE.unbounded || jobType === LIBVIRT_JOB_TYPE.bounded) {
      if (this.postcopy === 'active') return 'postcopy';
      if (this.postcopy === 'paused') return 'postcopy-paused';
      if (this.sourceSuspended && this.ctx.phase() !== 'setup') return 'stop-and-copy';
      return typeof fields.memory_total === 'number' && fields.memory_total > 0 ? 'precopy' : 'setup';
    }
    return undefined; // an ended job: the migrate command's exit says how it ended
  }

  /**
   * One reading of libvirt's job statistics, with the link speed while RAM is copied ahead
   * (the uncapped final copy's speed, see link-probe.ts).
   */
  async sample(): Promise<DriverReading | undefined> {
    let text: string;
    try {
      text = await this.src.conn.run(['domjobinfo', this.uuid, '--rawstats'], { timeoutMs: 5000 });
    } catch (e) {
      // The source domain is gone once libvirt finished (and was undefined): nothing to read.
      if (e instanceof VirshError) return undefined;
      throw e;
    }
    const job = parseRawJobStats(text);
    if (job.jobType === LIBVIRT_JOB_TYPE.none && !this.watching) return undefined;
    if (this.watching) return this.watchedReading(job.jobType, job.fields);
    return this.reading(job.jobType, job.fields);
  }

  private lastReported: ReportedState | undefined;

  private report(state: ReportedState, reason?: string): void {
    this.lastReported = state;
    this.ctx.report(state, reason);
  }
  private lastFields: JobFields | undefined;

  /** A sample, and the state it shows when that is news. */
  private reading(jobType: number, fields: JobFields): DriverReading {
    this.lastFields = fields;
    const state = this.stateOf(jobType, fields);
    const now = Date.now();
    const sample = toDriverSample(fields, statusForJob(jobType, this.postcopy), now, false);
    const phase = this.ctx.phase();
    if (phase === 'setup' || phase === 'precopy') this.link?.poll(now);
    if (this.link?.rate !== undefined) sample.linkRate = this.link.rate;
    if (!state || state === this.lastReported) return { sample };
    this.lastReported = state;
    return { sample, state };
  }

  async control(c: MigrationControl, phase: MigrationPhase): Promise<void> {
    if (this.watching) refuseControl(c.action, phase, 'watch-only: Ferry issues no control to a migration it did not start');
    const { conn } = this.src;
    const run = async (argv: string[]) => {
      try {
        await conn.run(argv);
      } catch (e) {
        if (!(e instanceof VirshError)) throw e;
        // A control in the migration's last moment finds the source domain undefined by libvirt: say so.
        if (/failed to get domain/.test(e.reason) && this.proc) {
          const end = await Promise.race([this.proc.exited, sleep(2000).then(() => undefined)]);
          if (end?.code === 0) refuseControl(c.action, phase, 'the migration completed meanwhile');
        }
        refuseControl(c.action, phase, `libvirt says: ${e.reason}`);
      }
    };
    switch (c.action) {
      case 'cancel':
        this.cancelRequested = true;
        await run(['domjobabort', this.uuid]);
        return;
      case 'set-bandwidth':
        this.speedChanged = true;
        await run(['migrate-setspeed', this.uuid, String(mibPerSecond(c.bytesPerSecond)), ...(phase.startsWith('postcopy') ? ['--postcopy'] : [])]);
        return;
      case 'set-downtime':
        await run(['migrate-setmaxdowntime', this.uuid, String(c.ms)]);
        return;
      case 'postcopy':
        await run(['migrate-postcopy', this.uuid]);
        return;
      case 'stop-vm':
        this.stoppedByControl = true;
        await run(['suspend', this.uuid]);
        return;
      case 'pause-postcopy':
        if (!this.destResumed) refuseControl('pause postcopy', phase, 'the switchover to the destination is still under way; try again in a moment');
        await run(['domjobabort', this.uuid, '--postcopy']);
        return;
      case 'recover':
        return this.recover(phase);
      case 'continue':
        refuseControl('continue', phase, 'libvirt offers no pause before switchover');
    }
  }

  /** Postcopy recovery: a new `virsh migrate --postcopy --postcopy-resume` with the same options. */
  private async recover(phase: MigrationPhase): Promise<void> {
    if (this.proc?.running) {
      // libvirt may still be tearing the broken stream down: give virsh a moment to return.
      const deadline = Date.now() + 10_000;
      while (this.proc.running && Date.now() < deadline) await sleep(50);
      if (this.proc.running) refuseControl('recover', phase, 'libvirt has not given up the broken stream yet; try again in a moment');
    }
    // The same options as the migration being resumed (libvirt checks), without the disk copy (done by now).
    const flags = this.options!.flags.filter((f) => f !== '--copy-storage-all');
    const args = ['migrate', ...flags, '--postcopy-resume', '--domain', this.uuid, '--desturi', this.dst!.conn.uri];
    this.ctx.note(`recovering postcopy: virsh ${args.map((a) => (a === this.dst!.conn.uri ? `<${this.plan.to}>` : a)).join(' ')}`);
    let p: VirshProcess;
    try {
      p = await startResume(() => this.launch(args), (reason) => this.ctx.note(`libvirt: ${reason}; trying again until QEMU has seen the broken stream on both hosts`));
    } catch (e) {
      refuseControl('recover', phase, `libvirt says: ${(e as Error).message}`);
    }
    this.reportExit(p);
  }

  async activate(): Promise<{ destinationRunning: boolean }> {
    const dst = this.dst!;
    // virsh migrate has returned (completed): the destination domain is libvirt's to run.
    const deadline = Date.now() + 10_000;
    let state = '';
    for (;;) {
      state = (await dst.conn.run(['domstate', this.uuid]).catch(log.dropped('the destination domain state', 'debug')))?.trim() ?? '';
      if (state === 'running' || state === 'paused' || Date.now() > deadline) break;
      await sleep(50);
    }
    if (state === 'paused' && this.stoppedByControl && this.sourceWasRunning) {
      // "Stop the VM" forced the offline finish: the guest was running, so it runs again.
      await dst.conn.run(['resume', this.uuid]).catch(log.dropped('resuming the destination domain'));
      this.ctx.note('the VM was suspended to force completion: resumed it on the destination');
      state = (await dst.conn.run(['domstate', this.uuid]).catch(() => state))?.trim() ?? state;
    }
    return { destinationRunning: state === 'running' };
  }

  async finalSample(outcome: MigrationFinal['outcome']): Promise<DriverSample | undefined> {
    if (outcome === 'completed' && !this.completedStats) {
      // The job-completed event comes with the source's last words; wait for it a moment.
      const deadline = Date.now() + 2000;
      while (!this.completedStats && Date.now() < deadline) await sleep(20);
    }
    if (this.completedStats) return toDriverSample(this.completedStats, outcome, Date.now(), true);
    // No event (a failed or cancelled job): libvirt keeps the statistics of the ended job.
    const end = outcome === 'completed' ? this.dst?.conn : this.src.conn;
    const text = await end?.run(['domjobinfo', this.uuid, '--completed', '--anystats', '--rawstats']).catch(log.dropped('the ended job\'s statistics', 'debug'));
    const job = text ? parseRawJobStats(text) : undefined;
    if (job && job.jobType !== LIBVIRT_JOB_TYPE.none) return toDriverSample(job.fields, statusForJob(job.jobType, 'no'), Date.now(), true);
    // libvirt kept nothing (after an abort): the last live figures, as they stood.
    if (!this.lastFields) return undefined;
    const { downtime: _expected, ...rest } = this.lastFields;
    return toDriverSample(rest, outcome, Date.now(), true);
  }

  async complete(): Promise<Partial<MigrationFinal>> {
    const o = this.options!;
    this.ctx.note(o.persistent
      ? `${this.name} is defined on ${this.plan.to}${o.undefineSource ? ` and no longer on ${this.plan.from}` : `; ${this.plan.from} keeps its definition (shut off)`}`
      : `${this.name} runs on ${this.plan.to} as a transient domain${this.persistent && !o.undefineSource ? `; ${this.plan.from} keeps its definition (shut off)` : ''}`);
    return {};
  }

  async rollback(): Promise<{ sourceRunning: boolean; final: Partial<MigrationFinal> }> {
    const { conn } = this.src;
    if (this.proc?.running) {
      // A start that failed half-way: abort libvirt's job, then let virsh return.
      await conn.run(['domjobabort', this.uuid]).catch(log.dropped('aborting the job on rollback', 'debug'));
      const deadline = Date.now() + 10_000;
      while (this.proc.running && Date.now() < deadline) await sleep(50);
      this.proc.kill();
    }
    let state = (await conn.run(['domstate', this.uuid]).catch(log.dropped('the source domain state on rollback')))?.trim() ?? '';
    if (state === 'paused' && this.sourceWasRunning) {
      await conn.run(['resume', this.uuid]).catch(log.dropped('resuming the source domain'));
      this.ctx.note('the source domain was paused; resumed it');
      state = (await conn.run(['domstate', this.uuid]).catch(() => state))?.trim() ?? state;
    }
    if (this.previous.downtimeMs !== undefined && this.previous.downtimeMs !== (this.plan.downtimeLimitMs ?? DEFAULT_DOWNTIME_MS)) {
      await conn.run(['migrate-setmaxdowntime', this.uuid, String(this.previous.downtimeMs)]).catch(log.dropped('putting the downtime limit back'));
    }
    if (this.speedChanged && this.previous.speedMiBs !== undefined) {
      // libvirt keeps a speed set during a job for the domain's next migrations.
      await conn.run(['migrate-setspeed', this.uuid, String(this.previous.speedMiBs)]).catch(log.dropped('putting the migration speed back'));
    }
    await this.clearDestination();
    return { sourceRunning: state === 'running', final: {} };
  }

  /** Nothing of the domain left on the destination (libvirt cleans up itself; this checks, and finishes the job if not). */
  private async clearDestination(): Promise<void> {
    const dst = this.dst;
    if (!dst) return;
    const left = await domainInfo(dst.conn, this.uuid).catch(log.dropped('looking for the domain on the destination (not found: nothing to clear)', 'debug'));
    if (left && left.state !== 'shut off') {
      await dst.conn.run(['destroy', this.uuid]).catch(log.dropped('destroying the half-migrated domain on the destination'));
      this.ctx.note(`destroyed the incoming domain libvirt left ${left.state} on ${this.plan.to}`);
    }
    if (left?.persistent && !this.destHadDefinition) {
      await dst.conn.run(['undefine', this.uuid]).catch(log.dropped('undefining the half-migrated domain on the destination'));
      this.ctx.note(`undefined the definition libvirt left on ${this.plan.to}`);
    }
    for (const f of this.createdImages) {
      const r = await dst.transport.exec(['rm', '-f', '--', f]).catch(log.dropped(`removing ${f} on ${this.plan.to}`));
      if (r?.code === 0) this.ctx.note(`removed the partial copy ${f} on ${this.plan.to}`);
    }
    this.createdImages = [];
  }

  async close(): Promise<Partial<MigrationFinal>> {
    this.closed = true;
    for (const w of this.watches.splice(0)) w.stop();
    this.proc?.kill();
    return {};
  }

  // ---- watching someone else's migration (attach) --------------------------------------

  private watchedJob: 'waiting' | 'running' = 'waiting';

  private async watch(): Promise<void> {
    this.watches.push(new EventWatch(this.src.conn, () => [this.name], (e) => this.onWatchedEvent(e), this.ctx.log, this.uuid));
    await Promise.all(this.watches.map((w) => w.ready));
    const r = await this.sample();
    if (r?.state) this.report(r.state, 'attached (watch-only)');
  }

  private onWatchedEvent(e: VirshEvent): void {
    this.onEvent('source', e);
    if (e.event === 'job-completed' && this.watchedJob === 'running') this.report('completed');
  }

  private watchedReading(jobType: number, fields: JobFields): DriverReading | undefined {
    const migrating = (jobType === LIBVIRT_JOB_TYPE.unbounded || jobType === LIBVIRT_JOB_TYPE.bounded) && fields.operation === 5; // VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
    if (!migrating) {
      if (this.watchedJob === 'running' && !this.completedStats) {
        // The job ended without job-completed: it failed or was cancelled; the domain stays here.
        this.watchedJob = 'waiting';
        void this.src.conn.run(['domjobinfo', this.uuid, '--completed', '--anystats', '--rawstats']).then((t) => {
          const j = parseRawJobStats(t);
          this.report(j.jobType === LIBVIRT_JOB_TYPE.cancelled ? 'cancelled' : 'failed', typeof j.fields.errmsg === 'string' ? j.fields.errmsg : 'the migration ended without completing');
        }, () => this.report('failed', 'the migration ended without completing'));
      }
      return undefined;
    }
    this.watchedJob = 'running';
    return this.reading(jobType, fields);
  }
}

function toDriverSample(fields: JobFields, status: string, t: number, ended: boolean): DriverSample {
  const { phase: _p, elapsedMs: _e, ...s } = sampleFromJobStats(fields, status, t, 0, 'setup', ended);
  return s;
}

export class LibvirtDriver implements HypervisorDriver {
  readonly name = 'libvirt';
  readonly capabilities: readonly DriverCapability[] = ['postcopy', 'postcopy-recover', 'storage-copy', 'auto-converge', 'xbzrle', 'multifd', 'fixed-port', 'attach'];

  constructor(private readonly pool: LibvirtPool) {}

  manages(host: HostConfig): boolean {
    return host.libvirt !== undefined;
  }

  async listVms(host: HostConfig, transport: HostTransport): Promise<VmInfo[]> {
    return listLibvirtVms(host.id, await this.pool.get(host, transport));
  }

  preflight(plan: MigrationPlan, hosts: EngineHosts): Promise<PreflightResult> {
    return libvirtPreflight(plan, hosts, this.pool);
  }

  private async end(hosts: EngineHosts, id: string): Promise<End> {
    const host = await hosts.host(id);
    const transport = await hosts.transport(id);
    if (!host.libvirt) throw new FerryException('INVALID_REQUEST', `host ${id} is not a libvirt host: a libvirt domain migrates to another libvirt host`);
    return { host, transport, conn: await this.pool.get(host, transport) };
  }

  async open(plan: MigrationPlan, ctx: DriverContext): Promise<DriverMigration> {
    const [src, dst] = await Promise.all([this.end(ctx.hosts, plan.from), this.end(ctx.hosts, plan.to)]);
    const m = new LibvirtMigration(ctx, src, dst);
    await m.openSource();
    await m.checkDestination();
    requireCapabilities(`${plan.vm} (a libvirt domain)`, m.capabilities, capabilitiesNeeded(plan));
    return m;
  }

  async attach(target: AttachTarget, ctx: DriverContext): Promise<DriverMigration> {
    if (target.qmpSocket) throw new FerryException('INVALID_REQUEST', 'a libvirt domain is watched through libvirt, not through a QMP socket');
    const src = await this.end(ctx.hosts, target.hostId);
    const m = new LibvirtMigration(ctx, src, undefined);
    await m.openSource();
    return m;
  }

  /** Nothing to pick up: libvirt aborts a managed migration whose client (Ferry) went away. */
  async recoverable(_hostId: string, _hosts: EngineHosts): Promise<RecoveredMigration[]> {
    return [];
  }

  async resume(_found: RecoveredMigration, _phase: MigrationPhase, _ctx: DriverContext): Promise<DriverMigration> {
    throw new FerryException('UNSUPPORTED', 'libvirt migrations are not resumed after a restart: libvirt aborts a managed migration whose client went away');
  }
}

