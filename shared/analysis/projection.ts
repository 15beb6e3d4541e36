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
  /** avail-switchover-bandwidth in force (QEMU 8.2+): QEMU's switchover test uses it instead of its measured bandwidth. */
  switchoverBandwidth?: number;
}

/**
 * Exponentially weighted mean with a time constant, fed one (t, value) point at a time. The
 * estimators below run on every sample of every migration over the last minute of samples:
 * folding as they go, they allocate nothing per sample.
 */
class Ewma {
  value: number | undefined;
  private lastT: number | undefined;
  constructor(private readonly tauMs: number) {}

  add(t: number, v: number): void {
    if (this.value === undefined || this.lastT === undefined) this.value = v;
    else this.value += (1 - Math.exp(-Math.max(0, t - this.lastT) / this.tauMs)) * (v - this.value);
    this.lastT = t;
  }
}

/** Exponentially weighted mean with a time constant, over (t, value) points. */
export function ewma(points: { t: number; v: number }[], tauMs = 1500): number | undefined {
  const e = new Ewma(tauMs);
  for (const p of points) e.add(p.t, p.v);
  return e.value;
}

/** A sample of pre-copy or post-copy with a byte count: one the transfer rate is measured over. */
const moving = (s: MigrationSample) => (s.phase === 'precopy' || s.phase === 'postcopy') && s.transferredBytes !== undefined;

/**
 * Transfer rate during pre-copy (setup and switchover excluded): bytes over time across the
 * last `windowMs` of samples — a ratio of sums, so a sample that arrived late (a busy host, an
 * SSH hop) does not inflate it the way averaging per-interval rates would. Falls back to
 * smoothed per-interval rates while the window holds too little time.
 */
export function transferRateOf(samples: readonly MigrationSample[], windowMs = 1500, lastMovingIndex?: number): number | undefined {
  const last = samples.at(-1);
  if (!last) return undefined;
  // The run of moving samples ending at the newest one (a digest knows where that is: a
  // migration of a paused VM, all stop-and-copy, has none, and the search went back to the start).
  let end = lastMovingIndex ?? samples.length - 1;
  if (lastMovingIndex === undefined) while (end >= 0 && !moving(samples[end]!)) end--;
  if (end < 0) return last.transferRate;
  let start = end;
  while (start > 0 && moving(samples[start - 1]!) && samples[start - 1]!.t >= samples[end]!.t - windowMs) start--;
  const a = samples[start]!;
  const b = samples[end]!;
  // The first moving sample's bytes may include setup: it is the window's base, never a point.
  if (b.t - a.t >= 500 && b.transferredBytes! >= a.transferredBytes!) return ((b.transferredBytes! - a.transferredBytes!) * 1000) / (b.t - a.t);
  const pts: { t: number; v: number }[] = [];
  for (let i = Math.max(1, start); i <= end; i++) {
    const p = samples[i - 1]!;
    const q = samples[i]!;
    if (!moving(p) || !moving(q) || q.t <= p.t) continue;
    pts.push({ t: q.t, v: ((q.transferredBytes! - p.transferredBytes!) * 1000) / (q.t - p.t) });
  }
  if (pts.length === 0) return last.transferRate;
  return ewma(pts, 1000);
}

/** Older points weigh less than e^-10 in a mean with this time constant: a dirty rate last reported longer ago than this is gone. */
const DIRTY_TAU_MS = 2000;
const DIRTY_HORIZON_MS = 10 * DIRTY_TAU_MS;

export function dirtyRateOf(samples: readonly MigrationSample[]): number | undefined {
  return SampleDigest.of(samples).dirtyRate();
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
  const e = new Ewma(800);
  let i = samples.length - 1;
  while (i > 1 && samples[i - 1]!.t >= last.t - windowMs) i--; // the window's first sample
  for (i = Math.max(1, i); i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (b.t < last.t - windowMs || a.pass !== b.pass || b.phase !== 'precopy' || a.remainingBytes === undefined || b.remainingBytes === undefined || b.t <= a.t) continue;
    const drop = ((a.remainingBytes - b.remainingBytes) * 1000) / (b.t - a.t);
    if (drop > 0) e.add(b.t, drop);
  }
  return e.value;
}

/**
 * How fast QEMU gets through zero pages when it has not measured it yet (bytes/s). Sampled at
 * 1 kHz on the lab (QEMU 7.2, KVM, 2 busy cores): 92 MB of zero pages went by in at most 35 ms,
 * 1.4–2.6 GB/s with some real pages among them. Usually a migration's zero tail passes between
 * two 10 Hz samples, so this default is what the bulk pass's end is projected with.
 */
export const DEFAULT_ZERO_SCAN_RATE = 2e9;

/**
 * How fast zero pages go by in the bulk pass (bytes of guest RAM per second), from samples
 * where QEMU mostly found zero pages (duplicate pages rising, normal pages nearly still).
 */
export function zeroScanRate(samples: readonly MigrationSample[]): number | undefined {
  return SampleDigest.of(samples).zeroScanRate();
}

/** The dirty set at the start of each pass after the first (remaining when the pass count ticks). */
export function passSizes(samples: readonly MigrationSample[]): number[] {
  return SampleDigest.of(samples).passSizes();
}

/**
 * What project() needs from a migration's whole history, folded in one sample at a time: a
 * migration sampled at 10 Hz would otherwise have every estimator walk its last minute of
 * samples again on every sample (with 8 migrations, most of the console's CPU). The
 * estimators that look back only a second or two (transfer rate, remaining's fall) read the
 * newest samples themselves. `SampleDigest.of(samples)` folds an array in one go.
 */
export class SampleDigest {
  private prev: MigrationSample | undefined;
  /** The newest sample QEMU filled RAM figures in (a final status sample may carry none). */
  lastWithRemaining: MigrationSample | undefined;
  private readonly dirtyQemu = new Ewma(DIRTY_TAU_MS);
  // QEMU reports dirty-pages-rate only after ~1 s: until then, the guest's own figure.
  private readonly dirtyGuest = new Ewma(DIRTY_TAU_MS);
  private lastT = -Infinity;
  private dirtyQemuAt = -Infinity;
  private dirtyGuestAt = -Infinity;
  private dirtyZeroAt = -Infinity;
  private readonly zeroScan = new Ewma(2000);
  private readonly passes: number[] = [];
  /** Samples pushed: a digest speaks for an array of exactly this many. */
  size = 0;
  /** Index of the newest sample the transfer rate is measured over (-1: none yet). */
  lastMovingIndex = -1;
  /** The smallest pass size but the newest two (kept as passes are added: a long end game has thousands). */
  private minEarlierPass = Infinity;
  private pass: number | undefined;
  private passStartT: number | undefined;

  static of(samples: readonly MigrationSample[]): SampleDigest {
    const d = new SampleDigest();
    for (const x of samples) d.push(x);
    return d;
  }

  push(b: MigrationSample): void {
    const a = this.prev;
    this.prev = b;
    if (moving(b)) this.lastMovingIndex = this.size;
    this.size++;
    this.lastT = b.t;
    if (b.remainingBytes !== undefined) this.lastWithRemaining = b;
    if (b.dirtyRate !== undefined && b.dirtyRate > 0) {
      this.dirtyQemu.add(b.t, b.dirtyRate);
      this.dirtyQemuAt = b.t;
    } else if (b.dirtyRate === 0) this.dirtyZeroAt = b.t;
    if (b.guest && b.guest.side === 'source') {
      this.dirtyGuest.add(b.t, b.guest.achievedBytesPerS);
      this.dirtyGuestAt = b.t;
    }
    if (b.pass !== this.pass) {
      this.pass = b.pass;
      this.passStartT = b.t;
    }
    if (!a) return;
    if (a.duplicatePages !== undefined && b.duplicatePages !== undefined && a.normalPages !== undefined && b.normalPages !== undefined && b.pageSize && b.t > a.t) {
      const dup = b.duplicatePages - a.duplicatePages;
      const normal = b.normalPages - a.normalPages;
      if (dup > 4 * Math.max(1, normal) && dup * b.pageSize > 1_000_000) this.zeroScan.add(b.t, (dup * b.pageSize * 1000) / (b.t - a.t));
    }
    if (b.pass !== undefined && a.pass !== undefined && b.pass > a.pass && b.pass >= 2 && b.remainingBytes !== undefined && b.phase === 'precopy') {
      this.passes.push(b.remainingBytes);
      if (this.passes.length >= 3) this.minEarlierPass = Math.min(this.minEarlierPass, this.passes[this.passes.length - 3]!);
    }
  }

  /** Distinct bytes dirtied per second: QEMU's figure, else the guest's, smoothed; 0 when QEMU says 0; none reported for DIRTY_HORIZON_MS is none. */
  dirtyRate(): number | undefined {
    const since = this.lastT - DIRTY_HORIZON_MS;
    if (this.dirtyQemuAt >= since) return this.dirtyQemu.value;
    if (this.dirtyGuestAt >= since) return this.dirtyGuest.value;
    return this.dirtyZeroAt >= since ? 0 : undefined;
  }

  zeroScanRate(): number | undefined {
    return this.zeroScan.value;
  }

  passSizes(): number[] {
    return this.passes.slice();
  }

  /** How many passes have a size, the newest two, and the smallest of the others. */
  passSummary(): { count: number; lastTwo: number[]; minEarlier: number } {
    return { count: this.passes.length, lastTwo: this.passes.slice(-2), minEarlier: this.minEarlierPass };
  }

  /** When the pass the newest sample is in began (its first sample). */
  passStart(pass: number | undefined): number | undefined {
    return pass === this.pass ? this.passStartT : undefined;
  }
}

/** QEMU checks whether to switch over once per rate-limit window when a cap binds, else every MAX_WAIT (50 ms) of sending. */
const CAPPED_CHECK_S = 0.1;
const UNCAPPED_CHECK_S = 0.05;

export interface EndgameInput {
  /** Dirty bytes still to send in the current pass (QEMU's `remaining`, real data). */
  remaining: number;
  /** Distinct bytes dirtied since the last bitmap sync (they join `remaining` at the next one). */
  accumulated: number;
  /** Pre-copy send rate, bytes/s. */
  rate: number;
  /** QEMU's switchover threshold, bytes: its bandwidth (or avail-switchover-bandwidth) × downtime limit. */
  threshold: number;
  /** Distinct bytes the guest dirties per second. */
  dirtyRate: number;
  /** Bound on the dirty set (memory the guest ever touched). */
  dirtyBound?: number;
  /** Seconds between two of QEMU's switchover checks. */
  checkS: number;
}

export interface EndgameResult {
  converges: boolean;
  /** Bytes left for the stop-and-copy. */
  finalBytes: number;
  /** Time from now until the VM stops. */
  ms: number;
  /** Bitmap syncs until then (QEMU's pass counter advances by this much). */
  passes: number;
  /** Bytes sent in pre-copy until then. */
  sentBytes: number;
}

const ENDGAME_STEPS = 4000;

/**
 * How QEMU's pre-copy gets to its switchover from here, step by step as QEMU does it
 * (migration_iteration_run + ram_save_pending): it sends until `remaining` falls below the
 * threshold, then syncs the dirty bitmap (a new pass: what the guest dirtied meanwhile joins
 * in) and switches over only if the result is still below the threshold; otherwise it sends
 * one more check's worth and syncs again. So passes end near the threshold, not at zero, and a
 * guest dirtying at 60–95 % of the rate ends with a final set just under the threshold, after
 * an end game of short passes that each gain (rate − dirty rate) × check interval.
 */
export function simulateEndgame(o: EndgameInput): EndgameResult {
  const bound = o.dirtyBound ?? Infinity;
  const step = o.rate * o.checkS;
  let s = o.remaining;
  let acc = Math.min(bound, o.accumulated);
  let t = 0;
  let passes = 0;
  let sent = 0;
  if (!(step > 0) || !(o.threshold > 0)) return { converges: false, finalBytes: s, ms: Infinity, passes: 0, sentBytes: 0 };
  for (let i = 0; i < ENDGAME_STEPS; i++) {
    if (s < o.threshold) {
      s = Math.min(bound, s + acc);
      acc = 0;
      passes++;
      if (s < o.threshold) return { converges: true, finalBytes: s, ms: t * 1000, passes, sentBytes: sent };
    }
    // Checks until `remaining` is below the threshold again.
    const k = Math.max(1, Math.floor((s - o.threshold) / step) + 1);
    const out = Math.min(s, k * step);
    s -= out;
    sent += out;
    acc = Math.min(bound, acc + o.dirtyRate * k * o.checkS);
    t += k * o.checkS;
  }
  // Still going after thousands of passes: a net gain of (rate − dirty) per check, ending just under the threshold.
  const gain = (o.rate - o.dirtyRate) * o.checkS;
  if (!(gain > 0)) return { converges: false, finalBytes: s, ms: Infinity, passes, sentBytes: sent };
  const more = Math.max(0, s + acc - o.threshold) / gain;
  return { converges: true, finalBytes: Math.max(0, o.threshold - gain / 2), ms: (t + more * o.checkS) * 1000, passes: passes + Math.ceil(more), sentBytes: sent + more * step };
}

export function project(samples: readonly MigrationSample[], input: ProjectionInput, digest: SampleDigest = SampleDigest.of(samples)): Projection {
  // The last sample QEMU filled in (a final status sample may carry no RAM figures).
  const last = digest.lastWithRemaining ?? samples.at(-1);
  if (!last) return { verdict: 'unknown' };
  const overhead = input.switchoverOverheadMs ?? 3;
  const dirty = digest.dirtyRate();
  // QEMU never sends faster than its cap (a few % over within one of its windows).
  const measured = transferRateOf(samples, 1500, digest.size === samples.length ? digest.lastMovingIndex : undefined);
  const xfer = measured !== undefined && input.maxBandwidth !== undefined ? Math.min(measured, input.maxBandwidth * 1.03) : measured;
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
  const zeroRate = digest.zeroScanRate() ?? DEFAULT_ZERO_SCAN_RATE;
  const downtimeFor = (bytes: number, zeroBytes = 0) => (bytes * 1000) / finalRate + (zeroBytes * 1000) / zeroRate + overhead;
  // What QEMU sends real pages at: the cap where the link carries more (the measured rate
  // dips below it while zero pages go by, which cost a scan, not bandwidth), else what it gets.
  // Until the link is known, a cap is taken to be what binds (why else set one).
  const sendRate = input.maxBandwidth !== undefined ? Math.max(xfer, Math.min(input.maxBandwidth, input.finalCopyRate ?? input.maxBandwidth)) : xfer;
  const r = dirty / sendRate;
  out.ratio = dirty / xfer;
  // QEMU's switchover test: its measured bandwidth (the capped one), or avail-switchover-bandwidth where set.
  const threshold = ((input.switchoverBandwidth ?? sendRate) * input.downtimeLimitMs) / 1000;
  const capped = input.maxBandwidth !== undefined && sendRate >= 0.8 * input.maxBandwidth;
  const checkS = capped ? CAPPED_CHECK_S : UNCAPPED_CHECK_S;
  const inBulk = (last.pass ?? 1) <= 1;
  const bound = input.touchedBytes;
  const passStart = digest.passStart(last.pass) ?? samples.find((x) => x.pass === last.pass)?.t ?? last.t;
  // The dirty set the iterative passes start from, and the time until then.
  let endgame: EndgameInput;
  let leadMs = 0;
  if (inBulk) {
    const raw = last.remainingBytes ?? remaining;
    // What is left to send for real (touched memory not yet sent) costs the link; the rest is
    // zero pages, which cost a scan (hundreds of MB/s).
    let real = remaining;
    if (bound !== undefined && last.normalPages !== undefined && last.pageSize !== undefined) {
      real = Math.max(0, Math.min(raw, bound - last.normalPages * last.pageSize));
    }
    const zero = Math.max(0, raw - real);
    const dirtiedSoFar = (dirty * (last.t - passStart)) / 1000;
    if (raw < threshold) {
      // Everything left fits the threshold: QEMU switches over at its next check.
      const finalBytes = Math.min(bound ?? Infinity, real + dirtiedSoFar);
      out.verdict = 'converging';
      out.remainingPasses = 1;
      out.switchoverDowntimeMs = downtimeFor(finalBytes, zero);
      out.etaMs = out.switchoverDowntimeMs;
      out.projectedTotalBytes = (last.transferredBytes ?? 0) + finalBytes;
      return out;
    }
    if (bound === undefined || last.normalPages === undefined || last.pageSize === undefined) {
      const drop = remainingDropRate(samples);
      if (!drop) return out;
      leadMs = (raw * 1000) / drop;
    } else {
      leadMs = (real * 1000) / sendRate + (zero * 1000) / zeroRate;
    }
    // The bulk pass ends once the zero tail has gone by (QEMU scans it in 50 ms gulps, so
    // little is left over): the next pass starts from what the guest dirtied during it.
    endgame = { remaining: 0, accumulated: (dirty * (last.t - passStart + leadMs)) / 1000, rate: sendRate, threshold, dirtyRate: dirty, checkS, ...(bound !== undefined ? { dirtyBound: bound } : {}) };
  } else {
    endgame = { remaining, accumulated: (dirty * (last.t - passStart)) / 1000, rate: sendRate, threshold, dirtyRate: dirty, checkS, ...(bound !== undefined ? { dirtyBound: bound } : {}) };
  }
  // Rates can mislead when the working set saturates (QEMU counts distinct pages per pass):
  // a dirty set that stays well above the threshold from pass to pass is the other sign of "never".
  const ps = digest.passSummary();
  const stuck = ps.count >= 3 && Math.min(...ps.lastTwo) - threshold > Math.max(sendRate * checkS, 0.95 * (ps.minEarlier - threshold));
  const sim = stuck ? undefined : simulateEndgame(endgame);
  if (!sim || !sim.converges) {
    out.verdict = 'never';
    return out;
  }
  out.verdict = r < 0.8 ? 'converging' : 'slow';
  out.remainingPasses = sim.passes + (inBulk ? 1 : 0);
  out.switchoverDowntimeMs = downtimeFor(sim.finalBytes);
  out.etaMs = leadMs + sim.ms + out.switchoverDowntimeMs;
  out.projectedTotalBytes = (last.transferredBytes ?? 0) + (inBulk ? remaining : 0) + sim.sentBytes + sim.finalBytes;
  return out;
}

export interface SwitchoverPoint {
  bytes: number;
  downtimeMs: number;
  /** The migration connection's measured speed during that migration (bytes/s), when it was measured. */
  linkRate?: number;
  /** When it happened (ms since the epoch). */
  at?: number;
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

/**
 * Two link measurements further apart than this factor are two different links. Generous on
 * purpose: a CPU-bound path (loopback, a fast LAN) measures 2–4× apart from one migration to
 * the next on a busy host; a real change (1 → 10 Gbit/s, a shaped or a failed-over link) is larger.
 */
export const LINK_CHANGE_FACTOR = 3;

export function sameLink(a: number, b: number): boolean {
  return a > 0 && b > 0 && Math.max(a / b, b / a) <= LINK_CHANGE_FACTOR;
}

export interface SwitchoverModel {
  /** Speed of the final copy (bytes/s). */
  finalCopyRate?: number;
  /** Fixed cost of a switchover besides RAM (ms). */
  overheadMs?: number;
  /** How many earlier switchovers (on this link) the model learned from; 0 = the live measurement alone. */
  learnedFrom: number;
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2 : NaN;
};

/**
 * What a switchover between two hosts will cost, from the link measured now (`linkRate`,
 * the migration connection's own speed) and the switchovers seen before on the same link:
 * downtime = overhead + scale × bytes / link rate. Each earlier switchover carries the link
 * rate measured during it, so sizes that barely differ (QEMU switches near its threshold
 * every time) still teach the overhead; a spread of sizes teaches the scale too. Switchovers
 * measured on a different link (a rate more than {@link LINK_CHANGE_FACTOR} away) are not used.
 * Without any measurement, the plain fit over sizes and downtimes ({@link fitSwitchover}).
 */
export function switchoverModel(points: readonly SwitchoverPoint[], linkRate?: number): SwitchoverModel {
  const measured = points.filter((p) => p.linkRate !== undefined && p.linkRate > 0 && p.downtimeMs > 0);
  const ref = linkRate ?? measured.at(-1)?.linkRate;
  const here = ref === undefined ? [] : measured.filter((p) => sameLink(p.linkRate!, ref));
  if (here.length === 0) {
    if (linkRate !== undefined) return { finalCopyRate: linkRate, learnedFrom: 0 };
    const fit = fitSwitchover(points);
    return { ...(fit.rate !== undefined ? { finalCopyRate: fit.rate } : {}), ...(fit.overheadMs !== undefined ? { overheadMs: fit.overheadMs } : {}), learnedFrom: fit.rate !== undefined || fit.overheadMs !== undefined ? points.length : 0 };
  }
  // x: ms the final copy takes at the measured speed; y: the downtime QEMU reported.
  const xs = here.map((p) => (p.bytes * 1000) / p.linkRate!);
  const ys = here.map((p) => p.downtimeMs);
  let scale = 1;
  let overhead = Math.max(0, median(ys.map((y, i) => y - xs[i]!)));
  const n = here.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const sxx = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  if (n >= 3 && Math.max(...xs) - Math.min(...xs) >= 5) {
    const my = ys.reduce((a, b) => a + b, 0) / n;
    const slope = xs.reduce((a, x, i) => a + (x - mx) * (ys[i]! - my), 0) / sxx;
    const o = my - slope * mx;
    if (slope >= 0.25 && slope <= 4 && o >= 0) {
      scale = slope;
      overhead = o;
    }
  }
  const rate = ref! / scale;
  return { finalCopyRate: rate, overheadMs: overhead, learnedFrom: n };
}
