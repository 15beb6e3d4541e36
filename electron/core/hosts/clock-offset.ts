/**
 * A host's clock against this machine's, measured the NTP way: over one long-lived shell on
 * the host (one SSH session channel), a few request/reply round trips; each gives an offset
 * (host time minus the midpoint of send and receive here) that is right within half its round
 * trip. The sample with the shortest round trip wins. One `date` per SSH exec instead measured
 * 233–537 ms between two namespaces sharing one clock: the exec's own set-up time, through a
 * jump host, lands on one side of the midpoint.
 */
import type { HostTransport } from '../transport/host-transport';
import { FerryException } from '../../../shared/errors';

export interface ClockReading {
  /** Host clock minus this machine's, ms. */
  offsetMs: number;
  /** The true offset lies within offsetMs ± uncertaintyMs. */
  uncertaintyMs: number;
  /** Round trip of the best sample, ms. */
  rttMs: number;
  samples: number;
}

/**
 * bash answers each line with `$EPOCHREALTIME` (microseconds, no process started); where
 * there is no bash 5, `date +%s.%N` (one fork per sample, still inside the round trip).
 */
const PROBE = 'if [ -n "${BASH_VERSION:-}" ] && [ -n "${EPOCHREALTIME:-}" ]; then while read -r _; do echo "$EPOCHREALTIME"; done; else while read -r _; do date +%s.%N; done; fi';

/**
 * A shell that gives no usable reading in the first half of the time is replaced by a fresh
 * one, once: a CI run saw one probe shell through the jump host never answer while the
 * next one would have (each is its own SSH channel).
 */
export async function measureClock(transport: HostTransport, options: { samples?: number; timeoutMs?: number; now?: () => number } = {}): Promise<ClockReading> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const start = Date.now();
  const fail = () => new FerryException('EXEC_FAILED', `${transport.label}: no clock reading within ${timeoutMs} ms`);
  const first = await readClock(transport, options, start + timeoutMs / 2);
  if (first) return first;
  return (await readClock(transport, options, start + timeoutMs)) ?? Promise.reject(fail());
}

/** One probe shell until `deadline`: its best reading, or undefined when it gave none. */
async function readClock(transport: HostTransport, options: { samples?: number; now?: () => number }, deadline: number): Promise<ClockReading | undefined> {
  const n = options.samples ?? 8;
  const now = options.now ?? (() => performance.timeOrigin + performance.now());
  const proc = await transport.spawn(['sh', '-c', `command -v bash >/dev/null 2>&1 && exec bash -c '${PROBE}' || { ${PROBE}; }`]);
  let buf = '';
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  proc.stdout.on('data', (c: Buffer | string) => {
    buf += c.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i).trim());
      buf = buf.slice(i + 1);
    }
    wake?.();
  });
  const next = () => new Promise<string | undefined>((resolve) => {
    const check = () => {
      if (lines.length) return resolve(lines.shift()!);
      if (Date.now() > deadline) return resolve(undefined);
      wake = check;
      setTimeout(check, 50).unref();
    };
    check();
  });
  let best: ClockReading | undefined;
  let taken = 0;
  try {
    for (let i = 0; i < n + 1; i++) {
      const t1 = now();
      proc.stdin.write('\n');
      // A slow host (a loaded machine, a long hop) that answered at least once still gives a
      // bounded reading: the best of those taken, with its honest uncertainty.
      const text = await next();
      if (text === undefined) break;
      const t2 = now();
      const host = Number(text) * 1000;
      if (!Number.isFinite(host) || host <= 0) throw new FerryException('EXEC_FAILED', `${transport.label}: unreadable clock reading ${JSON.stringify(text.slice(0, 40))}`);
      if (i === 0) continue; // the first one also pays for the shell starting
      const rtt = t2 - t1;
      const reading = { offsetMs: host - (t1 + t2) / 2, uncertaintyMs: rtt / 2, rttMs: rtt, samples: i };
      taken = i;
      if (!best || rtt < best.rttMs) best = reading;
    }
  } finally {
    proc.stdin.end();
    proc.kill('SIGTERM');
  }
  return best ? { ...best, samples: taken } : undefined;
}

/** Offset between two hosts (b minus a) from two readings, with the uncertainties added. */
export function offsetBetween(a: ClockReading, b: ClockReading): { offsetMs: number; uncertaintyMs: number } {
  return { offsetMs: b.offsetMs - a.offsetMs, uncertaintyMs: a.uncertaintyMs + b.uncertaintyMs };
}
