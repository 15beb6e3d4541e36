/**
 * What a migration looks like — final figures, charts, event log — drawn from a
 * MigrationEntry, whether it is live (the store, fed by events) or recorded (a timeline
 * file). The live view and the timeline viewer both render this, so they look the same.
 */
import { memo, useMemo } from 'react';
import type { ChartSpec } from '../../shared/report/picture';
import { TimeChart } from '../charts/time-chart';
import { chartSpecs, figuresOf, passStarts, phaseSpans, rowsOf } from '../../shared/report/picture';
import type { LogEntry, MigrationEntry } from '../../shared/report/picture';
import type { MigrationFinal } from '../../shared/model/migration';

export function FinalFigures({ final }: { final: MigrationFinal }) {
  return (
    <dl className="figures" data-testid="final-figures">
      {figuresOf(final).map((f) => (
        <div key={f.id} data-figure={f.id}>
          <dt>{f.label}</dt>
          <dd className={f.cls} {...(f.id === 'downtime' ? { 'data-testid': 'downtime' } : {})}>{f.value}</dd>
        </div>
      ))}
    </dl>
  );
}

export interface ChartInteraction {
  domain?: readonly [number, number];
  cursor?: number;
  onCursor?: (t: number) => void;
  onZoom?: (from: number, to: number) => void;
}

export const MigrationCharts = memo(function MigrationCharts({ entry, interaction = {} }: { entry: MigrationEntry; interaction?: ChartInteraction }) {
  const start = entry.summary.startedAt;
  const rows = useMemo(() => rowsOf(entry.samples, start), [entry.samples, start]);
  const now = entry.samples.at(-1)?.t ?? start;
  const phases = useMemo(() => phaseSpans(entry.phases, start, now), [entry.phases, start, now]);
  const passes = useMemo(() => passStarts(entry.samples, start), [entry.samples, start]);
  const fresh = useMemo(() => chartSpecs(entry, rows), [entry.summary.plan, entry.final, entry.samples, rows]);
  // The same specs (same objects) until one changes: a live sample then leaves every chart's frame alone.
  const specs = useStableSpecs(fresh);
  return (
    <div className="charts">
      {specs.map((spec) => (
        <TimeChart key={spec.id} spec={spec} rows={rows} phases={phases} passes={passes} {...interaction} />
      ))}
    </div>
  );
});

function useStableSpecs(specs: ChartSpec[]): ChartSpec[] {
  const key = JSON.stringify(specs);
  // keyed on the content on purpose, not on the (new every sample) array
  return useMemo(() => specs, [key]);
}

export function EventLog({ log, limit = 40, startedAt }: { log: readonly LogEntry[]; limit?: number; startedAt?: number }) {
  return (
    <ol className="log" aria-label="event log">
      {log.slice(-limit).map((l, i) => (
        <li key={i} className={`log-${l.kind}`}>
          <time>{startedAt !== undefined ? `+${((l.t - startedAt) / 1000).toFixed(2)} s` : new Date(l.t).toLocaleTimeString()}</time> {l.text}
        </li>
      ))}
    </ol>
  );
}
