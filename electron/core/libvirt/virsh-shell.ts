/**
 * One long-lived interactive `virsh` per libvirt host: commands are written to its stdin
 * one line at a time, and each reply is read back up to a marker. A sample costs one round
 * trip through an open connection (about a millisecond), not a process.
 *
 * Framing: after each command Ferry sends `echo FERRY-<nonce>-<n>-END`; the reply is what virsh
 * printed before that echo. The nonce is random per shell, so no output (a domain's
 * description, a name) can forge the end of a reply. virsh's stderr goes into the same pipe
 * (`2>&1`, set by a fixed `sh -c` whose only inputs are argv words), so the errors of a
 * command arrive inside its own reply; lines starting `error: ` are libvirt's reasons, word
 * for word.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { FerryException } from '../../../shared/errors';
import { rootLog } from '../log';
import { virshCommandLine } from './virsh-text';

const log = rootLog.child('virsh');

/** A command virsh refused: `lines` are its `error:` lines without the prefix, `reason` is libvirt's own (the last). */
export class VirshError extends FerryException {
  constructor(readonly command: string, readonly lines: string[], readonly output: string) {
    super('EXEC_FAILED', lines.at(-1) ?? `virsh ${command} failed`, { command, errors: lines });
  }
  get reason(): string {
    return this.lines.at(-1) ?? this.message;
  }
}

/** The environment every virsh runs in: untranslated messages, UTF-8 names kept intact. */
export function virshEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' };
  delete env.LIBVIRT_DEFAULT_URI;
  delete env.VIRSH_DEFAULT_CONNECT_URI;
  return env;
}

/** `virsh` with stderr joined to stdout, started without a shell of its own reading any data. */
export function spawnVirsh(args: readonly string[], virsh = 'virsh'): ChildProcessWithoutNullStreams {
  return spawn('sh', ['-c', 'exec "$0" "$@" 2>&1', virsh, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: virshEnv() });
}

interface Pending {
  line: string;
  marker: string;
  resolve: (out: string) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export interface VirshShellOptions {
  /** The virsh binary (default `virsh` on PATH). */
  virsh?: string;
  /** Default per-command timeout, ms. */
  timeoutMs?: number;
  /** For logs and errors, e.g. the host id. */
  label?: string;
}

export class VirshShell {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly nonce = randomBytes(8).toString('hex');
  private seq = 0;
  private buf = '';
  private queue: Pending[] = [];
  private current: Pending | undefined;
  private exitedWith: string | undefined;
  private readonly exitListeners = new Set<(why: string) => void>();
  /** Round trips answered, and their summed time (for the per-sample cost). */
  readonly stats = { commands: 0, totalMs: 0 };

  private constructor(readonly uri: string, private readonly options: VirshShellOptions) {
    this.child = spawnVirsh(['-q', '-c', uri], options.virsh);
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (c: string) => this.onData(c));
    this.child.stderr.on('data', () => {}); // sh itself has nothing to say; virsh's stderr is in stdout
    this.child.stdin.on('error', () => {}); // EPIPE once virsh has gone: reported by 'close' below
    this.child.on('error', (e) => this.exited(`cannot run virsh: ${e.message}`));
    this.child.on('close', (code, signal) => this.exited(`virsh exited (${signal ?? `code ${code}`})`));
  }

  /** Starts the shell and checks its connection (`uri`): libvirt's reason when it cannot connect. */
  static async open(uri: string, options: VirshShellOptions = {}): Promise<VirshShell> {
    const sh = new VirshShell(uri, options);
    try {
      await sh.run(['uri'], { timeoutMs: options.timeoutMs ?? 20_000 });
    } catch (e) {
      sh.close();
      const why = e instanceof VirshError ? e.lines.join('; ') : (e as Error).message;
      if (/cannot run virsh|ENOENT|not found/.test(why)) {
        throw new FerryException('UNSUPPORTED', `virsh is not installed on this machine (Ferry drives libvirt hosts with it): apt-get install libvirt-clients`, { uri });
      }
      throw new FerryException('EXEC_FAILED', `cannot connect to libvirt${options.label ? ` on ${options.label}` : ''}: ${why}`, { uri });
    }
    return sh;
  }

  get closed(): boolean {
    return this.exitedWith !== undefined;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  onExit(l: (why: string) => void): () => void {
    this.exitListeners.add(l);
    return () => this.exitListeners.delete(l);
  }

  /** Runs one command (argv, quoted for virsh here) and resolves with what it printed. */
  run(argv: readonly string[], options: { timeoutMs?: number } = {}): Promise<string> {
    const line = virshCommandLine(argv);
    if (this.exitedWith) return Promise.reject(new FerryException('TRANSPORT_CLOSED', `virsh for ${this.options.label ?? this.uri} has exited: ${this.exitedWith}`));
    return new Promise<string>((resolve, reject) => {
      const marker = `FERRY-${this.nonce}-${++this.seq}-END`;
      const timeoutMs = options.timeoutMs ?? this.options.timeoutMs ?? 30_000;
      const p: Pending = {
        line, marker, resolve, reject,
        timer: setTimeout(() => {
          // The shell's state is unknown now: it goes, and the next user opens a new one.
          this.fail(new FerryException('EXEC_FAILED', `virsh ${argv[0]} did not answer within ${timeoutMs} ms${this.options.label ? ` (${this.options.label})` : ''}`, { command: argv[0] }));
        }, timeoutMs),
      };
      p.timer.unref?.();
      this.queue.push(p);
      this.pump();
    });
  }

  private startedAt = 0;

  private pump(): void {
    if (this.current || this.queue.length === 0 || this.exitedWith) return;
    this.current = this.queue.shift()!;
    this.startedAt = performance.now();
    this.child.stdin.write(`${this.current.line}\necho ${this.current.marker}\n`);
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    for (;;) {
      const p = this.current;
      if (!p) {
        // Prompts between commands; nothing is asked.
        if (this.buf.length > 1 << 16) this.buf = this.buf.slice(-4096);
        return;
      }
      // virsh's echo ends its line only when the next prompt comes: the marker alone ends the reply.
      const end = `\n${p.marker}`;
      const at = this.buf.indexOf(end);
      if (at < 0) return;
      let reply = this.buf.slice(0, at);
      this.buf = this.buf.slice(at + end.length).replace(/^\n/, '');
      // What precedes: [prompt]LINE\nOUTPUT...virsh # echo MARKER
      const echoAt = reply.lastIndexOf(`echo ${p.marker}`);
      if (echoAt >= 0) reply = reply.slice(0, echoAt);
      reply = reply.replace(/virsh # $/, '').replace(/^virsh # /, '');
      if (reply.startsWith(`${p.line}\n`)) reply = reply.slice(p.line.length + 1);
      else if (reply === p.line) reply = '';
      clearTimeout(p.timer);
      this.current = undefined;
      this.stats.commands++;
      this.stats.totalMs += performance.now() - this.startedAt;
      const errors = reply.split('\n').filter((l) => l.startsWith('error: ')).map((l) => l.slice('error: '.length));
      if (errors.length) p.reject(new VirshError(p.line.split(' ')[0] ?? '', errors, reply));
      else p.resolve(reply);
      this.pump();
    }
  }

  private fail(e: Error): void {
    for (const p of [...(this.current ? [this.current] : []), ...this.queue]) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.current = undefined;
    this.queue = [];
    this.close();
  }

  private exited(why: string): void {
    if (this.exitedWith) return;
    this.exitedWith = why;
    const e = new FerryException('TRANSPORT_CLOSED', `virsh for ${this.options.label ?? this.uri}: ${why}${this.buf.trim() ? `: ${this.buf.trim().split('\n').slice(-3).join('; ')}` : ''}`);
    for (const p of [...(this.current ? [this.current] : []), ...this.queue]) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.current = undefined;
    this.queue = [];
    for (const l of [...this.exitListeners]) l(why);
  }

  /** Ends the shell (quit, then SIGTERM by pid if it lingers). */
  close(): void {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin.end('quit\n');
    const t = setTimeout(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) {
        log.warn(`virsh ${this.child.pid} for ${this.options.label ?? this.uri} did not quit: SIGTERM`);
        this.child.kill('SIGTERM');
      }
    }, 2000);
    t.unref?.();
    this.child.once('close', () => clearTimeout(t));
  }
}
