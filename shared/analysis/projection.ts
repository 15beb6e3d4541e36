/**
 * Honest projections over a migration's sample history (pure functions).
 *
 * QEMU's `expected-downtime` divides the last dirty set by the *capped* bandwidth, but the
 * final stop-and-copy runs uncapped (LAB-NOTES: 29.5 MB in 22 ms under a 100 MB/s cap, for
 * 325 ms expected). Ferry estimates the speed of that final copy separately
 * (`finalCopyRate`: learned from earlier switchovers on the same pair of hosts, or probed
 * on the link) and projects from the pre-copy geometric model: each pass sends what the
 * guest dirtied during the previous one, so pass sizes shrink by r = dirty rate / transfer rate.
 */
import type { MigrationSample } from '../model/migration';

export type Verdict = 'converging' | 'slow' | 'never' | 'unknown';

export interface Projection {
  /** Smoothed guest dirtying (bytes/s). */
  dirtyRate?: number;
  /** Smoothed transfer rate during pre-copy (bytes/s), from transferred-bytes deltas. */
  transferRate?: number;
  /** Speed assumed for the final, uncapped copy (bytes/s). */
  finalCopyRate?: number;
  /** Dirty rate ÷ transfer rate: below 1 the passes shrink. */
  ratio?: number;
  verdict: Verdict;
  /** Downtime if the switchover happened now. */
  downtimeMs?: number;
  /** Downtime expected at the switchover QEMU will make (the dirty set left then, at the final-copy speed). */
  switchoverDowntimeMs?: number;
  /** Passes still needed before the remaining set fits the downtime limit. */
  remainingPasses?: number;
  /** Time to completion. */
  etaMs?: number;
  projectedTotalBytes?: number;
  /** Postcopy: time to pull what remains. */
  drainMs?: number;
}

export interface ProjectionInput {
  /** Switchover criterion: QEMU switches once remaining <= bandwidth × downtime limit. */
  downtimeLimitMs: number;
  /** Configured cap (bytes/s), when known. */
  maxBandwidth?: number;
  /** Speed of the final copy, when Ferry knows it (history or probe). */
  finalCopyRate?: number;
  /** Fixed cost of a switchover besides RAM (device state, pausing, resuming). */
  switchoverOverheadMs?: number;
  /**
   * Guest memory ever touched (from the source QEMU's resident size): pages never touched
   * are zero pages that cost almost nothing in the bulk pass, and bound the dirty set.
   */
  touchedBytes?: number;
}

/** Exponentially weighted mean with a time constant, over (t, value) points. */
export function ewma(points: { t: number; v: number }[], tauMs = 1500): number | undefined {
  let acc: number | undefined;
  let lastT: number | undefined;
  for (const p of points) {
    if (acc === undefined || lastT === undefined) {
      acc = p.v;
    } else {
      const a = 1 - Math.exp(-Math.max(0, p.t - lastT) / tauMs);
      acc = acc + a * (p.v - acc);
    }
    lastT = p.t;
  }
  return acc;
}

/** Transfer rate from transferred-bytes deltas during pre-copy (setup and switchover excluded). */
export function transferRateOf(samples: readonly MigrationSample[], windowMs = 3000): number | undefined {
  const pts: { t: number; v: number }[] = [];
  const last = samples.at(-1);
  if (!last) return undefined;
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (b.t < last.t - windowMs) continue;
    if (a.transferredBytes === undefined || b.transferredBytes === undefined || b.t <= a.t) continue;
    if (b.phase !== 'precopy' && b.phase !== 'postcopy') continue;
    pts.push({ t: b.t, v: ((b.transferredBytes - a.transferredBytes) * 1000) / (b.t - a.t) });
  }
  if (pts.length === 0) return last.transferRate;
  return ewma(pts, 1000);
}

export function dirtyRateOf(samples: readonly MigrationSample[]): number | undefined {
  const pts = samples.filter((s) => s.dirtyRate !== undefined && s.dirtyRate > 0).map((s) => ({ t: s.t, v: s.dirtyRate! }));
  if (pts.length > 0) return ewma(pts, 2000);
  // QEMU reports dirty-pages-rate only after ~1 s: until then, the guest's own figure.
  const g = samples.filter((s) => s.guest && s.guest.side === 'source').map((s) => ({ t: s.t, v: s.guest!.achievedBytesPerS }));
  return g.length > 0 ? ewma(g, 2000) : samples.some((s) => s.dirtyRate === 0) ? 0 : undefined;
}

/**
 * The speed of the final copy, learned from a finished migration: bytes sent while the VM
 * was stopped ÷ the downtime (less the fixed switchover cost).
 */
export function learnFinalCopyRate(downtimeBytes: number | undefined, downtimeMs: number | undefined, overheadMs = 3): number | undefined {
  if (!downtimeBytes || !downtimeMs || downtimeBytes < 1_000_000) return undefined;
  return (downtimeBytes * 1000) / Math.max(1, downtimeMs - overheadMs);
}

/** How fast `remaining` falls during the current pass (bytes/s): in the bulk pass zero pages fly by. */
export function remainingDropRate(samples: readonly MigrationSample[], windowMs = 2000): number | undefined {
  const last = samples.at(-1);
  if (!last) return undefined;
  const pts: { t: number; v: number }[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (b.t < last.t - windowMs || a.pass !== b.pass || b.phase !== 'precopy' || a.remainingBytes === undefined || b.remainingBytes === undefined || b.t <= a.t) continue;
    const drop = ((a.remainingBytes - b.remainingBytes) * 1000) / (b.t - a.t);
    if (drop > 0) pts.push({ t: b.t, v: drop });
  }
  return pts.length ? ewma(pts, 800) : undefined;
}

/** How fast QEMU gets through zero pages when it has not measured it yet (bytes/s, measured here ~450 MB/s). */
export const DEFAULT_ZERO_SCAN_RATE = 450e6;

/**
 * How fast zero pages go by in the bulk pass (bytes of guest RAM per second), from samples
 * where QEMU mostly found zero pages (duplicate pages rising, normal pages nearly still).
 */
export function zeroScanRate(samples: readonly MigrationSample[]): number | undefined {
  const pts: { t: number; v: number }[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (a.duplicatePages === undefined || b.duplicatePages === undefined || a.normalPages === undefined || b.normalPages === undefined || !b.pageSize || b.t <= a.t) continue;
    const dup = b.duplicatePages - a.duplicatePages;
    const normal = b.normalPages - a.normalPages;
    if (dup > 4 * Math.max(1, normal) && dup * b.pageSize > 1_000_000) pts.push({ t: b.t, v: (dup * b.pageSize * 1000) / (b.t - a.t) });
  }
  return pts.length ? ewma(pts, 2000) : undefined;
}

/** The dirty set at the start of each pass after the first (remaining when the pass count ticks). */
export function passSizes(samples: readonly MigrationSample[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (b.pass !== undefined && a.pass !== undefined && b.pass > a.pass && b.pass >= 2 && b.remainingBytes !== undefined && b.phase === 'precopy') {
      out.push(b.remainingBytes);
    }
  }
  return out;
}

export function project(samples: readonly MigrationSample[], input: ProjectionInput): Projection {
  // The last sample QEMU filled in (a final status sample may carry no RAM figures).
  const last = [...samples].reverse().find((s) => s.remainingBytes !== undefined) ?? samples.at(-1);
  if (!last) return { verdict: 'unknown' };
  const overhead = input.switchoverOverheadMs ?? 3;
  const dirty = dirtyRateOf(samples);
  const xfer = transferRateOf(samples);
  // The final copy runs uncapped over the same link, so never slower than pre-copy did: a
  // learned rate below that is stale (a slower link then, a busier host) and yields to it.
  const final = input.finalCopyRate !== undefined && xfer !== undefined ? Math.max(input.finalCopyRate, xfer) : (input.finalCopyRate ?? xfer);
  const out: Projection = { verdict: 'unknown' };
  if (dirty !== undefined) out.dirtyRate = dirty;
  if (xfer !== undefined) out.transferRate = xfer;
  if (final !== undefined) out.finalCopyRate = final;
  // In the first (bulk) pass `remaining` is all of RAM, much of it zero pages that cost almost
  // nothing to send: scale by the share of non-zero pages seen so far.
  let remaining = last.remainingBytes;
  if (remaining !== undefined && (last.pass ?? 1) <= 1 && last.normalPages !== undefined && last.duplicatePages !== undefined) {
    const seen = last.normalPages + last.duplicatePages;
    if (seen > 0) remaining = remaining * (last.normalPages / seen);
  }
  if (remaining !== undefined && final !== undefined && final > 0) {
    out.downtimeMs = (remaining * 1000) / final + overhead;
  }
  if (last.phase === 'postcopy' || last.phase === 'postcopy-paused') {
    if (remaining !== undefined && xfer) out.drainMs = (remaining * 1000) / xfer;
    out.verdict = 'converging';
    return out;
  }
  if (dirty === undefined || !xfer || remaining === undefined) return out;
  const finalRate = final ?? xfer;
  const downtimeFor = (bytes: number) => (bytes * 1000) / finalRate + overhead;
  const r = dirty / xfer;
  out.ratio = r;
  // QEMU's switchover test uses its measured bandwidth (the capped one).
  const threshold = (xfer * input.downtimeLimitMs) / 1000;
  const inBulk = (last.pass ?? 1) <= 1;
  if (!inBulk && remaining <= threshold) {
    out.verdict = 'converging';
    out.remainingPasses = 0;
    out.switchoverDowntimeMs = downtimeFor(remaining);
    out.etaMs = out.switchoverDowntimeMs;
    out.projectedTotalBytes = (last.transferredBytes ?? 0) + remaining;
    return out;
  }
  // The dirty set the iterative passes start from, and the time until then.
  let dirtySet = remaining;
  let leadMs = 0;
  if (inBulk) {
    // Bulk pass: it ends when `remaining` runs out, at the pace it is falling (zero pages are
    // nearly free); by then the guest will have dirtied about dirty rate x the pass's length.
    const raw = last.remainingBytes ?? remaining;
    if (input.touchedBytes !== undefined && last.normalPages !== undefined && last.pageSize !== undefined) {
      // What is left to send for real: touched memory not yet sent, at the transfer rate; the
      // rest is zero pages, which cost a scan (hundreds of MB/s), not the link.
      const sent = last.normalPages * last.pageSize;
      const real = Math.max(0, Math.min(raw, input.touchedBytes - sent));
      leadMs = (real * 1000) / xfer + ((raw - real) * 1000) / (zeroScanRate(samples) ?? DEFAULT_ZERO_SCAN_RATE);
    } else {
      const drop = remainingDropRate(samples);
      if (!drop) return out;
      leadMs = (raw * 1000) / drop;
    }
    const passStart = samples.find((x) => x.pass === last.pass)?.t ?? last.t;
    const passMs = last.t - passStart + leadMs;
    dirtySet = Math.min(input.touchedBytes ?? last.totalBytes ?? Infinity, (dirty * passMs) / 1000);
    if (dirtySet <= threshold) {
      out.verdict = 'converging';
      out.remainingPasses = 1;
      out.switchoverDowntimeMs = downtimeFor(dirtySet);
      out.etaMs = leadMs + out.switchoverDowntimeMs;
      out.projectedTotalBytes = (last.transferredBytes ?? 0) + remaining + dirtySet;
      return out;
    }
  }
  // Rates can mislead when the working set saturates (QEMU counts distinct pages per pass):
  // a dirty set that stops shrinking from pass to pass is the other sign of "never".
  const sizes = passSizes(samples);
  const stuck = sizes.length >= 3 && Math.min(...sizes.slice(-2)) > 0.8 * Math.min(...sizes.slice(0, -2)) && remaining > threshold;
  if (r >= 1 || stuck) {
    out.verdict = 'never';
    return out;
  }
  if (input.touchedBytes !== undefined) dirtySet = Math.min(dirtySet, input.touchedBytes);
  // Pass k sends dirtySet·r^k; stop when it fits under the threshold.
  const n = Math.max(1, Math.ceil(Math.log(threshold / dirtySet) / Math.log(r)));
  const geometric = (1 - r ** n) / (1 - r);
  const precopyBytes = dirtySet * geometric;
  const finalBytes = dirtySet * r ** n;
  out.verdict = r < 0.8 ? 'converging' : 'slow';
  out.remainingPasses = n + (inBulk ? 1 : 0);
  out.switchoverDowntimeMs = downtimeFor(finalBytes);
  out.etaMs = leadMs + (precopyBytes * 1000) / xfer + out.switchoverDowntimeMs;
  out.projectedTotalBytes = (last.transferredBytes ?? 0) + (inBulk ? remaining : 0) + precopyBytes + finalBytes;
  return out;
}

export interface SwitchoverPoint {
  bytes: number;
  downtimeMs: number;
}

/**
 * Fits downtime = overhead + bytes / rate over finished switchovers between the same hosts
 * (least squares; needs two points with different sizes for a rate, one for an overhead).
 */
export function fitSwitchover(points: readonly SwitchoverPoint[]): { overheadMs?: number; rate?: number } {
  const pts = points.filter((p) => p.downtimeMs > 0 && p.bytes >= 0);
  if (pts.length === 0) return {};
  const n = pts.length;
  const mx = pts.reduce((a, p) => a + p.bytes, 0) / n;
  const my = pts.reduce((a, p) => a + p.downtimeMs, 0) / n;
  const sxx = pts.reduce((a, p) => a + (p.bytes - mx) ** 2, 0);
  if (n >= 2 && sxx > (1e6) ** 2) {
    const slope = pts.reduce((a, p) => a + (p.bytes - mx) * (p.downtimeMs - my), 0) / sxx; // ms per byte
    if (slope > 0) {
      return { overheadMs: Math.max(0, my - slope * mx), rate: 1000 / slope };
    }
  }
  // Sizes too alike to separate: the smallest switchover bounds the fixed cost.
  const smallest = pts.reduce((a, p) => (p.bytes < a.bytes ? p : a));
  return { overheadMs: smallest.bytes < 1_000_000 ? smallest.downtimeMs : undefined };
}
