/** Two or more timelines overlaid, aligned at migration start, with their final figures side by side. */
import { useMemo } from 'react';
import { useConsole } from '../store/console-store';
import { TimeChart } from '../charts/time-chart';
import { compareData } from '../../shared/report/compare';

export function CompareView({ keys }: { keys: string[] }) {
  const timelines = useConsole((s) => s.timelines);
  const show = useConsole((s) => s.show);
  const exportReport = useConsole((s) => s.exportReport);
  const items = useMemo(() => keys.map((k) => timelines.find((t) => t.key === k)).filter((t) => t !== undefined), [keys, timelines]);
  const data = useMemo(() => compareData(items.map((t) => ({ name: t.name, entry: t.entry, truncated: t.parsed.truncated, qemu: { source: t.parsed.header?.source.qemuVersion, destination: t.parsed.header?.destination?.qemuVersion } }))), [items]);
  const domain = useMemo(() => [0, data.xMax] as const, [data.xMax]);
  if (items.length < 2) return <p className="empty">Pick at least two open timelines to compare.</p>;
  return (
    <section className="migration compare-view" aria-label="comparison">
      <header className="migration-head">
        <h2>Compare: {items.map((t) => t.name).join(' vs ')}</h2>
        <div className="spacer" />
        <button type="button" onClick={exportReport} title="The overlay as a self-contained HTML file (e)">HTML report</button>
        <button type="button" onClick={() => show({ kind: 'live' })} aria-label="close comparison">✕</button>
      </header>
      <p className="muted small">Aligned at the moment each began migrating (t = 0).</p>
      <table className="compare-table" data-testid="compare-table">
        <thead>
          <tr>
            <th />
            {data.columns.map((c) => <th key={c.name} style={{ color: c.color }}>{c.name}</th>)}
          </tr>
        </thead>
        <tbody>
          {data.table.map((row) => (
            <tr key={row.label} data-row={row.label}>
              <th>{row.label}</th>
              {row.values.map((v, i) => <td key={i}>{v}</td>)}
            </tr>
          ))}
        </tbody>
      </table>
      <div className="charts">
        {data.specs.map((spec) => <TimeChart key={spec.id} spec={spec} rows={data.rows} domain={domain} xMarks={data.switchovers} />)}
      </div>
    </section>
  );
}
