/**
 * QEMU guestperf's JSON report (tests/migration/guestperf: `Report.serialize()`) read as a
 * Ferry timeline. The report keeps one `progress_history` record per RAM pass (a
 * `query-migrate` reply when dirty-sync-count moved, and the final one), each with `now`
 * (wall clock, seconds), `status`, `ram` (bytes, pages, `dirty_rate_pps`,
 * `transfer_rate_mbs` = QEMU's mbps, `iterations` = dirty-sync-count), `duration`
 * (total-time, ms), `downtime`, `downtime_expected`, `setup_time` and `throttle_pcent`, plus
 * the scenario, the hardware and the guest's memory-update timings.
 *
 * guestperf writes 0 for every field QEMU did not report (`info.get(…, 0)`), so a 0 is read
 * as absent where QEMU omits the field in that state: all RAM figures while no RAM stats
 * exist (setup), the downtime until completion, the expected downtime outside `active`, a
 * zero setup time or throttle. Nothing is interpolated between the sparse records.
 */
import { z } from 'zod';
import { FerryException } from '../errors';
import { phaseForStatus } from '../model/migration';
import type { MigrationPhase, MigrationPlan, MigrationSample } from '../model/migration';
import { TIMELINE_FORMAT, TIMELINE_VERSION, issuesText, problemsText } from '../model/timeline';
import type { ParsedTimeline, TimelineHeader, TimelineProblem, TimelineRecord } from '../model/timeline';

const num = z.number();
const ProgressSchema = z.looseObject({
  status: z.string(),
  ram: z.looseObject({
    transferred_bytes: num, remaining_bytes: num, total_bytes: num, duplicate_pages: num, skipped_pages: num,
    normal_pages: num, normal_bytes: num, dirty_rate_pps: num, transfer_rate_mbs: num, iterations: num,
  }),
  now: num,
  duration: num,
  downtime: num,
  downtime_expected: num,
  setup_time: num,
  throttle_pcent: num,
});
const TimingSchema = z.looseObject({ tid: num, timestamp: num, value: num });
const ReportSchema = z.looseObject({
  hardware: z.looseObject({ cpus: num, mem: num }),
  scenario: z.looseObject({
    name: z.string(), downtime: num, bandwidth: num, max_iters: num.optional(), max_time: num.optional(),
    pause: z.boolean().optional(), pause_iters: num.optional(), post_copy: z.boolean().optional(), post_copy_iters: num.optional(),
    auto_converge: z.boolean().optional(), auto_converge_step: num.optional(), compression_mt: z.boolean().optional(),
    compression_xbzrle: z.boolean().optional(), compression_xbzrle_cache: num.optional(), multifd: z.boolean().optional(), multifd_channels: num.optional(),
  }),
  progress_history: z.array(z.unknown()),
  guest_timings: z.array(z.unknown()).optional(),
  qemu_timings: z.array(z.unknown()).optional(),
  vcpu_timings: z.array(z.unknown()).optional(),
  binary: z.string().optional(),
  dst_host: z.string().optional(),
  kernel: z.string().optional(),
  initrd: z.string().optional(),
  transport: z.string().optional(),
  sleep: num.optional(),
});

/** Page size guestperf's own plot multiplies `dirty_rate_pps` by (4 KiB: it drives x86 guests). */
const GUESTPERF_PAGE = 4096;
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** True when `text` is a JSON object that has the guestperf report's `progress_history`. */
export function looksLikeGuestperf(value: unknown): boolean {
  return !!value && typeof value === 'object' && !Array.isArray(value) && Array.isArray((value as { progress_history?: unknown }).progress_history);
}

export function parseGuestperfReport(text: string, name?: string): ParsedTimeline {
  const label = name ?? 'this file';
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new FerryException('INVALID_REQUEST', `${label} is not a Ferry timeline, a Proxmox VE task log or a QEMU guestperf report: not JSON (${(e as Error).message})`);
  }
  if (!looksLikeGuestperf(value)) throw new FerryException('INVALID_REQUEST', `${label} is JSON but not a QEMU guestperf report (no progress_history list)`);
  const parsed = ReportSchema.safeParse(value);
  if (!parsed.success) throw new FerryException('INVALID_REQUEST', `${label} is not a readable guestperf report: ${issuesText(parsed.error)}`);
  const report = parsed.data;
  const problems: TimelineProblem[] = [];
  const progress: z.output<typeof ProgressSchema>[] = [];
  report.progress_history.forEach((raw, i) => {
    const p = ProgressSchema.safeParse(raw);
    if (!p.success) problems.push({ where: `progress_history[${i}]`, reason: issuesText(p.error) });
    else if (progress.length && p.data.now < progress.at(-1)!.now) problems.push({ where: `progress_history[${i}]`, reason: 'earlier than the record before it' });
    else progress.push(p.data);
  });
  if (progress.length === 0) throw new FerryException('INVALID_REQUEST', `${label}: the guestperf report has no readable progress record${problems.length ? ` (${problemsText(problems)})` : ''}`);

  const sc = report.scenario;
  const startedAt = Math.round(progress[0]!.now * 1000);
  const records: TimelineRecord[] = [];
  let phase: MigrationPhase = 'setup';
  for (const p of progress) {
    const t = Math.round(p.now * 1000);
    const next = phaseForStatus(p.status, false, phase);
    if (next !== phase) {
      records.push({ type: 'phase', t, phase: next, from: phase });
      phase = next;
    }
    const r = p.ram;
    const s: { type: 'sample' } & MigrationSample = { type: 'sample', t, elapsedMs: t - startedAt, status: p.status, phase };
    // All-zero RAM stats: QEMU had none yet (guestperf fills in 0).
    if (r.total_bytes > 0 || r.transferred_bytes > 0 || r.remaining_bytes > 0) {
      Object.assign(s, {
        pass: r.iterations, transferredBytes: r.transferred_bytes, remainingBytes: r.remaining_bytes, totalBytes: r.total_bytes,
        normalPages: r.normal_pages, duplicatePages: r.duplicate_pages,
        dirtyRate: r.dirty_rate_pps * GUESTPERF_PAGE, transferRate: (r.transfer_rate_mbs * 1e6) / 8,
      });
    }
    if (p.status === 'active') s.expectedDowntimeMs = p.downtime_expected;
    if (p.status === 'completed') s.downtimeMs = p.downtime;
    if (p.duration > 0) s.totalTimeMs = p.duration;
    if (p.setup_time > 0) s.setupTimeMs = p.setup_time;
    if (p.throttle_pcent > 0) s.cpuThrottlePct = p.throttle_pcent;
    records.push(s);
  }
  const last = progress.at(-1)!;
  if (TERMINAL.has(last.status)) {
    const t = Math.round(last.now * 1000);
    const outcome = last.status as 'completed' | 'failed' | 'cancelled';
    if (phase !== outcome) records.push({ type: 'phase', t, phase: outcome, from: phase });
    const hasRam = last.ram.total_bytes > 0 || last.ram.transferred_bytes > 0;
    records.push({
      type: 'end', t, outcome,
      ...(last.duration > 0 ? { totalTimeMs: last.duration } : {}),
      ...(last.setup_time > 0 ? { setupTimeMs: last.setup_time } : {}),
      ...(outcome === 'completed' ? { downtimeMs: last.downtime } : {}),
      ...(hasRam ? { transferredBytes: last.ram.transferred_bytes, passes: last.ram.iterations } : {}),
    });
  }

  // The guest's memory-update timings: wall-clock seconds, ms per GB copied.
  const notes: string[] = [
    `Scenario ${sc.name}: ${report.hardware.cpus} vCPU, ${report.hardware.mem} GiB stress working set${report.dst_host ? `, destination ${report.dst_host}` : ''}${report.transport ? ` over ${report.transport}` : ''}.`,
    'Dirty rate: guestperf records pages per second; read as 4 KiB pages, as guestperf\'s own plot does.',
    'One record per RAM pass: the charts join those points, nothing is drawn in between.',
  ];
  const timings = (report.guest_timings ?? []).map((x) => TimingSchema.safeParse(x)).filter((x) => x.success).map((x) => x.data);
  if (timings.length) {
    const during = timings.filter((x) => x.timestamp >= progress[0]!.now && x.timestamp <= last.now);
    const worst = during.reduce<(typeof timings)[number] | undefined>((w, x) => (!w || x.value > w.value ? x : w), undefined);
    notes.push(`Guest memory updates: ${timings.length} timings from ${new Set(timings.map((x) => x.tid)).size} thread(s), median ${median(timings.map((x) => x.value)).toFixed(0)} ms per GB` +
      (worst ? `; slowest during the migration ${worst.value.toFixed(0)} ms per GB at +${(worst.timestamp - progress[0]!.now).toFixed(1)} s.` : '.'));
  }
  if ((report.qemu_timings?.length ?? 0) + (report.vcpu_timings?.length ?? 0) > 0) notes.push(`Host CPU time of the source QEMU and its vCPUs (${(report.qemu_timings?.length ?? 0) + (report.vcpu_timings?.length ?? 0)} records) is in the report but not charted.`);
  if (sc.multifd) notes.push(`The scenario asks for multifd (${sc.multifd_channels ?? '?'} channels); the report does not say whether it was applied.`);

  const plan = {
    vm: sc.name, from: 'localhost', to: report.dst_host ?? '?', mode: sc.post_copy ? 'postcopy-after' : 'precopy',
    ...(sc.post_copy && sc.post_copy_iters !== undefined ? { postcopyAfterPasses: sc.post_copy_iters } : {}),
    maxBandwidth: Math.round(sc.bandwidth * 1024 * 1024),
    downtimeLimitMs: sc.downtime,
    ...(sc.auto_converge ? { autoConverge: true } : {}),
    ...(sc.compression_xbzrle && sc.compression_xbzrle_cache !== undefined ? { xbzrleCacheBytes: Math.round((report.hardware.mem * 1024 ** 3 / 100) * sc.compression_xbzrle_cache) } : {}),
  } as MigrationPlan;
  const header: TimelineHeader = {
    type: 'header', format: TIMELINE_FORMAT, version: TIMELINE_VERSION, ferryVersion: 'import', migrationId: `guestperf-${sc.name}-${startedAt}`,
    createdAt: startedAt, mode: 'import', plan,
    source: { id: 'localhost', label: `guestperf source${report.binary ? ` (${report.binary})` : ''}` },
    destination: { id: report.dst_host ?? '?', label: `guestperf destination ${report.dst_host ?? '(not in the report)'}` },
    vm: { name: sc.name },
    parameters: Object.fromEntries(Object.entries(sc).map(([k, v]) => [`scenario.${k}`, v])),
    imported: {
      format: 'qemu-guestperf', ...(name ? { name } : {}),
      absent: [
        'samples between RAM passes (guestperf keeps one record per pass)',
        'XBZRLE and postcopy page-request figures', "Ferry's projections", 'migration events and controls', 'the guest\'s stalls (its timings are per GB copied)',
      ],
      notes,
    },
  };
  const all: TimelineRecord[] = [header, ...records];
  const samples = records.filter((r): r is { type: 'sample' } & MigrationSample => r.type === 'sample').map(({ type: _t, ...s }) => s as MigrationSample);
  const end = all.find((r): r is Extract<TimelineRecord, { type: 'end' }> => r.type === 'end');
  const notices = problems.length ? [`${problems.length} progress record${problems.length === 1 ? '' : 's'} could not be read and ${problems.length === 1 ? 'was' : 'were'} left out: ${problemsText(problems)}.`] : [];
  return { header, records: all, samples, end, truncated: !end, problems, readOnly: false, skipped: 0, notices };
}
