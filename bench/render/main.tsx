/**
 * Render benchmark page: a one-hour timeline (36,000 samples, 6 series) drawn three ways.
 * `chart`: the console's TimeChart (LTTB-downsampled) fed from the store's sample ring;
 * `console`: the whole live path a user sees, the store's applySample then the live view's
 * charts (3 charts × 2 series, rows, phase bands, pass markers); `raw`: the same rows handed
 * to recharts as they are. window.runBench(mode) returns the first draw and each live update.
 * The same page is built against older commits too (BENCH_BEFORE): it then keeps samples
 * the way that commit's store does (plain arrays before the ring existed).
 */
import { flushSync } from 'react-dom';
import { createRoot } from 'react-dom/client';
import { Line, LineChart, XAxis, YAxis } from 'recharts';
import { TimeChart } from '../../renderer/charts/time-chart';
import type { ChartRow } from '../../renderer/charts/time-chart';
import type { ChartSpec } from '../../shared/report/picture';
import type { MigrationSample } from '../../shared/model/migration';
import { RING, useConsole } from '../../renderer/store/console-store';
import type { Ring, Seq } from '../../shared/model/ring';

/** The ring module if this build's tree has one (vite's glob: an empty object when it does not). */
type RingModule = { Ring: { from<T>(items: Iterable<T>, capacity: number): Ring<T> } };
const ringModule = Object.values((import.meta as unknown as { glob: (p: string, o: { eager: true }) => Record<string, RingModule> }).glob('../../shared/model/ring.ts', { eager: true }))[0];
import { MigrationCharts } from '../../renderer/views/migration-picture';

const N = 36_000;
const T0 = 1_700_000_000_000;
const ID = 'bench';
const KEYS = ['dirty', 'xfer', 'remaining', 'transferred', 'ferry', 'qemu'];
function row(i: number): ChartRow {
  const t = i / 10;
  return { t, dirty: 5e7 + 2e7 * Math.sin(t / 30), xfer: 1e8 + 1e7 * Math.cos(t / 7), remaining: Math.max(0, 5e8 - i * 1e4), transferred: i * 1e4, ferry: 50 + 30 * Math.sin(t / 11), qemu: 300 };
}
/** The same figures as a sample the engine sends (with the fields a real one carries). */
function sample(i: number): MigrationSample {
  const r = row(i);
  return {
    t: T0 + i * 100, elapsedMs: i * 100, status: 'active', phase: 'precopy', pass: 1 + Math.floor(i / 3000),
    transferredBytes: r.transferred, remainingBytes: r.remaining, totalBytes: 5e8, dirtyRate: r.dirty, transferRate: r.xfer,
    normalPages: i * 2, duplicatePages: i, pageSize: 4096, precopyBytes: r.transferred, expectedDowntimeMs: r.qemu,
    projection: { dirtyRate: r.dirty, transferRate: r.xfer, finalCopyRate: 1.7e9, ratio: 0.5, verdict: 'converging', downtimeMs: r.ferry, switchoverDowntimeMs: r.ferry, remainingPasses: 2, etaMs: 30_000 },
  } as MigrationSample;
}
const series = KEYS.map((key, i) => ({ key, label: key, color: ['#e11d48', '#2563eb', '#d97706', '#059669', '#7c3aed', '#64748b'][i]! }));

function Raw({ rows }: { rows: Seq<ChartRow> }) {
  return (
    <LineChart width={1200} height={180} data={Array.from(rows)}>
      <XAxis dataKey="t" type="number" domain={['dataMin', 'dataMax']} />
      <YAxis />
      {KEYS.map((k) => <Line key={k} dataKey={k} dot={false} isAnimationActive={false} />)}
    </LineChart>
  );
}

const SPEC: ChartSpec = { id: 'bench', title: 'bench', unit: 'count', series };

function LiveCharts() {
  const entry = useConsole((s) => s.migrations[ID]);
  return entry ? <div style={{ width: 1200 }}><MigrationCharts entry={entry} /></div> : null;
}

function Chart({ mode, rows }: { mode: string; rows: Seq<ChartRow> }) {
  if (mode === 'console') return <LiveCharts />;
  return mode === 'raw' ? <Raw rows={rows} /> : (
    <div style={{ width: 1200 }}>
      <TimeChart spec={SPEC} rows={rows} maxPoints={Number(new URLSearchParams(location.search).get('pts') ?? 1200)} height={180} />
    </div>
  );
}

/** The live migration's entry in the store, as a console that watched it from the start holds it. */
function seedStore(): void {
  const all = Array.from({ length: N }, (_, i) => sample(i));
  const samples = ringModule ? ringModule.Ring.from(all, RING) : all;
  useConsole.setState({
    migrations: { [ID]: { summary: { id: ID, plan: { vm: 'bench', from: 'a', to: 'b' }, phase: 'precopy', startedAt: T0, timeline: '' }, samples, phases: [{ phase: 'preflight', t: T0 }, { phase: 'precopy', t: T0 + 500 }], log: [] } },
    order: [ID],
  });
}

// The chart modes' rows, kept as the store keeps samples: a new ring (or, before it, a new array), one appended, the oldest dropped.
let chartRows: Seq<ChartRow> = [];
const pushRow = (r: ChartRow) => (chartRows = ringModule ? (chartRows as Ring<ChartRow>).push(r) : [...(chartRows as ChartRow[]).slice(1), r]);

const nextFrame = () => new Promise<void>((r) => requestAnimationFrame(() => setTimeout(r, 0)));

(window as unknown as { runBench: (mode: string, updates: number) => Promise<{ firstMs: number; updatesMs: number[] }> }).runBench = async (mode, updates) => {
  const el = document.getElementById('root')!;
  el.innerHTML = '';
  const root = createRoot(el);
  const rows = Array.from({ length: N }, (_, i) => row(i));
  chartRows = ringModule ? ringModule.Ring.from(rows, N) : rows;
  if (mode === 'console') seedStore();
  await nextFrame();
  const t0 = performance.now();
  flushSync(() => root.render(<Chart mode={mode} rows={chartRows} />));
  // First draw: until every series line is on screen (recharts sizes itself a frame later).
  // Lines drawn: recharts' curves, or the distinct series of ours (a line may be drawn in several chunks).
  const drawn = () => (mode === 'raw' ? el.querySelectorAll('path.recharts-curve').length : new Set(Array.from(el.querySelectorAll('path.series-line'), (p) => p.getAttribute('data-series'))).size);
  const deadline = t0 + 30_000;
  do await nextFrame();
  while (drawn() < 6 && performance.now() < deadline);
  const firstMs = performance.now() - t0;
  const updatesMs: number[] = [];
  for (let k = 0; k < updates; k++) {
    if (mode === 'console') {
      // Timed from the event's arrival: the store's update and the charts' re-render.
      const next = sample(N + k);
      const u0 = performance.now();
      flushSync(() => useConsole.getState().applySample(ID, next));
      updatesMs.push(performance.now() - u0);
    } else {
      const rows = pushRow(row(N + k));
      const u0 = performance.now();
      flushSync(() => root.render(<Chart mode={mode} rows={rows} />));
      updatesMs.push(performance.now() - u0);
    }
    await nextFrame();
  }
  root.unmount();
  useConsole.setState({ migrations: {}, order: [] });
  return { firstMs, updatesMs };
};
(window as unknown as { benchReady: boolean }).benchReady = true;
