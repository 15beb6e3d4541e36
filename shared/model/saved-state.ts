/**
 * A VM's state parked in a file on its host (QEMU's migration stream written through an
 * `exec:` pipeline), and the sidecar that describes it. The sidecar is what makes a state
 * file restorable and checkable: the argv to start the same VM again, and the size and
 * sha256 of the file as written, so that a truncated or corrupted file is refused before
 * any QEMU is started.
 */
import { z } from 'zod';
import { HostIdSchema } from './host';
import { VmNameSchema } from './vm';

export const STATE_FORMAT = 'ferry-vm-state';
export const STATE_VERSION = 1;
/** The sidecar sits next to the state file: `<file>.ferry.json`. */
export const SIDECAR_SUFFIX = '.ferry.json';

export const CompressionSchema = z.enum(['none', 'gzip', 'zstd']);
export type Compression = z.infer<typeof CompressionSchema>;

/** gpg: a key id, fingerprint or user id of a public key in the host's keyring; age: an `age1…` recipient. */
export const RecipientSchema = z.string().min(1).max(512).refine((s) => !/[\0\n\r]/.test(s) && !s.startsWith('-'), 'recipient must be one line and must not start with "-"');

export const EncryptionSchema = z.object({ kind: z.enum(['gpg', 'age']), recipient: RecipientSchema });
export type Encryption = z.infer<typeof EncryptionSchema>;

/** A path on the host: absolute, or relative to the host's states directory. */
export const StatePathSchema = z.string().min(1).max(4096).refine((s) => !/[\0\n\r]/.test(s), 'file name must be one line')
  .refine((s) => !s.endsWith(SIDECAR_SUFFIX), `that is a sidecar (${SIDECAR_SUFFIX}); name the state file itself`);

export const SaveRequestSchema = z.object({
  hostId: HostIdSchema,
  vm: VmNameSchema,
  file: StatePathSchema,
  compress: CompressionSchema.optional(),
  /** `age1…` means age; anything else is a gpg recipient. */
  encryptTo: RecipientSchema.optional(),
  /** Resume the VM after saving (a checkpoint) instead of stopping it (parked). */
  keepRunning: z.boolean().optional(),
  /**
   * How the state is laid out: `stream` = the migration stream through an `exec:` pipeline
   * (any QEMU; needed for compression and encryption); `mapped-ram` = QEMU 9.0+ writes the
   * file itself (`file:` URI), every RAM page at a fixed offset, with multifd threads;
   * `auto` (default) = mapped-ram where the QEMU's schema has it and nothing else is asked.
   */
  layout: z.enum(['auto', 'stream', 'mapped-ram']).optional(),
  sampleIntervalMs: z.number().int().min(20).max(10_000).optional(),
}).strict();
export type SaveRequest = z.output<typeof SaveRequestSchema>;

export const RestoreRequestSchema = z.object({
  hostId: HostIdSchema,
  file: StatePathSchema,
  /** Start it under another name (default: the name it was saved under). */
  name: VmNameSchema.optional(),
  /** age only: the identity file on the host that decrypts it. */
  identityFile: z.string().startsWith('/', 'identityFile must be an absolute path').optional(),
  sampleIntervalMs: z.number().int().min(20).max(10_000).optional(),
}).strict();
export type RestoreRequest = z.output<typeof RestoreRequestSchema>;

export const SavedStateMetaSchema = z.object({
  format: z.literal(STATE_FORMAT),
  version: z.literal(STATE_VERSION),
  vm: VmNameSchema,
  hostId: z.string(),
  /** Absolute path of the state file on its host. */
  file: z.string(),
  createdAt: z.number(),
  argv: z.array(z.string()),
  /** The launcher's spec (vm-launcher's VmSpec), used to start the VM again. */
  spec: z.record(z.string(), z.unknown()),
  accel: z.enum(['kvm', 'tcg']),
  qemuVersion: z.string().optional(),
  /** Whether the guest ran when the save began: a restore resumes it. */
  wasRunning: z.boolean(),
  compression: CompressionSchema,
  encryption: EncryptionSchema.optional(),
  /** Size and sha256 of the file as written (after compression and encryption). */
  sizeBytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Bytes of migration stream QEMU produced (before compression). */
  streamBytes: z.number().optional(),
  /** `mapped-ram`: written by QEMU itself with fixed offsets (restore needs a QEMU with mapped-ram). Absent: a stream. */
  layout: z.enum(['stream', 'mapped-ram']).optional(),
  multifdChannels: z.number().int().min(1).optional(),
  saveMs: z.number().optional(),
  timeline: z.string().optional(),
});
export type SavedStateMeta = z.infer<typeof SavedStateMetaSchema>;

export const SavedStateEntrySchema = z.object({
  file: z.string(),
  vm: z.string(),
  sizeBytes: z.number(),
  createdAt: z.number(),
  compression: CompressionSchema,
  encryption: z.enum(['gpg', 'age']).optional(),
  /** The file is there with the size the sidecar gives (sha256 is checked at restore). */
  complete: z.boolean(),
});
export type SavedStateEntry = z.infer<typeof SavedStateEntrySchema>;

export const StateResultSchema = z.object({
  id: z.string(),
  op: z.enum(['save', 'restore']),
  hostId: z.string(),
  vm: z.string(),
  file: z.string(),
  timeline: z.string(),
  tookMs: z.number(),
  sizeBytes: z.number(),
  streamBytes: z.number().optional(),
  compression: CompressionSchema,
  encryption: z.enum(['gpg', 'age']).optional(),
  layout: z.enum(['stream', 'mapped-ram']).optional(),
  /** After a save: whether the VM still runs (keepRunning); after a restore: its run state. */
  runState: z.string(),
});
export type StateResult = z.infer<typeof StateResultSchema>;

export function encryptionFor(recipient: string | undefined): Encryption | undefined {
  if (recipient === undefined) return undefined;
  return { kind: /^age1[0-9a-z]+$/.test(recipient) ? 'age' : 'gpg', recipient };
}
