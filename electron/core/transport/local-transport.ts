import { spawn as spawnChild } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Readable, Writable } from 'node:stream';
import path from 'node:path';
import { FerryException } from '../../../shared/errors';
import type { ExecOptions, ExecResult, HostTransport, SpawnedProcess, TransportStateChange, UnixListener } from './host-transport';

/** This machine. Commands go straight to execve: no shell, no quoting needed. */
export class LocalTransport implements HostTransport {
  readonly kind = 'local' as const;
  readonly label: string = 'local';
  readonly state = 'connected' as const;

  async connect(): Promise<void> {}
  async close(): Promise<void> {}
  onStateChange(_listener: (change: TransportStateChange) => void): () => void {
    return () => {};
  }

  exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    checkArgv(argv);
    return new Promise((resolve, reject) => {
      const child = spawnChild(argv[0]!, argv.slice(1), {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: options.env ? { ...process.env, ...options.env } : process.env,
      });
      const out: Buffer[] = [];
      const errOut: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => errOut.push(c));
      let timedOut = false;
      const timer = options.timeoutMs
        ? setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutMs)
        : undefined;
      child.on('error', (e: NodeJS.ErrnoException) => {
        if (timer) clearTimeout(timer);
        reject(new FerryException('EXEC_FAILED', `cannot run ${argv[0]}: ${e.message}`, { argv0: argv[0], errno: e.code }));
      });
      child.on('close', (code, signal) => {
        if (timer) clearTimeout(timer);
        if (timedOut) {
          reject(new FerryException('EXEC_FAILED', `${argv[0]} timed out after ${options.timeoutMs} ms`, { argv0: argv[0] }));
          return;
        }
        resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(errOut).toString('utf8') });
      });
      child.stdin.on('error', () => {}); // EPIPE when the program does not read its stdin
      child.stdin.end(options.stdin ?? undefined);
    });
  }

  spawn(argv: readonly string[]): Promise<SpawnedProcess> {
    checkArgv(argv);
    return new Promise((resolve, reject) => {
      const child = spawnChild(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      child.stdin.on('error', () => {}); // EPIPE when the program exits without reading its stdin
      const exited = new Promise<{ code: number | null; signal: string | null }>((res) => {
        child.on('close', (code, signal) => res({ code, signal }));
      });
      child.once('error', (e: NodeJS.ErrnoException) =>
        reject(new FerryException('EXEC_FAILED', `cannot run ${argv[0]}: ${e.message}`, { argv0: argv[0], errno: e.code })));
      child.once('spawn', () =>
        resolve({
          stdin: child.stdin,
          stdout: child.stdout,
          stderr: child.stderr,
          exited,
          kill: (signal = 'SIGTERM') => {
            child.kill(signal);
          },
        }));
    });
  }

  openUnix(socketPath: string): Promise<Duplex> {
    return connectSocket(() => netConnect({ path: socketPath }), `unix socket ${socketPath}`);
  }

  async listenUnix(socketPath: string, onConnection: (stream: Duplex) => void): Promise<UnixListener> {
    await fs.rm(socketPath, { force: true });
    const server = createServer((s) => onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new FerryException('IO_ERROR', `cannot listen on ${socketPath}: ${e.message}`, { path: socketPath, errno: e.code })));
      server.listen(socketPath, () => resolve());
    });
    return {
      path: socketPath,
      close: async () => {
        await new Promise<void>((r) => server.close(() => r()));
        await fs.rm(socketPath, { force: true }).catch(() => undefined); // force: only a permission problem is left, and the next bind reports it
      },
    };
  }

  openTcp(host: string, port: number): Promise<Duplex> {
    return connectSocket(() => netConnect({ host, port }), `${host}:${port}`).then((s) => {
      (s as Socket).setNoDelay(true);
      return s;
    });
  }

  /**
   * Read at once, not through libuv's thread pool: what Ferry reads through a transport is
   * small (/proc entries, pid files, argv and state records), and an async read costs four
   * round trips to the pool (open, stat, read, close), each a futex wake and an event-loop
   * wake-up. The board reads three such files per VM every few seconds; with 200 VMs that
   * was most of the console's idle CPU.
   */
  async readFile(filePath: string): Promise<Buffer> {
    try {
      return readFileSync(filePath);
    } catch (e) {
      throw ioError('read', filePath, e);
    }
  }

  async readDir(dirPath: string): Promise<string[]> {
    try {
      return readdirSync(dirPath);
    } catch (e) {
      throw ioError('read', dirPath, e);
    }
  }

  async writeFile(filePath: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
    await writeFileAtomic(filePath, data, mode);
  }
}

/** Writes a file so that a reader sees the old or the new content, never a half-written one. */
export async function writeFileAtomic(filePath: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = path.join(path.dirname(filePath), `.${path.basename(filePath)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await fs.open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, filePath);
  } catch (e) {
    await fs.rm(tmp, { force: true }).catch(() => undefined); // the write's own error is the one thrown below
    throw ioError('write', filePath, e);
  }
}

function ioError(verb: string, filePath: string, e: unknown): FerryException {
  const err = e as NodeJS.ErrnoException;
  const code = err.code === 'ENOENT' && verb === 'read' ? 'NOT_FOUND' : 'IO_ERROR';
  return new FerryException(code, `cannot ${verb} ${filePath}: ${err.message}`, { path: filePath, errno: err.code });
}

function checkArgv(argv: readonly string[]): void {
  if (argv.length === 0 || !argv[0]) throw new FerryException('INVALID_REQUEST', 'empty command');
  const bad = argv.findIndex((a) => a.includes('\0'));
  if (bad >= 0) throw new FerryException('INVALID_REQUEST', `argument ${bad} contains a NUL byte`);
}

function connectSocket(make: () => Socket, what: string): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = make();
    const onError = (e: NodeJS.ErrnoException) =>
      reject(new FerryException(e.code === 'ENOENT' ? 'NOT_FOUND' : 'IO_ERROR', `cannot connect to ${what}: ${e.message}`, { errno: e.code }));
    s.once('error', onError);
    s.once('connect', () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}

/**
 * This machine, inside a network namespace (the netns lab): commands run through
 * `ip netns exec`, TCP connections are made from inside the namespace by socat. Unix
 * sockets live on the shared filesystem and are opened directly.
 */
export class NetnsTransport extends LocalTransport {
  override readonly label: string;

  constructor(readonly netns: string) {
    super();
    this.label = `netns:${netns}`;
  }

  override exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    checkArgv(argv);
    return super.exec(['ip', 'netns', 'exec', this.netns, ...argv], options);
  }

  override spawn(argv: readonly string[]): Promise<SpawnedProcess> {
    checkArgv(argv);
    return super.spawn(['ip', 'netns', 'exec', this.netns, ...argv]);
  }

  override async openTcp(host: string, port: number): Promise<Duplex> {
    const p = await this.spawn(['socat', '-', `TCP:${host}:${port}`]);
    return Duplex.from({ readable: p.stdout as Readable, writable: p.stdin as Writable });
  }
}

/**
 * This machine, inside the mount namespace of a running process (the libvirt lab: each
 * daemon sees its own /etc/libvirt, /run/libvirt, ...). Commands run through `nsenter
 * --mount`; files and unix sockets are reached through `/proc/PID/root`, so a path means
 * what it means to the daemon. The pid is read from `pidFile` on every use: the namespace
 * lives as long as that process.
 */
export class MountNsTransport extends LocalTransport {
  override readonly label: string;

  constructor(readonly pidFile: string, label?: string) {
    super();
    this.label = label ?? `mntns:${path.basename(path.dirname(pidFile))}`;
  }

  /** The namespace's process, or a clear error when it is gone. */
  pid(): number {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      // reported as the clearer error below
      throw new FerryException('TRANSPORT_CLOSED', `${this.label}: ${this.pidFile} is missing (is the lab up?)`);
    }
    if (!Number.isInteger(pid) || pid <= 0 || !existsSync(`/proc/${pid}/ns/mnt`)) {
      throw new FerryException('TRANSPORT_CLOSED', `${this.label}: the process holding the namespace (${this.pidFile}) is gone`);
    }
    return pid;
  }

  private rooted(p: string): string {
    if (!path.isAbsolute(p)) throw new FerryException('INVALID_REQUEST', `${this.label}: a path in a mount namespace must be absolute: ${p}`);
    return `/proc/${this.pid()}/root${p}`;
  }

  override exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    checkArgv(argv);
    return super.exec(['nsenter', `--target=${this.pid()}`, '--mount', '--', ...argv], options);
  }

  override spawn(argv: readonly string[]): Promise<SpawnedProcess> {
    checkArgv(argv);
    return super.spawn(['nsenter', `--target=${this.pid()}`, '--mount', '--', ...argv]);
  }

  override openUnix(socketPath: string): Promise<Duplex> {
    return super.openUnix(this.rooted(socketPath));
  }

  override listenUnix(socketPath: string, onConnection: (stream: Duplex) => void): Promise<UnixListener> {
    return super.listenUnix(this.rooted(socketPath), onConnection).then((l) => ({ path: socketPath, close: () => l.close() }));
  }

  override readFile(filePath: string): Promise<Buffer> {
    return super.readFile(this.rooted(filePath));
  }

  override readDir(dirPath: string): Promise<string[]> {
    return super.readDir(this.rooted(dirPath));
  }

  override writeFile(filePath: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
    return super.writeFile(this.rooted(filePath), data, mode);
  }
}

/** The transport a local host's config describes (plain, network namespace, or mount namespace). */
export function localTransportFor(t: { netns?: string; mountNsPidFile?: string }, label?: string): LocalTransport {
  if (t.netns && t.mountNsPidFile) throw new FerryException('INVALID_REQUEST', 'a local host takes netns or mountNsPidFile, not both');
  if (t.mountNsPidFile) return new MountNsTransport(t.mountNsPidFile, label);
  return t.netns ? new NetnsTransport(t.netns) : new LocalTransport();
}
