/**
 * The migration engine: the registry of runs. It picks the hypervisor driver for each
 * migration (the first that manages its source host), starts, attaches to and recovers runs,
 * and lists them. What one run does is in migration-run.ts; what touches a hypervisor is in
 * drivers/.
 */
import path from 'node:path';
import { FerryException, toFerryError } from '../../../shared/errors';
import type { HostConfig } from '../../../shared/model/host';
import { MigrationPlanSchema, TERMINAL_PHASES } from '../../../shared/model/migration';
import type { MigrationPlan, MigrationPlanInput } from '../../../shared/model/migration';
import type { PreflightResult } from '../../../shared/model/preflight';
import type { VmInfo } from '../../../shared/model/vm';
import { describeIssues } from '../../../shared/contract';
import { rootLog } from '../log';
import { MigrationRun } from './migration-run';
import type { MigrationSummary, RunOptions } from './migration-run';
import { QmpDriver } from './drivers/qmp-driver';
import { requireCapabilities } from './drivers/hypervisor-driver';
import type { AttachTarget, EngineHosts, HypervisorDriver } from './drivers/hypervisor-driver';

// Re-exported for existing importers.
export { FERRY_VERSION, MigrationRun } from './migration-run';
export type { MigrationSummary } from './migration-run';
export type { EngineHosts, MigrationControl } from './drivers/hypervisor-driver';
export { migrationAddressOf } from './drivers/hypervisor-driver';
export { openVmQmp } from './drivers/qmp-driver';
export type { MigrationState } from './drivers/qmp-driver';
/** One migration (the run). */
export type Migration = MigrationRun;

const log = rootLog.child('engine');

export interface EngineOptions extends RunOptions {
  /** The drivers, asked in order which manages a host; default: the QMP driver alone (it takes every host). */
  drivers?: HypervisorDriver[];
}

/** Phases in which the hypervisor moves memory (dispose waits a moment for them). */
const RUNNING_PHASES = ['setup', 'precopy', 'stop-and-copy', 'postcopy', 'postcopy-paused'];

export class MigrationEngine {
  private readonly migrations = new Map<string, MigrationRun>();
  private readonly startedListeners = new Set<(m: MigrationRun) => void>();
  private readonly options: RunOptions;
  readonly drivers: readonly HypervisorDriver[];

  constructor(private readonly hosts: EngineHosts, options: EngineOptions) {
    this.options = { ...options, switchovers: options.switchovers ?? new Map() };
    this.drivers = options.drivers ?? [new QmpDriver()];
  }

  /** Called for each migration once its driver found the VM (before any phase change or sample). */
  onStarted(l: (m: MigrationRun) => void): () => void {
    this.startedListeners.add(l);
    return () => this.startedListeners.delete(l);
  }

  /** The driver that carries out migrations from `host`. */
  driverFor(host: HostConfig): HypervisorDriver {
    const d = this.drivers.find((x) => x.manages(host));
    if (!d) throw new FerryException('UNSUPPORTED', `no hypervisor driver manages host "${host.id}"`, { host: host.id });
    return d;
  }

  /** The VMs of a host, as its driver lists them. */
  async listVms(hostId: string): Promise<VmInfo[]> {
    const host = await this.hosts.host(hostId);
    return this.driverFor(host).listVms(host, await this.hosts.transport(hostId));
  }

  /** The source driver's pre-migration checks for a plan. */
  async preflight(plan: MigrationPlan): Promise<PreflightResult> {
    return this.driverFor(await this.hosts.host(plan.from)).preflight(plan, this.hosts);
  }

  private add(m: MigrationRun): void {
    this.migrations.set(m.id, m);
    m.onOpened(() => {
      for (const l of [...this.startedListeners]) l(m);
    });
  }

  /** Validates the plan, reserves the destination and issues the migration; throws (cleaned up) on any failure. */
  async start(input: MigrationPlanInput, extras: { preflight?: PreflightResult } = {}): Promise<MigrationRun> {
    const parsed = MigrationPlanSchema.safeParse(input);
    if (!parsed.success) throw new FerryException('INVALID_REQUEST', `invalid migration plan: ${describeIssues(parsed.error)}`);
    const plan = parsed.data;
    for (const m of this.migrations.values()) {
      if (!TERMINAL_PHASES.includes(m.phase) && m.plan.vm === plan.vm && (m.plan.from === plan.from || m.plan.to === plan.from)) {
        throw new FerryException('ALREADY_EXISTS', `VM "${plan.vm}" is already being migrated (${m.id})`, { id: m.id });
      }
    }
    const driver = this.driverFor(await this.hosts.host(plan.from));
    const m = new MigrationRun(plan, driver, this.hosts, this.options);
    if (extras.preflight) m.recordPreflight(extras.preflight);
    this.add(m);
    try {
      await m.start();
    } catch (e) {
      this.migrations.delete(m.id);
      throw e;
    }
    return m;
  }

  /**
   * Finds migrations a previous Ferry process started on these hosts (their drivers' records)
   * and records them to the end. Returns the ones picked up.
   */
  async recover(hostIds: string[]): Promise<MigrationRun[]> {
    const found: MigrationRun[] = [];
    for (const id of hostIds) {
      let driver: HypervisorDriver;
      let records;
      try {
        driver = this.driverFor(await this.hosts.host(id));
        if (!driver.capabilities.includes('resume-after-restart')) continue;
        records = await driver.recoverable(id, this.hosts);
      } catch (e) {
        log.warn(`cannot look for migrations to recover on ${id}: ${toFerryError(e).message}`);
        continue;
      }
      for (const r of records) {
        if (this.migrations.has(r.run.id)) continue;
        const m = new MigrationRun(r.run.plan, driver, this.hosts, this.options, r.run);
        this.add(m);
        try {
          await m.resume(r);
          found.push(m);
        } catch (e) {
          log.warn(`cannot resume migration ${r.run.id} found on ${id}: ${toFerryError(e).message}`);
          this.migrations.delete(m.id);
        }
      }
    }
    return found;
  }

  /** Watch-only recording of a migration someone else runs on `hostId`/`vm` (or a given QMP socket). */
  async attach(options: AttachTarget & { recordPath?: string }): Promise<MigrationRun> {
    const host = await this.hosts.host(options.hostId);
    const driver = this.driverFor(host);
    requireCapabilities(`the ${driver.name} driver`, driver.capabilities, ['attach']);
    const parsed = MigrationPlanSchema.safeParse({ vm: options.vm, from: options.hostId, to: options.hostId === 'unknown' ? 'unknown-destination' : 'unknown', ...(options.recordPath ? { recordPath: options.recordPath } : {}) });
    if (!parsed.success) throw new FerryException('INVALID_REQUEST', `attach: ${describeIssues(parsed.error)}`);
    const plan = parsed.data;
    const id = `attach-${Date.now().toString(36)}-${options.vm}`;
    const m = new MigrationRun(plan, driver, this.hosts, this.options, { id, startedAt: Date.now(), timelineFile: options.recordPath ?? path.join(this.options.timelineDir, `${id}.ferry.jsonl`), mode: 'attach' });
    this.add(m);
    try {
      await m.attach({ hostId: options.hostId, vm: options.vm, ...(options.qmpSocket ? { qmpSocket: options.qmpSocket } : {}) });
    } catch (e) {
      this.migrations.delete(m.id);
      throw e;
    }
    return m;
  }

  /** Migrations still running (the hypervisor moves memory; Ferry only watches). */
  active(): MigrationSummary[] {
    return this.list().filter((m) => !TERMINAL_PHASES.includes(m.phase));
  }

  /** The migration with this id, if this process knows it. */
  find(id: string): MigrationRun | undefined {
    return this.migrations.get(id);
  }

  get(id: string): MigrationRun {
    const m = this.migrations.get(id);
    if (!m) throw new FerryException('NOT_FOUND', `no migration with id "${id}"`, { id });
    return m;
  }

  list(): MigrationSummary[] {
    return [...this.migrations.values()].map((m) => m.summary());
  }

  /** Waits a moment for running migrations to end (they are the hypervisor's; Ferry only watches). */
  async dispose(): Promise<void> {
    await Promise.all([...this.migrations.values()].filter((m) => RUNNING_PHASES.includes(m.phase)).map((m) => Promise.race([m.whenDone(), new Promise((r) => setTimeout(r, 100))])));
  }
}
