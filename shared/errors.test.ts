import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { FerryException, toFerryError } from './errors';

describe('toFerryError', () => {
  it('turns a schema refusal into one INVALID_REQUEST line naming each bad field', () => {
    const r = z.object({ vm: z.string().regex(/^[a-z]+$/, 'VM name: letters'), n: z.number() }).safeParse({ vm: 'bad name!', n: 'x' });
    expect(r.success).toBe(false);
    const fe = toFerryError(r.error);
    expect(fe.code).toBe('INVALID_REQUEST');
    expect(fe.message).toMatch(/^vm: VM name: letters; n: .+$/);
    expect(fe.message).not.toContain('\n');
  });

  it('keeps Ferry errors and labels anything else INTERNAL', () => {
    expect(toFerryError(new FerryException('HOST_BUSY', 'busy'))).toEqual({ code: 'HOST_BUSY', message: 'busy' });
    expect(toFerryError(new Error('boom'))).toEqual({ code: 'INTERNAL', message: 'boom' });
    expect(toFerryError('x')).toEqual({ code: 'INTERNAL', message: 'x' });
  });
});
