/**
 * The console channel to the demo guest: Ferry connects to a VM's serial socket through the
 * host transport, sends line commands, and parses heartbeats (shared/model/guest.ts).
 */
import type { Duplex } from 'node:stream';
import { FerryException } from '../../../shared/errors';
import { parseGuestLine } from '../../../shared/model/guest';
import type { GuestHeartbeat, GuestLine } from '../../../shared/model/guest';
import type { HostTransport } from '../transport/host-transport';

export interface ReceivedLine {
  /** Local receipt time (ms since epoch). */
  at: number;
  raw: string;
  parsed: GuestLine | undefined;
}

const REPLY_KIND: Record<string, GuestLine['kind'][]> = {
  v: ['verify'],
  s: ['status'],
};

export class GuestConsole {
  private buf = '';
  private readonly lineListeners = new Set<(l: ReceivedLine) => void>();
  private queue: Promise<unknown> = Promise.resolve();
  private closedError: Error | undefined;
  private readonly closeListeners = new Set<(e: Error) => void>();

  static async open(transport: HostTransport, serialSocket: string): Promise<GuestConsole> {
    return new GuestConsole(await transport.openUnix(serialSocket));
  }

  constructor(private readonly stream: Duplex) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => this.onData(chunk));
    const end = (e?: Error) => {
      if (this.closedError) return;
      this.closedError = e ?? new FerryException('TRANSPORT_CLOSED', 'guest console closed');
      for (const l of [...this.closeListeners]) l(this.closedError);
    };
    stream.on('error', end);
    stream.on('close', () => end());
    stream.on('end', () => end());
  }

  /** The unterminated tail received so far (a line split across a switchover starts here). */
  get partialLine(): string {
    return this.buf;
  }

  onLine(listener: (l: ReceivedLine) => void): () => void {
    this.lineListeners.add(listener);
    return () => this.lineListeners.delete(listener);
  }

  onHeartbeat(listener: (hb: GuestHeartbeat, at: number) => void): () => void {
    return this.onLine((l) => {
      if (l.parsed?.kind === 'heartbeat') listener(l.parsed, l.at);
    });
  }

  onClose(listener: (e: Error) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Prepends text (the head of a line the previous stream cut) to what arrives next. */
  prepend(text: string): void {
    this.buf = text + this.buf;
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const raw = this.buf.slice(0, i).replace(/\r$/, '');
      this.buf = this.buf.slice(i + 1);
      if (!raw.trim()) continue;
      const line: ReceivedLine = { at: Date.now(), raw, parsed: parseGuestLine(raw) };
      for (const l of [...this.lineListeners]) l(line);
    }
    if (this.buf.length > 64 * 1024) this.buf = this.buf.slice(-4096); // no newline for 64 KiB: not our guest
  }

  /** Resolves with the next line matching `pred`; the listener is registered at once. */
  waitFor(pred: (l: ReceivedLine) => boolean, timeoutMs = 10_000, what = 'a guest line'): Promise<ReceivedLine> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const done = () => {
        off();
        offClose();
        clearTimeout(timer);
      };
      const off = this.onLine((l) => {
        if (!pred(l)) return;
        done();
        resolve(l);
      });
      const offClose = this.onClose((e) => {
        done();
        reject(e);
      });
      const timer = setTimeout(() => {
        done();
        reject(new FerryException('INTERNAL', `timed out after ${timeoutMs} ms waiting for ${what} from the guest`));
      }, timeoutMs);
    });
  }

  /**
   * Sends one command line and resolves with its reply: VERIFY for `v`, STATUS for `s`,
   * OK/ERR for the rest. Commands are serialised; an ERR reply rejects with INVALID_REQUEST.
   */
  command(line: string, timeoutMs = 30_000): Promise<GuestLine> {
    if (/[\r\n]/.test(line) || !line.trim()) {
      return Promise.reject(new FerryException('INVALID_REQUEST', 'a guest command is one non-empty line'));
    }
    const letter = line.trim().split(/\s+/)[0]!;
    const kinds = REPLY_KIND[letter] ?? ['ok'];
    const run = async () => {
      const reply = this.waitFor((l) => l.parsed !== undefined && (kinds.includes(l.parsed.kind) || l.parsed.kind === 'error'), timeoutMs, `the reply to "${line}"`);
      this.stream.write(`${line.trim()}\n`);
      const got = (await reply).parsed!;
      if (got.kind === 'error') throw new FerryException('INVALID_REQUEST', `guest refused "${line}": ${got.message}`);
      return got;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined); // the caller of p gets its error; the queue only orders commands
    return p;
  }

  close(): void {
    this.stream.destroy();
  }
}
