import { z } from 'zod';

export const PreflightCheckSchema = z.object({
  id: z.string(),
  title: z.string(),
  status: z.enum(['pass', 'warn', 'fail']),
  reason: z.string(),
  fix: z.string().optional(),
});
export type PreflightCheck = z.infer<typeof PreflightCheckSchema>;

export const PreflightResultSchema = z.object({ ok: z.boolean(), checks: z.array(PreflightCheckSchema), tookMs: z.number() });
export type PreflightResult = z.infer<typeof PreflightResultSchema>;
