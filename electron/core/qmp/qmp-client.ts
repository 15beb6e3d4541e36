/**
 * A QMP client over any Duplex (unix socket, TCP socket, ssh2 channel), modelled on QEMU's
 * own `qemu.qmp`: greeting -> qmp_capabilities (oob enabled when offered) -> running.
 *
 * - ids are `ferry#N`; replies with an unknown id (e.g. after a timeout) are dropped.
 * - every pending command and event waiter is rejected with QmpDisconnectedError on close.
 * - event listeners and waiters can be registered before the command whose event they await.
 */
import type { Duplex } from 'node:stream';
import { QmpFramer, DEFAULT_MAX_LINE_BYTES } from './qmp-framer';
import type { QmpMessage } from './qmp-framer';
import {
  QmpDisconnectedError,
  QmpError,
  QmpExecuteError,
  QmpGreetingError,
  QmpNegotiationError,
  QmpProtocolError,
  QmpTimeoutError,
} from './qmp-errors';

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** Host wall-clock time of the event in ms, from QEMU's timestamp (or receipt time). */
  timeMs: number;
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string } | undefined;
  capabilities: string[];
}

export interface QmpConnectOptions {
  /** Time allowed for greeting + negotiation. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Default per-command timeout. Default 30 s. */
  commandTimeoutMs?: number;
  /** Enable out-of-band execution when the server offers it. Default true. */
  oob?: boolean;
  maxLineBytes?: number;
}

export interface ExecuteOptions {
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

type EventListener = (event: QmpEvent) => void;

export class QmpClient {
  private readonly framer: QmpFramer;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Map<string, Set<EventListener>>();
  private readonly closeListeners = new Set<(error: QmpDisconnectedError) => void>();
  private readonly protocolErrorListeners = new Set<(error: QmpError) => void>();
  private nextId = 1;
  private closedWith: QmpDisconnectedError | undefined;
  private greetingWaiter: { resolve: (g: QmpGreeting) => void; reject: (e: Error) => void } | undefined;
  private readonly commandTimeoutMs: number;
  private _greeting: QmpGreeting | undefined;
  private _oob = false;

  /** Connects and negotiates; on any failure the stream is destroyed. */
  static async connect(stream: Duplex, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const client = new QmpClient(stream, options);
    try {
      await client.handshake(options.handshakeTimeoutMs ?? 10_000, options.oob ?? true);
      return client;
    } catch (e) {
      client.close();
      throw e;
    }
  }

  private constructor(private readonly stream: Duplex, options: QmpConnectOptions) {
    this.framer = new QmpFramer(options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
    this.commandTimeoutMs = options.commandTimeoutMs ?? 30_000;
    stream.on('data', (chunk: Buffer | string) => this.onData(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    stream.on('end', () => this.onEnd('end of stream'));
    stream.on('close', () => this.onEnd('stream closed'));
    stream.on('error', (e: Error) => this.onEnd(e.message));
  }

  get greeting(): QmpGreeting {
    if (!this._greeting) throw new QmpGreetingError('no greeting yet');
    return this._greeting;
  }

  /** True when out-of-band execution was negotiated. */
  get oob(): boolean {
    return this._oob;
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  private async handshake(timeoutMs: number, wantOob: boolean): Promise<void> {
    const greeting = await new Promise<QmpGreeting>((resolve, reject) => {
      const timer = setTimeout(() => reject(new QmpGreetingError(`no QMP greeting within ${timeoutMs} ms (is another client connected?)`)), timeoutMs);
      this.greetingWaiter = {
        resolve: (g) => { clearTimeout(timer); resolve(g); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      if (this.closedWith) this.greetingWaiter.reject(new QmpGreetingError(`connection closed before the greeting: ${this.closedWith.message}`));
    });
    this._greeting = greeting;
    const enable = wantOob && greeting.capabilities.includes('oob') ? ['oob'] : [];
    try {
      await this.send('execute', 'qmp_capabilities', enable.length ? { enable } : undefined, timeoutMs);
    } catch (e) {
      if (e instanceof QmpNegotiationError) throw e;
      const message = e instanceof Error ? e.message : String(e);
      throw new QmpNegotiationError(`qmp_capabilities failed: ${message}`, { cause: message });
    }
    this._oob = enable.length > 0;
  }

  /** Runs a QMP command and resolves with its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: ExecuteOptions = {}): Promise<T> {
    return this.send('execute', command, args, options.timeoutMs ?? this.commandTimeoutMs) as Promise<T>;
  }

  /** Runs a command out-of-band (e.g. `migrate-recover`, `migrate-pause`); needs oob negotiated. */
  executeOob<T = unknown>(command: string, args?: Record<string, unknown>, options: ExecuteOptions = {}): Promise<T> {
    if (!this._oob) {
      return Promise.reject(new QmpProtocolError(`cannot run ${command} out-of-band: the server did not offer oob`, { command }));
    }
    return this.send('exec-oob', command, args, options.timeoutMs ?? this.commandTimeoutMs) as Promise<T>;
  }

  private send(verb: 'execute' | 'exec-oob', command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = `ferry#${this.nextId++}`;
    const msg: Record<string, unknown> = { [verb]: command, id };
    if (args !== undefined) msg.arguments = args;
    return new Promise<unknown>((resolve, reject) => {
      const timer = timeoutMs > 0
        ? setTimeout(() => {
            this.pending.delete(id);
            reject(new QmpTimeoutError(command, timeoutMs));
          }, timeoutMs)
        : undefined;
      this.pending.set(id, { command, resolve, reject, timer });
      this.stream.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** Listens to one event name, or every event with `'*'`. Returns an unsubscribe function. */
  onEvent(name: string, listener: EventListener): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  /**
   * Resolves with the next event `name` matching `predicate`. Registered synchronously, so call
   * it *before* the command that causes the event. Rejects on timeout or disconnect.
   */
  waitForEvent(name: string, options: { predicate?: (e: QmpEvent) => boolean; timeoutMs?: number } = {}): Promise<QmpEvent> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    const p = new Promise<QmpEvent>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        off();
        offClose();
        if (timer) clearTimeout(timer);
      };
      const off = this.onEvent(name, (ev) => {
        if (options.predicate && !options.predicate(ev)) return;
        done();
        resolve(ev);
      });
      const offClose = this.onClose((e) => {
        done();
        reject(e);
      });
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          done();
          reject(new QmpTimeoutError(`waiting for event ${name}`, timeoutMs));
        }, timeoutMs);
      }
    });
    // Mark handled so a waiter that fails before it is awaited does not crash the process.
    p.catch(() => undefined); // an unhandled-rejection guard only: the caller awaits p and gets its error
    return p;
  }

  onClose(listener: (error: QmpDisconnectedError) => void): () => void {
    this.closeListeners.add(listener);
    return () => {
      this.closeListeners.delete(listener);
    };
  }

  /** Framing problems seen after the handshake (lines dropped, garbage, id-less errors). */
  onProtocolError(listener: (error: QmpError) => void): () => void {
    this.protocolErrorListeners.add(listener);
    return () => {
      this.protocolErrorListeners.delete(listener);
    };
  }

  /** Resolves once the connection is closed. */
  whenClosed(): Promise<QmpDisconnectedError> {
    if (this.closedWith) return Promise.resolve(this.closedWith);
    return new Promise((resolve) => this.onClose(resolve));
  }

  close(): void {
    this.onEnd('closed by client');
    this.stream.destroy();
  }

  private onData(chunk: Buffer): void {
    for (const out of this.framer.push(chunk)) {
      if (out.ok) this.dispatch(out.message);
      else this.protocolError(out.error);
    }
  }

  private protocolError(error: QmpError): void {
    if (this.greetingWaiter && !this._greeting) {
      this.greetingWaiter.reject(new QmpGreetingError(`bad greeting: ${error.message}`, error.details));
      this.greetingWaiter = undefined;
      return;
    }
    for (const l of this.protocolErrorListeners) l(error);
  }

  private dispatch(msg: QmpMessage): void {
    switch (msg.type) {
      case 'greeting': {
        const w = this.greetingWaiter;
        this.greetingWaiter = undefined;
        w?.resolve({ version: msg.version as QmpGreeting['version'], capabilities: msg.capabilities });
        return;
      }
      case 'return':
      case 'error': {
        if (this.greetingWaiter && !this._greeting) {
          this.protocolError(new QmpProtocolError('reply received before the greeting'));
          return;
        }
        if (msg.id === undefined) {
          this.protocolError(new QmpProtocolError(
            msg.type === 'error' ? `error without id: ${msg.error.desc} (${msg.error.class})` : 'reply without id',
          ));
          return;
        }
        const key = typeof msg.id === 'string' ? msg.id : JSON.stringify(msg.id);
        const p = this.pending.get(key);
        if (!p) return; // unknown id: late reply after a timeout, or not ours — dropped
        this.pending.delete(key);
        if (p.timer) clearTimeout(p.timer);
        if (msg.type === 'return') p.resolve(msg.value);
        else p.reject(new QmpExecuteError(p.command, msg.error.class, msg.error.desc));
        return;
      }
      case 'event': {
        const ev: QmpEvent = {
          event: msg.event,
          data: msg.data,
          timeMs: msg.timestamp ? msg.timestamp.seconds * 1000 + msg.timestamp.microseconds / 1000 : Date.now(),
        };
        for (const key of [msg.event, '*']) {
          const set = this.listeners.get(key);
          if (!set) continue;
          for (const l of [...set]) l(ev);
        }
        return;
      }
    }
  }

  private onEnd(reason: string): void {
    if (this.closedWith) return;
    for (const out of this.framer.end()) {
      if (!out.ok) this.protocolError(out.error);
    }
    const error = new QmpDisconnectedError(reason);
    this.closedWith = error;
    if (this.greetingWaiter) {
      this.greetingWaiter.reject(new QmpGreetingError(`connection closed before the greeting: ${reason}`));
      this.greetingWaiter = undefined;
    }
    for (const [id, p] of this.pending) {
      if (p.timer) clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(error);
    }
    for (const l of [...this.closeListeners]) l(error);
    this.closeListeners.clear();
  }
}
