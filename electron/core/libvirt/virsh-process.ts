/**
 * The two long-running virsh commands a libvirt migration needs besides the shell: the
 * `migrate` itself (it returns when libvirt has finished, with libvirt's reason when it
 * failed) and an event stream (`event --all --loop --timestamp`). Both are argv (no shell
 * reads them), both are stopped by pid.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Logger } from '../log';
import type { LibvirtConnection } from './libvirt-connection';
import { VirshEventParser } from './virsh-text';
import type { VirshEvent } from './virsh-text';

/** How a virsh command ended: its exit code and libvirt's `error:` lines, word for word. */
export interface VirshExit {
  code: number | null;
  signal: string | null;
  output: string;
  errors: string[];
  /** libvirt's own reason (the last error line), when it failed. */
  reason?: string;
}

/** A virsh command that runs until libvirt is done with it (a migration, a postcopy resume). */
export class VirshProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<VirshExit>;
  private out = '';
  done: VirshExit | undefined;

  constructor(conn: LibvirtConnection, readonly args: readonly string[]) {
    this.child = conn.spawn(args);
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (c: string) => {
      this.out += c;
      if (this.out.length > 1 << 20) this.out = this.out.slice(-(1 << 16));
    });
    this.child.stderr.on('data', () => {}); // virsh's stderr is joined to stdout
    this.child.stdin.end();
    this.exited = new Promise((resolve) => {
      const finish = (code: number | null, signal: string | null, extra?: string) => {
        if (this.done) return;
        const output = extra ? `${this.out}\nerror: ${extra}` : this.out;
        const errors = output.split('\n').filter((l) => l.startsWith('error: ')).map((l) => l.slice('error: '.length));
        this.done = { code, signal, output, errors, ...(errors.length ? { reason: errors.at(-1)! } : code !== 0 ? { reason: `virsh ${args[0]} ended (${signal ?? `exit ${code}`})` } : {}) };
        resolve(this.done);
      };
      this.child.once('error', (e) => finish(null, null, `cannot run virsh: ${e.message}`));
      this.child.once('close', (code, signal) => finish(code, signal));
    });
  }

  get running(): boolean {
    return this.done === undefined;
  }

  kill(): void {
    if (this.done === undefined) this.child.kill('SIGTERM');
  }
}

/**
 * A daemon's events for the domains named (`names()`; the stream is per daemon, names are
 * matched exactly). Restarted while wanted if virsh goes away (a relay hiccup, a daemon
 * restart); `onEvent` gets each event once.
 */
export class EventWatch {
  private proc: ChildProcessWithoutNullStreams | undefined;
  private stopped = false;
  private idle: NodeJS.Timeout | undefined;
  private restarts = 0;
  /** Resolves once virsh has connected (and, a moment later, registered for events). */
  readonly ready: Promise<void>;

  constructor(private readonly conn: LibvirtConnection, private readonly names: () => readonly string[], private readonly onEvent: (e: VirshEvent) => void, private readonly log: Logger, private readonly domain?: string) {
    this.ready = this.open();
  }

  private open(): Promise<void> {
    const connectionsBefore = this.conn.relayConnections;
    const args = ['event', '--all', '--loop', '--timestamp', ...(this.domain ? ['--domain', this.domain] : [])];
    const proc = this.conn.spawn(args);
    this.proc = proc;
    const parser = new VirshEventParser(this.names, (e) => this.onEvent(e));
    proc.stdout.setEncoding('utf8');
    let said = '';
    proc.stdout.on('data', (c: string) => {
      if (said.length < 4096) said += c;
      parser.push(c);
      // A job-completed event's statistics come in the same write: flush once the stream pauses.
      if (this.idle) clearTimeout(this.idle);
      this.idle = setTimeout(() => parser.flush(), 30);
    });
    proc.stderr.on('data', () => {});
    proc.stdin.end();
    proc.once('close', (code, signal) => {
      parser.flush();
      if (this.stopped) return;
      this.log.warn(`${this.conn.hostId}: virsh event ended (${signal ?? `exit ${code}`})${said.includes('error:') ? `: ${said.trim().split('\n').filter((l) => l.startsWith('error:')).join('; ')}` : ''}`);
      if (this.restarts++ < 20) setTimeout(() => this.restart(), 500).unref?.();
    });
    // virsh registers for events right after it connects: wait for its connection through the relay, then a moment.
    return (async () => {
      const deadline = Date.now() + 3000;
      while (this.conn.relayConnections === connectionsBefore && proc.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 50));
    })();
  }

  /** Opens virsh again, unless stopped meanwhile; a connection closed since ends the watch (said once). */
  private restart(): void {
    if (this.stopped) return;
    try {
      void this.open();
    } catch (e) {
      this.stopped = true;
      this.log.warn(`${this.conn.hostId}: virsh event not restarted: ${(e as Error).message}`);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.idle) clearTimeout(this.idle);
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
  }
}
