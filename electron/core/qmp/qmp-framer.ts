/**
 * QMP framing with no I/O: bytes in, classified messages out.
 *
 * QMP is one JSON object per line. Lines are split on the byte 0x0A *before* decoding, so a
 * multi-byte UTF-8 character split across chunks is reassembled for free (0x0A never occurs
 * inside a multi-byte sequence). A line longer than `maxLineBytes` yields a
 * {@link QmpLineTooLongError} and the framer skips to the next newline (resynchronises).
 */
import { QmpLineTooLongError, QmpProtocolError } from './qmp-errors';
import type { QmpError } from './qmp-errors';

export interface QmpErrorBody {
  class: string;
  desc: string;
}

export type QmpMessage =
  | { type: 'greeting'; version: unknown; capabilities: string[] }
  | { type: 'return'; id: unknown; value: unknown }
  | { type: 'error'; id: unknown; error: QmpErrorBody }
  | { type: 'event'; event: string; data: Record<string, unknown>; timestamp: { seconds: number; microseconds: number } | undefined };

export type FramerOutput = { ok: true; message: QmpMessage } | { ok: false; error: QmpError };

/** Default cap: query-qmp-schema on QEMU 7.2 is ~200 KB; leave ample headroom. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

const decoder = new TextDecoder('utf-8', { fatal: true });

export class QmpFramer {
  private chunks: Uint8Array[] = [];
  private pendingBytes = 0;
  private discarding = false;

  constructor(private readonly maxLineBytes: number = DEFAULT_MAX_LINE_BYTES) {}

  /** Feed bytes; returns every complete message (or error) they finish. */
  push(chunk: Uint8Array): FramerOutput[] {
    const out: FramerOutput[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      if (this.discarding) {
        this.discarding = false;
      } else if (this.pendingBytes + piece.length > this.maxLineBytes) {
        out.push({ ok: false, error: new QmpLineTooLongError(this.maxLineBytes) });
      } else {
        const line = this.take(piece);
        const parsed = parseLine(line);
        if (parsed) out.push(parsed);
      }
      this.chunks = [];
      this.pendingBytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length && !this.discarding) {
      const rest = chunk.subarray(start);
      if (this.pendingBytes + rest.length > this.maxLineBytes) {
        out.push({ ok: false, error: new QmpLineTooLongError(this.maxLineBytes) });
        this.chunks = [];
        this.pendingBytes = 0;
        this.discarding = true;
      } else {
        // Copy: the caller may reuse its buffer.
        this.chunks.push(rest.slice());
        this.pendingBytes += rest.length;
      }
    }
    return out;
  }

  /** End of stream: a partial line left over is a protocol error (the peer died mid-message). */
  end(): FramerOutput[] {
    const had = this.pendingBytes > 0 && !this.discarding;
    const bytes = this.pendingBytes;
    this.chunks = [];
    this.pendingBytes = 0;
    this.discarding = false;
    if (!had) return [];
    return [{ ok: false, error: new QmpProtocolError(`stream ended in the middle of a message (${bytes} bytes)`, { bytes }) }];
  }

  private take(last: Uint8Array): Uint8Array {
    if (this.chunks.length === 0) return last;
    const all = new Uint8Array(this.pendingBytes + last.length);
    let off = 0;
    for (const c of this.chunks) {
      all.set(c, off);
      off += c.length;
    }
    all.set(last, off);
    return all;
  }
}

function parseLine(bytes: Uint8Array): FramerOutput | undefined {
  let text: string;
  try {
    text = decoder.decode(bytes).trim();
  } catch {
    return { ok: false, error: new QmpProtocolError('invalid UTF-8 in QMP line') };
  }
  if (text === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: new QmpProtocolError('QMP line is not JSON', { line: excerpt(text) }) };
  }
  return classify(value, text);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function classify(value: unknown, text = ''): FramerOutput {
  if (!isObject(value)) {
    return { ok: false, error: new QmpProtocolError('QMP message is not a JSON object', { line: excerpt(text) }) };
  }
  if (isObject(value.QMP)) {
    const caps = Array.isArray(value.QMP.capabilities) ? value.QMP.capabilities.filter((c): c is string => typeof c === 'string') : [];
    return { ok: true, message: { type: 'greeting', version: value.QMP.version, capabilities: caps } };
  }
  if (typeof value.event === 'string') {
    const ts = isObject(value.timestamp) && typeof value.timestamp.seconds === 'number' && typeof value.timestamp.microseconds === 'number'
      ? { seconds: value.timestamp.seconds, microseconds: value.timestamp.microseconds }
      : undefined;
    return { ok: true, message: { type: 'event', event: value.event, data: isObject(value.data) ? value.data : {}, timestamp: ts } };
  }
  if ('return' in value) {
    return { ok: true, message: { type: 'return', id: value.id, value: value.return } };
  }
  if (isObject(value.error)) {
    const cls = typeof value.error.class === 'string' ? value.error.class : 'GenericError';
    const desc = typeof value.error.desc === 'string' ? value.error.desc : 'unknown error';
    return { ok: true, message: { type: 'error', id: value.id, error: { class: cls, desc } } };
  }
  return { ok: false, error: new QmpProtocolError('unrecognised QMP message', { line: excerpt(text) }) };
}

function excerpt(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}
