/**
 * The one interface behind which a VM's migration is actually carried out.
 *
 * A VM belongs to one kind of manager on its host (Ferry's launcher, a script or systemd unit
 * that started a plain QEMU, libvirt), and each kind has one driver. The run
 * (`../migration-run.ts`) is the same whatever the driver: it owns the phases (an explicit
 * transition table), the sampling timer, the projections, the policies, the timeline and the
 * guest's console. A driver owns everything that touches the hypervisor:
 *
 *   listVms / preflight          what the board and the plan dialog show
 *   open → DriverMigration       one migration of one VM (nothing changed on either host yet)
 *     reserve()                  the destination made ready to receive, the driver's way
 *     start()                    the migration issued (or, watching, the listening begun)
 *     sample()                   one reading, in the one MigrationSample shape
 *     control(c, phase)          cancel, bandwidth, downtime, postcopy, stop the VM, ...
 *     activate/finalSample/complete/rollback/close   finish and clean up
 *   attach                       watch a migration someone else runs (no control issued)
 *   recoverable / resume         pick up, after a restart, what a previous Ferry started
 *
 * The driver tells the run what happens through its `DriverContext`: `report(state)` when
 * the hypervisor says where the migration is (the run's guard decides whether that moves a
 * phase, and logs what it cannot explain), `event`/`note`/`gap` for the timeline.
 *
 * Capabilities: a feature only some managers (or some QEMUs) have is a capability the
 * migration reports; the run refuses a plan that needs one it lacks, with a reason, and the
 * console offers only the controls the migration lists.
 *
 * Writing a driver: implement `HypervisorDriver` and add it to the drivers the console
 * service gives its engine (console-service.ts), before the QMP driver, which takes every
 * host nobody else claims. Never reach behind your manager's back (a libvirt driver never
 * talks QMP to libvirt's monitor).
 */
import type { MigrationControl, MigrationControlAction } from '../../../../shared/contract';
import { FerryException } from '../../../../shared/errors';
import type { HostConfig } from '../../../../shared/model/host';
import type { MigrationFinal, MigrationPhase, MigrationPlan, MigrationSample } from '../../../../shared/model/migration';
import { planAllowsPostcopy } from '../../../../shared/model/migration';
import type { PreflightResult } from '../../../../shared/model/preflight';
import type { TimelineHost } from '../../../../shared/model/timeline';
import type { VmInfo } from '../../../../shared/model/vm';
import type { SwitchoverPoint } from '../../../../shared/analysis/projection';
import type { Logger } from '../../log';
import type { HostTransport } from '../../transport/host-transport';

export type { MigrationControl, MigrationControlAction };

/** How a driver reaches the hosts (the console service's registry and connections). */
export interface EngineHosts {
  host(id: string): Promise<HostConfig>;
  /** The host's transport, connected. */
  transport(id: string): Promise<HostTransport>;
}

export type Side = 'source' | 'destination';

/**
 * What a migration can do besides plain precopy, as its driver reports it. A plan that needs
 * one the migration lacks is refused before anything starts (see `capabilitiesNeeded`).
 */
export const DRIVER_CAPABILITIES = [
  /** Switch to postcopy (the plan's mode or a policy). */
  'postcopy',
  /** Pause a running postcopy and recover it over a new connection. */
  'postcopy-recover',
  /** Copy the VM's local disks to the destination while it runs (plan copyStorage). */
  'storage-copy',
  /** Carry the migration stream inside Ferry's SSH connections (plan transport ssh-tunnel). */
  'ssh-tunnel',
  /** Stop before switchover and wait for the `continue` control (plan pauseBeforeSwitchover). */
  'pause-before-switchover',
  'auto-converge',
  'xbzrle',
  'multifd',
  /** Any other migration capability by its QAPI name (plan capabilities). */
  'qemu-capabilities',
  /** A fixed incoming port on the destination (plan port). */
  'fixed-port',
  /** Watch a migration someone else started (watch-only, no control issued). */
  'attach',
  /** A restarted Ferry picks the migration up and records it to the end. */
  'resume-after-restart',
] as const;
export type DriverCapability = (typeof DRIVER_CAPABILITIES)[number];

/** Words for a refusal: "cannot <words>". */
const CAPABILITY_WORDS: Record<DriverCapability, string> = {
  postcopy: 'switch to postcopy',
  'postcopy-recover': 'pause and recover postcopy',
  'storage-copy': 'copy storage (copyStorage)',
  'ssh-tunnel': 'carry the stream through SSH (transport ssh-tunnel)',
  'pause-before-switchover': 'pause before switchover',
  'auto-converge': 'auto-converge',
  xbzrle: 'use xbzrle',
  multifd: 'use multifd',
  'qemu-capabilities': 'set other QEMU migration capabilities',
  'fixed-port': 'listen on a fixed port',
  attach: 'watch a migration someone else runs',
  'resume-after-restart': 'resume after a restart',
};

/** The capabilities a plan needs from the migration that carries it out. */
export function capabilitiesNeeded(plan: MigrationPlan): DriverCapability[] {
  const need: DriverCapability[] = [];
  if (planAllowsPostcopy(plan)) need.push('postcopy');
  if (plan.copyStorage) need.push('storage-copy');
  if (plan.transport === 'ssh-tunnel') need.push('ssh-tunnel');
  if (plan.pauseBeforeSwitchover) need.push('pause-before-switchover');
  if (plan.autoConverge) need.push('auto-converge');
  if (plan.xbzrleCacheBytes !== undefined) need.push('xbzrle');
  if (plan.multifdChannels !== undefined) need.push('multifd');
  if (plan.capabilities && Object.keys(plan.capabilities).length) need.push('qemu-capabilities');
  if (plan.port !== undefined && plan.port !== 0) need.push('fixed-port');
  return need;
}

/** Throws INVALID_REQUEST naming what `what` cannot do, when `have` lacks one of `need`. */
export function requireCapabilities(what: string, have: readonly DriverCapability[], need: readonly DriverCapability[]): void {
  const missing = need.filter((c) => !have.includes(c));
  if (missing.length) {
    throw new FerryException('INVALID_REQUEST', `${what} cannot ${missing.map((c) => CAPABILITY_WORDS[c]).join(', ')}`, { missing });
  }
}

/** A control the migration will not take in this phase, with the reason (INVALID_REQUEST). */
export function refuseControl(action: string, phase: MigrationPhase, why: string): never {
  throw new FerryException('INVALID_REQUEST', `cannot ${action} now (phase ${phase}): ${why}`, { phase, action });
}

/**
 * What the hypervisor says the migration is doing, in the run's words. The driver maps its
 * own states onto these (QEMU's `active` with the source stopped is `stop-and-copy`;
 * libvirt's "Suspended (Post-copy)" is `postcopy`); a state that says nothing new (QEMU's
 * `cancelling`) is not reported.
 */
export type ReportedState =
  | 'storage-copy'
  | 'setup'
  | 'precopy'
  | 'stop-and-copy'
  | 'postcopy'
  | 'postcopy-paused'
  | 'completed'
  | 'failed'
  | 'cancelled';

/** What identifies a run, kept by the driver where a restarted Ferry finds it again. */
export interface RunRecord {
  id: string;
  plan: MigrationPlan;
  startedAt: number;
  timelineFile: string;
  /** 'engine': Ferry runs it; 'attach': Ferry only watches. */
  mode: 'engine' | 'attach';
}

/** The run, as a driver sees it: who it is, and how to tell it what happens. */
export interface DriverContext {
  readonly run: RunRecord;
  readonly hosts: EngineHosts;
  /** This migration's log scope. */
  readonly log: Logger;
  /** The run's current phase (read-only: only the run changes phases). */
  phase(): MigrationPhase;
  /** True once the run has ended (stop reconnecting, stop waiting). */
  ended(): boolean;
  /** The hypervisor says the migration is now here (`reason`: its words for a failure). */
  report(state: ReportedState, reason?: string): void;
  /** The source stopped its vCPUs: a guest line in flight is split between the two consoles. */
  sourceStopped(): void;
  /** A hypervisor event, kept in the timeline as it came (QMP's MIGRATION, libvirt's job-completed, ...). */
  event(side: Side, event: string, data: Record<string, unknown> | undefined, t: number): void;
  /** A line in the timeline, e.g. "destination listening on tcp:10.0.0.2:49152". */
  note(text: string): void;
  /** The driver could not see one side for a while (connection lost and re-established). */
  gap(side: Side, fromT: number, toT: number, reason: string): void;
  /** What earlier switchovers between these two hosts took (bytes, downtime): a link estimate to offer the hypervisor. */
  switchovers(): readonly SwitchoverPoint[];
}

/** One reading of the migration. The run adds `phase`, `elapsedMs`, the projection and the guest's figures. */
export type DriverSample = Omit<MigrationSample, 'phase' | 'elapsedMs' | 'projection' | 'guest'>;

export interface DriverReading {
  sample: DriverSample;
  /** Where the reading says the migration is, when it says so. */
  state?: ReportedState;
}

/** What the timeline's header tells about the hosts and the VM. */
export interface RunFacts {
  source: Omit<TimelineHost, 'id'>;
  /** Absent when watching (attach): the destination is someone else's. */
  destination?: Omit<TimelineHost, 'id'>;
  /** `touchedBytes`: guest memory the source has touched so far, when known (sharpens the projection). */
  vm: { memoryMiB?: number; argv?: string[]; touchedBytes?: number };
  /** Migration capabilities and parameters in force on the source, by the hypervisor's names. */
  capabilities?: Record<string, boolean>;
  parameters?: Record<string, unknown>;
}

/** A guest serial console reachable as a unix socket on a host (the demo guest speaks there). */
export interface SerialConsole {
  transport: HostTransport;
  socket: string;
}

/**
 * One migration of one VM, as a driver carries it out. The run calls, in this order:
 * engine: reserve → start → (sample, control)* → activate → finalSample → complete | finalSample → rollback, then close;
 * a failed reserve or start: rollback, then close; attach and resume: start → (sample)* → finalSample → close.
 */
export interface DriverMigration {
  /** What this migration can do beyond plain precopy (this VM, these hypervisors). */
  readonly capabilities: readonly DriverCapability[];
  /** The controls it takes: the console offers exactly these (watch-only: none). */
  readonly controls: readonly MigrationControlAction[];
  /** For the timeline's header; may grow after `reserve` (the destination's version, its address). */
  facts(): RunFacts;
  /** The guest's serial console on each side, when it has one Ferry may open. */
  serialConsole(side: Side): SerialConsole | undefined;
  /**
   * Makes the destination ready to receive. The driver decides how: QMP starts a QEMU with
   * the same arguments and `-incoming defer` and sets capabilities and parameters on both
   * ends; a manager that prepares its destination itself (libvirt's managed migration) may
   * only check that it can.
   */
  reserve(): Promise<void>;
  /**
   * engine: issues the migration (reports `setup`, or `storage-copy` first); attach and
   * resume: starts listening and reports where the migration is now.
   */
  start(): Promise<void>;
  /** One reading, or undefined when there is nothing to read now (e.g. the monitor is reconnecting). */
  sample(): Promise<DriverReading | undefined>;
  /**
   * Applies a control the run's guard admitted in `phase` (the run has checked the phase, the
   * plan and the values). Refuses with `refuseControl` what the hypervisor would not take now.
   */
  control(c: MigrationControl, phase: MigrationPhase): Promise<void>;
  /** After `completed`: the guest made to run on the destination as it ran on the source. */
  activate(): Promise<{ destinationRunning: boolean }>;
  /** The hypervisor's last figures once the migration has ended (undefined if it has none). */
  finalSample(outcome: MigrationFinal['outcome']): Promise<DriverSample | undefined>;
  /** After `completed`: the source left as its owner expects (quit, or kept paused with keepSource). */
  complete(): Promise<Partial<MigrationFinal>>;
  /** After `failed`/`cancelled` (or a failed start): the guest running on the source again, the destination removed. */
  rollback(): Promise<{ sourceRunning: boolean; final: Partial<MigrationFinal> }>;
  /** Releases everything (connections, relays, state files); figures only the driver knows. */
  close(): Promise<Partial<MigrationFinal>>;
}

/** What `ferry attach` and the console's "Watch" point at. */
export interface AttachTarget {
  hostId: string;
  vm: string;
  /** A QMP socket on the host (a QEMU Ferry did not start); else the driver finds the VM by name. */
  qmpSocket?: string;
}

/** A migration a previous Ferry process started, found on a host. */
export interface RecoveredMigration {
  run: RunRecord;
  /** The driver's own record (what it saved while the migration ran). */
  state: unknown;
}

export interface HypervisorDriver {
  /** Short name: `qmp`, `libvirt` (in summaries, timelines and logs). */
  readonly name: string;
  /** What the driver can do at all (each migration reports its own, a subset). */
  readonly capabilities: readonly DriverCapability[];
  /** Whether the VMs of `host` are this driver's (the engine asks its drivers in order). */
  manages(host: HostConfig): boolean;
  /** The VMs on a host and their facts, as the board shows them. */
  listVms(host: HostConfig, transport: HostTransport): Promise<VmInfo[]>;
  /** Pre-migration checks; never throws (a check that cannot run says so). */
  preflight(plan: MigrationPlan, hosts: EngineHosts): Promise<PreflightResult>;
  /**
   * Finds `plan.vm` on the source and reads what the migration needs. Changes nothing on
   * either host; throws NOT_FOUND / ALREADY_EXISTS / INVALID_REQUEST with a clear message.
   */
  open(plan: MigrationPlan, ctx: DriverContext): Promise<DriverMigration>;
  /** Watch-only: a migration someone else runs on `target` (present or to come). */
  attach(target: AttachTarget, ctx: DriverContext): Promise<DriverMigration>;
  /** Migrations a previous Ferry started from `hostId` and that are still to be recorded to the end. */
  recoverable(hostId: string, hosts: EngineHosts): Promise<RecoveredMigration[]>;
  /** Picks one of them up; `phase` is where its timeline left it. */
  resume(found: RecoveredMigration, phase: MigrationPhase, ctx: DriverContext): Promise<DriverMigration>;
}

/** The address of `host` that the other host reaches for the migration stream. */
export function migrationAddressOf(host: HostConfig, transport: HostTransport): string {
  if (host.migrationAddress) return host.migrationAddress;
  if (host.transport.kind === 'local') return '127.0.0.1';
  const label = transport.label; // user@host:port once connected
  const m = /@(.+):\d+$/.exec(label);
  return m ? m[1]! : host.transport.ssh.host;
}
