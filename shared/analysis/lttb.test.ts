import { describe, expect, it } from 'vitest';
import { lttb, lttbStable } from './lttb';
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

describe('lttbStable: buckets fixed in time', () => {
  const rows = Array.from({ length: 36_000 }, (_, i) => ({ t: i / 10, v: i === 20_000 ? 1e6 : Math.sin(i / 300) * 1000 + (i % 17) }));
  it('fits the threshold with a power-of-two width, keeps the ends and the spike', () => {
    const p = lttbStable(rows, 1200, (d) => d.t, (d) => d.v);
    expect(p.rows.length).toBeLessThanOrEqual(1200);
    expect(p.rows.length).toBeGreaterThan(600);
    expect(Math.log2(p.width / 0.1) % 1).toBe(0);
    expect(p.rows[0]).toBe(rows[0]);
    expect(p.rows.at(-1)).toBe(rows.at(-1));
    expect(p.rows.some((d) => d.v === 1e6)).toBe(true);
    expect(p.buckets).toHaveLength(p.rows.length);
    expect(p.rows.every((d, i) => i === 0 || d.t > p.rows[i - 1]!.t)).toBe(true);
  });

  it('a growing run keeps its earlier picks: only the last buckets change', () => {
    let ring = Ring.from(rows.slice(0, 30_000), 40_000);
    let before = lttbStable(ring, 1200, (d) => d.t, (d) => d.v, { x: 't', y: 'v' });
    for (const r of rows.slice(30_000, 30_200)) {
      ring = ring.push(r);
      const after = lttbStable(ring, 1200, (d) => d.t, (d) => d.v, { x: 't', y: 'v' });
      if (after.width === before.width) {
        const same = before.rows.findIndex((d, i) => after.rows[i] !== d);
        expect(same === -1 ? before.rows.length : same).toBeGreaterThanOrEqual(before.rows.length - 3);
      }
      before = after;
    }
    // The same rows as an array (a replayed timeline): the same picks.
    const replay = lttbStable(ring.toArray(), 1200, (d) => d.t, (d) => d.v);
    expect(replay.rows).toEqual(before.rows);
    expect(replay.buckets).toEqual(before.buckets);
  });

  it('keeps every row (indices as buckets) when there are few', () => {
    const p = lttbStable(rows.slice(0, 50), 1200, (d) => d.t, (d) => d.v);
    expect(p).toMatchObject({ width: 0, buckets: Array.from({ length: 50 }, (_, i) => i) });
    expect(p.rows).toEqual(rows.slice(0, 50));
  });
});
