import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createServer, connect } from 'node:net';
import type { Server } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalTransport } from '../transport/local-transport';
import { openStreamTunnel } from './stream-tunnel';

describe('stream tunnel relay (local transports, unix sockets)', () => {
  let dir = '';
  let server: Server | undefined;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ferry-tunnel-'));
  });
  afterEach(() => {
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('relays both directions per connection, counts the bytes, and removes its socket on close', async () => {
    const destSock = path.join(dir, 'in.sock');
    server = createServer((s) => s.on('data', (c: Buffer) => s.write(c.toString().toUpperCase())));
    await new Promise<void>((r) => server!.listen(destSock, r));
    const t = new LocalTransport();
    const notes: string[] = [];
    const tunnel = await openStreamTunnel(t, path.join(dir, 'out.sock'), t, destSock, (n) => notes.push(n));
    expect(tunnel.sourceUri).toBe(`unix:${path.join(dir, 'out.sock')}`);
    const talk = (text: string) => new Promise<string>((resolve, reject) => {
      const c = connect(path.join(dir, 'out.sock'));
      c.once('error', reject);
      c.once('data', (d: Buffer) => {
        c.end();
        resolve(d.toString());
      });
      c.write(text);
    });
    expect(await talk('page request')).toBe('PAGE REQUEST');
    expect(await talk('xy')).toBe('XY');
    expect(tunnel.connections).toBe(2);
    expect(tunnel.bytes).toEqual({ forward: 14, back: 14 });
    await tunnel.close();
    expect(existsSync(path.join(dir, 'out.sock'))).toBe(false);
    expect(notes).toEqual([]);
  });

  it('drops a connection it cannot carry on and says why', async () => {
    const t = new LocalTransport();
    const notes: string[] = [];
    const tunnel = await openStreamTunnel(t, path.join(dir, 'out2.sock'), t, path.join(dir, 'nobody.sock'), (n) => notes.push(n));
    await new Promise<void>((resolve) => {
      const c = connect(path.join(dir, 'out2.sock'));
      c.on('error', () => resolve());
      c.on('close', () => resolve());
    });
    await tunnel.close();
    expect(notes.join('\n')).toMatch(/cannot reach the destination's .*nobody\.sock/);
  });
});
