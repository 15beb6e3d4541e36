import { describe, expect, it } from 'vitest';
import { ChannelBudget } from './channel-budget';
import { FerryException } from '../../../shared/errors';

describe('ChannelBudget', () => {
  it('hands out at most `limit` slots and queues the rest in order', async () => {
    const b = new ChannelBudget(2, 'hv1');
    const r1 = await b.acquire('a');
    const r2 = await b.acquire('b');
    const order: string[] = [];
    const c = b.acquire('c').then((r) => (order.push('c'), r));
    const d = b.acquire('d').then((r) => (order.push('d'), r));
    await new Promise((r) => setTimeout(r, 5));
    expect(b.held).toBe(2);
    expect(b.queued).toBe(2);
    r1();
    r1(); // a second release of the same slot frees nothing more
    const rc = await c;
    expect(order).toEqual(['c']);
    expect(b.held).toBe(2);
    r2();
    const rd = await d;
    expect(order).toEqual(['c', 'd']);
    rc();
    rd();
    expect(b.held).toBe(0);
    expect(b.peak).toBe(2);
  });

  it('learns a lower limit from a refusal, and only when other channels will free', async () => {
    const b = new ChannelBudget(8, 'hv1');
    const held = await Promise.all([b.acquire('1'), b.acquire('2'), b.acquire('3')]);
    expect(b.refused(3)).toBe(true);
    expect(b.effectiveLimit).toBe(3);
    let got = false;
    const next = b.acquire('4').then((r) => ((got = true), r));
    await new Promise((r) => setTimeout(r, 5));
    expect(got).toBe(false);
    held[0]!();
    (await next)();
    expect(got).toBe(true);
    expect(b.refused(0)).toBe(false);
    expect(b.refusals).toBe(2);
  });

  it('a wait that outlasts its time ends with HOST_BUSY naming what waited; a drain fails every waiter', async () => {
    const b = new ChannelBudget(1, 'root@hv2:22');
    await b.acquire('sftp');
    const e = await b.acquire('exec qemu-system-x86_64', 20).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FerryException);
    expect((e as FerryException).code).toBe('HOST_BUSY');
    expect((e as FerryException).message).toMatch(/root@hv2:22: host busy: .*exec qemu-system-x86_64/);
    const w = b.acquire('late');
    b.drain(new Error('gone'));
    await expect(w).rejects.toThrow('gone');
    expect(() => new ChannelBudget(0)).toThrow(/positive integer/);
  });
});
