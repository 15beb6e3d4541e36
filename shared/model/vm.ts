import { z } from 'zod';

export const VmNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'VM name: 1-63 characters of letters, digits, ".", "_", "-", starting with a letter or digit');

/** The kinds of manager a VM can have on its host; each has one hypervisor driver. */
export const VM_MANAGERS = ['ferry', 'qemu', 'libvirt'] as const;
export type VmManager = (typeof VM_MANAGERS)[number];

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
});
export type VmInfo = z.infer<typeof VmInfoSchema>;
