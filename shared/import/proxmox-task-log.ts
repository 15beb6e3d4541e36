/**
 * A Proxmox VE migration task log (`qm migrate` output, or the task viewer's text) read as a
 * Ferry timeline. Proxmox's migrator (qemu-server, PVE/QemuMigrate.pm) polls `query-migrate`
 * about once a second and logs lines of the form
 *
 *   2024-03-05 10:15:02 migration active, transferred 1.1 GiB of 8.0 GiB VM-state, 110.2 MiB/s
 *   2024-03-05 10:15:02 migration active, transferred 1.3 GiB of 8.0 GiB VM-state, 98.0 MiB/s, VM dirties lots of memory: 150.0 MiB/s
 *   2024-03-05 10:15:02 xbzrle: send updates to 1024 pages in 2.3 MiB encoded memory, cache-miss 12.50%, overflow 3
 *   2024-03-05 10:15:09 auto-increased downtime to continue migration: 200 ms
 *   2024-03-05 10:15:12 average migration speed: 112.5 MiB/s - downtime 48 ms
 *
 * (older releases: `migration status: active (transferred N, remaining N), total N)` with raw
 * byte counts, `migration xbzrle cachesize: …`, `migrate_set_downtime: S`, `migration speed:
 * X MB/s - downtime N ms`). Every figure the log prints becomes a sample field; what it does
 * not print (remaining memory in current releases, passes, the dirty rate while it is below
 * the transfer speed, QEMU's expected downtime) stays absent and is listed in the header's
 * `imported.absent`. Lines Ferry does not model are kept as notes, so the event log shows
 * the whole task; a line that looks like a figure but does not parse is reported by number.
 */
import { FerryException } from '../errors';
import { phaseForStatus } from '../model/migration';
import type { MigrationFinal, MigrationPhase, MigrationPlan, MigrationSample } from '../model/migration';
import { TIMELINE_FORMAT, TIMELINE_VERSION, problemsText } from '../model/timeline';
import type { ParsedTimeline, TimelineHeader, TimelineProblem, TimelineRecord } from '../model/timeline';

/** `YYYY-MM-DD HH:MM:SS message`: how AbstractMigrate::log stamps every line. */
export const PROXMOX_LINE = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) (.*)$/;
const TASK_END = /^TASK (OK|ERROR(?::\s*(.*))?)$/;

const UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4, PiB: 1024 ** 5 };

/** PVE::Format::render_bytes output (`1.2 GiB`, `512.0 B`) back to bytes, as rounded in the log. */
export function parseRenderedBytes(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB|PiB)$/.exec(s.trim());
  return m ? Math.round(Number(m[1]) * UNITS[m[2]!]!) : undefined;
}

const RE = {
  start: /^starting migration of VM (\d+) to node '([^']+)'(?: \(([^)]*)\))?/,
  remoteStart: /^starting VM (\d+) on remote node '([^']+)'/,
  migrateCommand: /^start migrate command to (\S+)/,
  speedLimit: /^migration speed limit: (.+)\/s$/,
  downtimeLimit: /^migration downtime limit: (\d+) ms$/,
  cacheSize: /^migration cachesize: (.+)$/,
  progressPrefix: /^migration [\w-]+, transferred /,
  progress: /^migration ([\w-]+), transferred (.+?) of (.+?) VM-state, (.+?)\/s(?: \(\+ (.+?) VFIO-state\))?(?:, VM dirties lots of memory: (.+?)\/s)?$/,
  completedSummary: /^migration completed, transferred (.+?) VM-state(?: \(\+ (.+?) VFIO-state\))?$/,
  oldProgress: /^migration status: ([\w-]+) \(transferred (\d+), remaining (\d+)\), total (\d+)\)$/,
  status: /^migration status: ([\w-]+)$/,
  statusError: /^migration status error: ([\w-]+)(?: - (.*))?$/,
  waiting: /^migration in status '?([\w-]+)'?/,
  xbzrlePrefix: /^xbzrle: /,
  xbzrle: /^xbzrle: send updates to (\d+) pages in (.+?) encoded memory(?:, cache-miss (\d+(?:\.\d+)?)%)?(?:, overflow (\d+))?$/,
  oldXbzrle: /^migration xbzrle cachesize: (\d+) transferred (\d+) pages (\d+) cachemiss (\d+) overflow (\d+)$/,
  autoDowntime: /^auto-increased downtime to continue migration: (\d+) ms$/,
  oldSetDowntime: /^migrate_set_downtime: (\d+(?:\.\d+)?)$/,
  averageSpeed: /^average migration speed: (.+?)\/s - downtime (\d+) ms$/,
  oldSpeed: /^migration speed: (\d+(?:\.\d+)?) MB\/s(?: - downtime (\d+) ms)?$/,
  finished: /^migration finished successfully \(duration ([\d:]+)\)$/,
  problems: /^migration finished with problems \(duration ([\d:]+)\)$/,
  aborted: /^migration aborted \(duration ([\d:]+)\): (.*)$/,
  onlineFailure: /^online migrate failure - (.*)$/,
};

/** The node names in a task's UPID (`UPID:pve1:…:qmigrate:100:root@pam:`), when the file is named after it. */
function upidOf(name: string | undefined): { node: string; vmid: string } | undefined {
  const m = /UPID:([^:]+):[0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+:qmigrate:(\d+):/.exec(name ?? '');
  return m ? { node: m[1]!, vmid: m[2]! } : undefined;
}

export class ProxmoxTaskLogParser {
  private lineNo = 0;
  private readonly records: TimelineRecord[] = [];
  private readonly problems: TimelineProblem[] = [];
  private startedAt: number | undefined;
  private lastT: number | undefined;
  private vmid: string | undefined;
  private target: { node: string; address?: string } | undefined;
  private plan: Partial<MigrationPlan> = { mode: 'precopy' };
  private readonly parameters: Record<string, unknown> = {};
  private cacheSize: number | undefined;
  private phase: MigrationPhase = 'preflight';
  private lastSample: ({ type: 'sample' } & MigrationSample) | undefined;
  private final: Partial<MigrationFinal> = {};
  private ended = false;
  private migrationLines = 0;
  private averageSpeed: string | undefined;
  private duration: string | undefined;

  constructor(private readonly name?: string) {}

  line(raw: string): void {
    this.lineNo++;
    const unmarked = this.lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw;
    const text = unmarked.endsWith('\r') ? unmarked.slice(0, -1) : unmarked;
    if (!text.trim()) return;
    const task = TASK_END.exec(text.trim());
    if (task) return this.taskEnd(task[1] === 'OK', task[2]);
    const m = PROXMOX_LINE.exec(text);
    if (!m) {
      this.problems.push({ line: this.lineNo, reason: 'not a task log line (no "YYYY-MM-DD HH:MM:SS" at its start)' });
      return;
    }
    const [, y, mo, d, h, mi, s, msg] = m;
    // The log's clock has no time zone: read as UTC, so times and durations keep their spacing.
    const t = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
    if (!Number.isFinite(t)) {
      this.problems.push({ line: this.lineNo, reason: 'a timestamp that is not a date' });
      return;
    }
    this.startedAt ??= t;
    this.lastT = t;
    this.message(t, msg!);
  }

  finish(tail = ''): ParsedTimeline {
    if (tail.trim()) this.line(tail);
    if (this.startedAt === undefined || this.migrationLines === 0) {
      throw new FerryException('INVALID_REQUEST', `${this.name ?? 'this file'} is not a Proxmox VE migration task log: no "starting migration of VM" or migration progress line${this.problems.length ? ` (${problemsText(this.problems)})` : ''}`);
    }
    // A failure Proxmox logged, with no final line after it (the log was cut there).
    if (!this.ended && this.lastT !== undefined && (this.phase === 'failed' || this.phase === 'cancelled')) this.end(this.lastT, this.phase, this.final.reason);
    const upid = upidOf(this.name);
    const vmid = this.vmid ?? upid?.vmid ?? '?';
    const sourceId = upid?.node ?? '?';
    const destId = this.target?.node ?? '?';
    const samples = this.records.filter((r): r is { type: 'sample' } & MigrationSample => r.type === 'sample').map(({ type: _t, ...s }) => s as MigrationSample);
    const absent: string[] = [];
    if (!samples.some((s) => s.remainingBytes !== undefined)) absent.push('remaining memory (this Proxmox release logs transferred and total only)');
    absent.push('RAM passes (dirty-sync-count)');
    if (!samples.some((s) => s.dirtyRate !== undefined)) absent.push('dirty rate (Proxmox logs it only while it is above the transfer speed, and it never was)');
    else absent.push('dirty rate while it was below the transfer speed (Proxmox logs it only when it is above)');
    absent.push("QEMU's expected downtime", "Ferry's projections", 'the guest\'s own view');
    if (sourceId === '?') absent.push('the source node (not in the log; it is in the task\'s UPID file name)');
    const notes = [
      'Timestamps are the task log\'s clock in whole seconds; its time zone is not in the log (read as UTC).',
      'Byte figures are as Proxmox rounded them (one decimal in KiB/MiB/GiB); the transfer speed is pages per second × page size.',
    ];
    if (samples.some((s) => s.xbzrle)) notes.push('XBZRLE: a cache-miss rate or overflow count the log leaves out means Proxmox saw 0 (it prints them only when non-zero).');
    if (this.averageSpeed) notes.push(`Proxmox's average migration speed: ${this.averageSpeed}/s.`);
    if (this.duration) notes.push(`Whole task duration (disks, config and cleanup included): ${this.duration}.`);
    const plan = { vm: vmid, from: sourceId, to: destId, ...this.plan } as MigrationPlan;
    const header: TimelineHeader = {
      type: 'header', format: TIMELINE_FORMAT, version: TIMELINE_VERSION, ferryVersion: 'import', migrationId: `proxmox-${vmid}-${new Date(this.startedAt).toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}`,
      createdAt: this.startedAt, mode: 'import', plan,
      source: { id: sourceId, label: sourceId === '?' ? 'source node (not in the log)' : `Proxmox node ${sourceId}` },
      destination: { id: destId, label: `Proxmox node ${destId}`, ...(this.target?.address ? { migrationAddress: this.target.address } : {}) },
      vm: { name: vmid },
      ...(Object.keys(this.parameters).length ? { parameters: this.parameters } : {}),
      imported: { format: 'proxmox-task-log', ...(this.name ? { name: this.name } : {}), absent, notes },
    };
    const records: TimelineRecord[] = [header, ...this.records];
    const end = records.find((r): r is Extract<TimelineRecord, { type: 'end' }> => r.type === 'end');
    const notices = this.problems.length ? [`${this.problems.length} line${this.problems.length === 1 ? '' : 's'} of the task log could not be read and ${this.problems.length === 1 ? 'was' : 'were'} left out: ${problemsText(this.problems)}.`] : [];
    return { header, records, samples, end, truncated: !end, problems: this.problems, readOnly: false, skipped: 0, notices };
  }

  private bytes(s: string | undefined, what: string): number | undefined {
    if (s === undefined) return undefined;
    const v = parseRenderedBytes(s);
    if (v === undefined) this.problems.push({ line: this.lineNo, reason: `${what} "${s}" is not a size Proxmox prints (e.g. 1.2 GiB)` });
    return v;
  }

  private setPhase(t: number, phase: MigrationPhase, reason?: string): void {
    if (phase === this.phase) return;
    this.records.push({ type: 'phase', t, phase, from: this.phase, ...(reason ? { reason } : {}) });
    this.phase = phase;
  }

  private note(t: number, text: string): void {
    this.records.push({ type: 'note', t, text });
  }

  private sample(t: number, status: string, fields: Partial<MigrationSample>): void {
    this.setPhase(t, phaseForStatus(status, false, this.phase));
    const s = { type: 'sample' as const, t, elapsedMs: t - this.startedAt!, status, phase: this.phase, ...fields };
    this.records.push(s);
    this.lastSample = s;
    this.migrationLines++;
  }

  private end(t: number, outcome: MigrationFinal['outcome'], reason?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.setPhase(t, outcome);
    this.records.push({ type: 'end', t, outcome, ...(reason ? { reason } : {}), ...this.final });
  }

  private taskEnd(ok: boolean, error: string | undefined): void {
    const t = this.lastT ?? this.startedAt;
    if (t === undefined) return;
    if (ok) this.end(t, 'completed');
    else this.end(t, this.phase === 'cancelled' ? 'cancelled' : 'failed', error?.trim() || undefined);
  }

  private message(t: number, full: string): void {
    const isError = full.startsWith('ERROR: ');
    const msg = isError ? full.slice('ERROR: '.length) : full;
    let m: RegExpExecArray | null;
    if ((m = RE.start.exec(msg))) {
      this.vmid = m[1]!;
      this.target = { node: m[2]!, ...(m[3] ? { address: m[3] } : {}) };
      this.migrationLines++;
      return this.note(t, full);
    }
    if ((m = RE.progress.exec(msg))) {
      const transferred = this.bytes(m[2], 'transferred');
      const total = this.bytes(m[3], 'total');
      const speed = this.bytes(m[4], 'speed');
      const dirty = this.bytes(m[6], 'dirty rate');
      if (transferred === undefined || total === undefined || speed === undefined || (m[6] !== undefined && dirty === undefined)) return;
      return this.sample(t, m[1]!, { transferredBytes: transferred, totalBytes: total, transferRate: speed, ...(dirty !== undefined ? { dirtyRate: dirty } : {}) });
    }
    if ((m = RE.completedSummary.exec(msg))) {
      const transferred = this.bytes(m[1], 'transferred');
      if (transferred !== undefined) this.final.transferredBytes = transferred;
      return this.note(t, full);
    }
    if (RE.progressPrefix.test(msg)) {
      this.problems.push({ line: this.lineNo, reason: 'a progress line Ferry cannot read' });
      return;
    }
    if ((m = RE.oldProgress.exec(msg))) {
      return this.sample(t, m[1]!, { transferredBytes: Number(m[2]), remainingBytes: Number(m[3]), totalBytes: Number(m[4]) });
    }
    if ((m = RE.xbzrle.exec(msg))) {
      const bytes = this.bytes(m[2], 'encoded memory');
      if (bytes === undefined) return;
      return this.xbzrle(t, { pages: Number(m[1]), bytes, cacheMissRate: m[3] !== undefined ? Number(m[3]) / 100 : 0, overflow: m[4] !== undefined ? Number(m[4]) : 0, ...(this.cacheSize !== undefined ? { cacheSize: this.cacheSize } : {}) });
    }
    if ((m = RE.oldXbzrle.exec(msg))) {
      return this.xbzrle(t, { cacheSize: Number(m[1]), bytes: Number(m[2]), pages: Number(m[3]), cacheMiss: Number(m[4]), overflow: Number(m[5]) });
    }
    if (RE.xbzrlePrefix.test(msg)) {
      this.problems.push({ line: this.lineNo, reason: 'an xbzrle line Ferry cannot read' });
      return;
    }
    if ((m = RE.status.exec(msg))) {
      this.setPhase(t, phaseForStatus(m[1]!, false, this.phase), `QEMU status ${m[1]}`);
      return this.note(t, full);
    }
    if ((m = RE.statusError.exec(msg))) {
      const outcome = m[1] === 'cancelled' ? 'cancelled' : 'failed';
      this.final.reason = m[2] ? `${m[1]} - ${m[2]}` : m[1]!;
      this.setPhase(t, outcome, this.final.reason);
      return this.note(t, full);
    }
    if ((m = RE.waiting.exec(msg))) {
      if (m[1] === 'setup') this.setPhase(t, 'setup');
      return this.note(t, full);
    }
    if (RE.remoteStart.test(msg)) {
      this.setPhase(t, 'reservation');
      return this.note(t, full);
    }
    if (RE.migrateCommand.test(msg)) {
      this.setPhase(t, 'setup');
      return this.note(t, full);
    }
    if ((m = RE.speedLimit.exec(msg))) {
      const bw = this.bytes(m[1], 'speed limit');
      if (bw !== undefined && bw > 0) this.plan.maxBandwidth = bw;
      return this.note(t, full);
    }
    if ((m = RE.downtimeLimit.exec(msg))) {
      this.plan.downtimeLimitMs = Number(m[1]);
      return this.note(t, full);
    }
    if ((m = RE.cacheSize.exec(msg))) {
      const size = this.bytes(m[1], 'cache size');
      if (size !== undefined) {
        this.cacheSize = size;
        this.parameters['xbzrle-cache-size'] = size;
      }
      return this.note(t, full);
    }
    if ((m = RE.autoDowntime.exec(msg))) {
      this.records.push({ type: 'control', t, who: 'proxmox', action: 'set-downtime', args: { ms: Number(m[1]) }, result: { ok: true } });
      return;
    }
    if ((m = RE.oldSetDowntime.exec(msg))) {
      this.records.push({ type: 'control', t, who: 'proxmox', action: 'set-downtime', args: { ms: Math.round(Number(m[1]) * 1000) }, result: { ok: true } });
      return;
    }
    if ((m = RE.averageSpeed.exec(msg))) {
      this.averageSpeed = m[1];
      this.final.downtimeMs = Number(m[2]);
      return this.note(t, full);
    }
    if ((m = RE.oldSpeed.exec(msg))) {
      if (m[2] !== undefined) this.final.downtimeMs = Number(m[2]);
      return this.note(t, full);
    }
    if ((m = RE.finished.exec(msg))) {
      this.duration = m[1];
      this.note(t, full);
      return this.end(t, 'completed');
    }
    if ((m = RE.problems.exec(msg))) {
      this.duration = m[1];
      this.note(t, full);
      // After a phase-2 failure the VM stayed on the source: that is the outcome, the "problems" its cleanup.
      if (this.phase === 'failed' || this.phase === 'cancelled') return this.end(t, this.phase, this.final.reason);
      return this.end(t, 'completed', 'finished with problems (see the errors above)');
    }
    if ((m = RE.aborted.exec(msg))) {
      this.duration = m[1];
      this.note(t, full);
      const cancelled = this.phase === 'cancelled' || /interrupted by signal/.test(m[2]!);
      return this.end(t, cancelled ? 'cancelled' : 'failed', this.final.reason ?? m[2]!.trim());
    }
    if ((m = RE.onlineFailure.exec(msg))) {
      this.final.reason ??= m[1]!.trim();
      if (this.phase !== 'cancelled') this.setPhase(t, 'failed', this.final.reason);
      return this.note(t, full);
    }
    this.note(t, full);
  }

  private xbzrle(t: number, x: NonNullable<MigrationSample['xbzrle']>): void {
    // Logged right after the progress line of the same poll: it belongs to that sample.
    if (this.lastSample && t - this.lastSample.t <= 1000) this.lastSample.xbzrle = x;
    else this.problems.push({ line: this.lineNo, reason: 'an xbzrle line with no progress line before it' });
  }
}

/** Parses a whole task log's text. */
export function parseProxmoxTaskLog(text: string, name?: string): ParsedTimeline {
  const p = new ProxmoxTaskLogParser(name);
  let start = 0;
  for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
    p.line(text.slice(start, nl));
    start = nl + 1;
  }
  return p.finish(text.slice(start));
}
