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
 */
import type { HostTransport } from '../transport/host-transport';
import { rootLog } from '../log';

const log = rootLog.child('link');

export interface TcpFigures {
  /** `local -> peer` as ss prints them. */
  peer: string;
  bytesAcked: number;
  /** Time the connection had unacknowledged or unsent data (ms; ss prints whole ms). */
  busyMs: number;
}

/** The TCP connections in `ss -tinH` output, with the two figures the rate needs (connections without them are left out). */
export function parseSsTcpInfo(text: string): TcpFigures[] {
  const out: TcpFigures[] = [];
  let socket: string | undefined;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    if (!/^\s/.test(line)) {
      // "0 0 10.0.0.1:51234 10.0.0.2:40123" (state filtered) or "ESTAB 0 0 …": the last two fields.
      const f = line.trim().split(/\s+/);
      socket = f.length >= 2 ? `${f[f.length - 2]} -> ${f[f.length - 1]}` : undefined;
      // ss puts the details on the same line when its output is not a terminal wide enough to wrap.
      if (!/bytes_acked:/.test(line)) continue;
    }
    const acked = /\bbytes_acked:(\d+)/.exec(line);
    const busy = /\bbusy:(\d+)ms/.exec(line);
    if (acked && busy && socket) out.push({ peer: socket, bytesAcked: Number(acked[1]), busyMs: Number(busy[1]) });
  }
  return out;
}

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
function ssAddress(address: string, port: number): string {
  return address.includes(':') ? `[${address.replace(/^\[|\]$/g, '')}]:${port}` : `${address}:${port}`;
}

export class LinkProbe {
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
  constructor(private readonly transport: HostTransport, private readonly dest: { address: string; port: number }, private readonly everyMs = 500, private readonly onNote?: (text: string) => void, private readonly thenEveryMs = 2000) {}

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
      const r = await this.transport.exec(['ss', '-tinH', 'state', 'established', 'dst', ssAddress(this.dest.address, this.dest.port)], { timeoutMs: 3000 });
      if (r.code === 127 || /not found/i.test(r.stderr)) {
        this.disabled = `ss (iproute2) is not installed on ${this.transport.label}`;
        this.onNote?.(`link speed not measured: ${this.disabled}`);
        return undefined;
      }
      if (r.code !== 0) {
        log.debug(`ss on ${this.transport.label} exited ${r.code}: ${r.stderr.trim()}`);
        return this.latest;
      }
      const rate = linkRateOf(parseSsTcpInfo(r.stdout));
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
