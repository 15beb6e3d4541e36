/** Projection on sample sequences recorded from real lab migrations (test/fixtures/timelines). */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseTimeline } from '../../shared/model/timeline';
import { DEFAULT_ZERO_SCAN_RATE, SampleDigest, ewma, transferRateOf, fitSwitchover, learnFinalCopyRate, project, simulateEndgame, switchoverModel, zeroScanRate } from '../../shared/analysis/projection';
import type { MigrationSample } from '../../shared/model/migration';

const fixture = (name: string) => parseTimeline(readFileSync(`test/fixtures/timelines/${name}.ferry.jsonl`, 'utf8'));
/** The last sample still in pre-copy: what a projection could know just before switchover. */
const lastPrecopy = (samples: MigrationSample[]) => {
  const i = samples.findLastIndex((s) => s.phase === 'precopy');
  return samples.slice(0, i + 1);
};

describe('projection on recorded lab migrations', () => {
  it('the digest a running migration folds samples into agrees with the estimators written out over the whole history', () => {
    // Written out the plain way, over arrays: what each estimator means.
    const ref = (xs: MigrationSample[]) => {
      const pts = (f: (a: MigrationSample, b: MigrationSample) => number | undefined) => {
        const out: { t: number; v: number }[] = [];
        for (let i = 1; i < xs.length; i++) {
          const v = f(xs[i - 1]!, xs[i]!);
          if (v !== undefined) out.push({ t: xs[i]!.t, v });
        }
        return out;
      };
      const recent = xs.filter((x) => x.t >= xs.at(-1)!.t - 20_000);
      const qemu = recent.filter((x) => (x.dirtyRate ?? 0) > 0).map((x) => ({ t: x.t, v: x.dirtyRate! }));
      const guest = recent.filter((x) => x.guest?.side === 'source').map((x) => ({ t: x.t, v: x.guest!.achievedBytesPerS }));
      const last = xs.findLast((x) => x.remainingBytes !== undefined);
      return {
        dirty: qemu.length ? ewma(qemu, 2000) : guest.length ? ewma(guest, 2000) : recent.some((x) => x.dirtyRate === 0) ? 0 : undefined,
        zero: ewma(pts((a, b) => {
          if (a.duplicatePages === undefined || b.duplicatePages === undefined || a.normalPages === undefined || b.normalPages === undefined || !b.pageSize || b.t <= a.t) return undefined;
          const dup = b.duplicatePages - a.duplicatePages;
          return dup > 4 * Math.max(1, b.normalPages - a.normalPages) && dup * b.pageSize > 1e6 ? (dup * b.pageSize * 1000) / (b.t - a.t) : undefined;
        }), 2000),
        passes: pts((a, b) => (b.pass !== undefined && a.pass !== undefined && b.pass > a.pass && b.pass >= 2 && b.remainingBytes !== undefined && b.phase === 'precopy' ? b.remainingBytes : undefined)).map((p) => p.v),
        last,
        passStart: last && last === xs.at(-1) ? xs.find((x) => x.pass === last.pass)!.t : undefined,
      };
    };
    let compared = 0;
    let withPasses = 0;
    for (const name of ['converging', 'never', 'slow', 'postcopy']) {
      const t = fixture(name);
      const digest = new SampleDigest();
      for (let i = 0; i < t.samples.length; i++) {
        digest.push(t.samples[i]!);
        const r = ref(t.samples.slice(0, i + 1));
        const at = `${name}, sample ${i}`;
        if (r.dirty === undefined || r.dirty === 0) expect(digest.dirtyRate(), at).toBe(r.dirty);
        else expect(digest.dirtyRate()! / r.dirty, at).toBeCloseTo(1, 3); // the digest's mean reaches back further: by less than e^-10
        expect(digest.zeroScanRate(), at).toEqual(r.zero);
        expect(digest.passSizes(), at).toEqual(r.passes);
        const ps = digest.passSummary();
        expect(ps.count, at).toBe(r.passes.length);
        if (r.passes.length >= 3) expect(ps.minEarlier, at).toBe(Math.min(...r.passes.slice(0, -2)));
        expect(digest.lastWithRemaining, at).toBe(r.last);
        const prefix = t.samples.slice(0, i + 1);
        expect(digest.lastMovingIndex, at).toBe(prefix.findLastIndex((x) => (x.phase === 'precopy' || x.phase === 'postcopy') && x.transferredBytes !== undefined));
        expect(transferRateOf(prefix, 1500, digest.lastMovingIndex), at).toBe(transferRateOf(prefix));
        if (r.passStart !== undefined) expect(digest.passStart(r.last!.pass), at).toBe(r.passStart);
        compared++;
        if (r.passes.length >= 3) withPasses++;
      }
    }
    expect(compared).toBeGreaterThan(100);
    expect(withPasses).toBeGreaterThan(10);
  });

  it('converging: says so, and projects few passes and an ETA that shrinks as it goes', () => {
    const t = fixture('converging');
    const plan = t.header!.plan!;
    const pre = lastPrecopy(t.samples);
    const p = project(pre, { downtimeLimitMs: plan.downtimeLimitMs ?? 300, maxBandwidth: plan.maxBandwidth });
    expect(p.verdict).toBe('converging');
    expect(p.ratio).toBeLessThan(0.8);
    expect(p.transferRate).toBeGreaterThan(0.8 * plan.maxBandwidth!);
    expect(p.transferRate).toBeLessThan(1.1 * plan.maxBandwidth!);
    expect(p.downtimeMs).toBeGreaterThan(0);
    const mid = project(pre.slice(0, Math.ceil(pre.length / 2)), { downtimeLimitMs: plan.downtimeLimitMs ?? 300 });
    expect(mid.etaMs).toBeGreaterThan(p.etaMs ?? 0);
  });

  it('never: a workload dirtying faster than the cap is called out', () => {
    const t = fixture('never');
    const p = project(t.samples.filter((s) => s.phase === 'precopy'), { downtimeLimitMs: 100, maxBandwidth: 50e6 });
    expect(p.verdict).toBe('never');
    expect(p.ratio).toBeGreaterThanOrEqual(1);
    expect(p.etaMs).toBeUndefined();
    expect(t.end?.outcome).toBe('cancelled');
  });

  it('slow: ratio between converging and never, with more passes projected than the converging case', () => {
    const slow = fixture('slow');
    const pre = lastPrecopy(slow.samples);
    const half = pre.slice(0, Math.ceil(pre.length / 3));
    const p = project(half, { downtimeLimitMs: 100 });
    expect(p.ratio).toBeGreaterThan(0.5);
    expect(p.ratio).toBeLessThan(1.2);
    expect(['slow', 'converging', 'never']).toContain(p.verdict);
    expect(slow.end?.passes).toBeGreaterThan(fixture('converging').end!.passes!);
  });

  it('postcopy: projects the time to drain what remains', () => {
    const t = fixture('postcopy');
    const i = t.samples.findIndex((s) => s.phase === 'postcopy');
    expect(i).toBeGreaterThan(0);
    const p = project(t.samples.slice(0, i + 1), { downtimeLimitMs: 300 });
    expect(p.drainMs).toBeGreaterThan(0);
  });

  it('projected downtime uses the final-copy speed, not the cap, once known', () => {
    const t = fixture('converging');
    const pre = lastPrecopy(t.samples);
    const capped = project(pre, { downtimeLimitMs: 50 });
    const fast = project(pre, { downtimeLimitMs: 50, finalCopyRate: 1e9, switchoverOverheadMs: 50 });
    expect(fast.downtimeMs! - 50).toBeLessThan(capped.downtimeMs! - 3);
  });
});

describe('projection helpers', () => {
  it('ewma follows a step with its time constant', () => {
    const pts = [{ t: 0, v: 0 }, { t: 1000, v: 100 }, { t: 2000, v: 100 }];
    const v = ewma(pts, 1000)!;
    expect(v).toBeGreaterThan(80);
    expect(v).toBeLessThan(100);
  });

  it('fits the switchover cost: fixed overhead plus bytes over the final-copy rate', () => {
    const fit = fitSwitchover([{ bytes: 0, downtimeMs: 60 }, { bytes: 20e6, downtimeMs: 80 }, { bytes: 40e6, downtimeMs: 100 }]);
    expect(fit.overheadMs).toBeCloseTo(60, 5);
    expect(fit.rate).toBeCloseTo(1e9, -6);
    expect(fitSwitchover([{ bytes: 0, downtimeMs: 61 }])).toEqual({ overheadMs: 61 });
    expect(fitSwitchover([])).toEqual({});
    expect(learnFinalCopyRate(29.5e6, 22, 0)).toBeCloseTo(29.5e6 / 0.022, -3);
    expect(learnFinalCopyRate(100, 22)).toBeUndefined();
  });

  it('measures how fast zero pages go by, only where QEMU mostly found zero pages', () => {
    const base = { elapsedMs: 0, status: 'active', phase: 'precopy' as const, pageSize: 4096, pass: 1 };
    const bulk: MigrationSample[] = [
      { ...base, t: 0, normalPages: 1000, duplicatePages: 0 },
      { ...base, t: 100, normalPages: 2000, duplicatePages: 0 }, // sending real pages: not a zero scan
      { ...base, t: 200, normalPages: 2010, duplicatePages: 12_000 }, // 49 MB of zero pages in 100 ms
    ];
    expect(zeroScanRate(bulk.slice(0, 2))).toBeUndefined();
    expect(zeroScanRate(bulk)).toBeCloseTo((12_000 * 4096 * 1000) / 100, -6);
  });

  it('in the bulk pass, what is left costs the link for touched memory and a scan for the zero rest', () => {
    const s = (t: number, normal: number, remaining: number): MigrationSample => ({
      t, elapsedMs: t, status: 'active', phase: 'precopy', pass: 1, pageSize: 4096, normalPages: normal, duplicatePages: 100,
      remainingBytes: remaining, transferredBytes: normal * 4096, totalBytes: 128e6, dirtyRate: 0, guest: { side: 'source', seq: 1, stallMs: 1, achievedBytesPerS: 1e6 },
    });
    const samples = [s(0, 0, 128e6), s(100, 1000, 124e6), s(200, 2000, 120e6)];
    const p = project(samples, { downtimeLimitMs: 300, touchedBytes: 40e6 });
    const xfer = p.transferRate!;
    const real = 40e6 - 2000 * 4096;
    const expected = (real * 1000) / xfer + ((120e6 - real) * 1000) / DEFAULT_ZERO_SCAN_RATE;
    expect(p.etaMs! - p.switchoverDowntimeMs!).toBeCloseTo(expected, 0);
  });

  it('a learned final-copy rate slower than pre-copy runs now is stale: the final copy is never slower than pre-copy', () => {
    const pre = lastPrecopy(fixture('slow').samples);
    const now = project(pre, { downtimeLimitMs: 100 });
    const stale = project(pre, { downtimeLimitMs: 100, finalCopyRate: now.transferRate! / 4 });
    expect(stale.finalCopyRate).toBeCloseTo(now.transferRate!, 0);
    expect(stale.downtimeMs).toBeCloseTo(now.downtimeMs!, 6);
    const faster = project(pre, { downtimeLimitMs: 100, finalCopyRate: now.transferRate! * 4 });
    expect(faster.finalCopyRate).toBeCloseTo(now.transferRate! * 4, 0);
  });
});

describe("QEMU's end game, as QEMU plays it", () => {
  // A pass measured on the lab (cap 40 MB/s, 20 MiB/s dirtied, 300 ms limit): pass 2 began with
  // 16.73 MB, pass 3 with 14.13 MB, pass 4 with 11.87 MB: under the 12 MB threshold, so QEMU
  // switched over with 12.2 MB.
  const lab = { rate: 40e6, threshold: 12e6, dirtyRate: 20 * 1048576, checkS: 0.1 };

  it('passes end once remaining is below the threshold, and the final set is just under it', () => {
    const r = simulateEndgame({ ...lab, remaining: 16.73e6, accumulated: 0 });
    expect(r.converges).toBe(true);
    expect(r.finalBytes).toBeLessThan(12e6);
    expect(r.finalBytes).toBeGreaterThan(12e6 - 40e6 * 0.1);
    expect(r.passes).toBeGreaterThanOrEqual(2);
    expect(r.ms).toBeGreaterThan(200);
    expect(r.ms).toBeLessThan(600);
  });

  it('a dirty set already under the threshold switches at the next check', () => {
    const r = simulateEndgame({ ...lab, remaining: 1e6, accumulated: 3e6 });
    expect(r).toMatchObject({ converges: true, finalBytes: 4e6, passes: 1, ms: 0 });
  });

  it('dirtying at 90 % of the rate: a long end game ending just under the threshold (not at threshold × r^n)', () => {
    const r = simulateEndgame({ rate: 70e6, threshold: 21e6, dirtyRate: 0.9 * 70e6, checkS: 0.1, remaining: 96e6, accumulated: 0 });
    expect(r.converges).toBe(true);
    expect(r.finalBytes).toBeGreaterThan(21e6 - 0.1 * 70e6 * 0.1 - 1);
    expect(r.finalBytes).toBeLessThan(21e6);
    // The excess over the threshold shrinks by ~0.9 per pass: many passes, seconds of pre-copy.
    expect(r.passes).toBeGreaterThan(8);
    expect(r.ms).toBeGreaterThan(5000);
  });

  it('never converges when the guest dirties as fast as the link sends, unless its working set fits the threshold', () => {
    expect(simulateEndgame({ ...lab, dirtyRate: 45e6, remaining: 30e6, accumulated: 0 }).converges).toBe(false);
    const small = simulateEndgame({ ...lab, dirtyRate: 45e6, remaining: 30e6, accumulated: 0, dirtyBound: 8e6 });
    expect(small.converges).toBe(true);
    expect(small.finalBytes).toBeLessThanOrEqual(8e6);
  });

  it('a projection uses the threshold of avail-switchover-bandwidth where QEMU does', () => {
    const all = lastPrecopy(fixture('slow').samples);
    const pre = all.slice(0, Math.ceil(all.length / 3));
    const plain = project(pre, { downtimeLimitMs: 100 });
    expect(plain.etaMs).toBeGreaterThan(plain.switchoverDowntimeMs! + 100);
    const wide = project(pre, { downtimeLimitMs: 100, switchoverBandwidth: plain.transferRate! * 10 });
    expect(wide.etaMs!).toBeLessThan(plain.etaMs!);
  });
});

describe('the switchover model: link measured now, calibrated by earlier switchovers on it', () => {
  it('cold: the measured link alone', () => {
    expect(switchoverModel([], 1.2e9)).toEqual({ finalCopyRate: 1.2e9, learnedFrom: 0 });
    expect(switchoverModel([])).toEqual({ learnedFrom: 0 });
  });

  it('similar sizes (QEMU switches near its threshold each time) still teach the overhead', () => {
    const pts = [20e6, 21e6, 20.5e6].map((bytes, i) => ({ bytes, downtimeMs: 30 + (bytes * 1000) / 1e9, linkRate: 1e9, at: i }));
    const m = switchoverModel(pts, 1.1e9);
    expect(m.learnedFrom).toBe(3);
    expect(m.overheadMs).toBeCloseTo(30, 5);
    expect(m.finalCopyRate).toBeCloseTo(1.1e9, -3);
    // The plain fit over sizes cannot separate them.
    expect(fitSwitchover(pts).rate).not.toBeCloseTo(1e9, -8);
  });

  it('a spread of sizes teaches how the final copy compares with the measured link', () => {
    const pts = [2e6, 10e6, 20e6, 40e6].map((bytes, i) => ({ bytes, downtimeMs: 5 + (bytes * 1000) / 0.5e9, linkRate: 1e9, at: i }));
    const m = switchoverModel(pts, 1e9);
    expect(m.finalCopyRate).toBeCloseTo(0.5e9, -6);
    expect(m.overheadMs).toBeCloseTo(5, 5);
  });

  it('switchovers measured on another link are not used', () => {
    const slow = [1, 2, 3].map((i) => ({ bytes: 10e6, downtimeMs: 280, linkRate: 37e6, at: i }));
    expect(switchoverModel(slow, 1e9)).toEqual({ finalCopyRate: 1e9, learnedFrom: 0 });
    // Without a live measurement, the newest link's entries.
    const mixed = [...slow, { bytes: 10e6, downtimeMs: 40, linkRate: 0.9e9, at: 9 }];
    expect(switchoverModel(mixed).learnedFrom).toBe(1);
  });

  it('old entries without a measurement: the plain fit, as before', () => {
    expect(switchoverModel([{ bytes: 0, downtimeMs: 60 }, { bytes: 20e6, downtimeMs: 80 }]).finalCopyRate).toBeCloseTo(1e9, -6);
  });
});

describe('transfer rate', () => {
  const at = (t: number, bytes: number): MigrationSample => ({ t, elapsedMs: t, phase: 'precopy', status: 'active', transferredBytes: bytes } as MigrationSample);
  it('is bytes over time across the window: a late sample and the one after it do not inflate it', () => {
    // 40 MB/s, sampled every 100 ms; one reply came back 90 ms late (stamped late, counted on
    // time): one interval reads 21 MB/s, the next 400 MB/s; over the window it is still 40 MB/s.
    const s: MigrationSample[] = [];
    for (let i = 0; i <= 20; i++) s.push(at(1000 + i * 100 + (i === 19 ? 90 : 0), i * 4e6));
    expect(transferRateOf(s)! / 40e6).toBeCloseTo(1, 1);
  });
  it('never takes setup bytes as a rate: the first moving sample is the base', () => {
    const s = [{ ...at(900, 50e6), phase: 'setup' } as MigrationSample, at(1000, 60e6), at(1100, 64e6), at(1200, 68e6)];
    expect(transferRateOf(s)).toBeCloseTo(40e6, -4);
  });
});
