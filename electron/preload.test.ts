import { describe, expect, it, vi } from 'vitest';

const exposed: Record<string, unknown> = {};
const listeners = new Map<string, (e: unknown, ...a: unknown[]) => void>();
const invoked: unknown[][] = [];

vi.mock('electron', () => ({
  contextBridge: { exposeInMainWorld: (name: string, api: unknown) => void (exposed[name] = api) },
  ipcRenderer: {
    invoke: (...a: unknown[]) => {
      invoked.push(a);
      return Promise.resolve({ ok: true, value: 'pong' });
    },
    on: (ch: string, l: (e: unknown, ...a: unknown[]) => void) => void listeners.set(ch, l),
    removeListener: (ch: string) => void listeners.delete(ch),
  },
}));

describe('preload', () => {
  it('exposes exactly window.ferry with invoke and on, and never ipcRenderer', async () => {
    await import('./preload');
    expect(Object.keys(exposed)).toEqual(['ferry']);
    const api = exposed.ferry as Record<string, unknown>;
    expect(Object.keys(api).sort()).toEqual(['invoke', 'on']);
    expect(Object.values(api).every((v) => typeof v === 'function')).toBe(true);
    await expect((api.invoke as (c: string, r: unknown) => Promise<unknown>)('hosts:list', {})).resolves.toEqual({ ok: true, value: 'pong' });
    expect(invoked).toEqual([['ferry:invoke', 'hosts:list', {}]]);
  });

  it('on() filters by channel and returns an unsubscribe', async () => {
    const api = exposed.ferry as { on: (c: string, l: (p: unknown) => void) => () => void };
    const got: unknown[] = [];
    const off = api.on('migration:sample', (p) => got.push(p));
    const l = listeners.get('ferry:event')!;
    l({}, { channel: 'migration:sample', payload: 1 });
    l({}, { channel: 'hosts:state', payload: 2 });
    expect(got).toEqual([1]);
    off();
    expect(listeners.has('ferry:event')).toBe(false);
  });
});
