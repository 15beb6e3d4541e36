/**
 * The single source of truth for what crosses the process boundary. Both adapters
 * (Electron IPC and the browser-mode WebSocket) validate every request against `invoke`,
 * and every event against `events`. Adding a feature = one entry here, one method on the
 * console service, one place in the renderer that calls it.
 */
import { z } from 'zod';
import { HostConfigSchema, HostConnectionStateSchema, HostIdSchema } from './model/host';
import { VmInfoSchema } from './model/vm';
import { MIGRATION_PHASES, MigrationPlanSchema } from './model/migration';
import { PreflightResultSchema } from './model/preflight';
import { RestoreRequestSchema, SaveRequestSchema, SavedStateEntrySchema, StateResultSchema } from './model/saved-state';
import { LiveRecordSchema } from './model/timeline';
import { ERROR_CODES } from './errors';
import type { Result } from './result';

export const FerryErrorSchema = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export const HostInfoSchema = z.object({
  config: HostConfigSchema,
  state: HostConnectionStateSchema,
  /** Label of the transport in force, e.g. `root@hv1:22`. */
  label: z.string(),
  /** The last failure, kept until the next successful connect. */
  lastError: FerryErrorSchema.optional(),
  /** Read from the host while connected (refreshed every few seconds). */
  facts: z.object({
    qemuVersion: z.string().optional(),
    /** The binary the host runs VMs with (its config's, else qemu-system-x86_64). */
    qemuBinary: z.string().optional(),
    /** Newer migration features its QEMU's schema has (dirty-limit, switchover-ack, mapped-ram, ...): offered only where listed. */
    qemuFeatures: z.array(z.string()).optional(),
    memAvailableMiB: z.number().optional(),
    kvm: z.boolean().optional(),
    /** A libvirt host: its daemon's version. */
    libvirtVersion: z.string().optional(),
    /** Why some facts could not be read just now (e.g. "host busy"): shown instead of a guess. */
    unavailable: z.string().optional(),
    /** What switchovers from this host taught Ferry, per destination (kept in Ferry's config dir, shared by console and CLI). */
    switchovers: z.array(z.object({
      to: z.string(),
      /** Switchovers learned from (on the link as last measured). */
      count: z.number(),
      /** Speed of the final copy (bytes/s). */
      finalCopyRate: z.number().optional(),
      /** Fixed cost of a switchover besides RAM (ms). */
      overheadMs: z.number().optional(),
      /** The migration connection's speed last measured (bytes/s). */
      linkRate: z.number().optional(),
      lastAt: z.number().optional(),
    })).optional(),
  }).optional(),
});
export type HostInfo = z.infer<typeof HostInfoSchema>;

const Empty = z.object({}).strict();

const PhaseSchema = z.enum(MIGRATION_PHASES);
/** Samples and final figures are produced by the core, not parsed from users: checked loosely. */
export const MigrationSampleSchema = z.object({ t: z.number(), elapsedMs: z.number(), status: z.string(), phase: PhaseSchema }).catchall(z.unknown());
export const MigrationFinalSchema = z.object({ outcome: z.enum(['completed', 'failed', 'cancelled']) }).catchall(z.unknown());

/** A timeline record other than a sample (phase, control, policy, event, gap, note, preflight, end): produced by the core, checked loosely. */
export const MigrationRecordSchema = z.object({ type: z.string(), t: z.number() }).catchall(z.unknown());

/** A bare file name in the timeline directory: no path, no dot-files. */
export const TimelineNameSchema = z.string().min(1).max(255).regex(/^[A-Za-z0-9_][A-Za-z0-9_.+-]*\.jsonl$/, 'a timeline file name (letters, digits, . _ + -, ending in .jsonl), no directories');

export const TimelineFileSchema = z.object({
  name: z.string(),
  bytes: z.number(),
  modifiedAt: z.number(),
  migrationId: z.string().optional(),
  vm: z.string().optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  outcome: z.string().optional(),
});
export type TimelineFile = z.infer<typeof TimelineFileSchema>;

export const EvacuationSummarySchema = z.object({
  id: z.string(),
  from: z.string(),
  startedAt: z.number(),
  parallel: z.number(),
  deadlineMs: z.number().optional(),
  items: z.array(z.object({
    vm: z.string(), to: z.string(), state: z.enum(['queued', 'running', 'completed', 'failed', 'cancelled']),
    migrationId: z.string().optional(), reason: z.string().optional(), downtimeMs: z.number().optional(),
  })),
  done: z.boolean(),
});
export type EvacuationSummary = z.infer<typeof EvacuationSummarySchema>;

/**
 * The controls a running migration takes: defined here once, for the engine, the policies,
 * the CLI and the console. Which of them a migration offers is its driver's to say (the
 * summary's `controls`); the console shows only those.
 */
export const MigrationControlSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('cancel') }),
  z.object({ action: z.literal('set-bandwidth'), bytesPerSecond: z.number().positive('bandwidth must be positive') }),
  z.object({ action: z.literal('set-downtime'), ms: z.number().int().min(1, 'downtime limit must be at least 1 ms') }),
  z.object({ action: z.literal('postcopy') }),
  z.object({ action: z.literal('stop-vm') }),
  z.object({ action: z.literal('pause-postcopy') }),
  z.object({ action: z.literal('recover') }),
  z.object({ action: z.literal('continue') }),
]);
export type MigrationControl = z.output<typeof MigrationControlSchema>;
export type MigrationControlAction = MigrationControl['action'];
/** Every control's action name, in the schema's order. */
export const MIGRATION_CONTROL_ACTIONS = MigrationControlSchema.options.map((o) => o.shape.action.value) as [MigrationControlAction, ...MigrationControlAction[]];

export const MigrationSummarySchema = z.object({
  id: z.string(),
  plan: z.record(z.string(), z.unknown()),
  transport: z.enum(['tcp', 'ssh-tunnel']).optional(),
  phase: PhaseSchema,
  startedAt: z.number(),
  timeline: z.string(),
  last: MigrationSampleSchema.optional(),
  final: MigrationFinalSchema.optional(),
  /** The hypervisor driver carrying it out (`qmp`, `libvirt`). */
  driver: z.string().optional(),
  /** The controls this migration's driver can apply: the console offers these and no others. */
  controls: z.array(z.enum(MIGRATION_CONTROL_ACTIONS)).optional(),
});
export type MigrationSummaryPayload = z.infer<typeof MigrationSummarySchema>;

/** Everything a console that joins late needs to draw a migration as one that watched it from the start. */
export const MigrationHistorySchema = z.object({
  summary: MigrationSummarySchema,
  samples: z.array(MigrationSampleSchema),
  records: z.array(MigrationRecordSchema),
  /** memory: the running engine's; timeline: read from its file (an earlier process's migration). */
  source: z.enum(['memory', 'timeline']),
});
export type MigrationHistory = z.infer<typeof MigrationHistorySchema>;

const HostRef = z.object({ id: HostIdSchema }).strict();

export const invoke = {
  'hosts:list': { request: Empty, response: z.array(HostInfoSchema) },
  'hosts:add': { request: HostConfigSchema, response: HostInfoSchema },
  /** New settings for a host (same id): its connection is dropped and made again with them. */
  'hosts:update': { request: HostConfigSchema, response: HostInfoSchema },
  'hosts:remove': { request: HostRef, response: Empty },
  'hosts:connect': {
    // The passphrase is held in memory for this one attempt and never written anywhere.
    // remember: also keep it encrypted by the OS keychain (desktop app only; refused elsewhere).
    request: z.object({ id: HostIdSchema, passphrase: z.string().max(1024).optional(), remember: z.boolean().optional() }).strict(),
    response: HostInfoSchema,
  },
  'hosts:trust-key': {
    // The fingerprint the user confirmed: trusted only if it is the one the host presented.
    request: z.object({ id: HostIdSchema, fingerprint: z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'fingerprint: SHA256:<43 base64 characters>') }).strict(),
    response: HostInfoSchema,
  },
  'vms:list': { request: z.object({ hostId: HostIdSchema }).strict(), response: z.array(VmInfoSchema) },
  'migrations:start': { request: MigrationPlanSchema, response: MigrationSummarySchema },
  'migrations:control': {
    // who: for the timeline, when another process acts (`ferry control` in another shell).
    request: z.object({ id: z.string().min(1), control: MigrationControlSchema, who: z.string().max(100).optional() }).strict(),
    response: Empty,
  },
  'migrations:list': { request: Empty, response: z.array(MigrationSummarySchema) },
  /** A migration's whole history so far (samples, phases, events), for a console that joins late. */
  'migrations:history': { request: z.object({ id: z.string().min(1).max(200) }).strict(), response: MigrationHistorySchema },
  'migrations:preflight': { request: MigrationPlanSchema, response: PreflightResultSchema },
  'lab:status': { request: Empty, response: z.object({ running: z.boolean(), vms: z.number(), netns: z.boolean() }) },
  'lab:up': {
    // qemuB: lab-b starts its VMs with this QEMU binary (on the console's machine; its firmware found beside it).
    request: z.object({ accel: z.enum(['auto', 'kvm', 'tcg']).optional(), qemuB: z.string().startsWith('/', 'qemuB: an absolute path').optional() }).strict(),
    response: z.object({ bootMs: z.number(), started: z.boolean() }),
  },
  'lab:down': { request: Empty, response: z.object({ stopped: z.array(z.string()) }) },
  /** The trainer's demo: the same workload under precopy, then postcopy; resolves when both have ended. */
  'lab:demo': {
    // compare converge: auto-converge vs dirty-limit (needs QEMU 8.1+ and KVM; a lab-b on a newer QEMU is used, see lab-demo.ts)
    request: z.object({
      bandwidthMBps: z.number().min(5).max(10_000).optional(), workingSetMiB: z.number().int().min(8).max(400).optional(), dirtyMiBps: z.number().int().min(1).max(2000).optional(),
      compare: z.enum(['postcopy', 'converge']).optional(), qemuB: z.string().startsWith('/', 'qemuB: an absolute path').optional(),
    }).strict(),
    response: z.object({ runs: z.array(z.object({ label: z.string(), id: z.string(), timeline: z.string(), outcome: z.string(), overlay: z.boolean().optional() })), notes: z.array(z.string()).optional() }),
  },
  /** Whether key passphrases can be remembered here (encrypted by the OS keychain), and if not why. */
  /** "Copy diagnostics": this Ferry's hosts, sessions, migrations and last log lines, as text (no secrets). */
  'diagnostics:get': { request: Empty, response: z.object({ text: z.string(), logFile: z.string().optional() }) },
  'secrets:status': { request: Empty, response: z.object({ available: z.boolean(), reason: z.string().optional() }) },
  /** Timelines recorded by this console (its timeline directory), newest first. */
  'timelines:list': { request: Empty, response: z.array(TimelineFileSchema) },
  /** One recorded timeline's text, by its name in the timeline directory. */
  'timelines:read': { request: z.object({ name: TimelineNameSchema }).strict(), response: z.object({ name: z.string(), text: z.string() }) },
  'guest:command': {
    request: z.object({ hostId: HostIdSchema, vm: z.string().min(1).max(63), command: z.string().min(1).max(64).regex(/^[a-z]( [0-9a-z]+)?$/, 'a guest command: a letter and an optional value, e.g. "r 200"') }).strict(),
    response: z.object({ reply: z.string() }),
  },
  'evacuations:start': {
    request: z.object({
      from: HostIdSchema,
      to: z.array(HostIdSchema).min(1, 'at least one destination host'),
      parallel: z.number().int().min(1).max(16).optional(),
      deadlineMs: z.number().int().min(1000).optional(),
      defaults: z.record(z.string(), z.unknown()).optional(),
    }).strict(),
    response: EvacuationSummarySchema,
  },
  'evacuations:list': { request: Empty, response: z.array(EvacuationSummarySchema) },
  'migrations:attach': {
    request: z.object({ hostId: HostIdSchema, vm: z.string().min(1).max(63), qmpSocket: z.string().startsWith('/').optional() }).strict(),
    response: MigrationSummarySchema,
  },
  'states:list': { request: z.object({ hostId: HostIdSchema }).strict(), response: z.array(SavedStateEntrySchema) },
  /** Resolves when the state is on disk (progress arrives as `state:sample` events). */
  'states:save': { request: SaveRequestSchema, response: StateResultSchema },
  'states:restore': { request: RestoreRequestSchema, response: StateResultSchema },
} as const;

export const events = {
  'hosts:state': z.object({
    hostId: z.string(),
    state: HostConnectionStateSchema,
    reason: z.string().optional(),
    error: FerryErrorSchema.optional(),
  }),
  'migration:sample': z.object({ id: z.string(), sample: MigrationSampleSchema }),
  /** Sent before the migration's first phase change or sample, so a console sees all of them. */
  'migration:started': MigrationSummarySchema,
  'migration:phase': z.object({ id: z.string(), phase: PhaseSchema, from: PhaseSchema, reason: z.string().optional(), t: z.number().optional() }),
  'migration:ended': z.object({ id: z.string(), final: MigrationFinalSchema }),
  /** A hypervisor event, sampling gap, note or policy decision, as the migration's timeline records it. */
  'migration:record': z.object({ id: z.string(), record: LiveRecordSchema }),
  /** A save or restore's query-migrate sample (the same shape as a migration's). */
  'state:sample': z.object({ id: z.string(), op: z.enum(['save', 'restore']), sample: MigrationSampleSchema }),
  'evacuation:progress': EvacuationSummarySchema,
  /** From the desktop shell's menu (never from the service): an action for the renderer. */
  'ui:command': z.object({ command: z.enum(['toggle-theme', 'export-report', 'run-demo', 'start-lab']) }),
  /** From the desktop shell: a timeline file the user picked in the native open dialog. */
  'ui:open-timeline': z.object({ name: z.string(), text: z.string() }),
} as const;

export type InvokeMap = typeof invoke;
export type InvokeChannel = keyof InvokeMap;
export type InvokeRequest<C extends InvokeChannel> = z.input<InvokeMap[C]['request']>;
export type InvokeResponse<C extends InvokeChannel> = z.output<InvokeMap[C]['response']>;
export type EventMap = typeof events;
export type EventChannel = keyof EventMap;
export type EventPayload<C extends EventChannel> = z.output<EventMap[C]>;

export const INVOKE_CHANNELS = Object.keys(invoke) as InvokeChannel[];
export const EVENT_CHANNELS = Object.keys(events) as EventChannel[];

export function isInvokeChannel(s: unknown): s is InvokeChannel {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(invoke, s);
}

export function isEventChannel(s: unknown): s is EventChannel {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(events, s);
}

/** What `window.ferry` offers the renderer, in Electron and in the browser alike. */
export interface FerryApi {
  invoke<C extends InvokeChannel>(channel: C, request: InvokeRequest<C>): Promise<Result<InvokeResponse<C>>>;
  on<C extends EventChannel>(channel: C, listener: (payload: EventPayload<C>) => void): () => void;
}

/** Formats a zod failure as one line naming each bad field. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'request'}: ${i.message}`).join('; ');
}
