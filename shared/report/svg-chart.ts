/**
 * Charts as self-contained SVG text (no DOM, no fonts to fetch, no script): what the HTML
 * report, the compare report and the PNG export draw. Same rows, series, phase bands, pass
 * markers and reference marks as the console's charts.
 */
import { lttb } from '../analysis/lttb';
import { formatUnit, PHASE_COLORS } from './picture';
import type { ChartRow, ChartSpec, PhaseSpan } from './picture';

export interface SvgChartOptions {
  spec: ChartSpec;
  rows: readonly ChartRow[];
  phases?: readonly PhaseSpan[];
  passes?: readonly number[];
  width?: number;
  height?: number;
  /** Right end of the time axis in seconds (defaults to the last row). */
  xMax?: number;
  /** Colours for dark pages. */
  dark?: boolean;
  /** Labelled vertical lines (e.g. each run's switchover in an overlay). */
  xMarks?: readonly { x: number; label: string; color: string }[];
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** 1, 2 or 5 times a power of ten, so that about `n` ticks cover [0, max]. */
export function niceStep(max: number, n = 4): number {
  if (!(max > 0)) return 1;
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

const r1 = (v: number) => Math.round(v * 10) / 10;

export function svgChart({ spec, rows, phases = [], passes = [], width = 720, height = 200, xMax, dark = false, xMarks = [] }: SvgChartOptions): string {
  const m = { top: 22, right: 12, bottom: 34, left: 70 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const x1 = Math.max(1e-3, xMax ?? rows.at(-1)?.t ?? 1);
  let yTop = spec.yMax ?? 0;
  if (spec.yMax === undefined) {
    for (const r of rows) for (const s of spec.series) yTop = Math.max(yTop, r[s.key] ?? 0);
    for (const mk of spec.marks ?? []) yTop = Math.max(yTop, mk.y);
    yTop = yTop > 0 ? yTop * 1.05 : 1;
  }
  const step = niceStep(yTop);
  const X = (t: number) => r1(m.left + (Math.min(Math.max(t, 0), x1) / x1) * w);
  const Y = (v: number) => r1(m.top + h - (Math.min(Math.max(v, 0), yTop) / yTop) * h);
  const fg = dark ? '#e5e7eb' : '#111827';
  const muted = dark ? '#9ca3af' : '#6b7280';
  const grid = dark ? '#374151' : '#e5e7eb';
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(spec.title)}" font-family="system-ui, sans-serif">`);
  out.push(`<title>${escapeXml(spec.title)}</title>`);
  out.push(`<text x="${m.left}" y="14" font-size="12" font-weight="600" fill="${fg}">${escapeXml(spec.title)}</text>`);
  for (const p of phases) {
    const a = X(p.from);
    const b = X(Math.max(p.to, p.from));
    if (b - a <= 0) continue;
    out.push(`<rect class="phase" data-phase="${p.phase}" x="${a}" y="${m.top}" width="${r1(b - a)}" height="${h}" fill="${PHASE_COLORS[p.phase] ?? '#ccc'}" fill-opacity="0.14"/>`);
  }
  for (let v = 0; v <= yTop + 1e-9; v += step) {
    const y = Y(v);
    out.push(`<line x1="${m.left}" x2="${m.left + w}" y1="${y}" y2="${y}" stroke="${grid}" stroke-dasharray="3 3"/>`);
    out.push(`<text x="${m.left - 6}" y="${y + 4}" font-size="10" text-anchor="end" fill="${muted}">${escapeXml(formatUnit(spec.unit, v))}</text>`);
  }
  const xs = niceStep(x1, 6);
  for (let t = 0; t <= x1 + 1e-9; t += xs) {
    out.push(`<text x="${X(t)}" y="${m.top + h + 14}" font-size="10" text-anchor="middle" fill="${muted}">${t.toFixed(xs < 1 ? 1 : 0)}s</text>`);
  }
  passes.forEach((t, i) => {
    out.push(`<line class="pass-marker" x1="${X(t)}" x2="${X(t)}" y1="${m.top}" y2="${m.top + h}" stroke="#64748b" stroke-dasharray="2 3"/><text x="${X(t) + 2}" y="${m.top + 9}" font-size="9" fill="#64748b">${i + 2}</text>`);
  });
  xMarks.forEach((mk, i) => {
    out.push(`<line class="x-mark" x1="${X(mk.x)}" x2="${X(mk.x)}" y1="${m.top}" y2="${m.top + h}" stroke="${mk.color}" stroke-dasharray="4 2"/><text x="${X(mk.x) + 3}" y="${m.top + 10 + 11 * i}" font-size="9" fill="${mk.color}">${escapeXml(mk.label)}</text>`);
  });
  for (const mk of spec.marks ?? []) {
    const y = Y(mk.y);
    out.push(`<line x1="${m.left}" x2="${m.left + w}" y1="${y}" y2="${y}" stroke="${mk.color}" stroke-dasharray="6 3"/><text x="${m.left + w - 2}" y="${y - 3}" font-size="10" text-anchor="end" fill="${mk.color}">${escapeXml(mk.label)}</text>`);
  }
  out.push(`<line x1="${m.left}" x2="${m.left + w}" y1="${m.top + h}" y2="${m.top + h}" stroke="${muted}"/>`);
  const maxPoints = Math.max(3, Math.round(w));
  for (const s of spec.series) {
    const pts = rows.filter((r) => r[s.key] !== undefined && r.t <= x1);
    if (pts.length === 0) continue;
    const down = lttb(pts, maxPoints, (r) => r.t, (r) => r[s.key] ?? 0);
    const d = down.map((r, i) => `${i === 0 ? 'M' : 'L'}${X(r.t)},${Y(r[s.key] ?? 0)}`).join('');
    out.push(`<path class="series" data-series="${escapeXml(s.key)}" d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
  }
  let lx = m.left;
  for (const s of spec.series) {
    out.push(`<line x1="${lx}" x2="${lx + 14}" y1="${height - 8}" y2="${height - 8}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="4 3"' : ''}/><text x="${lx + 18}" y="${height - 4}" font-size="10" fill="${fg}">${escapeXml(s.label)}</text>`);
    lx += 26 + s.label.length * 6;
  }
  out.push('</svg>');
  return out.join('');
}
