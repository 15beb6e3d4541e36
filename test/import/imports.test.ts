/**
 * Proxmox VE task logs and guestperf reports as timelines. The fixtures in
 * test/fixtures/imports are written from the documented formats (qemu-server's
 * PVE/QemuMigrate.pm and PVE::Format::render_bytes; guestperf's report/progress/timings
 * serializers), including malformed lines.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parseAnyTimeline, sniffTimelineKind } from '../../shared/import/open-timeline';
import { parseProxmoxTaskLog, parseRenderedBytes } from '../../shared/import/proxmox-task-log';
import { parseGuestperfReport } from '../../shared/import/guestperf';
import { entryFromTimeline, chartSpecs, rowsOf } from '../../shared/report/picture';
import { compareHtml, reportHtml } from '../../shared/report/report-html';
import type { ParsedTimeline } from '../../shared/model/timeline';

const fx = (name: string) => readFileSync(`test/fixtures/imports/${name}`, 'utf8');
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const phases = (t: ParsedTimeline) => t.records.filter((r) => r.type === 'phase').map((r) => (r as { phase: string }).phase);

describe('Proxmox VE migration task log', () => {
  const text = fx('proxmox-migrate-100.log');
  const t = parseAnyTimeline(text, 'proxmox-migrate-100.log');

  it('reads every progress line as a sample with exactly the figures the line prints', () => {
    expect(t.header?.mode).toBe('import');
    expect(t.header?.imported?.format).toBe('proxmox-task-log');
    expect(t.samples).toHaveLength(6);
    const [first, , third] = t.samples;
    expect(first).toMatchObject({ status: 'active', phase: 'precopy', transferredBytes: Math.round(98.5 * MiB), totalBytes: 4 * GiB, transferRate: Math.round(99.2 * MiB), elapsedMs: 4000 });
    expect(third!.dirtyRate).toBe(Math.round(140.3 * MiB));
    // Not printed, so not there: no remaining memory, no pass, no dirty rate below the speed.
    expect(t.samples.every((s) => s.remainingBytes === undefined && s.pass === undefined && s.expectedDowntimeMs === undefined && s.projection === undefined)).toBe(true);
    expect(first!.dirtyRate).toBeUndefined();
    expect(t.samples.filter((s) => s.dirtyRate !== undefined)).toHaveLength(2);
  });

  it('attaches the xbzrle line to its poll, zero where Proxmox leaves a figure out', () => {
    expect(t.samples[2]!.xbzrle).toEqual({ pages: 2048, bytes: Math.round(3.1 * MiB), cacheMissRate: 0.125, overflow: 7, cacheSize: 512 * MiB });
    expect(t.samples[3]!.xbzrle).toMatchObject({ pages: 4096, cacheMissRate: 0, overflow: 0 });
    expect(t.samples[3]!.xbzrle!.cacheMiss).toBeUndefined();
  });

  it('takes the plan, the limits, the downtime change and the end from their lines', () => {
    expect(t.header?.plan).toMatchObject({ vm: '100', from: '?', to: 'pve2', maxBandwidth: 100 * MiB, downtimeLimitMs: 100 });
    expect(t.header?.destination).toMatchObject({ id: 'pve2', migrationAddress: '10.10.10.2' });
    expect(t.records.filter((r) => r.type === 'control')).toEqual([{ type: 'control', t: Date.UTC(2024, 2, 5, 10, 15, 8), who: 'proxmox', action: 'set-downtime', args: { ms: 200 }, result: { ok: true } }]);
    expect(phases(t)).toEqual(['reservation', 'setup', 'precopy', 'commitment', 'completed']);
    expect(t.end).toMatchObject({ outcome: 'completed', downtimeMs: 61, transferredBytes: Math.round(571.8 * MiB) });
    expect(t.end!.passes).toBeUndefined();
    expect(t.truncated).toBe(false);
    expect(t.problems).toEqual([]);
    // Every other line of the task is in the event log.
    const notes = t.records.filter((r) => r.type === 'note').map((r) => (r as { text: string }).text);
    expect(notes).toContain('2024-03-05 10:15:03 ssh tunnel ver 1'.slice(20));
    expect(notes).toContain("found local disk 'local-lvm:vm-100-disk-0' (attached)");
    expect(notes).toContain('migration finished successfully (duration 00:00:13)');
  });

  it('lists what the log lacks, and names the source node only when the file name (a UPID) has it', () => {
    const absent = t.header!.imported!.absent.join(' | ');
    expect(absent).toMatch(/remaining memory/);
    expect(absent).toMatch(/RAM passes/);
    expect(absent).toMatch(/dirty rate while it was below the transfer speed/);
    expect(absent).toMatch(/source node/);
    const named = parseProxmoxTaskLog(text, 'UPID:pve1:0003A1B2:0F2C3D4E:65E6F0A4:qmigrate:100:root@pam:');
    expect(named.header?.plan).toMatchObject({ from: 'pve1', to: 'pve2' });
    expect(named.header!.imported!.absent.join(' ')).not.toMatch(/source node/);
  });

  it('draws the console\'s charts from it, with absent series empty rather than zero', () => {
    const entry = entryFromTimeline(t);
    const rows = rowsOf(entry.samples, entry.summary.startedAt);
    expect(rows.filter((r) => r.remaining !== undefined)).toHaveLength(0);
    expect(rows.filter((r) => r.xfer !== undefined)).toHaveLength(6);
    expect(chartSpecs(entry, rows).map((c) => c.id)).toEqual(['rates', 'memory', 'downtime']);
    const html = reportHtml(t, 'proxmox-migrate-100.log');
    expect(html).toContain('Imported from a Proxmox VE migration task log');
    expect(html).toContain('Not in the source, so not shown: remaining memory');
    expect(html).toMatch(/data-figure="downtime"><dt>Downtime<\/dt><dd>61 ms/);
  });

  it('reads an older release: raw byte counts with remaining memory, xbzrle counts, downtime in seconds', () => {
    const old = parseAnyTimeline(fx('proxmox-old-release.log'), 'old.log');
    expect(old.samples.map((s) => s.remainingBytes)).toEqual([872415232, 671088640, 1048576]);
    expect(old.samples[1]!.xbzrle).toEqual({ cacheSize: 67108864, bytes: 1048576, pages: 512, cacheMiss: 40, overflow: 1 });
    expect(old.records.find((r) => r.type === 'control')).toMatchObject({ args: { ms: 200 } });
    expect(old.end).toMatchObject({ outcome: 'completed', downtimeMs: 35 });
    expect(old.header!.imported!.absent.join(' ')).not.toMatch(/remaining memory/);
    expect(old.problems).toEqual([]);
  });

  it('reads a failed migration, and reports each malformed line by number instead of guessing', () => {
    const f = parseAnyTimeline(fx('proxmox-failed.log'), 'failed.log');
    expect(f.end).toMatchObject({ outcome: 'failed', reason: 'failed - Unable to write to socket: Broken pipe' });
    expect(phases(f).at(-1)).toBe('failed');
    expect(f.samples).toHaveLength(1);
    expect(f.problems).toEqual([
      { line: 5, reason: 'transferred "what" is not a size Proxmox prints (e.g. 1.2 GiB)' },
      { line: 6, reason: 'speed "100.0 ZiB" is not a size Proxmox prints (e.g. 1.2 GiB)' },
      { line: 7, reason: 'not a task log line (no "YYYY-MM-DD HH:MM:SS" at its start)' },
    ]);
    expect(f.notices[0]).toMatch(/^3 lines of the task log could not be read and were left out: line 5/);
  });

  it('opens a log cut before its end as truncated, and refuses a text that is no migration log', () => {
    const cut = text.split('\n').slice(0, 18).join('\n');
    const c = parseAnyTimeline(cut, 'cut.log');
    expect(c.truncated).toBe(true);
    expect(c.end).toBeUndefined();
    expect(c.samples).toHaveLength(4);
    expect(() => parseAnyTimeline('2024-03-05 10:00:00 starting backup of VM 100\nTASK OK\n', 'backup.log')).toThrow(/backup.log is not a Proxmox VE migration task log/);
    expect(() => parseAnyTimeline('hello\nworld\n', 'notes.txt')).toThrow(/^notes.txt is not a Ferry timeline .*, a Proxmox VE migration task log or a QEMU guestperf report$/);
  });

  it('reads rendered sizes the way render_bytes writes them', () => {
    expect(parseRenderedBytes('512.0 B')).toBe(512);
    expect(parseRenderedBytes('1.5 KiB')).toBe(1536);
    expect(parseRenderedBytes('2.0 TiB')).toBe(2 * 1024 ** 4);
    expect(parseRenderedBytes('1.2 GB')).toBeUndefined();
    expect(parseRenderedBytes('lots')).toBeUndefined();
  });
});

describe('QEMU guestperf report', () => {
  const t = parseAnyTimeline(fx('guestperf-precopy.json'), 'guestperf-precopy.json');

  it('reads one sample per progress record, 0s QEMU did not report left absent', () => {
    expect(t.header?.imported?.format).toBe('qemu-guestperf');
    expect(t.samples).toHaveLength(6);
    const [setup, first, second] = t.samples;
    expect(setup).toEqual({ t: 1709633700250, elapsedMs: 0, status: 'setup', phase: 'setup' });
    expect(first).toMatchObject({ phase: 'precopy', pass: 1, transferredBytes: 12_000_000, setupTimeMs: 12, expectedDowntimeMs: 0 });
    expect(second).toMatchObject({ pass: 2, dirtyRate: 21000 * 4096, transferRate: (838.9 * 1e6) / 8, expectedDowntimeMs: 2480, totalTimeMs: 11300 });
    expect(t.samples.filter((s) => s.cpuThrottlePct !== undefined).map((s) => s.cpuThrottlePct)).toEqual([20]);
    expect(t.samples.filter((s) => s.downtimeMs !== undefined).map((s) => s.downtimeMs)).toEqual([187]);
    expect(t.samples.at(-1)!.expectedDowntimeMs).toBeUndefined();
  });

  it('takes the end, the plan from the scenario and a summary of the guest timings', () => {
    expect(t.end).toMatchObject({ outcome: 'completed', downtimeMs: 187, totalTimeMs: 15210, setupTimeMs: 12, passes: 5, transferredBytes: 1_551_000_000 });
    expect(phases(t)).toEqual(['precopy', 'commitment', 'completed']);
    expect(t.header?.plan).toMatchObject({ vm: 'precopy-nocompress', from: 'localhost', to: 'localhost', mode: 'precopy', maxBandwidth: 125000 * MiB, downtimeLimitMs: 500 });
    const notes = t.header!.imported!.notes.join('\n');
    expect(notes).toMatch(/Guest memory updates: 40 timings from 1 thread\(s\), median 300 ms per GB; slowest during the migration 2200 ms per GB/);
    expect(notes).toMatch(/4 KiB pages/);
    expect(t.problems).toEqual([]);
  });

  it('reads a postcopy scenario, and compares with the Proxmox run in one report', () => {
    const post = parseAnyTimeline(fx('guestperf-postcopy.json'), 'guestperf-postcopy.json');
    expect(phases(post)).toEqual(['precopy', 'postcopy', 'commitment', 'completed']);
    expect(post.header?.plan).toMatchObject({ mode: 'postcopy-after', postcopyAfterPasses: 2 });
    const html = compareHtml([
      { name: 'guestperf', timeline: t },
      { name: 'postcopy', timeline: post },
      { name: 'proxmox', timeline: parseAnyTimeline(fx('proxmox-migrate-100.log'), 'p.log') },
    ]);
    expect(html).toContain('<th style="color:#2563eb">guestperf</th>');
    expect(html).toContain('<th style="color:#059669">proxmox</th>');
    expect(html).toMatch(/<tr><th>Downtime<\/th><td>187 ms<\/td><td>22 ms<\/td><td>61 ms<\/td><\/tr>/);
  });

  it('reports a malformed record by its place and keeps the others; refuses what is no report', () => {
    const doc = JSON.parse(fx('guestperf-precopy.json')) as { progress_history: Record<string, unknown>[]; scenario?: unknown };
    const bad = structuredClone(doc);
    (bad.progress_history[2]!.ram as Record<string, unknown>).transferred_bytes = 'many';
    bad.progress_history[3]!.now = 1;
    const b = parseGuestperfReport(JSON.stringify(bad), 'bad.json');
    expect(b.problems).toEqual([
      { where: 'progress_history[2]', reason: expect.stringMatching(/^ram\.transferred_bytes: /) },
      { where: 'progress_history[3]', reason: 'earlier than the record before it' },
    ]);
    expect(b.samples).toHaveLength(4);
    expect(b.notices[0]).toMatch(/^2 progress records could not be read and were left out: progress_history\[2\]/);
    const noScenario = structuredClone(doc);
    delete noScenario.scenario;
    expect(() => parseGuestperfReport(JSON.stringify(noScenario), 'x.json')).toThrow(/^x.json is not a readable guestperf report: scenario: /);
    expect(() => parseAnyTimeline('{\n  "progress_history": [\n', 'cut.json')).toThrow(/cut.json is not a Ferry timeline, a Proxmox VE task log or a QEMU guestperf report: not JSON/);
    expect(() => parseGuestperfReport('{"results": []}', 'other.json')).toThrow('other.json is JSON but not a QEMU guestperf report (no progress_history list)');
    expect(() => parseGuestperfReport(JSON.stringify({ ...doc, progress_history: [] }), 'empty.json')).toThrow(/empty.json: the guestperf report has no readable progress record/);
  });

  it('is told apart from a Ferry timeline and a task log by its first line', () => {
    expect(sniffTimelineKind('{')).toBe('json-report');
    expect(sniffTimelineKind('{"hardware": {}, "progress_history": []}')).toBe('json-report');
    expect(sniffTimelineKind('{"type":"header","format":"ferry-timeline"}')).toBe('ferry');
    expect(sniffTimelineKind('2024-03-05 10:15:00 starting migration of VM 100')).toBe('proxmox-task-log');
    expect(sniffTimelineKind('\uFEFF2024-03-05 10:15:00 x')).toBe('proxmox-task-log');
    expect(sniffTimelineKind('hello')).toBe('unknown');
  });
});
