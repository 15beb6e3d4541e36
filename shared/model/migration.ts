/**
 * One migration, as the engine runs it, the recorder writes it and the console plots it.
 * Phases follow the seeds: pre-migration (preflight) -> reservation -> iterative precopy ->
 * stop-and-copy -> (postcopy) -> commitment -> activation, with the exits failed/cancelled
 * that leave the guest running on the source.
 */
import { z } from 'zod';
import { HostIdSchema } from './host';
import { VmRefSchema } from './vm';
import type { Projection } from '../analysis/projection';

export const MIGRATION_PHASES = [
  'preflight',
  'reservation',
  /** copyStorage: the disks are mirrored to the destination before the RAM migration starts. */
  'storage-copy',
  'setup',
  'precopy',
  'stop-and-copy',
  'postcopy',
  'postcopy-paused',
  'commitment',
  'activation',
  'completed',
  'failed',
  'cancelled',
] as const;
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];
export const TERMINAL_PHASES: readonly MigrationPhase[] = ['completed', 'failed', 'cancelled'];

/**
 * QEMU's MigrationStatus values; each QEMU has its own set (its schema says which: 9.1 added
 * `postcopy-recover-setup`, 10.2 `postcopy-device`). Kept as plain strings: a status Ferry does
 * not know is recorded as QEMU sent it and leaves the phase where it is.
 */
export type QemuMigrationStatus = string;

/** Policies the engine consults on every sample (electron/core/migration/policies.ts). */
export const PolicySchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('manual') }),
  /** Switch to postcopy once the projection says pre-copy will never converge. */
  z.object({ name: z.literal('postcopy-when-never') }),
  /** Raise the downtime limit by `stepMs` every `everyPasses` passes while not converging, up to `ceilingMs` (Proxmox, nova). */
  z.object({ name: z.literal('downtime-steps'), stepMs: z.number().int().min(1), ceilingMs: z.number().int().min(1).max(2_000_000), everyPasses: z.number().int().min(1).default(1) }),
  /** The pre-copy paper's dynamic rate limiting: start at the minimum, then dirty rate + a margin, up to the maximum. */
  z.object({ name: z.literal('dynamic-rate'), minBandwidth: z.number().positive(), maxBandwidth: z.number().positive(), marginBandwidth: z.number().nonnegative().default(6_250_000) }),
  /** Done by a deadline (ms after start): raise bandwidth, then downtime, then postcopy or stop the VM. */
  z.object({ name: z.literal('deadline'), deadlineMs: z.number().int().min(1000), ceilingDowntimeMs: z.number().int().min(1).default(2000), allowPostcopy: z.boolean().default(true) }),
]);
export type Policy = z.output<typeof PolicySchema>;

export const MigrationPlanSchema = z.object({
  vm: VmRefSchema,
  from: HostIdSchema,
  to: HostIdSchema,
  /** precopy only; postcopy allowed (switch by hand or policy); postcopy right after the first pass. */
  mode: z.enum(['precopy', 'postcopy', 'postcopy-after']).default('precopy'),
  /** For mode postcopy-after: switch once this many passes are done. */
  postcopyAfterPasses: z.number().int().min(1).max(1000).optional(),
  /** Bytes per second; absent = effectively unlimited (QEMU 7.2 otherwise caps at ~1 Gbit/s). */
  maxBandwidth: z.number().int().positive('bandwidth must be positive').optional(),
  downtimeLimitMs: z.number().int().min(1, 'downtime limit must be at least 1 ms').max(2_000_000).optional(),
  autoConverge: z.boolean().optional(),
  cpuThrottleInitial: z.number().int().min(1).max(99).optional(),
  cpuThrottleIncrement: z.number().int().min(1).max(99).optional(),
  /** XBZRLE cache size in bytes (enables xbzrle). */
  xbzrleCacheBytes: z.number().int().min(1 << 20).optional(),
  multifdChannels: z.number().int().min(1).max(64).optional(),
  /**
   * dirty-limit (QEMU 8.1+ on the source, KVM with a dirty ring): hold each vCPU's dirtying
   * to this many MB/s while migrating — an alternative to auto-converge's CPU throttling.
   */
  dirtyLimitMBps: z.number().int().min(1).max(1_000_000).optional(),
  /** switchover-ack (QEMU 8.1+ on both ends): the destination acknowledges before switchover. */
  switchoverAck: z.boolean().optional(),
  /**
   * avail-switchover-bandwidth (QEMU 8.2+ on the source): bytes/s the final copy can use, for
   * QEMU's switchover decision; `auto` = Ferry's own link estimate (learned from switchovers).
   */
  switchoverBandwidth: z.union([z.literal('auto'), z.number().int().positive()]).optional(),
  /**
   * Any other migration capability by its QAPI name (e.g. `zero-copy-send`, or
   * `switchover-ack` on QEMU 8.1+), set on both ends; preflight checks QEMU knows it.
   */
  capabilities: z.record(z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, 'capability: a QAPI name such as zero-copy-send'), z.boolean()).optional(),
  /** Pause before switchover; continue with the `continue` control. */
  pauseBeforeSwitchover: z.boolean().optional(),
  /** Keep the (paused) source QEMU after completion instead of quitting it. */
  keepSource: z.boolean().optional(),
  /**
   * How the migration stream travels: `tcp` straight from host to host (default), or
   * `ssh-tunnel`: unix sockets on both hosts joined through Ferry's SSH connections, so
   * nothing crosses the network outside SSH.
   */
  transport: z.enum(['tcp', 'ssh-tunnel']).optional(),
  /**
   * Copy the VM's disk images to the destination while it runs (local storage, no shared
   * path): NBD export on the destination, drive-mirror on the source, then the RAM.
   */
  copyStorage: z.boolean().optional(),
  /** copyStorage: mirror speed cap, bytes/s (default unlimited). */
  storageBandwidth: z.number().int().positive('storage bandwidth must be positive').optional(),
  /**
   * libvirt domains: define the domain on the destination (`--persistent`) and drop its
   * definition on the source (`--undefinesource`). Default: a move as libvirt users know it
   * from virt-manager: a persistent domain stays persistent and leaves the source; a
   * transient one stays transient.
   */
  persistent: z.boolean().optional(),
  undefineSource: z.boolean().optional(),
  /** Fixed incoming port on the destination; default 0 = any free port. */
  port: z.number().int().min(0).max(65535).optional(),
  policy: PolicySchema.optional(),
  /** Sampling period (ms); default 100 (10 Hz). */
  sampleIntervalMs: z.number().int().min(20).max(10_000).optional(),
  /** Timeline file; default `<configDir>/timelines/<id>.ferry.jsonl`. */
  recordPath: z.string().min(1).optional(),
}).refine((p) => p.from !== p.to, { message: 'source and destination must be different hosts', path: ['to'] })
  .refine((p) => p.transport !== 'ssh-tunnel' || p.port === undefined, { message: 'a fixed port has no meaning with transport ssh-tunnel (the stream uses unix sockets inside SSH)', path: ['port'] })
  .refine((p) => p.storageBandwidth === undefined || p.copyStorage === true, { message: 'storageBandwidth only applies with copyStorage', path: ['storageBandwidth'] })
  .refine((p) => !(p.autoConverge && p.dirtyLimitMBps !== undefined), { message: 'auto-converge and dirty-limit exclude each other: pick one', path: ['dirtyLimitMBps'] })
  .refine((p) => p.mode !== 'postcopy-after' || p.postcopyAfterPasses !== undefined, { message: 'postcopy-after needs postcopyAfterPasses', path: ['postcopyAfterPasses'] })
  .refine((p) => p.policy?.name !== 'dynamic-rate' || p.policy.minBandwidth <= p.policy.maxBandwidth, { message: 'dynamic-rate needs minBandwidth <= maxBandwidth', path: ['policy'] });

/** Whether postcopy must be enabled at start (postcopy-ram on both ends) for this plan. */
export function planAllowsPostcopy(p: MigrationPlan): boolean {
  return p.mode !== 'precopy' || p.policy?.name === 'postcopy-when-never' || (p.policy?.name === 'deadline' && p.policy.allowPostcopy);
}
export type MigrationPlan = z.output<typeof MigrationPlanSchema>;
export type MigrationPlanInput = z.input<typeof MigrationPlanSchema>;

/** copyStorage: the mirror jobs' progress, summed over the disks. */
export interface StorageFigures {
  copiedBytes: number;
  /** Grows while the guest dirties blocks already copied. */
  totalBytes: number;
  remainingBytes: number;
  /** Copy rate, bytes/s, since the previous sample. */
  rate?: number;
  /** Growth of the total, bytes/s: the guest's disk dirtying behind the mirror. */
  dirtyRate?: number;
  /** Every mirror caught up (BLOCK_JOB_READY). */
  ready: boolean;
  disks: number;
}

/** The guest's own view, from the demo guest's heartbeats (absent for other guests). */
export interface GuestFigures {
  /** Which QEMU the last heartbeat came from. */
  side: 'source' | 'destination';
  seq: number;
  achievedBytesPerS: number;
  /** Longest main-loop stall the guest saw in the last heartbeat period. */
  stallMs: number;
}

/**
 * One sample. Every field but t/elapsedMs/status/phase is optional: a field QEMU did not
 * report is absent, never invented.
 */
export interface MigrationSample {
  /** Wall-clock ms. */
  t: number;
  /** ms since the migration started (plan accepted). */
  elapsedMs: number;
  status: QemuMigrationStatus;
  phase: MigrationPhase;
  /** Completed RAM passes (QEMU's dirty-sync-count). */
  pass?: number;
  transferredBytes?: number;
  remainingBytes?: number;
  totalBytes?: number;
  /** Guest dirtying, bytes/s (QEMU's dirty-pages-rate × page size). */
  dirtyRate?: number;
  /** Transfer rate, bytes/s (QEMU's mbps). */
  transferRate?: number;
  normalPages?: number;
  duplicatePages?: number;
  pageSize?: number;
  precopyBytes?: number;
  downtimeBytes?: number;
  postcopyBytes?: number;
  multifdBytes?: number;
  postcopyRequests?: number;
  /** XBZRLE cache figures; a field the source did not report (e.g. an imported log) is absent. */
  xbzrle?: { cacheSize?: number; bytes: number; pages: number; cacheMiss?: number; cacheMissRate?: number; encodingRate?: number; overflow?: number };
  cpuThrottlePct?: number;
  /** dirty-limit (QEMU 8.1+): time each vCPU was held back per dirty-ring round, µs. */
  dirtyLimitThrottleUs?: number;
  /** dirty-limit: time a vCPU waited on a full dirty ring, µs. */
  dirtyLimitRingFullUs?: number;
  /**
   * Every `query-migrate` field Ferry does not interpret (a newer QEMU's, or one it reports
   * only sometimes), as QEMU sent it: top-level names, and `ram.<name>` for the RAM figures.
   */
  extra?: Record<string, unknown>;
  /** QEMU's own projection. */
  expectedDowntimeMs?: number;
  setupTimeMs?: number;
  totalTimeMs?: number;
  /** Actual downtime, once QEMU reports it. */
  downtimeMs?: number;
  errorDesc?: string;
  guest?: GuestFigures;
  /**
   * Speed of the migration connection when it has data to send (bytes/s): its bytes acked ÷
   * the time its send queue was busy, from the source host's TCP_INFO. The cap paces
   * pre-copy; this is what the uncapped final copy gets.
   */
  linkRate?: number;
  /** copyStorage: disk copy progress. */
  storage?: StorageFigures;
  /** Ferry's own projection at this moment (next to QEMU's expectedDowntimeMs). */
  projection?: Projection;
}

export interface MigrationFinal {
  outcome: 'completed' | 'failed' | 'cancelled';
  reason?: string;
  totalTimeMs?: number;
  setupTimeMs?: number;
  downtimeMs?: number;
  /** Downtime as the guest saw it: its longest main-loop stall across the switchover. */
  guestDowntimeMs?: number;
  /** Downtime as an observer saw it: last heartbeat on the source to first on the destination. */
  observedDowntimeMs?: number;
  transferredBytes?: number;
  precopyBytes?: number;
  downtimeBytes?: number;
  postcopyBytes?: number;
  passes?: number;
  postcopyRequests?: number;
  /** copyStorage: bytes the mirrors copied, time to BLOCK_JOB_READY, where the images went. */
  storage?: { copiedBytes: number; readyMs?: number; disks: { source: string; target: string }[]; removedTargets?: string[] };
  /** transport ssh-tunnel: what went through Ferry's relay (forward = source to destination). */
  tunnel?: { forwardBytes: number; backBytes: number; connections: number };
  /** Demo guest verify on the surviving side, when run. */
  verify?: { ok: boolean; bad: number; stale: number; pages: number };
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Sets `key` only when `value` is defined (fields absent in QEMU stay absent). */
export function put<T extends object, K extends keyof T>(o: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) o[key] = value;
}

/**
 * Normalises a `query-migrate` reply. `phase` is the engine's current phase (status alone
 * cannot tell precopy from stop-and-copy: that takes the source's STOP event).
 */
/** query-migrate members this normaliser reads (the rest go to `extra`). */
const READ_FIELDS = new Set(['status', 'ram', 'xbzrle-cache', 'cpu-throttle-percentage', 'expected-downtime', 'setup-time', 'total-time', 'downtime', 'error-desc', 'dirty-limit-throttle-time-per-round', 'dirty-limit-ring-full-time']);
const READ_RAM_FIELDS = new Set(['page-size', 'dirty-sync-count', 'transferred', 'remaining', 'total', 'dirty-pages-rate', 'mbps', 'normal', 'duplicate', 'precopy-bytes', 'downtime-bytes', 'postcopy-bytes', 'multifd-bytes', 'postcopy-requests']);

export function sampleFromQueryMigrate(raw: Record<string, unknown>, t: number, elapsedMs: number, phase: MigrationPhase): MigrationSample {
  const s: MigrationSample = { t, elapsedMs, status: typeof raw.status === 'string' ? raw.status : 'none', phase };
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) if (!READ_FIELDS.has(k)) extra[k] = v;
  const ram = (raw.ram ?? undefined) as Record<string, unknown> | undefined;
  if (ram && typeof ram === 'object') for (const [k, v] of Object.entries(ram)) if (!READ_RAM_FIELDS.has(k)) extra[`ram.${k}`] = v;
  if (Object.keys(extra).length) s.extra = extra;
  if (ram) {
    const pageSize = num(ram['page-size']);
    put(s, 'pass', num(ram['dirty-sync-count']));
    put(s, 'transferredBytes', num(ram.transferred));
    put(s, 'remainingBytes', num(ram.remaining));
    put(s, 'totalBytes', num(ram.total));
    const dpr = num(ram['dirty-pages-rate']);
    if (dpr !== undefined && pageSize !== undefined) s.dirtyRate = dpr * pageSize;
    const mbps = num(ram.mbps);
    if (mbps !== undefined) s.transferRate = (mbps * 1e6) / 8;
    put(s, 'normalPages', num(ram.normal));
    put(s, 'duplicatePages', num(ram.duplicate));
    put(s, 'pageSize', pageSize);
    put(s, 'precopyBytes', num(ram['precopy-bytes']));
    put(s, 'downtimeBytes', num(ram['downtime-bytes']));
    put(s, 'postcopyBytes', num(ram['postcopy-bytes']));
    put(s, 'multifdBytes', num(ram['multifd-bytes']));
    put(s, 'postcopyRequests', num(ram['postcopy-requests']));
  }
  const x = raw['xbzrle-cache'] as Record<string, unknown> | undefined;
  if (x) {
    const xb: NonNullable<MigrationSample['xbzrle']> = {
      cacheSize: num(x['cache-size']) ?? 0,
      bytes: num(x.bytes) ?? 0,
      pages: num(x.pages) ?? 0,
      cacheMiss: num(x['cache-miss']) ?? 0,
      cacheMissRate: num(x['cache-miss-rate']) ?? 0,
      overflow: num(x.overflow) ?? 0,
    };
    put(xb, 'encodingRate', num(x['encoding-rate']));
    s.xbzrle = xb;
  }
  put(s, 'cpuThrottlePct', num(raw['cpu-throttle-percentage']));
  put(s, 'dirtyLimitThrottleUs', num(raw['dirty-limit-throttle-time-per-round']));
  put(s, 'dirtyLimitRingFullUs', num(raw['dirty-limit-ring-full-time']));
  put(s, 'expectedDowntimeMs', num(raw['expected-downtime']));
  put(s, 'setupTimeMs', num(raw['setup-time']));
  put(s, 'totalTimeMs', num(raw['total-time']));
  put(s, 'downtimeMs', num(raw.downtime));
  if (typeof raw['error-desc'] === 'string') s.errorDesc = raw['error-desc'];
  return s;
}

const PHASE_RANK: Record<MigrationPhase, number> = {
  preflight: 0, reservation: 1, 'storage-copy': 1.5, setup: 2, precopy: 3, 'stop-and-copy': 4, postcopy: 5, 'postcopy-paused': 5,
  commitment: 6, activation: 7, completed: 8, failed: 8, cancelled: 8,
};

/**
 * The phase a QEMU status means, given whether the source has stopped its vCPUs. Phases only
 * move forward (postcopy and postcopy-paused alternate): a reply computed just before QEMU
 * moved on can arrive after the MIGRATION event announcing the move, since both share the
 * monitor stream, and must not take the phase back.
 */
export function phaseForStatus(status: string, sourceStopped: boolean, current: MigrationPhase): MigrationPhase {
  const next = rawPhaseForStatus(status, sourceStopped, current);
  return PHASE_RANK[next] < PHASE_RANK[current] ? current : next;
}

function rawPhaseForStatus(status: string, sourceStopped: boolean, current: MigrationPhase): MigrationPhase {
  switch (status) {
    case 'setup':
      return 'setup';
    case 'active':
      return sourceStopped ? 'stop-and-copy' : 'precopy';
    case 'pre-switchover':
    case 'device':
      return 'stop-and-copy';
    case 'postcopy-active':
    case 'postcopy-recover':
    case 'postcopy-device': // 10.2: the device state still in flight after the switch
      return 'postcopy';
    case 'postcopy-paused':
    case 'postcopy-recover-setup': // 9.1: a recovery being set up; the stream is not flowing yet
      return 'postcopy-paused';
    case 'completed':
      return TERMINAL_PHASES.includes(current) || current === 'activation' ? current : 'commitment';
    case 'failed':
      return 'failed';
    case 'cancelling':
      return current; // not over until QEMU says cancelled (or failed)
    case 'cancelled':
      return 'cancelled';
    default:
      return current; // a status this Ferry does not know: the sample keeps it, the phase stays
  }
}

/** Statuses in which no migration runs; any other (known or newer) means one does. */
export const IDLE_MIGRATION_STATUSES: readonly string[] = ['none', 'completed', 'failed', 'cancelled'];
export function migrationRunning(status: string | undefined): boolean {
  return status !== undefined && !IDLE_MIGRATION_STATUSES.includes(status);
}
