import { memo, useMemo } from 'react';
import { CartesianGrid, Legend, Line, LineChart, ReferenceArea, ReferenceLine, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { lttb } from '../../shared/analysis/lttb';
import type { MigrationPhase } from '../../shared/model/migration';

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

export const PHASE_COLORS: Partial<Record<MigrationPhase, string>> = {
  reservation: '#94a3b8',
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

interface Props {
  title: string;
  rows: readonly ChartRow[];
  series: SeriesDef[];
  format: (v: number) => string;
  phases: readonly PhaseSpan[];
  passes: readonly number[];
  /** Horizontal reference lines (e.g. the downtime limit). */
  marks?: { y: number; label: string; color: string }[];
  /** Points handed to recharts at most: about the chart's pixel width. */
  maxPoints?: number;
  height?: number;
  /** Upper end of the y axis; values above it run off the chart (e.g. pass-1 projections). */
  yMax?: number;
}

/** A live time chart: series downsampled (LTTB) before recharts sees them, no animation. */
export const TimeChart = memo(function TimeChart({ title, rows, series, format, phases, passes, marks = [], maxPoints = 600, height = 180, yMax }: Props) {
  const data = useMemo(() => {
    const first = series[0]?.key ?? 't';
    return lttb(rows, maxPoints, (r) => r.t, (r) => r[first] ?? 0);
  }, [rows, series, maxPoints]);
  const tMax = rows.at(-1)?.t ?? 1;
  return (
    <figure className="chart" aria-label={title}>
      <figcaption>{title}</figcaption>
      <ResponsiveContainer width="100%" height={height}>
        <LineChart data={data} margin={{ top: 6, right: 12, bottom: 0, left: 4 }}>
          <CartesianGrid strokeDasharray="3 3" className="grid" />
          {phases.map((p, i) => (
            <ReferenceArea key={`${p.phase}-${i}`} x1={p.from} x2={Math.max(p.to, p.from + 0.001)} fill={PHASE_COLORS[p.phase] ?? '#ccc'} fillOpacity={0.12} ifOverflow="hidden" />
          ))}
          {passes.map((x, i) => (
            <ReferenceLine key={`pass-${i}`} x={x} stroke="#64748b" strokeDasharray="2 3" className="pass-marker" label={{ value: `${i + 2}`, position: 'insideTopLeft', fontSize: 9, fill: '#64748b' }} />
          ))}
          {marks.map((m) => (
            <ReferenceLine key={m.label} y={m.y} stroke={m.color} strokeDasharray="6 3" label={{ value: m.label, position: 'insideTopRight', fontSize: 10, fill: m.color }} />
          ))}
          <XAxis dataKey="t" type="number" domain={[0, Math.max(1, tMax)]} tickFormatter={(v: number) => `${v.toFixed(v < 10 ? 1 : 0)}s`} fontSize={11} />
          <YAxis tickFormatter={format} width={64} fontSize={11} {...(yMax !== undefined ? { domain: [0, yMax], allowDataOverflow: true } : {})} />
          <Tooltip formatter={(v) => format(Number(v))} labelFormatter={(l) => `t = ${Number(l).toFixed(2)} s`} isAnimationActive={false} />
          <Legend wrapperStyle={{ fontSize: 11 }} />
          {series.map((s) => (
            <Line key={s.key} dataKey={s.key} name={s.label} stroke={s.color} strokeDasharray={s.dashed ? '5 4' : undefined} dot={false} isAnimationActive={false} strokeWidth={1.6} connectNulls />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </figure>
  );
});
