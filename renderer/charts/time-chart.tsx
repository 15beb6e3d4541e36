import { memo, useCallback, useId, useLayoutEffect, useMemo, useState, useSyncExternalStore } from 'react';
import { CartesianGrid, LineChart, ReferenceArea, ReferenceLine, ResponsiveContainer, Tooltip, XAxis, YAxis, usePlotArea, useXAxisScale, useYAxisScale } from 'recharts';
import { lttb } from '../../shared/analysis/lttb';
import { formatUnit, PHASE_COLORS } from '../../shared/report/picture';
import type { ChartRow, ChartSpec, PhaseSpan, SeriesDef } from '../../shared/report/picture';
import { niceStep } from '../../shared/report/svg-chart';

export type { ChartRow, PhaseSpan, SeriesDef } from '../../shared/report/picture';
export { PHASE_COLORS };

interface Props {
  spec: ChartSpec;
  rows: readonly ChartRow[];
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

/** Rows inside [from, to], plus one neighbour each side so lines run to the edges. */
function windowOf(rows: readonly ChartRow[], from: number, to: number): readonly ChartRow[] {
  let a = 0;
  while (a < rows.length && rows[a]!.t < from) a++;
  let b = rows.length;
  while (b > a && rows[b - 1]!.t > to) b--;
  return rows.slice(Math.max(0, a - 1), Math.min(rows.length, b + 1));
}

/**
 * The downsampled rows, outside React's props: a live update changes only this, so the
 * recharts frame (axes, grid, bands, marks) is not re-rendered for it — only the paths are.
 */
interface RowsStore {
  get: () => readonly ChartRow[];
  set: (rows: readonly ChartRow[]) => void;
  subscribe: (l: () => void) => () => void;
}

function makeRowsStore(initial: readonly ChartRow[]): RowsStore {
  let rows = initial;
  const listeners = new Set<() => void>();
  return {
    get: () => rows,
    set: (next) => {
      if (next === rows) return;
      rows = next;
      for (const l of [...listeners]) l();
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
 * The series themselves: one SVG path each, drawn with the chart's own scales. Recharts
 * draws axes, grid, bands, marks and tooltip; handing it the lines too costs tens of ms per
 * live update (it re-derives every point through its store), this costs well under one.
 */
function SeriesPaths({ store, series, x0, x1, yTop }: { store: RowsStore; series: readonly SeriesDef[]; x0: number; x1: number; yTop: number }) {
  const data = useSyncExternalStore(store.subscribe, store.get);
  const x = useXAxisScale();
  const y = useYAxisScale();
  const area = usePlotArea();
  const clipId = `clip-${useId().replace(/[^A-Za-z0-9_-]/g, '')}`;
  if (!x || !y) return null;
  // Both axes are linear: two points give each scale, then a tight loop (no per-point calls).
  const xa = Number(x(x0));
  const xb = Number(x(x1));
  const ya = Number(y(0));
  const yb = Number(y(yTop));
  if (![xa, xb, ya, yb].every(Number.isFinite) || x1 === x0 || yTop === 0) return null;
  const kx = (xb - xa) / (x1 - x0);
  const ky = (yb - ya) / yTop;
  return (
    <g className="series-lines" clipPath={area ? `url(#${clipId})` : undefined}>
      {area && (
        <clipPath id={clipId}>
          <rect x={area.x} y={area.y - 2} width={area.width} height={area.height + 4} />
        </clipPath>
      )}
      {series.map((s) => {
        // "M x y x y ...": pairs after a moveto are implicit linetos.
        const xy: number[] = [];
        for (const r of data) {
          const v = r[s.key];
          if (v === undefined) continue;
          xy.push(Math.round((xa + (r.t - x0) * kx) * 10) / 10, Math.round((ya + v * ky) * 10) / 10);
        }
        return xy.length ? <path key={s.key} className="series-line" data-series={s.key} d={`M${xy.join(' ')}`} fill="none" stroke={s.color} strokeWidth={1.6} strokeDasharray={s.dashed ? '5 4' : undefined} strokeLinejoin="round" /> : null;
      })}
    </g>
  );
}

/** Values of every series at the hovered time, from the rows (the lines are not recharts items). */
function HoverValues({ active, label, store, spec }: { active?: boolean; label?: unknown; store: RowsStore; spec: ChartSpec }) {
  const data = store.get();
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
  const data = useMemo(() => {
    const first = spec.series[0]?.key ?? 't';
    return lttb(visible, maxPoints, (r) => r.t, (r) => r[first] ?? 0);
  }, [visible, spec.series, maxPoints]);
  const [store] = useState(() => makeRowsStore(data));
  useLayoutEffect(() => store.set(data), [store, data]);
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
        <LineChart data={store.get()} margin={MARGIN} {...(interactive ? { onMouseDown, onMouseMove, onMouseUp } : {})}>
          <CartesianGrid strokeDasharray="3 3" className="grid" />
          {phases.map((p, i) => (
            <ReferenceArea key={`${p.phase}-${i}`} x1={p.from} x2={Math.max(p.to, p.from + 0.001)} fill={PHASE_COLORS[p.phase] ?? '#ccc'} fillOpacity={0.12} ifOverflow="hidden" />
          ))}
          {passes.map((x, i) => (
            <ReferenceLine key={`pass-${i}`} x={x} stroke="#64748b" strokeDasharray="2 3" className="pass-marker" ifOverflow="hidden" label={{ value: `${i + 2}`, position: 'insideTopLeft', fontSize: 9, fill: '#64748b' }} />
          ))}
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
          <SeriesPaths store={store} series={spec.series} x0={x0} x1={x1} yTop={yTop} />
        </LineChart>
      </ResponsiveContainer>
    );
  }, [store, spec, height, interactive, onMouseDown, onMouseMove, onMouseUp, phases, passes, xMarks, cursor, drag, x0, x1, yTop]);
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
