import { describe, expect, it } from 'vitest';
import type { Duplex } from 'node:stream';
import { QmpClient } from './qmp-client';
import { QmpDisconnectedError, QmpExecuteError, QmpGreetingError, QmpNegotiationError, QmpTimeoutError } from './qmp-errors';
import { duplexPair, lineReader } from '../../../test/support/duplex-pair';

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\r\n';

/** A scripted fake QMP server for malformed-input tests; real QEMU is in qmp-client.int.test.ts. */
function fakeServer(handler: (msg: Record<string, unknown>, server: Duplex) => void, greeting = GREETING) {
  const [client, server] = duplexPair();
  const seen: Record<string, unknown>[] = [];
  lineReader(server, (msg) => {
    seen.push(msg);
    if (msg.execute === 'qmp_capabilities') {
      server.write(`${JSON.stringify({ return: {}, id: msg.id })}\r\n`);
      return;
    }
    handler(msg, server);
  });
  if (greeting) server.write(greeting);
  return { client, server, seen };
}

describe('QmpClient', () => {
  it('negotiates oob when offered and matches replies by id, whatever their order', async () => {
    const held: Record<string, unknown>[] = [];
    const { client, server, seen } = fakeServer((msg, s) => {
      held.push(msg);
      if (held.length === 2) {
        // answer in reverse order
        for (const m of [...held].reverse()) s.write(`${JSON.stringify({ return: { echo: m.execute }, id: m.id })}\n`);
      }
    });
    const qmp = await QmpClient.connect(client);
    expect(seen[0]).toEqual({ execute: 'qmp_capabilities', id: 'ferry#1', arguments: { enable: ['oob'] } });
    expect(qmp.oob).toBe(true);
    const [a, b] = await Promise.all([qmp.execute('query-status'), qmp.execute('query-migrate')]);
    expect(a).toEqual({ echo: 'query-status' });
    expect(b).toEqual({ echo: 'query-migrate' });
    qmp.close();
    server.destroy();
  });

  it('does not ask for oob when the server does not offer it, and refuses exec-oob then', async () => {
    const { client, seen } = fakeServer(() => {}, '{"QMP": {"version": {}, "capabilities": []}}\n');
    const qmp = await QmpClient.connect(client);
    expect(seen[0]).toEqual({ execute: 'qmp_capabilities', id: 'ferry#1' });
    await expect(qmp.executeOob('migrate-pause')).rejects.toThrow(/did not offer oob/);
    qmp.close();
  });

  it('sends exec-oob with an id', async () => {
    const { client, seen } = fakeServer((msg, s) => s.write(`${JSON.stringify({ return: {}, id: msg.id })}\n`));
    const qmp = await QmpClient.connect(client);
    await qmp.executeOob('migrate-pause');
    expect(seen[1]).toEqual({ 'exec-oob': 'migrate-pause', id: 'ferry#2' });
    qmp.close();
  });

  it('turns an error reply into QmpExecuteError with the QMP class', async () => {
    const { client } = fakeServer((msg, s) =>
      s.write(`${JSON.stringify({ error: { class: 'DeviceNotFound', desc: 'no such thing' }, id: msg.id })}\n`));
    const qmp = await QmpClient.connect(client);
    const e = await qmp.execute('device_del', { id: 'x' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(QmpExecuteError);
    expect((e as QmpExecuteError).errorClass).toBe('DeviceNotFound');
    expect((e as QmpExecuteError).command).toBe('device_del');
    qmp.close();
  });

  it('times out one command without disturbing the next, and drops the late reply', async () => {
    let first: Record<string, unknown> | undefined;
    const { client, server } = fakeServer((msg, s) => {
      if (!first) {
        first = msg;
        return;
      }
      // Late reply to the timed-out command, then the real answer.
      s.write(`${JSON.stringify({ return: 'late', id: first.id })}\n`);
      s.write(`${JSON.stringify({ return: 'second', id: msg.id })}\n`);
    });
    const qmp = await QmpClient.connect(client);
    await expect(qmp.execute('slow', undefined, { timeoutMs: 30 })).rejects.toBeInstanceOf(QmpTimeoutError);
    await expect(qmp.execute('fast')).resolves.toBe('second');
    qmp.close();
    server.destroy();
  });

  it('delivers events to listeners registered before the command that causes them', async () => {
    const { client } = fakeServer((msg, s) => {
      s.write('{"timestamp": {"seconds": 10, "microseconds": 500000}, "event": "STOP"}\n');
      s.write(`${JSON.stringify({ return: {}, id: msg.id })}\n`);
    });
    const qmp = await QmpClient.connect(client);
    const all: string[] = [];
    qmp.onEvent('*', (e) => all.push(e.event));
    const stop = qmp.waitForEvent('STOP');
    await qmp.execute('stop');
    const ev = await stop;
    expect(ev.timeMs).toBe(10_500);
    expect(all).toEqual(['STOP']);
    qmp.close();
  });

  it('rejects pending commands and event waiters when the connection drops', async () => {
    const { client, server } = fakeServer(() => {});
    const qmp = await QmpClient.connect(client);
    const pending = qmp.execute('query-status');
    const waiter = qmp.waitForEvent('RESUME', { timeoutMs: 0 });
    server.destroy();
    await expect(pending).rejects.toBeInstanceOf(QmpDisconnectedError);
    await expect(waiter).rejects.toBeInstanceOf(QmpDisconnectedError);
    await expect(qmp.execute('query-status')).rejects.toBeInstanceOf(QmpDisconnectedError);
    expect(qmp.closed).toBe(true);
  });

  it('reports garbage and id-less errors after the handshake without failing pending commands', async () => {
    let reply: (() => void) | undefined;
    const { client } = fakeServer((msg, s) => {
      s.write('garbage\n{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n');
      reply = () => s.write(`${JSON.stringify({ return: 42, id: msg.id })}\n`);
    });
    const qmp = await QmpClient.connect(client);
    const errors: string[] = [];
    qmp.onProtocolError((e) => errors.push(e.message));
    const p = qmp.execute('x');
    await new Promise((r) => setTimeout(r, 20));
    reply!();
    await expect(p).resolves.toBe(42);
    expect(errors).toHaveLength(2);
    expect(errors[1]).toMatch(/error without id: JSON parse error/);
    qmp.close();
  });

  it('fails with QmpGreetingError on a bad greeting, no greeting, or EOF before it', async () => {
    const bad = fakeServer(() => {}, 'hello there\n');
    await expect(QmpClient.connect(bad.client)).rejects.toBeInstanceOf(QmpGreetingError);
    const silent = fakeServer(() => {}, '');
    await expect(QmpClient.connect(silent.client, { handshakeTimeoutMs: 50 })).rejects.toThrow(/no QMP greeting within 50 ms/);
    const eof = fakeServer(() => {}, '');
    setTimeout(() => eof.server.destroy(), 10);
    await expect(QmpClient.connect(eof.client)).rejects.toThrow(/closed before the greeting/);
  });

  it('fails with QmpNegotiationError when qmp_capabilities is refused', async () => {
    const [client, server] = duplexPair();
    lineReader(server, (msg) => server.write(`${JSON.stringify({ error: { class: 'GenericError', desc: 'nope' }, id: msg.id })}\n`));
    server.write(GREETING);
    const e = await QmpClient.connect(client).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(QmpNegotiationError);
    expect(client.destroyed).toBe(true);
  });
});
