/**
 * The demo guest's serial protocol (assets/guest/README.md): each output line is a keyword
 * followed by `key=value` pairs. Pure parsing, shared by the core and the renderer.
 */

export interface GuestHello {
  kind: 'hello';
  version: number;
  memMiB: number;
  tscKHz: number;
  wsMiB: number;
  /** MiB/s; null = "max". */
  rate: number | null;
  words: number;
  hbMs: number;
}

export interface GuestHeartbeat {
  kind: 'heartbeat' | 'status';
  seq: number;
  tMs: number;
  wsMiB: number;
  rate: number | null;
  achievedKiBs: number;
  stallUs: number;
  writes: number;
}

export interface GuestVerify {
  kind: 'verify';
  ok: boolean;
  pages: number;
  bad: number;
  stale: number;
  firstBad: number;
  ms: number;
}

export interface GuestAck {
  kind: 'ok';
  command: string;
  fields: Record<string, string>;
}

export interface GuestError {
  kind: 'error';
  message: string;
}

export type GuestLine = GuestHello | GuestHeartbeat | GuestVerify | GuestAck | GuestError;

function fieldsOf(parts: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq > 0) out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}

function int(f: Record<string, string>, key: string): number | undefined {
  const v = f[key];
  if (v === undefined || !/^-?\d+$/.test(v)) return undefined;
  return Number(v);
}

function rate(f: Record<string, string>): number | null | undefined {
  const v = f.rate;
  if (v === 'max') return null;
  return int(f, 'rate');
}

/** Parses one line; undefined for anything that is not a well-formed guest line. */
export function parseGuestLine(raw: string): GuestLine | undefined {
  const line = raw.replace(/\r$/, '').trim();
  const [keyword, ...rest] = line.split(/\s+/);
  if (!keyword) return undefined;
  if (keyword === 'ERR') return { kind: 'error', message: rest.join(' ') };
  if (keyword === 'OK') {
    const [command, ...fields] = rest;
    return command ? { kind: 'ok', command, fields: fieldsOf(fields) } : undefined;
  }
  const f = fieldsOf(rest);
  switch (keyword) {
    case 'FERRY-GUEST': {
      const vals = [int(f, 'version'), int(f, 'mem_mib'), int(f, 'tsc_khz'), int(f, 'ws_mib'), rate(f), int(f, 'words'), int(f, 'hb_ms')] as const;
      if (vals.some((v) => v === undefined)) return undefined;
      const [version, memMiB, tscKHz, wsMiB, r, words, hbMs] = vals as unknown as [number, number, number, number, number | null, number, number];
      return { kind: 'hello', version, memMiB, tscKHz, wsMiB, rate: r, words, hbMs };
    }
    case 'HB':
    case 'STATUS': {
      const vals = [int(f, 'seq'), int(f, 't_ms'), int(f, 'ws_mib'), rate(f), int(f, 'achieved_kib_s'), int(f, 'stall_us'), int(f, 'writes')] as const;
      if (vals.some((v) => v === undefined)) return undefined;
      const [seq, tMs, wsMiB, r, achievedKiBs, stallUs, writes] = vals as unknown as [number, number, number, number | null, number, number, number];
      return { kind: keyword === 'HB' ? 'heartbeat' : 'status', seq, tMs, wsMiB, rate: r, achievedKiBs, stallUs, writes };
    }
    case 'VERIFY': {
      const vals = [int(f, 'pages'), int(f, 'bad'), int(f, 'stale'), int(f, 'first_bad'), int(f, 'ms')] as const;
      if ((f.result !== 'ok' && f.result !== 'fail') || vals.some((v) => v === undefined)) return undefined;
      const [pages, bad, stale, firstBad, ms] = vals as unknown as number[];
      return { kind: 'verify', ok: f.result === 'ok', pages: pages!, bad: bad!, stale: stale!, firstBad: firstBad!, ms: ms! };
    }
    default:
      return undefined;
  }
}

/** The guest command for a rate: MiB/s, or null for "as fast as it can". */
export function rateCommand(mibPerS: number | null): string {
  if (mibPerS !== null && (!Number.isFinite(mibPerS) || mibPerS < 0)) throw new RangeError(`rate must be >= 0 or max, got ${mibPerS}`);
  return mibPerS === null ? 'r max' : `r ${Math.round(mibPerS)}`;
}
