import { describe, expect, it } from 'vitest';
import { installIpcBridge, INVOKE_CHANNEL, EVENT_CHANNEL } from './ipc-bridge';
import type { IpcMainLike, InvokeEventLike } from './ipc-bridge';
import { ConsoleService } from './core/console-service';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

function fakeIpcMain() {
  const handlers = new Map<string, (e: InvokeEventLike, ...a: unknown[]) => unknown>();
  const ipc: IpcMainLike = {
    handle: (ch, l) => void handlers.set(ch, l),
    removeHandler: (ch) => void handlers.delete(ch),
  };
  return { ipc, call: (event: InvokeEventLike, ...args: unknown[]) => Promise.resolve(handlers.get(INVOKE_CHANNEL)!(event, ...args)), handlers };
}

describe('the Electron IPC bridge (over a stand-in ipcMain)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-ipc-'));
  const service = new ConsoleService({ configDir: dir, builtinHosts: [{ id: 'lab-a', transport: { kind: 'local' }, runtimeDir: path.join(dir, 'run') }] });
  const win = { id: 'main-window' };
  const sent: unknown[] = [];
  const { ipc, call, handlers } = fakeIpcMain();
  const uninstall = installIpcBridge(ipc, service, {
    isTrustedSender: (s) => s === win,
    isTrustedUrl: (u) => u.startsWith('file://'),
    send: (ch, p) => sent.push([ch, p]),
  });
  const ok = { sender: win, senderFrame: { url: 'file:///app/renderer/index.html' } };

  it('answers a valid request with a Result', async () => {
    const r = (await call(ok, 'hosts:list', {})) as { ok: boolean; value: { config: { id: string } }[] };
    expect(r.ok).toBe(true);
    expect(r.value.map((h) => h.config.id)).toEqual(['lab-a']);
  });

  it('refuses an unknown channel and an invalid payload, naming the problem', async () => {
    expect(await call(ok, 'fs:readFile', { path: '/etc/shadow' })).toEqual({ ok: false, error: { code: 'INVALID_REQUEST', message: 'unknown channel "fs:readFile"' } });
    const bad = (await call(ok, 'hosts:add', { id: '../../x' })) as { ok: false; error: { code: string; message: string } };
    expect(bad.ok).toBe(false);
    expect(bad.error.code).toBe('INVALID_REQUEST');
    expect(bad.error.message).toMatch(/^hosts:add: id: host id/);
  });

  it('refuses a foreign sender or frame', async () => {
    expect(await call({ sender: { id: 'other' }, senderFrame: ok.senderFrame }, 'hosts:list', {})).toMatchObject({ ok: false, error: { message: /untrusted sender/ } });
    expect(await call({ sender: win, senderFrame: { url: 'https://evil.example/' } }, 'hosts:list', {})).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    expect(await call({ sender: win, senderFrame: null }, 'hosts:list', {})).toMatchObject({ ok: false });
  });

  it('delivers a service error as a Result with its code', async () => {
    expect(await call(ok, 'hosts:connect', { id: 'nope' })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND', message: 'no host with id "nope"' } });
  });

  it('pushes events on one channel and unhooks cleanly', async () => {
    await call(ok, 'hosts:connect', { id: 'lab-a' });
    expect(sent).toContainEqual([EVENT_CHANNEL, { channel: 'hosts:state', payload: { hostId: 'lab-a', state: 'connected' } }]);
    uninstall();
    expect(handlers.size).toBe(0);
    await service.dispose();
    rmSync(dir, { recursive: true, force: true });
  });
});
