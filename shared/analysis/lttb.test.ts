import { describe, expect, it } from 'vitest';
import { lttb } from './lttb';
import { Ring } from '../model/ring';

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
  it('picks the very same points from a ring (its columns kept per sample) as from the array', () => {
    const rows = series.map((d, i) => ({ ...d, v: i % 7 === 0 ? undefined : d.v }));
    let ring = Ring.from(rows.slice(0, 4000), 8000);
    const picks: [unknown[], unknown[]][] = [];
    for (const r of rows.slice(4000)) {
      ring = ring.push(r);
      // every few samples, as a live chart redraws: the cached columns must match the array's
      if (r.t % 997 === 0) picks.push([lttb(ring, 300, (d) => d.t, (d) => d.v ?? 0, { x: 't', y: 'v' }), lttb(ring.toArray(), 300, (d) => d.t, (d) => d.v ?? 0)]);
    }
    expect(ring.length).toBe(8000); // the oldest 2000 dropped
    expect(lttb(ring, 300, (d) => d.t, (d) => d.v ?? 0, { x: 't', y: 'v' })).toEqual(lttb(rows.slice(2000), 300, (d) => d.t, (d) => d.v ?? 0));
    expect(picks.length).toBeGreaterThan(0);
    for (const [fromRing, fromArray] of picks) expect(fromRing).toEqual(fromArray);
  });
});
