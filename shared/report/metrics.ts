/**
 * Migration metrics under the names admins already chart: KubeVirt's
 * `kubevirt_vmi_migration_*` gauges and counters (so dashboards built for KubeVirt, such as
 * Harvester's, read Ferry's migrations too), plus Ferry's own `ferry_migration_*` (its
 * projection next to QEMU's expected downtime, the pass, the ETA, the phase).
 *
 * One set of definitions, two renderings: the Prometheus text format for a live `/metrics`
 * scrape (electron/core/metrics), and OpenMetrics with timestamps for a recorded timeline
 * (`ferry timeline FILE --openmetrics`, the viewer's export), which
 * `promtool tsdb create-blocks-from openmetrics` imports. A figure the sample does not have
 * is not exposed; nothing is filled in.
 *
 * Labels, on every migration series: `name` (the VM, KubeVirt's VMI label), `migration_name`
 * (Ferry's migration id, KubeVirt's VMIM), `source`, `destination`, and `node` (= source, the
 * node that reports in KubeVirt). As in KubeVirt, `_succeeded`/`_failed` also carry `vmi` and
 * `vmim`, and `_end_time_seconds` a `status`.
 */
import type { MigrationFinal, MigrationPhase, MigrationSample } from '../model/migration';
import type { ParsedTimeline } from '../model/timeline';

export type MetricLabels = Record<string, string>;

/** One migration as the metrics see it at one moment. */
export interface MigrationMetricsInput {
  id: string;
  vm: string;
  source: string;
  destination: string;
  /** Wall-clock ms. */
  startedAt: number;
  downtimeLimitMs?: number;
  phase: MigrationPhase;
  /** The phases seen so far (the phase gauge has one series each: 1 for the current one). */
  phases: readonly MigrationPhase[];
  /** The latest sample while it runs; absent once it has ended (its progress gauges go away). */
  sample?: MigrationSample;
  final?: MigrationFinal;
  /** Wall-clock ms of the end. */
  endedAt?: number;
}

type Values = number | undefined | { labels: MetricLabels; value: number }[];

export interface MetricDef {
  /** The sample name (in OpenMetrics a counter's family is this name without `_total`). */
  name: string;
  type: 'gauge' | 'counter';
  help: string;
  values(m: MigrationMetricsInput): Values;
  /** Labels this metric adds to the migration's own (KubeVirt's per-metric extras). */
  labels?(m: MigrationMetricsInput): MetricLabels;
}

const ended = (m: MigrationMetricsInput) => m.final !== undefined;
const running = (m: MigrationMetricsInput, v: number | undefined) => (ended(m) ? undefined : v);

export const MIGRATION_METRICS: readonly MetricDef[] = [
  { name: 'kubevirt_vmi_migration_data_processed_bytes', type: 'gauge', help: 'Guest memory transferred so far (QEMU ram.transferred), in bytes.', values: (m) => m.sample?.transferredBytes },
  { name: 'kubevirt_vmi_migration_data_remaining_bytes', type: 'gauge', help: 'Guest memory still to transfer (QEMU ram.remaining), in bytes.', values: (m) => m.sample?.remainingBytes },
  { name: 'kubevirt_vmi_migration_data_total_bytes', type: 'counter', help: "Guest memory to migrate (QEMU ram.total), in bytes: KubeVirt's earlier name for kubevirt_vmi_migration_data_bytes_total.", values: (m) => m.sample?.totalBytes },
  { name: 'kubevirt_vmi_migration_data_bytes_total', type: 'counter', help: 'Guest memory to migrate (QEMU ram.total), in bytes.', values: (m) => m.sample?.totalBytes },
  { name: 'kubevirt_vmi_migration_dirty_memory_rate_bytes', type: 'gauge', help: 'Rate at which the guest dirties memory, in bytes per second.', values: (m) => m.sample?.dirtyRate },
  { name: 'kubevirt_vmi_migration_memory_transfer_rate_bytes', type: 'gauge', help: 'Rate at which memory is transferred, in bytes per second.', values: (m) => m.sample?.transferRate },
  { name: 'kubevirt_vmi_migration_start_time_seconds', type: 'gauge', help: 'The time at which the migration started (Unix seconds).', values: (m) => m.startedAt / 1000 },
  {
    name: 'kubevirt_vmi_migration_end_time_seconds', type: 'gauge', help: 'The time at which the migration ended (Unix seconds).',
    values: (m) => (m.endedAt !== undefined ? m.endedAt / 1000 : undefined),
    labels: (m) => ({ status: m.final?.outcome === 'completed' ? 'succeeded' : (m.final?.outcome ?? '') }),
  },
  { name: 'kubevirt_vmi_migration_succeeded', type: 'gauge', help: 'Indicates if the migration succeeded (1) or not (0, also while it runs).', values: (m) => (m.final?.outcome === 'completed' ? 1 : 0), labels: (m) => ({ vmi: m.vm, vmim: m.id }) },
  { name: 'kubevirt_vmi_migration_failed', type: 'gauge', help: 'Indicates if the migration failed (1) or not (0; a cancelled migration did not fail).', values: (m) => (m.final?.outcome === 'failed' ? 1 : 0), labels: (m) => ({ vmi: m.vm, vmim: m.id }) },
  { name: 'kubevirt_vmi_migration_last_downtime_seconds', type: 'gauge', help: 'Time the guest was paused at the switchover of this completed migration, in seconds.', values: (m) => (m.final?.outcome === 'completed' && m.final.downtimeMs !== undefined ? m.final.downtimeMs / 1000 : undefined) },
  { name: 'ferry_migration_phase', type: 'gauge', help: "The migration's phase in Ferry's model: 1 for the current phase, 0 for the phases it has left.", values: (m) => m.phases.map((p) => ({ labels: { phase: p }, value: p === m.phase ? 1 : 0 })) },
  { name: 'ferry_migration_pass', type: 'gauge', help: 'RAM passes completed (QEMU dirty-sync-count).', values: (m) => m.sample?.pass },
  { name: 'ferry_migration_projected_downtime_ms', type: 'gauge', help: "Ferry's projected downtime at the switchover, in milliseconds.", values: (m) => m.sample?.projection?.switchoverDowntimeMs ?? m.sample?.projection?.downtimeMs },
  { name: 'ferry_migration_qemu_expected_downtime_ms', type: 'gauge', help: "QEMU's own expected downtime (expected-downtime), in milliseconds.", values: (m) => m.sample?.expectedDowntimeMs },
  { name: 'ferry_migration_eta_seconds', type: 'gauge', help: "Ferry's projected time to completion, in seconds.", values: (m) => (m.sample?.projection?.etaMs !== undefined ? m.sample.projection.etaMs / 1000 : undefined) },
  { name: 'ferry_migration_downtime_limit_ms', type: 'gauge', help: 'The downtime limit the migration was planned with, in milliseconds.', values: (m) => running(m, m.sample ? m.downtimeLimitMs : undefined) },
  { name: 'ferry_migration_cpu_throttle_percent', type: 'gauge', help: 'vCPU throttling by auto-converge, in percent.', values: (m) => m.sample?.cpuThrottlePct },
  { name: 'ferry_migration_postcopy_requests_total', type: 'counter', help: 'Pages the destination requested during postcopy.', values: (m) => m.sample?.postcopyRequests },
];

export const RUNNING_METRIC: MetricDef = {
  name: 'kubevirt_vmi_migrations_in_running_phase', type: 'gauge', help: 'Number of migrations running now.', values: () => undefined,
};

/** Every metric name Ferry exposes (the Grafana dashboard's queries are checked against it). */
export const METRIC_NAMES: readonly string[] = [...MIGRATION_METRICS.map((d) => d.name), RUNNING_METRIC.name];

export function migrationLabels(m: Pick<MigrationMetricsInput, 'id' | 'vm' | 'source' | 'destination'>): MetricLabels {
  return { name: m.vm, migration_name: m.id, source: m.source, destination: m.destination, node: m.source };
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function labelText(labels: MetricLabels): string {
  const entries = Object.entries(labels);
  return entries.length ? `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
}

interface Series {
  labels: MetricLabels;
  points: { t: number; value: number }[];
}

/** The series of one metric for one migration at one moment. */
function seriesOf(def: MetricDef, m: MigrationMetricsInput): { labels: MetricLabels; value: number }[] {
  const base = { ...migrationLabels(m), ...(def.labels?.(m) ?? {}) };
  const v = def.values(m);
  if (v === undefined) return [];
  if (typeof v === 'number') return Number.isFinite(v) ? [{ labels: base, value: v }] : [];
  return v.filter((x) => Number.isFinite(x.value)).map((x) => ({ labels: { ...base, ...x.labels }, value: x.value }));
}

/** The live scrape: Prometheus text exposition format 0.0.4 (no timestamps: the scrape's time). */
export function prometheusText(migrations: readonly MigrationMetricsInput[], runningNow: number): string {
  const out: string[] = [];
  const family = (def: MetricDef, lines: string[]) => {
    if (!lines.length) return;
    out.push(`# HELP ${def.name} ${escapeHelp(def.help)}`, `# TYPE ${def.name} ${def.type}`, ...lines);
  };
  family(RUNNING_METRIC, [`${RUNNING_METRIC.name} ${runningNow}`]);
  for (const def of MIGRATION_METRICS) {
    family(def, migrations.flatMap((m) => seriesOf(def, m).map((s) => `${def.name}${labelText(s.labels)} ${formatValue(s.value)}`)));
  }
  return `${out.join('\n')}\n`;
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** OpenMetrics family name and type: a counter's family drops `_total`; a counter without it has to be `unknown`. */
export function openMetricsFamily(def: MetricDef): { family: string; type: 'gauge' | 'counter' | 'unknown' } {
  if (def.type === 'counter') return def.name.endsWith('_total') ? { family: def.name.slice(0, -'_total'.length), type: 'counter' } : { family: def.name, type: 'unknown' };
  return { family: def.name, type: 'gauge' };
}

/** The moments of a recorded timeline, each as the metrics would have seen it then. */
export function timelineMoments(t: ParsedTimeline): { t: number; m: MigrationMetricsInput }[] {
  const h = t.header;
  const plan = h?.plan;
  const base = {
    id: h?.migrationId ?? 'timeline',
    vm: plan?.vm ?? h?.vm.name ?? '?',
    source: plan?.from ?? h?.source.id ?? '?',
    destination: plan?.to ?? h?.destination?.id ?? '',
    startedAt: h?.createdAt ?? t.samples[0]?.t ?? 0,
    ...(plan?.downtimeLimitMs !== undefined ? { downtimeLimitMs: plan.downtimeLimitMs } : {}),
  };
  const moments: { t: number; m: MigrationMetricsInput }[] = [];
  let phase: MigrationPhase = 'preflight';
  const phases: MigrationPhase[] = [];
  const enter = (p: MigrationPhase) => {
    phase = p;
    if (!phases.includes(p)) phases.push(p);
  };
  for (const r of t.records) {
    if (r.type === 'phase') {
      if (!phases.length && r.from) enter(r.from);
      enter(r.phase);
      moments.push({ t: r.t, m: { ...base, phase, phases: [...phases] } });
    } else if (r.type === 'sample') {
      if (!phases.length) enter(r.phase);
      const { type: _t, ...sample } = r;
      moments.push({ t: r.t, m: { ...base, phase, phases: [...phases], sample: sample as MigrationSample } });
    } else if (r.type === 'end') {
      const { type: _t, t: at, ...final } = r;
      enter(r.outcome);
      moments.push({ t: at, m: { ...base, phase, phases: [...phases], final: final as MigrationFinal, endedAt: at } });
    }
  }
  return moments;
}

/**
 * A recorded timeline as OpenMetrics with timestamps (seconds, ms precision), one family
 * after another, each series' points in time order (equal timestamps: the later value
 * wins), ending in `# EOF`: what `promtool tsdb create-blocks-from openmetrics` imports.
 */
export function timelineToOpenMetrics(t: ParsedTimeline): string {
  const moments = timelineMoments(t);
  const out: string[] = [];
  for (const def of MIGRATION_METRICS) {
    const series = new Map<string, Series>();
    for (const { t: at, m } of moments) {
      for (const s of seriesOf(def, m)) {
        const key = labelText(s.labels);
        let x = series.get(key);
        if (!x) series.set(key, (x = { labels: s.labels, points: [] }));
        const last = x.points.at(-1);
        if (last && at <= last.t) last.value = s.value;
        else x.points.push({ t: at, value: s.value });
      }
    }
    if (!series.size) continue;
    const { family, type } = openMetricsFamily(def);
    out.push(`# TYPE ${family} ${type}`, `# HELP ${family} ${escapeHelp(def.help)}`);
    for (const [labels, s] of series) for (const p of s.points) out.push(`${def.name}${labels} ${formatValue(p.value)} ${(p.t / 1000).toFixed(3)}`);
  }
  out.push('# EOF');
  return `${out.join('\n')}\n`;
}
