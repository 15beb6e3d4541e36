/**
 * Render benchmark page: a one-hour timeline (36,000 samples, 6 series) drawn by the
 * console's TimeChart (LTTB-downsampled) or handed raw to recharts. window.runBench(mode)
 * returns the first draw and the time of each live update (one sample appended).
 */
import { flushSync } from 'react-dom';
import { createRoot } from 'react-dom/client';
import { Line, LineChart, XAxis, YAxis } from 'recharts';
import { TimeChart } from '../../renderer/charts/time-chart';
import type { ChartRow } from '../../renderer/charts/time-chart';
import type { ChartSpec } from '../../shared/report/picture';

const N = 36_000;
const KEYS = ['dirty', 'xfer', 'remaining', 'transferred', 'ferry', 'qemu'];
function row(i: number): ChartRow {
  const t = i / 10;
  return { t, dirty: 5e7 + 2e7 * Math.sin(t / 30), xfer: 1e8 + 1e7 * Math.cos(t / 7), remaining: Math.max(0, 5e8 - i * 1e4), transferred: i * 1e4, ferry: 50 + 30 * Math.sin(t / 11), qemu: 300 };
}
const series = KEYS.map((key, i) => ({ key, label: key, color: ['#e11d48', '#2563eb', '#d97706', '#059669', '#7c3aed', '#64748b'][i]! }));

function Raw({ rows }: { rows: ChartRow[] }) {
  return (
    <LineChart width={1200} height={180} data={rows}>
      <XAxis dataKey="t" type="number" domain={['dataMin', 'dataMax']} />
      <YAxis />
      {KEYS.map((k) => <Line key={k} dataKey={k} dot={false} isAnimationActive={false} />)}
    </LineChart>
  );
}

const SPEC: ChartSpec = { id: 'bench', title: 'bench', unit: 'count', series };

function Chart({ mode, rows }: { mode: string; rows: ChartRow[] }) {
  return mode === 'raw' ? <Raw rows={rows} /> : (
    <div style={{ width: 1200 }}>
      <TimeChart spec={SPEC} rows={rows} maxPoints={Number(new URLSearchParams(location.search).get('pts') ?? 1200)} height={180} />
    </div>
  );
}

const nextFrame = () => new Promise<void>((r) => requestAnimationFrame(() => setTimeout(r, 0)));

(window as unknown as { runBench: (mode: string, updates: number) => Promise<{ firstMs: number; updatesMs: number[] }> }).runBench = async (mode, updates) => {
  const el = document.getElementById('root')!;
  el.innerHTML = '';
  const root = createRoot(el);
  let rows = Array.from({ length: N }, (_, i) => row(i));
  await nextFrame();
  const t0 = performance.now();
  flushSync(() => root.render(<Chart mode={mode} rows={rows} />));
  await nextFrame();
  const firstMs = performance.now() - t0;
  const updatesMs: number[] = [];
  for (let k = 0; k < updates; k++) {
    // the store's ring buffer: a new array, one sample appended, the oldest dropped
    rows = [...rows.slice(1), row(N + k)];
    const u0 = performance.now();
    flushSync(() => root.render(<Chart mode={mode} rows={rows} />));
    updatesMs.push(performance.now() - u0);
    await nextFrame();
  }
  root.unmount();
  return { firstMs, updatesMs };
};
(window as unknown as { benchReady: boolean }).benchReady = true;
