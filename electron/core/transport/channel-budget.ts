/**
 * How many SSH session channels (exec, subsystems such as sftp) one connection may hold at
 * once. OpenSSH's sshd allows `MaxSessions 10` per connection by default and refuses the
 * eleventh ("no more sessions"); forwarded streamlocal/TCP channels do not count. Ferry keeps
 * below the limit, queues what exceeds it, and when a server refuses a channel anyway (its
 * limit is lower, or another client multiplexes the connection) it learns the lower limit and
 * retries once a channel frees.
 *
 * Pure bookkeeping, no I/O: the SSH transport calls `acquire` before opening a session channel
 * and the returned release when the channel closes.
 */
import { FerryException } from '../../../shared/errors';

export const DEFAULT_MAX_SESSIONS = 8;

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
  what: string;
}

export class ChannelBudget {
  private inUse = 0;
  private readonly waiters: Waiter[] = [];
  /** The most this connection has held at once (for the "session peak"). */
  peak = 0;
  /** Times the server refused a session channel (each is retried). */
  refusals = 0;
  private limitNow: number;

  constructor(readonly limit = DEFAULT_MAX_SESSIONS, private readonly label = 'ssh') {
    if (!Number.isInteger(limit) || limit < 1) throw new FerryException('INVALID_REQUEST', `maxSessions must be a positive integer, got ${limit}`);
    this.limitNow = limit;
  }

  /** The limit in force (lowered when the server refused below the configured one). */
  get effectiveLimit(): number {
    return this.limitNow;
  }

  get held(): number {
    return this.inUse;
  }

  get queued(): number {
    return this.waiters.length;
  }

  /**
   * Waits for a free session slot (at most `waitMs`), then returns the function that frees
   * it. A wait that times out rejects with HOST_BUSY, naming what waited.
   */
  acquire(what: string, waitMs = 60_000): Promise<() => void> {
    if (this.inUse < this.limitNow && this.waiters.length === 0) return Promise.resolve(this.take());
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, what, timer: undefined };
      w.timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(this.busy(what, waitMs));
      }, waitMs);
      w.timer.unref?.();
      this.waiters.push(w);
    });
  }

  /**
   * The server refused a session channel while `heldBesides` others were open: its limit is
   * at most that many. Returns whether a retry can help (some other channel will free).
   */
  refused(heldBesides: number): boolean {
    this.refusals++;
    if (heldBesides <= 0) return false;
    this.limitNow = Math.max(1, Math.min(this.limitNow, heldBesides));
    return true;
  }

  /** Fails every waiter (the connection is gone). */
  drain(error: Error): void {
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(error);
    }
  }

  busy(what: string, waitedMs: number): FerryException {
    return new FerryException('HOST_BUSY', `${this.label}: host busy: no SSH session channel free for ${what} within ${Math.round(waitedMs / 1000)} s (${this.inUse} open, limit ${this.limitNow}); try again`, {
      host: this.label, open: this.inUse, limit: this.limitNow,
    });
  }

  private take(): () => void {
    this.inUse++;
    if (this.inUse > this.peak) this.peak = this.inUse;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse--;
      this.next();
    };
  }

  private next(): void {
    while (this.waiters.length && this.inUse < this.limitNow) {
      const w = this.waiters.shift()!;
      if (w.timer) clearTimeout(w.timer);
      w.resolve(this.take());
    }
  }
}
