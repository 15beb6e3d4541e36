/**
 * The picture of one migration, whether it is running (samples arriving as events) or
 * recorded (a timeline file): the same entry type, the same chart rows, phase bands, pass
 * markers and chart specs. The live view, the timeline viewer and the HTML report all draw
 * from here, so a replayed timeline looks exactly like the live migration did.
 */
import type { MigrationSummaryPayload } from '../contract';
import type { MigrationFinal, MigrationPhase, MigrationSample } from '../model/migration';
import type { ParsedTimeline, TimelineRecord } from '../model/timeline';
import type { PreflightResult } from '../model/preflight';
import { formatBytes, formatMs } from '../analysis/units';
import { Ring } from '../model/ring';
import type { Seq } from '../model/ring';

export interface LogEntry {
  t: number;
  kind: 'phase' | 'control' | 'error' | 'info' | 'end' | 'policy' | 'event';
  text: string;
}

export interface MigrationEntry {
  summary: MigrationSummaryPayload;
  /** An array for a recorded timeline; in the live console, the store's ring (replaced, never mutated). */
  samples: Seq<MigrationSample>;
  phases: { phase: MigrationPhase; t: number }[];
  log: LogEntry[];
  final?: MigrationFinal;
  preflight?: PreflightResult;
}

export interface ChartRow {
  /** Seconds since the migration started. */
  t: number;
  [key: string]: number | undefined;
}

export interface SeriesDef {
  key: string;
  label: string;
  color: string;
  dashed?: boolean;
}

export interface PhaseSpan {
  phase: MigrationPhase;
  from: number;
  to: number;
}

export interface ChartSpec {
  id: string;
  title: string;
  series: SeriesDef[];
  unit: 'MB/s' | 'MB' | 'ms' | '%' | 'count';
  yMax?: number;
  marks?: { y: number; label: string; color: string }[];
}

export const PHASE_COLORS: Partial<Record<MigrationPhase, string>> = {
  reservation: '#94a3b8',
  'storage-copy': '#2dd4bf',
  setup: '#94a3b8',
  precopy: '#60a5fa',
  'stop-and-copy': '#f59e0b',
  postcopy: '#a78bfa',
  'postcopy-paused': '#ef4444',
  commitment: '#34d399',
  activation: '#34d399',
  completed: '#10b981',
  failed: '#ef4444',
  cancelled: '#9ca3af',
};

/** Formats a value in a chart's unit (decimal MB, as QEMU's bandwidth settings are). */
export function formatUnit(unit: ChartSpec['unit'], v: number): string {
  switch (unit) {
    case 'MB/s':
      return `${(v / 1e6).toFixed(Math.abs(v) < 1e7 ? 1 : 0)} MB/s`;
    case 'MB':
      return `${(v / 1e6).toFixed(Math.abs(v) < 1e7 ? 1 : 0)} MB`;
    case 'ms':
      return Math.abs(v) < 10 && v !== 0 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`;
    case '%':
      return `${Math.round(v)}%`;
    default:
      return String(Math.round(v));
  }
}

/** A recorded timeline's entry: its samples are a plain array. */
export interface RecordedEntry extends MigrationEntry {
  samples: MigrationSample[];
}

/**
 * Chart rows of the samples. For a ring (a live migration) each sample is turned into its
 * row once, however many versions of the ring there are: a new sample costs one row.
 */
export function rowsOf(samples: readonly MigrationSample[], startedAt: number): ChartRow[];
export function rowsOf(samples: Seq<MigrationSample>, startedAt: number): Seq<ChartRow>;
export function rowsOf(samples: Seq<MigrationSample>, startedAt: number): Seq<ChartRow> {
  if (samples instanceof Ring) return samples.map(`rows@${startedAt}`, (s) => rowOf(s, startedAt));
  return Array.from(samples, (s) => rowOf(s, startedAt));
}

function rowOf(s: MigrationSample, startedAt: number): ChartRow {
  const r: ChartRow = { t: (s.t - startedAt) / 1000 };
  if (s.dirtyRate !== undefined) r.dirty = s.dirtyRate;
  if (s.transferRate !== undefined) r.xfer = s.transferRate;
  if (s.remainingBytes !== undefined) r.remaining = s.remainingBytes;
  if (s.transferredBytes !== undefined) r.transferred = s.transferredBytes;
  const fp = s.projection?.switchoverDowntimeMs ?? s.projection?.downtimeMs;
  if (fp !== undefined) r.ferry = Math.min(fp, 60_000);
  if (s.expectedDowntimeMs !== undefined) r.qemu = s.expectedDowntimeMs;
  if (s.guest) r.stall = s.guest.stallMs;
  if (s.postcopyRequests !== undefined) r.requests = s.postcopyRequests;
  if (s.cpuThrottlePct !== undefined) r.throttle = s.cpuThrottlePct;
  // dirty-limit: µs each vCPU was held per dirty-ring round, plotted in ms
  if (s.dirtyLimitThrottleUs !== undefined) r.dirtyLimit = s.dirtyLimitThrottleUs / 1000;
  if (s.storage) {
    r.diskCopied = s.storage.copiedBytes;
    r.diskTotal = s.storage.totalBytes;
    if (s.storage.rate !== undefined) r.diskRate = s.storage.rate;
    if (s.storage.dirtyRate !== undefined) r.diskDirty = s.storage.dirtyRate;
  }
  return r;
}

/** Phase bands in seconds since the start; the last one runs to `now` (ms, wall clock). */
export function phaseSpans(phases: readonly { phase: MigrationPhase; t: number }[], startedAt: number, now: number): PhaseSpan[] {
  return phases.map((p, i) => ({
    phase: p.phase,
    from: (p.t - startedAt) / 1000,
    to: ((phases[i + 1]?.t ?? now) - startedAt) / 1000,
  }));
}

type PassFold = { starts: readonly number[]; pass: number | undefined };

/** One step of the pass scan: the same object back while the pass number stays (no allocation per sample). */
function passStep(acc: PassFold, s: MigrationSample, startedAt: number): PassFold {
  const a = acc.pass;
  const b = s.pass;
  if (a === b) return acc;
  return { starts: a !== undefined && b !== undefined && b > a ? [...acc.starts, (s.t - startedAt) / 1000] : acc.starts, pass: b };
}

/** Where each RAM pass after the first began, in seconds since the start (a ring scans each sample once). */
export function passStarts(samples: Seq<MigrationSample>, startedAt: number): readonly number[] {
  const init: PassFold = { starts: [], pass: undefined };
  if (samples instanceof Ring) return samples.fold(`passes@${startedAt}`, init, (acc, s) => passStep(acc, s, startedAt)).starts;
  let acc = init;
  for (const s of samples) acc = passStep(acc, s, startedAt);
  return acc.starts;
}

const HAS_STORAGE = 1;
const HAS_GUEST = 2;
const HAS_THROTTLE = 4;
const HAS_REQUESTS = 8;
const HAS_DIRTY_LIMIT = 16;
const flagsOf = (s: MigrationSample) => (s.storage ? HAS_STORAGE : 0) | (s.guest ? HAS_GUEST : 0) | (s.cpuThrottlePct ? HAS_THROTTLE : 0) | (s.postcopyRequests ? HAS_REQUESTS : 0) | (s.dirtyLimitThrottleUs !== undefined ? HAS_DIRTY_LIMIT : 0);

/** The largest value of one series (0 when it has none); a ring's rows are scanned once each. */
function maxOf(rows: Seq<ChartRow>, key: string): number {
  const step = (acc: number, r: ChartRow) => (r[key] !== undefined && r[key] > acc ? r[key] : acc);
  if (rows instanceof Ring) return rows.fold(`max@${key}`, 0, step);
  let m = 0;
  for (const r of rows) m = step(m, r);
  return m;
}

/** Which optional charts have data (a ring scans each sample once). */
function sampleFlags(samples: Seq<MigrationSample>): number {
  if (samples instanceof Ring) return samples.fold('flags', 0, (acc: number, s) => acc | flagsOf(s));
  let f = 0;
  for (const s of samples) f |= flagsOf(s);
  return f;
}

type Plan = { downtimeLimitMs?: number };

/** The charts of a migration, in order; optional ones only when their data exists. */
export function chartSpecs(entry: Pick<MigrationEntry, 'summary' | 'samples' | 'final'>, rows: Seq<ChartRow>): ChartSpec[] {
  const limit = (entry.summary.plan as Plan).downtimeLimitMs ?? 300;
  const final = entry.final;
  const specs: ChartSpec[] = [];
  const flags = sampleFlags(entry.samples);
  const qemuMax = maxOf(rows, 'qemu');
  if (flags & HAS_STORAGE) {
    specs.push(
      { id: 'storage', title: 'Storage copy: disks mirrored to the destination', unit: 'MB', series: [{ key: 'diskCopied', label: 'copied', color: '#10b981' }, { key: 'diskTotal', label: 'to copy', color: '#64748b', dashed: true }] },
      { id: 'storage-rates', title: 'Storage copy rate vs disk dirtying', unit: 'MB/s', series: [{ key: 'diskRate', label: 'copy rate', color: '#2563eb' }, { key: 'diskDirty', label: 'disk dirtying', color: '#ef4444' }] },
    );
  }
  specs.push(
    { id: 'rates', title: 'Dirty rate vs transfer rate', unit: 'MB/s', series: [{ key: 'dirty', label: 'dirty', color: '#ef4444' }, { key: 'xfer', label: 'transfer', color: '#2563eb' }] },
    { id: 'memory', title: 'Memory', unit: 'MB', series: [{ key: 'remaining', label: 'remaining', color: '#f59e0b' }, { key: 'transferred', label: 'transferred', color: '#10b981' }] },
    {
      id: 'downtime',
      title: 'Projected downtime: Ferry vs QEMU',
      unit: 'ms',
      series: [{ key: 'ferry', label: 'Ferry', color: '#7c3aed' }, { key: 'qemu', label: 'QEMU expected', color: '#64748b', dashed: true }],
      yMax: Math.ceil(Math.max(limit * 3, qemuMax * 1.2, (final?.downtimeMs ?? 0) * 1.5) / 50) * 50,
      marks: [{ y: limit, label: `limit ${limit} ms`, color: '#dc2626' }, ...(final?.downtimeMs !== undefined ? [{ y: final.downtimeMs, label: `actual ${final.downtimeMs} ms`, color: '#059669' }] : [])],
    },
  );
  if (flags & HAS_GUEST) specs.push({ id: 'stall', title: 'Guest: longest stall per heartbeat', unit: 'ms', series: [{ key: 'stall', label: 'stall', color: '#0891b2' }] });
  if (flags & HAS_THROTTLE) specs.push({ id: 'throttle', title: 'CPU throttle (auto-converge)', unit: '%', series: [{ key: 'throttle', label: 'throttle', color: '#db2777' }] });
  if (flags & HAS_DIRTY_LIMIT) specs.push({ id: 'dirty-limit', title: 'dirty-limit: vCPU throttle time per round', unit: 'ms', series: [{ key: 'dirtyLimit', label: 'throttle per round', color: '#ea580c' }] });
  if (flags & HAS_REQUESTS) specs.push({ id: 'requests', title: 'Postcopy page requests', unit: 'count', series: [{ key: 'requests', label: 'requests', color: '#7c3aed' }] });
  return specs;
}

/** One line of the event log for a timeline record (undefined for records that are not events). */
export function logLine(r: TimelineRecord): LogEntry | undefined {
  switch (r.type) {
    case 'phase':
      return { t: r.t, kind: 'phase', text: `${r.from ?? '?'} → ${r.phase}${r.reason ? ` (${r.reason})` : ''}` };
    case 'control':
      return { t: r.t, kind: r.result.ok ? 'control' : 'error', text: `${r.who}: ${r.action}${r.args ? ` ${JSON.stringify(r.args)}` : ''}: ${r.result.ok ? 'done' : (r.result.error ?? 'failed')}` };
    case 'policy':
      return { t: r.t, kind: 'policy', text: `policy ${r.policy}: ${r.action} (${r.why})` };
    case 'event':
      return { t: r.t, kind: 'event', text: `${r.side}: ${r.event}${r.data ? ` ${JSON.stringify(r.data)}` : ''}` };
    case 'gap':
      return { t: r.t, kind: 'error', text: `${r.side}: no samples for ${((r.toT - r.fromT) / 1000).toFixed(1)} s (${r.reason})` };
    case 'note':
      return { t: r.t, kind: 'info', text: r.text };
    case 'end':
      return { t: r.t, kind: 'end', text: `${r.outcome}${r.reason ? `: ${r.reason}` : ''}${r.downtimeMs !== undefined ? `, downtime ${r.downtimeMs} ms` : ''}` };
    default:
      return undefined;
  }
}

/** A recorded timeline as the same entry the live console builds from events. */
export function entryFromTimeline(t: ParsedTimeline): RecordedEntry {
  const h = t.header;
  const startedAt = h?.createdAt ?? t.samples[0]?.t ?? 0;
  const plan = (h?.plan ?? { vm: h?.vm.name ?? '?', from: h?.source.id ?? '?', to: h?.destination?.id ?? '?' }) as Record<string, unknown>;
  return entryFromRecords({ id: h?.migrationId ?? 'timeline', plan, startedAt, timeline: '' }, t.records, t.samples);
}

/**
 * The entry a migration's records make (a timeline file's, or the history a console that
 * joins late is sent): phases, event log, final figures and preflight from the records, the
 * samples as given. The phase is the outcome, else `summary.phase`, else the last phase.
 */
export function entryFromRecords(summary: Omit<MigrationSummaryPayload, 'phase'> & { phase?: MigrationPhase }, records: readonly TimelineRecord[], samples: MigrationSample[]): RecordedEntry {
  const phases: MigrationEntry['phases'] = [];
  const log: LogEntry[] = [];
  let preflight: PreflightResult | undefined;
  let end: Extract<TimelineRecord, { type: 'end' }> | undefined;
  for (const r of records) {
    if (r.type === 'phase') phases.push({ phase: r.phase, t: r.t });
    if (r.type === 'preflight') preflight = r.result;
    if (r.type === 'end') end ??= r;
    const l = logLine(r);
    if (l) log.push(l);
  }
  const first = records.find((r): r is Extract<TimelineRecord, { type: 'phase' }> => r.type === 'phase');
  if (first?.from) phases.unshift({ phase: first.from, t: summary.startedAt });
  const final: MigrationFinal | undefined = end ? (({ type: _t, t: _tt, ...f }) => f)(end) : (summary.final as MigrationFinal | undefined);
  const phase: MigrationPhase = final?.outcome ?? summary.phase ?? phases.at(-1)?.phase ?? samples.at(-1)?.phase ?? 'preflight';
  return { summary: { ...summary, phase }, samples, phases, log, ...(final ? { final } : {}), ...(preflight ? { preflight } : {}) };
}

/** The sample shown under a cursor at `tSec` seconds since the start: the last one at or before it. */
export function sampleAt(samples: Seq<MigrationSample>, startedAt: number, tSec: number): MigrationSample | undefined {
  const target = startedAt + tSec * 1000;
  let lo = 0;
  let hi = samples.length - 1;
  if (hi < 0 || samples.at(0)!.t > target) return samples.at(0);
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (samples.at(mid)!.t <= target) lo = mid;
    else hi = mid - 1;
  }
  return samples.at(lo);
}

/** The final figures as label/value pairs, in display order (absent figures left out). */
export function figuresOf(final: MigrationFinal): { label: string; value: string; id: string; cls?: string }[] {
  const f: { label: string; value: string; id: string; cls?: string }[] = [
    { id: 'outcome', label: 'Outcome', value: `${final.outcome}${final.reason ? `: ${final.reason}` : ''}`, cls: final.outcome === 'completed' ? 'ok' : 'bad' },
    { id: 'downtime', label: 'Downtime', value: formatMs(final.downtimeMs) },
    { id: 'guest-downtime', label: 'Guest saw', value: formatMs(final.guestDowntimeMs) },
    { id: 'total', label: 'Total', value: formatMs(final.totalTimeMs) },
    { id: 'passes', label: 'Passes', value: final.passes !== undefined ? String(final.passes) : '?' },
    { id: 'sent', label: 'Sent', value: formatBytes(final.transferredBytes) },
  ];
  if (final.postcopyRequests) f.push({ id: 'requests', label: 'Page requests', value: String(final.postcopyRequests) });
  if (final.verify) f.push({ id: 'verify', label: 'Guest memory', value: final.verify.ok ? 'verified' : `${final.verify.bad + final.verify.stale} bad pages`, cls: final.verify.ok ? 'ok' : 'bad' });
  return f;
}
