/**
 * A recorded timeline: the same picture as the live view (MigrationCharts), plus a cursor to
 * scrub with every value at that moment, zoom (drag across a chart, or the buttons), and
 * exports: CSV, JSON, PNG of the charts, and the self-contained HTML report.
 */
import { useEffect, useMemo, useState } from 'react';
import { useConsole } from '../store/console-store';
import type { OpenTimeline } from '../store/console-store';
import { EventLog, FinalFigures, MigrationCharts } from './migration-picture';
import type { ChartInteraction } from './migration-picture';
import { sampleAt } from '../../shared/report/picture';
import { timelineToCsv, timelineToJson } from '../../shared/report/export';
import { OPENMETRICS_CONTENT_TYPE, timelineToOpenMetrics } from '../../shared/report/metrics';
import { IMPORT_FORMAT_NAMES } from '../../shared/report/report-html';
import { formatBytes, formatMs, formatRate } from '../../shared/analysis/units';
import type { MigrationSample } from '../../shared/model/migration';
import { baseName, download, downloadText, stackedChartsSvg, svgToPng } from '../export/exports';

/** Every value of a sample, as label/value pairs, for the cursor panel. */
export function cursorValues(s: MigrationSample, startedAt: number): { id: string; label: string; value: string }[] {
  const v: { id: string; label: string; value: string }[] = [
    { id: 'time', label: 'Time', value: `+${((s.t - startedAt) / 1000).toFixed(2)} s` },
    { id: 'phase', label: 'Phase', value: s.phase },
    { id: 'status', label: 'QEMU status', value: s.status },
    { id: 'pass', label: 'Pass', value: s.pass !== undefined ? String(s.pass) : '?' },
    { id: 'dirty', label: 'Dirty rate', value: formatRate(s.dirtyRate) },
    { id: 'transfer', label: 'Transfer rate', value: formatRate(s.transferRate) },
    { id: 'remaining', label: 'Remaining', value: formatBytes(s.remainingBytes) },
    { id: 'transferred', label: 'Transferred', value: formatBytes(s.transferredBytes) },
    { id: 'ferry-downtime', label: 'Downtime at switchover (Ferry)', value: formatMs(s.projection?.switchoverDowntimeMs ?? s.projection?.downtimeMs) },
    { id: 'qemu-downtime', label: 'QEMU expects', value: formatMs(s.expectedDowntimeMs) },
  ];
  if (s.projection) v.push({ id: 'verdict', label: 'Verdict', value: s.projection.verdict });
  if (s.guest) v.push({ id: 'stall', label: 'Guest stall', value: formatMs(s.guest.stallMs) });
  if (s.cpuThrottlePct !== undefined) v.push({ id: 'throttle', label: 'CPU throttle', value: `${s.cpuThrottlePct}%` });
  if (s.postcopyRequests !== undefined) v.push({ id: 'requests', label: 'Page requests', value: String(s.postcopyRequests) });
  if (s.xbzrle) {
    const x = s.xbzrle;
    v.push({ id: 'xbzrle', label: 'XBZRLE misses', value: x.cacheMiss !== undefined ? String(x.cacheMiss) : x.cacheMissRate !== undefined ? `${(x.cacheMissRate * 100).toFixed(2)}% of pages` : '?' });
  }
  if (s.downtimeMs !== undefined) v.push({ id: 'downtime', label: 'Downtime', value: formatMs(s.downtimeMs) });
  return v;
}

export function TimelineView({ open }: { open: OpenTimeline }) {
  const closeTimeline = useConsole((s) => s.closeTimeline);
  const toast = useConsole((s) => s.toast);
  const exportReport = useConsole((s) => s.exportReport);
  const { entry, parsed, name } = open;
  const imported = parsed.header?.imported;
  const start = entry.summary.startedAt;
  const tMax = Math.max(0.1, ((entry.samples.at(-1)?.t ?? start) - start) / 1000);
  const [cursor, setCursor] = useState(0);
  const [domain, setDomain] = useState<[number, number]>();
  useEffect(() => {
    setCursor(0);
    setDomain(undefined);
  }, [open.key]);
  const sample = useMemo(() => sampleAt(entry.samples, start, cursor), [entry.samples, start, cursor]);
  const plan = entry.summary.plan as { vm?: string; from?: string; to?: string; mode?: string };
  const base = baseName(name);
  const zoom = (factor: number) => {
    const [a, b] = domain ?? [0, tMax];
    const half = Math.min(tMax, ((b - a) * factor) / 2);
    const c = Math.min(Math.max(cursor, a), b);
    const from = Math.max(0, c - half);
    const to = Math.min(tMax, from + 2 * half);
    setDomain(to - from >= tMax - 1e-9 ? undefined : [Math.max(0, to - 2 * half), to]);
  };
  const interaction: ChartInteraction = useMemo(
    () => ({ cursor, onCursor: setCursor, onZoom: (a: number, b: number) => setDomain([a, b]), ...(domain ? { domain } : {}) }),
    [cursor, domain],
  );
  const exportPng = async () => {
    try {
      const { svg, width, height } = stackedChartsSvg(entry);
      download(`${base}.png`, await svgToPng(svg, width, height));
    } catch (e) {
      toast(`PNG export failed: ${(e as Error).message}`, 'error');
    }
  };
  return (
    <section className="migration timeline-view" aria-label={`Timeline ${name}`} data-phase={entry.summary.phase}>
      <header className="migration-head">
        <h2>
          {plan.vm ?? '?'}: {plan.from ?? '?'} → {plan.to ?? '?'}
        </h2>
        <span className={`phase-badge phase-${entry.summary.phase}`} data-testid="phase">{entry.summary.phase}</span>
        <span className="muted small" title={name}>{name} · {new Date(start).toLocaleString()} · {plan.mode ?? 'precopy'}{parsed.header?.mode === 'attach' ? ' · watched' : ''}{imported ? ' · imported' : ''}{parsed.readOnly ? ' · read-only' : ''}</span>
        <div className="spacer" />
        <div className="export" role="group" aria-label="export">
          <button type="button" onClick={() => downloadText(`${base}.csv`, timelineToCsv(parsed), 'text/csv')}>CSV</button>
          <button type="button" onClick={() => downloadText(`${base}.json`, timelineToJson(parsed), 'application/json')}>JSON</button>
          <button type="button" onClick={() => downloadText(`${base}.om.txt`, timelineToOpenMetrics(parsed), OPENMETRICS_CONTENT_TYPE)} title="OpenMetrics with timestamps, for promtool tsdb create-blocks-from openmetrics">OpenMetrics</button>
          <button type="button" onClick={() => void exportPng()}>PNG</button>
          <button type="button" onClick={exportReport} title="A self-contained HTML report (e)">HTML report</button>
          <button type="button" onClick={() => closeTimeline(open.key)} aria-label="close timeline">✕</button>
        </div>
      </header>
      {parsed.truncated && (
        <p className="warn banner-warn" role="alert" data-testid="truncated">
          This timeline is truncated: the recording stopped before the migration ended. Showing its {parsed.records.length} complete records.
        </p>
      )}
      {parsed.notices.map((n) => (
        <p key={n} className="warn banner-warn" role="alert" data-testid="timeline-notice">{n}</p>
      ))}
      {parsed.problems.length > 0 && (
        <details className="timeline-problems" data-testid="timeline-problems">
          <summary>Unreadable lines ({parsed.problems.length})</summary>
          <ul>
            {parsed.problems.slice(0, 200).map((p, i) => (
              <li key={i}>{p.line !== undefined ? `line ${p.line}` : (p.where ?? 'input')}: {p.reason}</li>
            ))}
          </ul>
        </details>
      )}
      {imported && (
        <div className="imported banner-info" data-testid="imported">
          <p>
            Imported from {IMPORT_FORMAT_NAMES[imported.format]}{imported.name ? ` (${imported.name})` : ''}. Not in the source, so not shown:{' '}
            <span data-testid="imported-absent">{imported.absent.join('; ')}</span>.
          </p>
          {imported.notes.length > 0 && (
            <details>
              <summary>How it was read</summary>
              <ul>{imported.notes.map((n) => <li key={n}>{n}</li>)}</ul>
            </details>
          )}
        </div>
      )}
      {entry.final ? <FinalFigures final={entry.final} /> : <p className="muted">No end recorded: last phase {entry.summary.phase}.</p>}
      <div className="scrub">
        <label className="inline">
          Cursor
          <input type="range" min={0} max={tMax} step={0.05} value={cursor} onChange={(e) => setCursor(Number(e.target.value))} aria-label="cursor time in seconds" data-testid="scrub" />
        </label>
        <span className="zoom" role="group" aria-label="zoom">
          <button type="button" onClick={() => zoom(0.5)} aria-label="zoom in around the cursor" title="Zoom in (or drag across a chart)">Zoom in</button>
          <button type="button" onClick={() => zoom(2)} aria-label="zoom out" disabled={!domain}>Zoom out</button>
          <button type="button" onClick={() => setDomain(undefined)} disabled={!domain}>Whole run</button>
        </span>
        {domain && <span className="muted small" data-testid="zoom-window">showing {domain[0].toFixed(2)}–{domain[1].toFixed(2)} s</span>}
      </div>
      {sample && (
        <dl className="figures cursor-values" data-testid="cursor-values" aria-label="values at the cursor">
          {cursorValues(sample, start).map((v) => (
            <div key={v.id} data-field={v.id}>
              <dt>{v.label}</dt>
              <dd>{v.value}</dd>
            </div>
          ))}
        </dl>
      )}
      <MigrationCharts entry={entry} interaction={interaction} />
      {entry.preflight && (
        <details className="preflight-recorded">
          <summary>Preflight ({entry.preflight.checks.filter((c) => c.status !== 'pass').length} warnings or failures)</summary>
          <ul className="checks">
            {entry.preflight.checks.map((c) => (
              <li key={c.id} className={`check check-${c.status}`}><span className="icon">{c.status === 'pass' ? '✓' : c.status === 'warn' ? '!' : '✗'}</span><span>{c.title}: {c.reason}</span></li>
            ))}
          </ul>
        </details>
      )}
      <EventLog log={entry.log} limit={500} startedAt={start} />
    </section>
  );
}
