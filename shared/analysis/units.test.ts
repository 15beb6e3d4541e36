import { describe, expect, it } from 'vitest';
import { formatBytes, formatMs, formatRate, parseByteSize } from './units';

describe('units', () => {
  it('formats sizes, rates and durations', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(29_474_816)).toBe('29.5 MB');
    expect(formatBytes(5.37e9)).toBe('5.37 GB');
    expect(formatRate(100_000_000)).toBe('100.0 MB/s');
    expect(formatRate(undefined)).toBe('?');
    expect(formatMs(22.4)).toBe('22 ms');
    expect(formatMs(2400)).toBe('2.40 s');
    expect(formatMs(37_000)).toBe('37.0 s');
  });
  it('parses byte sizes and refuses nonsense', () => {
    expect(parseByteSize('100', 'M')).toBe(100_000_000);
    expect(parseByteSize('1.5G')).toBe(1_500_000_000);
    expect(parseByteSize('500kB')).toBe(500_000);
    expect(parseByteSize('-5')).toBeUndefined();
    expect(parseByteSize('fast')).toBeUndefined();
  });
});
