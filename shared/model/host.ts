import { z } from 'zod';

/** A host id is also a directory and file name: keep it boring. */
export const HostIdSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'host id: 1-63 characters of a-z, 0-9, ".", "_", "-", starting with a letter or digit');

export const SshHostSettingsSchema = z.object({
  /** An ssh_config alias, a host name or an address. */
  host: z.string().min(1, 'SSH host is required').max(255).refine((s) => !/[\s\0]/.test(s) && !s.startsWith('-'), 'SSH host must not contain spaces or start with "-"'),
  user: z.string().min(1).max(64).regex(/^[A-Za-z0-9._][A-Za-z0-9._-]*$/, 'user: letters, digits, ".", "_", "-"').optional(),
  port: z.number().int().min(1).max(65535).optional(),
  identityFile: z.string().min(1).max(4096).optional(),
  /** `[user@]host[:port]`, comma-separated for several hops. */
  proxyJump: z.string().min(1).max(1024).optional(),
  /**
   * Session channels (exec, sftp) Ferry holds at once on this connection; default 8, below
   * OpenSSH's MaxSessions 10. Lower it for a server configured lower.
   */
  maxSessions: z.number().int().min(1, 'maxSessions: at least 1').max(64).optional(),
});
export type SshHostSettings = z.infer<typeof SshHostSettingsSchema>;

/**
 * Which QEMU a host runs VMs with, when not the `qemu-system-x86_64` on its PATH (e.g. a
 * newer build beside the distribution's). `dataDir` is its firmware/ROM folder (`-L`).
 */
export const QemuInstallSchema = z.object({
  binary: z.string().min(1).max(4096).refine((s) => !/[\s\0]/.test(s) && !s.startsWith('-'), 'qemu.binary: a path or command name without spaces, not starting with "-"'),
  dataDir: z.string().startsWith('/', 'qemu.dataDir must be an absolute path').max(4096).optional(),
  /** qemu-img of the same build, for storage copies (default `qemu-img`). */
  img: z.string().min(1).max(4096).refine((s) => !/[\s\0]/.test(s) && !s.startsWith('-'), 'qemu.img: a path or command name without spaces').optional(),
}).strict();
export type QemuInstall = z.infer<typeof QemuInstallSchema>;

export const HostConfigSchema = z.object({
  id: HostIdSchema,
  /** Display name; defaults to the id. */
  name: z.string().min(1).max(100).optional(),
  transport: z.discriminatedUnion('kind', [
    z.object({
      kind: z.literal('local'),
      /** Run the host's commands inside this network namespace (the netns lab). */
      netns: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,30}$/, 'netns: a-z, 0-9, "_", "-"').optional(),
      /**
       * Run the host's commands in the mount namespace of the process whose pid this file
       * holds, and open its unix sockets there (the libvirt lab: one daemon per namespace).
       */
      mountNsPidFile: z.string().startsWith('/', 'mountNsPidFile must be an absolute path').optional(),
    }),
    z.object({ kind: z.literal('ssh'), ssh: SshHostSettingsSchema }),
  ]),
  /** Where Ferry keeps its per-VM runtime dirs (qmp.sock, serial.sock, pid, argv.json). */
  runtimeDir: z.string().startsWith('/', 'runtimeDir must be an absolute path').optional(),
  /** Address of this host that the *other* host reaches for the migration stream. */
  migrationAddress: z.string().min(1).max(255).regex(/^[A-Za-z0-9.:_-]+$/, 'migrationAddress: a host name or IP address').optional(),
  /**
   * Where this host keeps disk images. A storage migration puts an image found under the
   * source's imagesDir at the same relative path under the destination's (else: same path).
   */
  imagesDir: z.string().startsWith('/', 'imagesDir must be an absolute path').optional(),
  /** Where saved VM states live (`ferry save`); default /var/lib/ferry/states. */
  statesDir: z.string().startsWith('/', 'statesDir must be an absolute path').optional(),
  /** The QEMU this host starts VMs with (default: `qemu-system-x86_64` on its PATH). */
  qemu: QemuInstallSchema.optional(),
  /** Extra globs of QMP sockets of VMs Ferry did not start. */
  qmpSocketGlobs: z.array(z.string().startsWith('/')).optional(),
  /**
   * The host's VMs are libvirt's: Ferry lists its domains and migrates them through libvirt
   * (managed migration), reaching the daemon's unix socket through the same transport.
   * `socket` defaults to virtqemud's (/run/libvirt/virtqemud-sock), then libvirtd's.
   */
  libvirt: z.object({ socket: z.string().startsWith('/', 'libvirt socket must be an absolute path').optional() }).strict().optional(),
});
export type HostConfig = z.infer<typeof HostConfigSchema>;

export const HostConnectionStateSchema = z.enum(['disconnected', 'connecting', 'connected', 'failed']);
export type HostConnectionState = z.infer<typeof HostConnectionStateSchema>;

export const DEFAULT_RUNTIME_DIR = '/run/ferry';
export const DEFAULT_STATES_DIR = '/var/lib/ferry/states';
