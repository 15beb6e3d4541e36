import { z } from 'zod';

export const VmNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'VM name: 1-63 characters of letters, digits, ".", "_", "-", starting with a letter or digit');

/** The kinds of manager a VM can have on its host; each has one hypervisor driver. */
export const VM_MANAGERS = ['ferry', 'qemu', 'libvirt'] as const;
export type VmManager = (typeof VM_MANAGERS)[number];

/**
 * A libvirt domain's name, by libvirt's own rule (its QEMU driver): not empty, no "/", no
 * newline. Spaces, quotes, backslashes and any Unicode are allowed; Ferry handles them as
 * data (domains are addressed by UUID in every virsh command, names only ever read).
 */
export const LibvirtDomainNameSchema = z
  .string()
  .min(1, 'domain name: empty')
  .max(1024, 'domain name: longer than 1024 characters')
  .refine((s) => !s.includes('/'), 'domain name: libvirt does not allow "/"')
  .refine((s) => !s.includes('\n') && !s.includes('\0'), 'domain name: libvirt does not allow a newline or NUL');

/**
 * What a plan or a request names a VM by: a Ferry/QEMU VM name (checked by VmNameSchema where
 * its runtime directory is made) or a libvirt domain name (libvirt's rule above).
 */
export const VmRefSchema = LibvirtDomainNameSchema;

/** A libvirt domain as the board shows it. */
export const LibvirtDomainInfoSchema = z.object({
  uuid: z.string(),
  /** Defined (survives a shutdown) or transient. */
  persistent: z.boolean(),
  /** libvirt's state word: running, paused, shut off, crashed, ... */
  state: z.string(),
  /** libvirt's domain id while it runs. */
  id: z.number().optional(),
  autostart: z.boolean().optional(),
});
export type LibvirtDomainInfo = z.infer<typeof LibvirtDomainInfoSchema>;

export const VmInfoSchema = z.object({
  hostId: z.string(),
  name: z.string(),
  /** QMP socket Ferry talks to. */
  qmpSocket: z.string(),
  /** QEMU run state from query-status, or 'unreachable' when QMP did not answer. */
  runState: z.string(),
  /**
   * True when Ferry can migrate it: it knows the VM's launch argv (its own record for a VM it
   * started, the process's command line for a QEMU it adopts), or its manager migrates it.
   */
  managed: z.boolean(),
  /**
   * Who started the VM and keeps it: `ferry` (Ferry's launcher, a runtime dir with argv.json),
   * `qemu` (a QEMU started by a script or a unit, found through the host's QMP socket globs),
   * `libvirt` (a libvirt domain). Absent in payloads from before drivers.
   */
  manager: z.enum(VM_MANAGERS).optional(),
  memoryMiB: z.number().optional(),
  vcpus: z.number().optional(),
  pid: z.number().optional(),
  /** Set when the VM is a libvirt domain (qmpSocket is then empty: Ferry never talks to libvirt's monitor). */
  libvirt: LibvirtDomainInfoSchema.optional(),
});
export type VmInfo = z.infer<typeof VmInfoSchema>;
