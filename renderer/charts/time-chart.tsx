import { memo, useMemo, useState } from 'react';
import { CartesianGrid, Legend, Line, LineChart, ReferenceArea, ReferenceLine, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { lttb } from '../../shared/analysis/lttb';
import { formatUnit, PHASE_COLORS } from '../../shared/report/picture';
import type { ChartRow, ChartSpec, PhaseSpan } from '../../shared/report/picture';

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
 * A time chart, the same for live migrations and recorded timelines: series downsampled
 * (LTTB) to about the pixel width before recharts sees them, no animation, phase bands
 * behind, pass markers, reference marks; optionally a cursor and drag-to-zoom.
 */
export const TimeChart = memo(function TimeChart({ spec, rows, phases = [], passes = [], maxPoints = 600, height = 180, domain, cursor, onCursor, onZoom }: Props) {
  const [drag, setDrag] = useState<{ from: number; to: number }>();
  const visible = useMemo(() => (domain ? windowOf(rows, domain[0], domain[1]) : rows), [rows, domain]);
  const data = useMemo(() => {
    const first = spec.series[0]?.key ?? 't';
    return lttb(visible, maxPoints, (r) => r.t, (r) => r[first] ?? 0);
  }, [visible, spec.series, maxPoints]);
  const format = useMemo(() => (v: number) => formatUnit(spec.unit, v), [spec.unit]);
  const x0 = domain?.[0] ?? 0;
  const x1 = domain?.[1] ?? Math.max(1, rows.at(-1)?.t ?? 1);
  const interactive = onCursor !== undefined || onZoom !== undefined;
  return (
    <figure className="chart" aria-label={spec.title} data-chart={spec.id}>
      <figcaption>{spec.title}</figcaption>
      <ResponsiveContainer width="100%" height={height}>
        <LineChart
          data={data}
          margin={{ top: 6, right: 12, bottom: 0, left: 4 }}
          {...(interactive
            ? {
                onMouseDown: (st: unknown) => {
                  const t = labelOf(st);
                  if (t !== undefined && onZoom) setDrag({ from: t, to: t });
                },
                onMouseMove: (st: unknown) => {
                  const t = labelOf(st);
                  if (t === undefined) return;
                  if (drag) setDrag({ ...drag, to: t });
                },
                onMouseUp: (st: unknown) => {
                  const t = labelOf(st);
                  if (drag && onZoom && Math.abs(drag.to - drag.from) > (x1 - x0) / 100) onZoom(Math.min(drag.from, drag.to), Math.max(drag.from, drag.to));
                  else if (t !== undefined) onCursor?.(t);
                  setDrag(undefined);
                },
              }
            : {})}
        >
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
          {cursor !== undefined && <ReferenceLine x={cursor} stroke="var(--accent, #2563eb)" strokeWidth={1.5} className="cursor-line" ifOverflow="hidden" />}
          {drag && <ReferenceArea x1={Math.min(drag.from, drag.to)} x2={Math.max(drag.from, drag.to)} fill="#2563eb" fillOpacity={0.15} />}
          <XAxis dataKey="t" type="number" domain={[x0, x1]} allowDataOverflow tickFormatter={(v: number) => `${v.toFixed(x1 - x0 < 10 ? 1 : 0)}s`} fontSize={11} />
          <YAxis tickFormatter={format} width={64} fontSize={11} {...(spec.yMax !== undefined ? { domain: [0, spec.yMax], allowDataOverflow: true } : {})} />
          <Tooltip formatter={(v) => format(Number(v))} labelFormatter={(l) => `t = ${Number(l).toFixed(2)} s`} isAnimationActive={false} />
          <Legend wrapperStyle={{ fontSize: 11 }} />
          {spec.series.map((s) => (
            <Line key={s.key} dataKey={s.key} name={s.label} stroke={s.color} strokeDasharray={s.dashed ? '5 4' : undefined} dot={false} isAnimationActive={false} strokeWidth={1.6} connectNulls />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </figure>
  );
});
