import { memo, useCallback, useId, useLayoutEffect, useMemo, useState, useSyncExternalStore } from 'react';
import { CartesianGrid, LineChart, ReferenceArea, ReferenceLine, ResponsiveContainer, Tooltip, XAxis, YAxis, usePlotArea, useXAxisScale, useYAxisScale } from 'recharts';
import { lttbStable } from '../../shared/analysis/lttb';
import { formatUnit, PHASE_COLORS } from '../../shared/report/picture';
import type { ChartRow, ChartSpec, PhaseSpan, SeriesDef } from '../../shared/report/picture';
import { niceStep } from '../../shared/report/svg-chart';
import { sliceOf } from '../../shared/model/ring';
import type { Seq } from '../../shared/model/ring';

export type { ChartRow, PhaseSpan, SeriesDef } from '../../shared/report/picture';
export { PHASE_COLORS };

interface Props {
  spec: ChartSpec;
  /** An array (a recorded timeline) or the live store's ring of rows. */
  rows: Seq<ChartRow>;
  phases?: readonly PhaseSpan[];
  passes?: readonly number[];
  /** Points handed to recharts at most: about the chart's pixel width. */
  maxPoints?: number;
  height?: number;
  /** Visible time window in seconds (zoom); the whole run when absent. */
  domain?: readonly [number, number];
  /** A cursor line at this time (seconds), e.g. the timeline viewer's scrub position. */
  cursor?: number;
  /** Hover/click on the chart moves the cursor. */
  onCursor?: (t: number) => void;
  /** Dragging across the chart selects a window to zoom into. */
  onZoom?: (from: number, to: number) => void;
  /** Labelled vertical lines (e.g. each run's switchover in an overlay). */
  xMarks?: readonly { x: number; label: string; color: string }[];
}

function labelOf(state: unknown): number | undefined {
  const v = (state as { activeLabel?: unknown } | undefined)?.activeLabel;
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** First index whose row is at or after `t` (rows are in time order). */
function firstAtOrAfter(rows: Seq<ChartRow>, t: number): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (rows.at(mid)!.t < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Rows inside [from, to], plus one neighbour each side so lines run to the edges. */
function windowOf(rows: Seq<ChartRow>, from: number, to: number): Seq<ChartRow> {
  const a = firstAtOrAfter(rows, from);
  let b = firstAtOrAfter(rows, to);
  while (b < rows.length && rows.at(b)!.t <= to) b++;
  return sliceOf(rows, Math.max(0, a - 1), Math.min(rows.length, b + 1));
}

/**
 * What changes on every live sample, outside React's props: the downsampled rows, the
 * phase bands (the current one grows) and the pass markers. A live update changes only this, so the recharts
 * frame (axes, grid, marks) is not re-rendered for it — only the paths and bands are.
 */
interface Live {
  rows: readonly ChartRow[];
  /** Per row, the LTTB bucket it stands for (stable as the run grows): rows are drawn in chunks of buckets. */
  buckets: readonly number[];
  /** Bucket width (0: every row kept). */
  width: number;
  phases: readonly PhaseSpan[];
  passes: readonly number[];
  /** Where the frame's axes put [x0, x1] and [0, yTop], and the plot area: read from recharts by <Geometry>. */
  geo?: Geo;
}

interface Geo {
  x0: number;
  x1: number;
  yTop: number;
  xa: number;
  xb: number;
  ya: number;
  yb: number;
  area?: { x: number; y: number; width: number; height: number };
}

interface RowsStore {
  get: () => Live;
  set: (next: Omit<Live, 'geo'>) => void;
  setGeo: (geo: Geo | undefined) => void;
  subscribe: (l: () => void) => () => void;
}

const sameGeo = (a: Geo | undefined, b: Geo | undefined) =>
  a === b || (a !== undefined && b !== undefined && a.x0 === b.x0 && a.x1 === b.x1 && a.yTop === b.yTop && a.xa === b.xa && a.xb === b.xb && a.ya === b.ya && a.yb === b.yb
    && a.area?.x === b.area?.x && a.area?.y === b.area?.y && a.area?.width === b.area?.width && a.area?.height === b.area?.height);

function makeRowsStore(initial: Omit<Live, 'geo'>): RowsStore {
  let live: Live = initial;
  const listeners = new Set<() => void>();
  const emit = () => {
    for (const l of [...listeners]) l();
  };
  return {
    get: () => live,
    set: (next) => {
      if (next.rows === live.rows && next.buckets === live.buckets && next.phases === live.phases && next.passes === live.passes) return;
      live = { ...next, ...(live.geo ? { geo: live.geo } : {}) };
      emit();
    },
    setGeo: (geo) => {
      if (sameGeo(geo, live.geo)) return;
      live = { rows: live.rows, buckets: live.buckets, width: live.width, phases: live.phases, passes: live.passes, ...(geo ? { geo } : {}) };
      emit();
    },
    subscribe: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
}

/**
 * Right end of the time axis for a run that has reached `tMax` seconds: rounded up to a
 * tenth of a nice step, so a live chart's axis moves in steps, not on every sample.
 */
export function xEndOf(tMax: number): number {
  if (!(tMax > 1)) return 1;
  const step = niceStep(tMax, 10);
  return Math.ceil(tMax / step) * step;
}

/** Round ticks from 0 to the top (1, 2 or 5 times a power of ten apart). */
function yTicks(top: number): number[] {
  const step = niceStep(top);
  const out: number[] = [];
  for (let v = 0; v <= top + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
  return out;
}

/** Upper end of the y axis: the plan's, or the visible maximum (marks included) rounded up to a tick. */
function yTopOf(rows: readonly ChartRow[], spec: ChartSpec): number {
  if (spec.yMax !== undefined) return spec.yMax;
  let top = 0;
  for (const r of rows) for (const s of spec.series) top = Math.max(top, r[s.key] ?? 0);
  for (const m of spec.marks ?? []) top = Math.max(top, m.y);
  if (!(top > 0)) return 1;
  const step = niceStep(top);
  return Math.ceil((top * 1.02) / step) * step;
}

/**
 * An integer count of tenths as decimal text, exactly as String(q / 10) prints it ("12",
 * "12.5", "-0.3"), without the float-to-text conversion that dominated drawing a path.
 */
export function tenths(q: number): string {
  if (q < 0) return `-${tenths(-q)}`;
  const r = q % 10;
  return r === 0 ? String(q / 10) : `${(q - r) / 10}.${r}`;
}

/** LTTB buckets per drawn chunk: a live update re-sets only the last chunk or two of each line. */
export const CHUNK_BUCKETS = 48;

interface Chunk {
  key: string;
  /** The rows drawn (the previous chunk's last point first, so the line runs on) and the frame they were drawn in. */
  rows: ChartRow[];
  frame: string;
  d: string;
}

/**
 * One series as paths of CHUNK_BUCKETS buckets each, "M x y x y ..." (pairs after a moveto
 * are implicit linetos, coordinates to 0.1 px). A chunk whose rows and frame are those it was
 * last drawn with keeps its string, so React leaves its element alone and the browser parses
 * no path but the growing tail: the cost of a live update no longer grows with the run.
 */
function chunksOf(cache: Map<string, Chunk>, s: SeriesDef, data: readonly ChartRow[], buckets: readonly number[], width: number, geo: Geo): Chunk[] {
  const { x0, x1, yTop, xa, xb, ya, yb } = geo;
  const kx = (xb - xa) / (x1 - x0);
  const ky = (yb - ya) / yTop;
  const frame = `${x0} ${x1} ${yTop} ${xa} ${xb} ${ya} ${yb}`;
  const mode = width === 0 ? 'i' : `w${width}`;
  const out: Chunk[] = [];
  let lastDefined: ChartRow | undefined;
  let i = 0;
  while (i < data.length) {
    const c = Math.floor(buckets[i]! / CHUNK_BUCKETS);
    const rows: ChartRow[] = lastDefined ? [lastDefined] : [];
    let added = 0;
    for (; i < data.length && Math.floor(buckets[i]! / CHUNK_BUCKETS) === c; i++) {
      // A row without this series is skipped: the line runs on to the next one that has it.
      if (data[i]![s.key] === undefined) continue;
      rows.push(data[i]!);
      lastDefined = data[i]!;
      added++;
    }
    if (added === 0) continue;
    const key = `${mode}${c}`;
    const id = `${s.key}/${key}`;
    const hit = cache.get(id);
    if (hit && hit.frame === frame && hit.rows.length === rows.length && hit.rows.every((r, k) => r === rows[k])) {
      out.push(hit);
      continue;
    }
    let d = '';
    for (const r of rows) d += `${d ? ' ' : 'M'}${tenths(Math.round((xa + (r.t - x0) * kx) * 10))} ${tenths(Math.round((ya + r[s.key]! * ky) * 10))}`;
    const chunk = { key, rows, frame, d };
    cache.set(id, chunk);
    out.push(chunk);
  }
  // Chunks no longer drawn (the run moved on, or the width doubled) are forgotten.
  if (cache.size > 4 * (out.length + 8)) {
    const live = new Set(out.map((c) => `${s.key}/${c.key}`));
    for (const k of cache.keys()) if (k.startsWith(`${s.key}/`) && !live.has(k)) cache.delete(k);
  }
  return out;
}

/**
 * The series themselves, one SVG path each, and the phase bands behind them, drawn with the
 * chart's own scales. Recharts draws axes, grid, marks and tooltip; handing it the lines
 * or the growing current band too costs tens of ms per live update (it re-derives every
 * point and every reference item through its store), this costs well under one.
 */
function SeriesPaths({ store, series }: { store: RowsStore; series: readonly SeriesDef[] }) {
  const { rows: data, buckets, width, phases, passes, geo } = useSyncExternalStore(store.subscribe, store.get);
  const [cache] = useState(() => new Map<string, Chunk>());
  const clipId = `clip-${useId().replace(/[^A-Za-z0-9_-]/g, '')}`;
  if (!geo) return null;
  const { x0, x1, xa, xb, area } = geo;
  const kx = (xb - xa) / (x1 - x0);
  return (
    <g className="series-lines" clipPath={area ? `url(#${clipId})` : undefined}>
      {area && (
        <clipPath id={clipId}>
          <rect x={area.x} y={area.y - 2} width={area.width} height={area.height + 4} />
        </clipPath>
      )}
      {area && phases.map((p, i) => {
        const a = xa + (p.from - x0) * kx;
        const b = xa + (Math.max(p.to, p.from + 0.001) - x0) * kx;
        return <rect key={`${p.phase}-${i}`} className="phase-band" data-phase={p.phase} x={Math.round(a * 10) / 10} y={area.y} width={Math.max(0, Math.round((b - a) * 10) / 10)} height={area.height} fill={PHASE_COLORS[p.phase] ?? '#ccc'} fillOpacity={0.12} />;
      })}
      {area && passes.map((t, i) => {
        // Where pass i + 2 began: a dashed line and its number (recharts' ReferenceLine would
        // re-dispatch every line and mark to its store whenever one is added).
        const x = Math.round((xa + (t - x0) * kx) * 10) / 10;
        return (
          <g key={`pass-${i}`} className="pass-marker">
            <line x1={x} x2={x} y1={area.y} y2={area.y + area.height} stroke="#64748b" strokeDasharray="2 3" />
            <text x={x + 3} y={area.y + 10} fontSize={9} fill="#64748b">{i + 2}</text>
          </g>
        );
      })}
      {series.map((s) => chunksOf(cache, s, data, buckets, width, geo).map((c) => (
        <path key={`${s.key}-${c.key}`} className="series-line" data-series={s.key} d={c.d} fill="none" stroke={s.color} strokeWidth={1.6} strokeDasharray={s.dashed ? '5 4' : undefined} strokeLinejoin="round" strokeLinecap="round" />
      )))}
    </g>
  );
}

/**
 * Reads the frame's scales and plot area from recharts (its selectors run here, when the
 * frame changes, not on every live sample) and hands them to <SeriesPaths> through the store.
 */
function Geometry({ store, x0, x1, yTop }: { store: RowsStore; x0: number; x1: number; yTop: number }) {
  const x = useXAxisScale();
  const y = useYAxisScale();
  const plot = usePlotArea();
  let geo: Geo | undefined;
  if (x && y) {
    // Both axes are linear: two points give each scale, then a tight loop (no per-point calls).
    const g: Geo = { x0, x1, yTop, xa: Number(x(x0)), xb: Number(x(x1)), ya: Number(y(0)), yb: Number(y(yTop)) };
    if (plot) g.area = { x: plot.x, y: plot.y, width: plot.width, height: plot.height };
    if ([g.xa, g.xb, g.ya, g.yb].every(Number.isFinite) && x1 !== x0 && yTop !== 0) geo = g;
  }
  useLayoutEffect(() => store.setGeo(geo));
  return null;
}

/** Values of every series at the hovered time, from the rows (the lines are not recharts items). */
function HoverValues({ active, label, store, spec }: { active?: boolean; label?: unknown; store: RowsStore; spec: ChartSpec }) {
  const data = store.get().rows;
  const t = Number(label);
  if (!active || !Number.isFinite(t) || data.length === 0) return null;
  let best = data[0]!;
  for (const r of data) if (Math.abs(r.t - t) < Math.abs(best.t - t)) best = r;
  return (
    <div className="chart-tooltip">
      <div className="muted">t = {best.t.toFixed(2)} s</div>
      {spec.series.map((s) => (best[s.key] !== undefined ? <div key={s.key} style={{ color: s.color }}>{s.label}: {formatUnit(spec.unit, best[s.key]!)}</div> : null))}
    </div>
  );
}

/**
 * A time chart, the same for live migrations and recorded timelines: series downsampled
 * (LTTB) to about the pixel width before recharts sees them, no animation, phase bands
 * behind, pass markers, reference marks; optionally a cursor and drag-to-zoom.
 */
export const TimeChart = memo(function TimeChart({ spec, rows, phases = NO_PHASES, passes = NO_PASSES, maxPoints = 600, height = 180, domain, cursor, onCursor, onZoom, xMarks = NO_MARKS }: Props) {
  const [drag, setDrag] = useState<{ from: number; to: number }>();
  const visible = useMemo(() => (domain ? windowOf(rows, domain[0], domain[1]) : rows), [rows, domain]);
  const pick = useMemo(() => {
    const first = spec.series[0]?.key ?? 't';
    return lttbStable(visible, maxPoints, (r) => r.t, (r) => r[first] ?? 0, { x: 't', y: first });
  }, [visible, spec.series, maxPoints]);
  const data = pick.rows;
  const [store] = useState(() => makeRowsStore({ rows: data, buckets: pick.buckets, width: pick.width, phases, passes }));
  useLayoutEffect(() => store.set({ rows: data, buckets: pick.buckets, width: pick.width, phases, passes }), [store, data, pick, phases, passes]);
  // Over the drawn (downsampled) rows: the axis fits what is on screen, at a fraction of the cost.
  const yTop = yTopOf(data, spec);
  const x0 = domain?.[0] ?? 0;
  const x1 = domain?.[1] ?? xEndOf(rows.at(-1)?.t ?? 0);
  const interactive = onCursor !== undefined || onZoom !== undefined;
  const onMouseDown = useCallback((st: unknown) => {
    const t = labelOf(st);
    if (t !== undefined && onZoom) setDrag({ from: t, to: t });
  }, [onZoom]);
  const onMouseMove = useCallback((st: unknown) => {
    const t = labelOf(st);
    if (t !== undefined) setDrag((d) => (d ? { ...d, to: t } : d));
  }, []);
  const onMouseUp = useCallback((st: unknown) => {
    const t = labelOf(st);
    setDrag((d) => {
      if (d && onZoom && Math.abs(d.to - d.from) > (x1 - x0) / 100) onZoom(Math.min(d.from, d.to), Math.max(d.from, d.to));
      else if (t !== undefined) onCursor?.(t);
      return undefined;
    });
  }, [onZoom, onCursor, x0, x1]);
  // The frame: re-rendered only when what it shows changes (axis ends move in steps).
  const frame = useMemo(() => {
    const format = (v: number) => formatUnit(spec.unit, v);
    return (
      <ResponsiveContainer width="100%" height={height}>
        <LineChart data={store.get().rows} margin={MARGIN} {...(interactive ? { onMouseDown, onMouseMove, onMouseUp } : {})}>
          <CartesianGrid strokeDasharray="3 3" className="grid" />
          {(spec.marks ?? []).map((m) => (
            <ReferenceLine key={m.label} y={m.y} stroke={m.color} strokeDasharray="6 3" label={{ value: m.label, position: 'insideTopRight', fontSize: 10, fill: m.color }} />
          ))}
          {xMarks.map((m) => (
            <ReferenceLine key={`x-${m.label}`} x={m.x} stroke={m.color} strokeDasharray="4 2" className="x-mark" ifOverflow="hidden" label={{ value: m.label, position: 'insideTopRight', fontSize: 9, fill: m.color }} />
          ))}
          {cursor !== undefined && <ReferenceLine x={cursor} stroke="var(--accent, #2563eb)" strokeWidth={1.5} className="cursor-line" ifOverflow="hidden" />}
          {drag && <ReferenceArea x1={Math.min(drag.from, drag.to)} x2={Math.max(drag.from, drag.to)} fill="#2563eb" fillOpacity={0.15} />}
          <XAxis dataKey="t" type="number" domain={[x0, x1]} allowDataOverflow tickFormatter={(v: number) => `${v.toFixed(x1 - x0 < 10 ? 1 : 0)}s`} fontSize={11} />
          <YAxis tickFormatter={format} width={64} fontSize={11} domain={[0, yTop]} ticks={yTicks(yTop)} allowDataOverflow type="number" />
          <Tooltip content={(p) => <HoverValues active={p.active} label={p.label} store={store} spec={spec} />} isAnimationActive={false} />
          <Geometry store={store} x0={x0} x1={x1} yTop={yTop} />
          <SeriesPaths store={store} series={spec.series} />
        </LineChart>
      </ResponsiveContainer>
    );
  }, [store, spec, height, interactive, onMouseDown, onMouseMove, onMouseUp, xMarks, cursor, drag, x0, x1, yTop]);
  return (
    <figure className="chart" aria-label={spec.title} data-chart={spec.id}>
      <figcaption>{spec.title}</figcaption>
      {frame}
      <ul className="chart-legend">
        {spec.series.map((s) => (
          <li key={s.key}><span className="swatch" style={{ borderColor: s.color, borderStyle: s.dashed ? 'dashed' : 'solid' }} />{s.label}</li>
        ))}
      </ul>
    </figure>
  );
});

const MARGIN = { top: 6, right: 12, bottom: 0, left: 4 };
const NO_PHASES: readonly PhaseSpan[] = [];
const NO_PASSES: readonly number[] = [];
const NO_MARKS: NonNullable<Props['xMarks']> = [];
