/**
 * Several migrations overlaid, aligned at the moment each began migrating (the first
 * `setup` phase: the `migrate` command), with their final figures side by side. The
 * console's compare view and `ferry compare` both draw from this.
 */
import { formatBytes, formatMs, formatRate } from '../analysis/units';
import { figuresOf } from './picture';
import { findLast } from '../model/ring';
import type { ChartRow, ChartSpec, MigrationEntry } from './picture';

export const COMPARE_COLORS = ['#2563eb', '#dc2626', '#059669', '#7c3aed', '#d97706', '#0891b2'];

export interface CompareItem {
  name: string;
  entry: MigrationEntry;
  truncated?: boolean;
  /** The timeline header's QEMU versions (source, destination). */
  qemu?: { source?: string | undefined; destination?: string | undefined };
}

export interface CompareData {
  columns: { name: string; color: string }[];
  rows: ChartRow[];
  specs: ChartSpec[];
  xMax: number;
  table: { label: string; values: string[] }[];
  /** Where each run switched over (stopped the source, or went postcopy), in overlay seconds. */
  switchovers: XMark[];
}

export interface XMark {
  x: number;
  label: string;
  color: string;
}

/** Wall-clock ms at which this migration began migrating (t = 0 of the overlay). */
export function migrationStart(entry: MigrationEntry): number {
  return entry.phases.find((p) => p.phase === 'setup')?.t ?? entry.samples.at(0)?.t ?? entry.summary.startedAt;
}

function modeOf(plan: Record<string, unknown>): string {
  const policy = plan.policy as { name?: string } | undefined;
  const raw = typeof plan.mode === 'string' ? plan.mode : 'precopy';
  const n = typeof plan.postcopyAfterPasses === 'number' ? plan.postcopyAfterPasses : undefined;
  const mode = raw === 'postcopy-after' && n !== undefined ? `postcopy after ${n} pass${n === 1 ? '' : 'es'}` : raw;
  const caps = ['autoConverge', 'xbzrle', 'multifd'].filter((k) => plan[k] === true);
  if (typeof plan.dirtyLimitMBps === 'number') caps.push(`dirty-limit ${plan.dirtyLimitMBps} MB/s`);
  return `${mode}${policy?.name && policy.name !== 'manual' ? `, policy ${policy.name}` : ''}${caps.length ? ` + ${caps.join(', ')}` : ''}`;
}

export function compareData(items: readonly CompareItem[]): CompareData {
  const columns = items.map((it, i) => ({ name: it.name, color: COMPARE_COLORS[i % COMPARE_COLORS.length]! }));
  const rows: ChartRow[] = [];
  let xMax = 0;
  items.forEach((it, i) => {
    const t0 = migrationStart(it.entry);
    for (const s of it.entry.samples) {
      const t = (s.t - t0) / 1000;
      if (t < 0) continue;
      const r: ChartRow = { t };
      if (s.remainingBytes !== undefined) r[`remaining_${i}`] = s.remainingBytes;
      if (s.transferRate !== undefined) r[`xfer_${i}`] = s.transferRate;
      if (s.dirtyRate !== undefined) r[`dirty_${i}`] = s.dirtyRate;
      if (s.guest) r[`stall_${i}`] = s.guest.stallMs;
      if (s.cpuThrottlePct !== undefined) r[`throttle_${i}`] = s.cpuThrottlePct;
      if (s.dirtyLimitThrottleUs !== undefined) r[`dirtyLimit_${i}`] = s.dirtyLimitThrottleUs / 1000;
      rows.push(r);
      xMax = Math.max(xMax, t);
    }
  });
  rows.sort((a, b) => a.t - b.t);
  const series = (key: string) => columns.map((c, i) => ({ key: `${key}_${i}`, label: c.name, color: c.color }));
  const specs: ChartSpec[] = [
    { id: 'remaining', title: 'Remaining memory', unit: 'MB', series: series('remaining') },
    { id: 'xfer', title: 'Transfer rate', unit: 'MB/s', series: series('xfer') },
    { id: 'dirty', title: 'Guest dirty rate', unit: 'MB/s', series: series('dirty') },
  ];
  // auto-converge vs dirty-limit: what each did to the guest's vCPUs (an auto-converge run
  // that converged before QEMU throttled shows its throttle at 0, not no chart)
  const autoConverge = (it: CompareItem) => (it.entry.summary.plan as { autoConverge?: boolean }).autoConverge === true;
  if (items.some((it) => autoConverge(it) || findLast(it.entry.samples, (s) => Boolean(s.cpuThrottlePct)) !== undefined)) specs.push({ id: 'throttle', title: 'CPU throttle (auto-converge)', unit: '%', series: series('throttle') });
  if (items.some((it) => findLast(it.entry.samples, (s) => s.dirtyLimitThrottleUs !== undefined) !== undefined)) specs.push({ id: 'dirty-limit', title: 'dirty-limit: vCPU throttle time per round', unit: 'ms', series: series('dirtyLimit') });
  if (items.some((it) => findLast(it.entry.samples, (s) => Boolean(s.guest)) !== undefined)) specs.push({ id: 'stall', title: 'Guest: longest stall per heartbeat', unit: 'ms', series: series('stall') });
  const fig = (it: CompareItem, id: string) => (it.entry.final ? figuresOf(it.entry.final).find((f) => f.id === id)?.value : undefined) ?? '—';
  const plan = (it: CompareItem) => it.entry.summary.plan;
  const table: CompareData['table'] = [
    { label: 'VM', values: items.map((it) => `${String(plan(it).vm ?? '?')} ${String(plan(it).from ?? '?')} → ${String(plan(it).to ?? '?')}`) },
    { label: 'Mode', values: items.map((it) => modeOf(plan(it))) },
    { label: 'QEMU', values: items.map((it) => `${it.qemu?.source ?? '?'} → ${it.qemu?.destination ?? '?'}`) },
    { label: 'Bandwidth cap', values: items.map((it) => (typeof plan(it).maxBandwidth === 'number' ? formatRate(plan(it).maxBandwidth as number) : 'none')) },
    { label: 'Downtime limit', values: items.map((it) => formatMs(typeof plan(it).downtimeLimitMs === 'number' ? (plan(it).downtimeLimitMs as number) : 300)) },
    { label: 'Outcome', values: items.map((it) => fig(it, 'outcome') + (it.truncated ? ' (truncated)' : '')) },
    { label: 'Total time', values: items.map((it) => fig(it, 'total')) },
    { label: 'Downtime', values: items.map((it) => fig(it, 'downtime')) },
    { label: 'Guest saw', values: items.map((it) => fig(it, 'guest-downtime')) },
    { label: 'Passes', values: items.map((it) => fig(it, 'passes')) },
    { label: 'Sent', values: items.map((it) => fig(it, 'sent')) },
    { label: 'Sent after switchover', values: items.map((it) => (it.entry.final ? formatBytes(it.entry.final.postcopyBytes || it.entry.final.downtimeBytes) : '—')) },
    { label: 'Page requests', values: items.map((it) => String(it.entry.final?.postcopyRequests ?? 0)) },
    { label: 'Guest memory', values: items.map((it) => fig(it, 'verify')) },
  ];
  const switchovers: XMark[] = [];
  items.forEach((it, i) => {
    const sw = it.entry.phases.find((p) => p.phase === 'stop-and-copy' || p.phase === 'postcopy');
    if (sw) switchovers.push({ x: (sw.t - migrationStart(it.entry)) / 1000, label: `${it.name}: ${sw.phase === 'postcopy' ? 'postcopy starts' : 'VM stopped'}`, color: columns[i]!.color });
  });
  return { columns, rows, specs, xMax: Math.max(1, xMax), table, switchovers };
}
