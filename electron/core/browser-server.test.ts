import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { startBrowserServer } from './browser-server';
import type { BrowserServer } from './browser-server';
import type { ConsoleService } from './console-service';

/** Only what the browser server uses of the console service: its events and invoke. */
function fakeService(reply: (channel: string) => Promise<unknown>) {
  const listeners = new Map<string, ((p: unknown) => void)[]>();
  return {
    emit: (channel: string, payload: unknown) => (listeners.get(channel) ?? []).forEach((l) => l(payload)),
    service: {
      on: (channel: string, l: (p: unknown) => void) => {
        listeners.set(channel, [...(listeners.get(channel) ?? []), l]);
        return () => listeners.set(channel, (listeners.get(channel) ?? []).filter((x) => x !== l));
      },
      invoke: async (channel: string) => ({ ok: true, value: await reply(channel) }),
    } as unknown as ConsoleService,
  };
}

describe('browser server: events to the page', () => {
  let server: BrowserServer | undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-bs-'));
  afterEach(async () => {
    await server?.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const connect = async (s: BrowserServer) => {
    const ws = new WebSocket(`ws://127.0.0.1:${s.port}/ws?token=${s.token}`, { origin: `http://127.0.0.1:${s.port}` });
    const messages: { type: string; events?: { channel: string; payload: { n: number } }[]; id?: number }[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(String(d))));
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    return { ws, messages };
  };

  it('sends events that come together in one message, in order', async () => {
    const f = fakeService(async () => ({}));
    server = await startBrowserServer(f.service, { staticDir: dir });
    const { ws, messages } = await connect(server);
    for (let n = 0; n < 8; n++) f.emit('migration:sample', { n });
    await new Promise((r) => setTimeout(r, 100));
    f.emit('migration:phase', { n: 8 });
    await new Promise((r) => setTimeout(r, 100));
    expect(messages.map((m) => m.type)).toEqual(['events', 'events']);
    expect(messages[0]!.events!.map((e) => e.payload.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(messages[0]!.events![0]!.channel).toBe('migration:sample');
    expect(messages[1]!.events).toEqual([{ channel: 'migration:phase', payload: { n: 8 } }]);
    ws.close();
  });

  it('an event sent before a reply arrives before it', async () => {
    const f: ReturnType<typeof fakeService> = fakeService(async () => {
      f.emit('migration:sample', { n: 1 }); // e.g. a sample taken while the history was read
      return { history: true };
    });
    server = await startBrowserServer(f.service, { staticDir: dir });
    const { ws, messages } = await connect(server);
    ws.send(JSON.stringify({ type: 'invoke', id: 7, channel: 'migrations:list', request: {} }));
    await new Promise((r) => setTimeout(r, 100));
    expect(messages.map((m) => m.type)).toEqual(['events', 'result']);
    expect(messages[1]!.id).toBe(7);
    ws.close();
  });
});
