import { describe, expect, it } from 'vitest';
import { parseGuestLine, rateCommand } from './guest';

describe('parseGuestLine', () => {
  it('parses every line kind of the protocol', () => {
    expect(parseGuestLine('FERRY-GUEST version=1 mem_mib=511 tsc_khz=2400000 ws_mib=32 rate=max words=16 hb_ms=100\r')).toEqual({
      kind: 'hello', version: 1, memMiB: 511, tscKHz: 2400000, wsMiB: 32, rate: null, words: 16, hbMs: 100,
    });
    expect(parseGuestLine('HB seq=42 t_ms=4200 ws_mib=64 rate=20 achieved_kib_s=20480 stall_us=35 writes=215040')).toEqual({
      kind: 'heartbeat', seq: 42, tMs: 4200, wsMiB: 64, rate: 20, achievedKiBs: 20480, stallUs: 35, writes: 215040,
    });
    expect(parseGuestLine('STATUS seq=1 t_ms=1 ws_mib=1 rate=0 achieved_kib_s=0 stall_us=1 writes=0')?.kind).toBe('status');
    expect(parseGuestLine('VERIFY result=fail pages=8192 bad=1 stale=0 first_bad=5 ms=12')).toEqual({
      kind: 'verify', ok: false, pages: 8192, bad: 1, stale: 0, firstBad: 5, ms: 12,
    });
    expect(parseGuestLine('OK r rate=200')).toEqual({ kind: 'ok', command: 'r', fields: { rate: '200' } });
    expect(parseGuestLine('ERR bad value for r: -3')).toEqual({ kind: 'error', message: 'bad value for r: -3' });
  });

  it('rejects malformed and truncated lines (a line split across a switchover)', () => {
    expect(parseGuestLine('')).toBeUndefined();
    expect(parseGuestLine('HB seq=42 t_ms=42')).toBeUndefined();
    expect(parseGuestLine('HB seq=x t_ms=1 ws_mib=1 rate=0 achieved_kib_s=0 stall_us=1 writes=0')).toBeUndefined();
    expect(parseGuestLine('VERIFY result=maybe pages=1 bad=0 stale=0 first_bad=-1 ms=1')).toBeUndefined();
    expect(parseGuestLine('garbage from the BIOS')).toBeUndefined();
    expect(parseGuestLine('OK')).toBeUndefined();
  });

  it('formats rate commands', () => {
    expect(rateCommand(null)).toBe('r max');
    expect(rateCommand(200)).toBe('r 200');
    expect(() => rateCommand(-1)).toThrow(RangeError);
  });
});
