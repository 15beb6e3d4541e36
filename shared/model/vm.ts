import { z } from 'zod';

export const VmNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'VM name: 1-63 characters of letters, digits, ".", "_", "-", starting with a letter or digit');

export const VmInfoSchema = z.object({
  hostId: z.string(),
  name: z.string(),
  /** QMP socket Ferry talks to. */
  qmpSocket: z.string(),
  /** QEMU run state from query-status, or 'unreachable' when QMP did not answer. */
  runState: z.string(),
  /** True when Ferry knows the VM's launch argv (it started it): it can be migrated. */
  managed: z.boolean(),
  memoryMiB: z.number().optional(),
  vcpus: z.number().optional(),
  pid: z.number().optional(),
});
export type VmInfo = z.infer<typeof VmInfoSchema>;
