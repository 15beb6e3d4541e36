/**
 * The migration connection's own speed, measured while it runs: the kernel's TCP_INFO for
 * the source QEMU's connection to the destination (read with `ss -tin` on the source host)
 * gives the bytes the destination acknowledged and the time the connection had data in
 * flight or queued ("busy"). A `max-bandwidth` cap makes QEMU send in bursts and sleep
 * between them, so busy time is only the bursts: bytes acked ÷ busy time is the rate the
 * path carries when QEMU has data for it — which is what the final, uncapped copy gets,
 * whether the limit is QEMU itself (loopback, a fast LAN), the receiver, or a slower link.
 * No probe traffic: it is the migration's own stream. Nothing in it is guessed: no `ss`, no
 * such connection, or too little busy time yet, and there is no figure.
 *
 * The connection is found by its destination port when Ferry knows it (its own QMP driver),
 * or by the process that owns it when not: libvirt's daemons pick the port and do not say
 * which, but the source QEMU's connections to the destination address are the migration's
 * (`ss -p` names the owner; it needs the rights to see that process's sockets, root usually).
 */
import { commandMissing } from '../transport/host-transport';
import type { HostTransport } from '../transport/host-transport';
import { rootLog } from '../log';

const log = rootLog.child('link');

export interface TcpFigures {
  /** `local -> peer` as ss prints them. */
  peer: string;
  bytesAcked: number;
  /** Time the connection had unacknowledged or unsent data (ms; ss prints whole ms). */
  busyMs: number;
  /** The processes holding the socket, when ss was asked (`-p`) and may see them. */
  pids?: number[];
}

/** The TCP connections in `ss -tinH` output, with the two figures the rate needs (connections without them are left out). */
export function parseSsTcpInfo(text: string): TcpFigures[] {
  const out: TcpFigures[] = [];
  let socket: string | undefined;
  let pids: number[] | undefined;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    if (!/^\s/.test(line)) {
      // "0 0 10.0.0.1:51234 10.0.0.2:40123" (state filtered) or "ESTAB 0 0 …": the two fields
      // before the details and the owners (`users:(("qemu-system-x86",pid=812,fd=31))` with -p).
      const head = line.replace(/\s+users:\(\(.*$/, '').trim().split(/\s+/).filter((f) => !/^[a-z_]+:/.test(f));
      const addrs = head.filter((f) => /:\d+$|:\*$/.test(f));
      socket = addrs.length >= 2 ? `${addrs[addrs.length - 2]} -> ${addrs[addrs.length - 1]}` : undefined;
      const users = /users:\(\((.*?)\)\)/.exec(line)?.[1];
      pids = users === undefined ? undefined : [...users.matchAll(/\bpid=(\d+)/g)].map((m) => Number(m[1]));
      // ss puts the details on the same line when its output is not a terminal wide enough to wrap.
      if (!/bytes_acked:/.test(line)) continue;
    }
    const acked = /\bbytes_acked:(\d+)/.exec(line);
    const busy = /\bbusy:(\d+)ms/.exec(line);
    if (acked && busy && socket) out.push({ peer: socket, bytesAcked: Number(acked[1]), busyMs: Number(busy[1]), ...(pids ? { pids } : {}) });
  }
  return out;
}

/**
 * Least time between two reads of the migration connection's speed until there is a figure
 * (one `ss` on the source each; doubled after each read that found too little). Short: a
 * small guest on the lab sends its RAM in under half a second, and with reads at 0.1 s and
 * 1.1 s its first migration ended before any figure, so its final copy was projected at the
 * cap (229 ms projected, 38 ms actual). Reads now come at 0.1, 0.4 and 1 s.
 */
export const LINK_PROBE_EVERY_MS = 150;

/** Least busy time a rate is read from: ss rounds it to whole ms. */
const MIN_BUSY_MS = 5;
const MIN_ACKED = 2_000_000;

/**
 * Bytes acked ÷ busy time over the connections to one destination (several with multifd,
 * which are busy at the same time: their bytes add up over the busiest one's time).
 */
export function linkRateOf(conns: readonly TcpFigures[]): number | undefined {
  if (conns.length === 0) return undefined;
  const acked = conns.reduce((a, c) => a + c.bytesAcked, 0);
  const busy = Math.max(...conns.map((c) => c.busyMs));
  if (busy < MIN_BUSY_MS || acked < MIN_ACKED) return undefined;
  return (acked * 1000) / busy;
}

/** `ss` address filter syntax: IPv6 in brackets. */
function ssAddress(address: string, port: number | undefined): string {
  const a = address.includes(':') ? `[${address.replace(/^\[|\]$/g, '')}]` : address;
  return port === undefined ? a : `${a}:${port}`;
}

/**
 * Which connection is the migration's: the one to the destination's address and port, or —
 * the port unknown — the ones to that address owned by the source QEMU (`owner` finds its
 * pids on the source host: none yet, or why it cannot).
 */
export type LinkTarget = { address: string; port: number } | { address: string; owner: () => Promise<number[] | { unavailable: string }> };

export class LinkProbe {
  private owners: number[] = [];

  private latest: number | undefined;
  private inFlight = false;
  private lastAt = 0;
  /** Reads so far that found too little to give a figure (each one doubles the wait before the next). */
  private empty = 0;
  private disabled: string | undefined;

  /**
   * @param transport the source host, where the connection's sending end is
   * @param dest where the source QEMU sends the stream (the destination's migration address and port)
   * @param everyMs least time between two reads until there is a figure (each is one `ss` run on
   *   the source host), doubled after each read that found too little (a slow, capped migration
   *   takes a while to send enough: ss runs cost the console a process spawn each), up to…
   * @param thenEveryMs … the time between reads once there is a figure: it is over the whole connection, so it settles
   */
  constructor(private readonly transport: HostTransport, private readonly dest: LinkTarget, private readonly everyMs = 500, private readonly onNote?: (text: string) => void, private readonly thenEveryMs = 2000) {}

  /** The rate measured so far (bytes/s), once there is enough busy time to read one. */
  get rate(): number | undefined {
    return this.latest;
  }

  /** Why there is no measurement at all (no `ss` on the host), if so. */
  get unavailable(): string | undefined {
    return this.disabled;
  }

  /** Reads the figures again unless a read is under way or the last was under `everyMs` ago. Never throws. */
  poll(now = Date.now()): void {
    const wait = this.latest === undefined ? Math.min(this.everyMs * 2 ** this.empty, Math.max(this.everyMs, this.thenEveryMs)) : this.thenEveryMs;
    if (this.disabled || this.inFlight || now - this.lastAt < wait) return;
    this.inFlight = true;
    this.lastAt = now;
    void this.read().finally(() => {
      this.inFlight = false;
    });
  }

  /** One read; resolves with the rate so far. */
  async read(): Promise<number | undefined> {
    try {
      const byOwner = 'owner' in this.dest;
      if (byOwner && this.owners.length === 0) {
        const found = await this.dest.owner();
        if (!Array.isArray(found)) {
          this.disabled = found.unavailable;
          this.onNote?.(`link speed not measured: ${this.disabled}`);
          return undefined;
        }
        this.owners = found;
        if (found.length === 0) {
          this.empty++;
          return undefined;
        }
      }
      const dst = ssAddress(this.dest.address, 'port' in this.dest ? this.dest.port : undefined);
      const r = await this.transport.exec(['ss', byOwner ? '-tinpH' : '-tinH', 'state', 'established', 'dst', dst], { timeoutMs: 3000 });
      if (commandMissing(r)) {
        this.disabled = `ss (iproute2) is not installed on ${this.transport.label}`;
        this.onNote?.(`link speed not measured: ${this.disabled}`);
        return undefined;
      }
      if (r.code !== 0) {
        log.debug(`ss on ${this.transport.label} exited ${r.code}: ${r.stderr.trim()}`);
        return this.latest;
      }
      let conns = parseSsTcpInfo(r.stdout);
      if (byOwner) {
        const owned = conns.filter((c) => c.pids?.some((p) => this.owners.includes(p)));
        if (owned.length === 0 && conns.length > 0 && conns.every((c) => c.pids === undefined)) {
          // ss names a socket's owner only to who may see the owning process: asking again shows no more.
          this.disabled = `ss on ${this.transport.label} does not say which process owns the connections to ${this.dest.address} (it needs the rights to see the source QEMU's sockets)`;
          this.onNote?.(`link speed not measured: ${this.disabled}`);
          return undefined;
        }
        conns = owned;
      }
      const rate = linkRateOf(conns);
      if (rate !== undefined) this.latest = rate;
      else this.empty++;
      return this.latest;
    } catch (e) {
      // A busy or dropped host misses one read; the next poll tries again.
      log.debug(`ss on ${this.transport.label}: ${e instanceof Error ? e.message : String(e)}`);
      return this.latest;
    }
  }
}
