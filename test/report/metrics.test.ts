import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseTimeline } from '../../shared/model/timeline';
import { parseAnyTimeline } from '../../shared/import/open-timeline';
import { METRIC_NAMES, MIGRATION_METRICS, openMetricsFamily, prometheusText, timelineMoments, timelineToOpenMetrics } from '../../shared/report/metrics';
import type { MigrationMetricsInput } from '../../shared/report/metrics';

const fixture = (name: string) => parseTimeline(readFileSync(`test/fixtures/timelines/${name}.ferry.jsonl`, 'utf8'));

/** `name{labels} value [ts]` lines of an exposition, parsed. */
function samplesOf(text: string): { name: string; labels: Record<string, string>; value: number; ts?: number }[] {
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)(?: (\S+))?$/.exec(l);
    if (!m) throw new Error(`not a sample line: ${l}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!.replace(/\\"/g, '"').replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
    return { name: m[1]!, labels, value: Number(m[3]), ...(m[4] ? { ts: Number(m[4]) } : {}) };
  });
}

const running: MigrationMetricsInput = {
  id: 'm-1', vm: 'demo', source: 'lab-a', destination: 'lab-b', startedAt: 1_700_000_000_500, downtimeLimitMs: 50,
  phase: 'precopy', phases: ['reservation', 'setup', 'precopy'],
  sample: {
    t: 1_700_000_002_000, elapsedMs: 1500, status: 'active', phase: 'precopy', pass: 3, transferredBytes: 5_000_000, remainingBytes: 2_000_000, totalBytes: 9_000_000,
    dirtyRate: 1_000_000, transferRate: 30_000_000, expectedDowntimeMs: 66, projection: { verdict: 'converging', switchoverDowntimeMs: 21, etaMs: 2500 },
  },
};

describe('live /metrics text', () => {
  it('exposes KubeVirt\'s names and Ferry\'s own, with VM, source and destination labels', () => {
    const text = prometheusText([running], 1);
    const s = samplesOf(text);
    const one = (name: string) => s.filter((x) => x.name === name);
    expect(one('kubevirt_vmi_migrations_in_running_phase')).toEqual([{ name: 'kubevirt_vmi_migrations_in_running_phase', labels: {}, value: 1 }]);
    const labels = { name: 'demo', migration_name: 'm-1', source: 'lab-a', destination: 'lab-b', node: 'lab-a' };
    expect(one('kubevirt_vmi_migration_data_processed_bytes')).toEqual([{ name: 'kubevirt_vmi_migration_data_processed_bytes', labels, value: 5_000_000 }]);
    expect(one('kubevirt_vmi_migration_data_remaining_bytes')[0]!.value).toBe(2_000_000);
    expect(one('kubevirt_vmi_migration_data_total_bytes')[0]!.value).toBe(9_000_000);
    expect(one('kubevirt_vmi_migration_data_bytes_total')[0]!.value).toBe(9_000_000);
    expect(one('kubevirt_vmi_migration_dirty_memory_rate_bytes')[0]!.value).toBe(1_000_000);
    expect(one('kubevirt_vmi_migration_memory_transfer_rate_bytes')[0]!.value).toBe(30_000_000);
    expect(one('kubevirt_vmi_migration_start_time_seconds')[0]!.value).toBe(1_700_000_000.5);
    expect(one('kubevirt_vmi_migration_end_time_seconds')).toEqual([]);
    expect(one('kubevirt_vmi_migration_succeeded')[0]).toMatchObject({ value: 0, labels: { ...labels, vmi: 'demo', vmim: 'm-1' } });
    expect(one('kubevirt_vmi_migration_failed')[0]!.value).toBe(0);
    expect(one('ferry_migration_pass')[0]!.value).toBe(3);
    expect(one('ferry_migration_projected_downtime_ms')[0]!.value).toBe(21);
    expect(one('ferry_migration_qemu_expected_downtime_ms')[0]!.value).toBe(66);
    expect(one('ferry_migration_eta_seconds')[0]!.value).toBe(2.5);
    expect(one('ferry_migration_downtime_limit_ms')[0]!.value).toBe(50);
    expect(one('ferry_migration_phase').map((x) => [x.labels.phase, x.value])).toEqual([['reservation', 0], ['setup', 0], ['precopy', 1]]);
    // A figure the sample lacks is not exposed at all (no made-up zero).
    expect(one('ferry_migration_cpu_throttle_percent')).toEqual([]);
    expect(text).toContain('# TYPE kubevirt_vmi_migration_data_total_bytes counter\n');
    expect(text).toContain('# TYPE kubevirt_vmi_migration_dirty_memory_rate_bytes gauge\n');
    expect(text.endsWith('\n')).toBe(true);
  });

  it('keeps only the lifecycle of an ended migration', () => {
    const ended: MigrationMetricsInput = { ...running, phase: 'completed', phases: [...running.phases, 'completed'], final: { outcome: 'completed', downtimeMs: 42 }, endedAt: 1_700_000_009_000 };
    delete ended.sample;
    const s = samplesOf(prometheusText([ended], 0));
    expect([...new Set(s.map((x) => x.name))].sort()).toEqual([
      'ferry_migration_phase', 'kubevirt_vmi_migration_end_time_seconds', 'kubevirt_vmi_migration_failed', 'kubevirt_vmi_migration_last_downtime_seconds',
      'kubevirt_vmi_migration_start_time_seconds', 'kubevirt_vmi_migration_succeeded', 'kubevirt_vmi_migrations_in_running_phase',
    ]);
    expect(s.find((x) => x.name === 'kubevirt_vmi_migration_end_time_seconds')).toMatchObject({ value: 1_700_000_009, labels: { status: 'succeeded' } });
    expect(s.find((x) => x.name === 'kubevirt_vmi_migration_succeeded')!.value).toBe(1);
    expect(s.find((x) => x.name === 'kubevirt_vmi_migration_last_downtime_seconds')!.value).toBe(0.042);
    const failed = samplesOf(prometheusText([{ ...ended, final: { outcome: 'failed', reason: 'x' } }], 0));
    expect(failed.find((x) => x.name === 'kubevirt_vmi_migration_failed')!.value).toBe(1);
    expect(failed.find((x) => x.name === 'kubevirt_vmi_migration_end_time_seconds')!.labels.status).toBe('failed');
  });

  it('escapes label values', () => {
    const text = prometheusText([{ ...running, vm: 'a"b\\c\nd' }], 1);
    expect(text).toContain('name="a\\"b\\\\c\\nd"');
    expect(samplesOf(text).find((x) => x.name === 'ferry_migration_pass')!.labels.name).toBe('a"b\\c\nd');
  });
});

describe('OpenMetrics export of a timeline', () => {
  it('writes every family once, each series in time order with timestamps, and ends in # EOF', () => {
    const t = fixture('converging');
    const om = timelineToOpenMetrics(t);
    expect(om.endsWith('\n# EOF\n')).toBe(true);
    const families = om.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    expect(new Set(families).size).toBe(families.length);
    expect(families).toContain('kubevirt_vmi_migration_data_bytes');
    expect(om).toContain('# TYPE kubevirt_vmi_migration_data_bytes counter\n');
    expect(om).toContain('# TYPE kubevirt_vmi_migration_data_total_bytes unknown\n');
    const s = samplesOf(om);
    const bySeries = new Map<string, number[]>();
    let lastName = '';
    const seen = new Set<string>();
    for (const x of s) {
      const key = `${x.name}${JSON.stringify(x.labels)}`;
      if (x.name !== lastName) {
        expect(seen.has(x.name)).toBe(false); // a family's lines are contiguous
        seen.add(x.name);
        lastName = x.name;
      }
      bySeries.set(key, [...(bySeries.get(key) ?? []), x.ts!]);
    }
    for (const ts of bySeries.values()) for (let i = 1; i < ts.length; i++) expect(ts[i]).toBeGreaterThan(ts[i - 1]!);
    const processed = s.filter((x) => x.name === 'kubevirt_vmi_migration_data_processed_bytes');
    expect(processed.map((x) => x.value)).toEqual(t.samples.filter((x) => x.transferredBytes !== undefined).map((x) => x.transferredBytes));
    expect(processed[0]!.ts).toBe(t.samples.find((x) => x.transferredBytes !== undefined)!.t / 1000);
    expect(processed[0]!.labels).toEqual({ name: 'demo', migration_name: t.header!.migrationId, source: 'lab-a', destination: 'lab-b', node: 'lab-a' });
    const end = s.filter((x) => x.name === 'kubevirt_vmi_migration_succeeded').at(-1)!;
    expect(end).toMatchObject({ value: 1, ts: t.end!.t / 1000 });
    expect(s.filter((x) => x.name === 'kubevirt_vmi_migration_last_downtime_seconds').map((x) => x.value)).toEqual([t.end!.downtimeMs! / 1000]);
  });

  it('has the phase gauge switch from one phase to the next at each phase change', () => {
    const t = fixture('postcopy');
    const moments = timelineMoments(t);
    const phaseOf = (at: number) => moments.filter((m) => m.t <= at).at(-1)!.m.phase;
    const firstPostcopy = t.records.find((r) => r.type === 'phase' && r.phase === 'postcopy') as { t: number };
    expect(phaseOf(firstPostcopy.t)).toBe('postcopy');
    const s = samplesOf(timelineToOpenMetrics(t)).filter((x) => x.name === 'ferry_migration_phase');
    const at = (ts: number) => s.filter((x) => x.ts === ts);
    const onAt = at(firstPostcopy.t / 1000);
    expect(onAt.filter((x) => x.value === 1).map((x) => x.labels.phase)).toEqual(['postcopy']);
    expect(onAt.find((x) => x.labels.phase === 'precopy')!.value).toBe(0);
  });

  it('exports an imported log with only the series it has', () => {
    const p = parseAnyTimeline(readFileSync('test/fixtures/imports/proxmox-migrate-100.log', 'utf8'), 'p.log');
    const names = new Set(samplesOf(timelineToOpenMetrics(p)).map((x) => x.name));
    expect(names.has('kubevirt_vmi_migration_data_processed_bytes')).toBe(true);
    expect(names.has('kubevirt_vmi_migration_data_remaining_bytes')).toBe(false);
    expect(names.has('ferry_migration_pass')).toBe(false);
  });

  it('names families as OpenMetrics wants them', () => {
    for (const def of MIGRATION_METRICS) {
      const f = openMetricsFamily(def);
      if (def.type === 'counter' && def.name.endsWith('_total')) expect(`${f.family}_total`).toBe(def.name);
      else expect(f.family).toBe(def.name);
    }
    expect(METRIC_NAMES).toContain('kubevirt_vmi_migrations_in_running_phase');
  });
});
