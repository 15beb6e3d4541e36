import { describe, expect, it } from 'vitest';
import { QmpFramer } from './qmp-framer';
import { QmpLineTooLongError, QmpProtocolError } from './qmp-errors';

const enc = (s: string) => new TextEncoder().encode(s);

describe('QmpFramer', () => {
  it('classifies greeting, return, error and event lines', () => {
    const f = new QmpFramer();
    const out = f.push(enc([
      '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "x"}, "capabilities": ["oob"]}}',
      '{"return": {}, "id": "ferry#1"}',
      '{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": "ferry#2"}',
      '{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "STOP"}',
      '',
    ].join('\r\n')));
    expect(out.map((o) => (o.ok ? o.message.type : 'err'))).toEqual(['greeting', 'return', 'error', 'event']);
    const g = out[0]!;
    expect(g.ok && g.message.type === 'greeting' && g.message.capabilities).toEqual(['oob']);
    const e = out[2]!;
    expect(e.ok && e.message.type === 'error' && e.message.error.class).toBe('CommandNotFound');
    const ev = out[3]!;
    expect(ev.ok && ev.message.type === 'event' && ev.message.timestamp).toEqual({ seconds: 1700000000, microseconds: 5 });
  });

  it('reassembles a message split across many chunks, one byte at a time', () => {
    const f = new QmpFramer();
    const bytes = enc('{"return": {"status": "running"}, "id": "ferry#7"}\n');
    const out = [];
    for (const b of bytes) out.push(...f.push(Uint8Array.of(b)));
    expect(out).toHaveLength(1);
    expect(out[0]!.ok && out[0]!.message).toEqual({ type: 'return', id: 'ferry#7', value: { status: 'running' } });
  });

  it('handles a multi-byte UTF-8 character split across chunks', () => {
    const f = new QmpFramer();
    const bytes = enc('{"return": "héllo → 世界 🚀", "id": 1}\n');
    const cut = bytes.indexOf(0xf0) + 2; // in the middle of the 4-byte rocket
    expect(f.push(bytes.subarray(0, cut))).toEqual([]);
    const out = f.push(bytes.subarray(cut));
    expect(out[0]!.ok && out[0]!.message.type === 'return' && out[0]!.message.value).toBe('héllo → 世界 🚀');
  });

  it('reports garbage and invalid UTF-8 as protocol errors and carries on', () => {
    const f = new QmpFramer();
    const out = f.push(Buffer.concat([enc('this is not json\n'), Buffer.from([0xff, 0xfe, 0x0a]), enc('{"return": 1, "id": "a"}\n')]));
    expect(out).toHaveLength(3);
    expect(out[0]!.ok).toBe(false);
    expect(!out[0]!.ok && out[0]!.error).toBeInstanceOf(QmpProtocolError);
    expect(!out[1]!.ok && out[1]!.error.message).toMatch(/UTF-8/);
    expect(out[2]!.ok).toBe(true);
  });

  it('rejects JSON that is not an object, and objects QMP never sends', () => {
    const f = new QmpFramer();
    const out = f.push(enc('[1,2,3]\n"str"\n{"hello": "world"}\n'));
    expect(out.every((o) => !o.ok)).toBe(true);
    expect(!out[0]!.ok && out[0]!.error.message).toMatch(/not a JSON object/);
    expect(!out[2]!.ok && out[2]!.error.message).toMatch(/unrecognised/);
  });

  it('keeps replies with unknown ids and errors without id for the client to judge', () => {
    const f = new QmpFramer();
    const out = f.push(enc('{"return": {}, "id": "someone-else#9"}\n{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n'));
    expect(out[0]!.ok && out[0]!.message).toEqual({ type: 'return', id: 'someone-else#9', value: {} });
    expect(out[1]!.ok && out[1]!.message).toEqual({ type: 'error', id: undefined, error: { class: 'GenericError', desc: 'JSON parse error' } });
  });

  it('drops a line over the cap with a typed error and resynchronises at the next newline', () => {
    const f = new QmpFramer(64);
    const long = `{"return": "${'x'.repeat(200)}", "id": 1}`;
    // Arrives in pieces: the error fires once, as soon as the cap is passed.
    const a = f.push(enc(long.slice(0, 50)));
    const b = f.push(enc(long.slice(50, 150)));
    const c = f.push(enc(`${long.slice(150)}\n{"return": 2, "id": 2}\n`));
    expect(a).toEqual([]);
    expect(b).toHaveLength(1);
    expect(!b[0]!.ok && b[0]!.error).toBeInstanceOf(QmpLineTooLongError);
    expect(c).toHaveLength(1);
    expect(c[0]!.ok && c[0]!.message).toEqual({ type: 'return', id: 2, value: 2 });
  });

  it('drops a line over the cap that arrives whole', () => {
    const f = new QmpFramer(16);
    const out = f.push(enc('{"return": "0123456789abcdef", "id": 1}\n{"return": 3}\n'));
    expect(!out[0]!.ok && out[0]!.error.code).toBe('QMP_LINE_TOO_LONG');
    expect(out[1]!.ok).toBe(true);
  });

  it('reports EOF in the middle of a line, and nothing on a clean EOF', () => {
    const f = new QmpFramer();
    f.push(enc('{"return": {}, "id": "ferry#1"}\n{"retu'));
    const out = f.end();
    expect(out).toHaveLength(1);
    expect(!out[0]!.ok && out[0]!.error.message).toMatch(/ended in the middle/);
    expect(f.end()).toEqual([]);
  });
});
