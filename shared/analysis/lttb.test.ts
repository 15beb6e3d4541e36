import { describe, expect, it } from 'vitest';
import { lttb } from './lttb';

describe('lttb', () => {
  const series = Array.from({ length: 10_000 }, (_, i) => ({ t: i, v: i === 5000 ? 1000 : Math.sin(i / 300) }));
  it('reduces to the threshold, keeps the ends and the spike', () => {
    const out = lttb(series, 500, (d) => d.t, (d) => d.v);
    expect(out).toHaveLength(500);
    expect(out[0]).toBe(series[0]);
    expect(out.at(-1)).toBe(series.at(-1));
    expect(out.some((d) => d.v === 1000)).toBe(true);
    expect(out.every((d, i) => i === 0 || d.t > out[i - 1]!.t)).toBe(true);
  });
  it('returns small inputs unchanged (as a copy)', () => {
    const small = series.slice(0, 10);
    const out = lttb(small, 500, (d) => d.t, (d) => d.v);
    expect(out).toEqual(small);
    expect(out).not.toBe(small);
  });
});
