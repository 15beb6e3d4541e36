/**
 * How Ferry reaches a libvirt daemon: the daemon's unix socket on the host is opened
 * through the host's transport (for an SSH host, an OpenSSH streamlocal channel inside the
 * one SSH connection Ferry already holds; streamlocal channels do not count against sshd's
 * MaxSessions) and offered to virsh on this machine as a private local socket. virsh then
 * speaks libvirt's own protocol to the daemon, so every feature of libvirt works, and a
 * managed migration whose client talks to both daemons needs no SSH trust between the
 * hosts.
 *
 * Per host: one socket relay, one long-lived interactive virsh for queries and controls,
 * and `spawn` for the few long-running commands (a migration, an event stream).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { FerryException, toFerryError } from '../../../shared/errors';
import type { HostConfig } from '../../../shared/model/host';
import type { HostTransport } from '../transport/host-transport';
import { rootLog } from '../log';
import { VirshShell, spawnVirsh } from './virsh-shell';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';

const log = rootLog.child('libvirt');

/** Where libvirt's QEMU driver listens when the host config names no socket: modular daemon first, then the monolithic one. */
export const DEFAULT_LIBVIRT_SOCKETS = ['/run/libvirt/virtqemud-sock', '/run/libvirt/libvirt-sock'] as const;

let relayDir: string | undefined;

/** A directory only this user can enter (0700): whoever reaches a relay socket is root on the host's libvirt. */
function privateDir(): string {
  relayDir ??= mkdtempSync(path.join(tmpdir(), 'ferry-libvirt-'));
  return relayDir;
}

let relaySeq = 0;

/** Accepts local connections and joins each to a fresh stream to the host's socket. */
class SocketRelay {
  readonly path: string;
  private readonly server: Server;
  private readonly open = new Set<{ local: Socket; remote?: Duplex }>();
  connections = 0;

  private constructor(private readonly transport: HostTransport, private readonly remotePath: string, private readonly label: string) {
    this.path = path.join(privateDir(), `h${++relaySeq}-${process.pid}.sock`);
    this.server = createServer((local) => this.accept(local));
  }

  static async start(transport: HostTransport, remotePath: string, label: string): Promise<SocketRelay> {
    const r = new SocketRelay(transport, remotePath, label);
    rmSync(r.path, { force: true });
    await new Promise<void>((resolve, reject) => {
      r.server.once('error', (e) => reject(new FerryException('IO_ERROR', `cannot listen on ${r.path}: ${e.message}`)));
      r.server.listen(r.path, () => resolve());
    });
    return r;
  }

  private accept(local: Socket): void {
    this.connections++;
    const entry: { local: Socket; remote?: Duplex } = { local };
    this.open.add(entry);
    local.pause();
    const done = () => {
      this.open.delete(entry);
      local.destroy();
      entry.remote?.destroy();
    };
    local.once('close', done);
    local.on('error', () => done());
    this.transport.openUnix(this.remotePath).then((remote) => {
      if (local.destroyed) {
        remote.destroy();
        return;
      }
      entry.remote = remote;
      remote.on('error', (e: Error) => {
        log.warn(`${this.label}: libvirt socket stream ended: ${e.message}`);
        done();
      });
      remote.once('close', done);
      local.pipe(remote);
      remote.pipe(local);
      local.resume();
    }, (e: unknown) => {
      log.warn(`${this.label}: cannot open ${this.remotePath}: ${toFerryError(e).message}`);
      done();
    });
  }

  async close(): Promise<void> {
    for (const e of [...this.open]) {
      e.local.destroy();
      e.remote?.destroy();
    }
    this.open.clear();
    await new Promise<void>((r) => this.server.close(() => r()));
    rmSync(this.path, { force: true });
  }
}

/** The virsh URI for a local socket path. */
export function unixUri(socketPath: string): string {
  return `qemu+unix:///system?socket=${encodeURIComponent(socketPath).replace(/%2F/g, '/')}`;
}

/** Opens the first of `candidates` that accepts a connection on the host; libvirt's socket path, or a clear error. */
async function findSocket(transport: HostTransport, candidates: readonly string[], hostId: string): Promise<string> {
  const reasons: string[] = [];
  for (const c of candidates) {
    try {
      const s = await transport.openUnix(c);
      s.destroy();
      return c;
    } catch (e) {
      reasons.push(`${c}: ${toFerryError(e).message}`);
    }
  }
  throw new FerryException('NOT_FOUND', `no libvirt daemon answers on ${hostId} (${reasons.join('; ')})`, { host: hostId });
}

export class LibvirtConnection {
  private shellP: Promise<VirshShell> | undefined;
  private closed = false;

  private constructor(readonly hostId: string, readonly transport: HostTransport, readonly remoteSocket: string, private readonly relay: SocketRelay, readonly uri: string) {}

  static async open(host: HostConfig, transport: HostTransport): Promise<LibvirtConnection> {
    if (!host.libvirt) throw new FerryException('INVALID_REQUEST', `host "${host.id}" is not a libvirt host`);
    const socket = await findSocket(transport, host.libvirt.socket ? [host.libvirt.socket] : DEFAULT_LIBVIRT_SOCKETS, host.id);
    const relay = await SocketRelay.start(transport, socket, host.id);
    const c = new LibvirtConnection(host.id, transport, socket, relay, unixUri(relay.path));
    try {
      await c.shell();
    } catch (e) {
      await c.close();
      throw e;
    }
    log.info(`${host.id}: libvirt at ${socket} through ${transport.label}, relayed to ${relay.path}`);
    return c;
  }

  /** The long-lived shell; started again if it has exited. */
  shell(): Promise<VirshShell> {
    if (this.closed) return Promise.reject(new FerryException('TRANSPORT_CLOSED', `the libvirt connection to ${this.hostId} is closed`));
    if (!this.shellP) {
      const p = VirshShell.open(this.uri, { label: this.hostId });
      this.shellP = p;
      const forget = () => {
        if (this.shellP === p) this.shellP = undefined;
      };
      p.then((sh) => sh.onExit(forget), forget);
    }
    return this.shellP;
  }

  /** One command through the shell. */
  async run(argv: readonly string[], options: { timeoutMs?: number } = {}): Promise<string> {
    return (await this.shell()).run(argv, options);
  }

  /** A separate `virsh -c URI ARGS...` (argv, no shell reads it), for commands that run long. */
  spawn(args: readonly string[]): ChildProcessWithoutNullStreams {
    if (this.closed) throw new FerryException('TRANSPORT_CLOSED', `the libvirt connection to ${this.hostId} is closed`);
    return spawnVirsh(['-c', this.uri, ...args]);
  }

  get relayConnections(): number {
    return this.relay.connections;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const sh = await this.shellP?.catch(() => undefined); // a shell that never opened was reported to whoever waited for it
    sh?.close();
    await this.relay.close();
  }
}

/** One connection per libvirt host, made on first use and dropped with the host. */
export class LibvirtPool {
  private readonly conns = new Map<string, { transport: HostTransport; conn: Promise<LibvirtConnection> }>();

  get(host: HostConfig, transport: HostTransport): Promise<LibvirtConnection> {
    const hit = this.conns.get(host.id);
    if (hit && hit.transport === transport) return hit.conn;
    if (hit) void hit.conn.then((c) => c.close(), () => undefined);
    const conn = LibvirtConnection.open(host, transport);
    const entry = { transport, conn };
    this.conns.set(host.id, entry);
    conn.catch(() => {
      if (this.conns.get(host.id) === entry) this.conns.delete(host.id);
    });
    return conn;
  }

  async drop(hostId: string): Promise<void> {
    const hit = this.conns.get(hostId);
    this.conns.delete(hostId);
    await hit?.conn.then((c) => c.close(), () => undefined);
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.conns.keys()].map((id) => this.drop(id)));
  }
}
