/**
 * The migration stream carried inside SSH (plan transport `ssh-tunnel`): the destination
 * QEMU listens on a unix socket in its runtime dir, the source QEMU migrates to a unix
 * socket in its own, and Ferry joins the two through its SSH connections (streamlocal
 * remote forwarding on the source's sshd, streamlocal local forwarding on the
 * destination's). No QEMU opens a TCP connection; on the network only SSH is seen. The
 * relay is a plain byte pipe in both directions, so postcopy's return path (page requests)
 * and multifd's extra connections work as they do over TCP. The bytes pass through the
 * machine running Ferry: its links bound the migration's speed.
 */
import type { Duplex } from 'node:stream';
import type { HostTransport, UnixListener } from '../transport/host-transport';
import { rootLog } from '../log';

const tunnelLog = rootLog.child('tunnel');

export interface StreamTunnel {
  /** What the source QEMU migrates to (`unix:` on the source host). */
  readonly sourceUri: string;
  /** Bytes relayed source -> destination and back (the return path). */
  readonly bytes: { forward: number; back: number };
  readonly connections: number;
  close(): Promise<void>;
}

/**
 * Listens on `sourceSocket` on the source host and relays each connection to
 * `destSocket` on the destination host. `onNote` hears about connections and failures.
 */
export async function openStreamTunnel(src: HostTransport, sourceSocket: string, dst: HostTransport, destSocket: string, onNote: (text: string) => void = () => {}): Promise<StreamTunnel> {
  const bytes = { forward: 0, back: 0 };
  const open = new Set<Duplex>();
  let connections = 0;
  const relay = (a: Duplex) => {
    connections++;
    open.add(a);
    a.once('close', () => open.delete(a));
    a.pause();
    dst.openUnix(destSocket).then((b) => {
      open.add(b);
      b.once('close', () => open.delete(b));
      a.on('data', (c: Buffer) => {
        bytes.forward += c.length;
        if (!b.write(c)) a.pause();
      });
      b.on('drain', () => a.resume());
      b.on('data', (c: Buffer) => {
        bytes.back += c.length;
        if (!a.write(c)) b.pause();
      });
      a.on('drain', () => b.resume());
      a.once('end', () => b.end());
      b.once('end', () => a.end());
      const fail = (which: string) => (e: Error) => {
        onNote(`tunnel: ${which} side failed: ${e.message}`);
        a.destroy();
        b.destroy();
      };
      a.on('error', fail('source'));
      b.on('error', fail('destination'));
      a.once('close', () => b.destroy());
      b.once('close', () => a.destroy());
      a.resume();
    }, (e: unknown) => {
      onNote(`tunnel: cannot reach the destination's ${destSocket}: ${e instanceof Error ? e.message : String(e)}`);
      a.destroy();
    });
  };
  const listener: UnixListener = await src.listenUnix(sourceSocket, relay);
  return {
    sourceUri: `unix:${sourceSocket}`,
    bytes,
    get connections() {
      return connections;
    },
    async close() {
      await listener.close().catch(tunnelLog.dropped('closing the tunnel listener'));
      for (const s of open) s.destroy();
      open.clear();
    },
  };
}

/**
 * Preflight for transport ssh-tunnel: whether the source's sshd lets Ferry listen on a unix
 * socket there (streamlocal remote forwarding), and what the tunnel means for this plan.
 */
export async function tunnelCheck(plan: { from: string; to: string; mode: string }, src: { t: HostTransport; dir: string }, dst: { t: HostTransport }): Promise<{ status: 'pass' | 'warn' | 'fail'; reason: string; fix?: string }> {
  if (src.t.kind === 'local' && dst.t.kind === 'local') {
    return { status: 'warn', reason: `${plan.from} and ${plan.to} are both this machine: no network to protect, the tunnel only adds a relay`, fix: 'use transport tcp between local hosts' };
  }
  if (src.t.kind === 'ssh') {
    const probe = `${src.dir}/.ferry-tunnel-probe-${process.pid}-${Date.now().toString(36)}.sock`;
    try {
      await src.t.exec(['mkdir', '-p', '--', src.dir]);
      const l = await src.t.listenUnix(probe, (s) => s.destroy());
      await l.close();
    } catch (e) {
      return { status: 'fail', reason: `${plan.from}'s sshd does not let Ferry listen on a unix socket: ${e instanceof Error ? e.message : String(e)}`, fix: `set AllowStreamLocalForwarding yes in ${plan.from}'s sshd_config, or use transport tcp` };
    }
  }
  const post = plan.mode !== 'precopy' ? '; postcopy page requests travel back through the same tunnel' : '';
  return { status: 'pass', reason: `the stream goes ${plan.from} -> SSH -> Ferry -> SSH -> ${plan.to}; its bytes pass through the machine running Ferry${post}` };
}
