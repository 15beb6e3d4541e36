import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { configureLog, rootLog } from './log';
import { diagnosticsText, logLinesBetween } from './diagnostics';
import { reportHtml } from '../../shared/report/report-html';
import { parseTimeline } from '../../shared/model/timeline';
import { readFileSync } from 'node:fs';

const dirs: string[] = [];
afterEach(() => {
  configureLog({});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('diagnostics', () => {
  it('takes the log lines of a time window, rotated files first, lines without a time skipped', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-diag-'));
    dirs.push(dir);
    const file = path.join(dir, 'ferry.log');
    writeFileSync(`${file}.1`, '2026-12-01T10:00:00.000Z INFO  old: before\n2026-12-01T10:00:05.000Z INFO  ssh hv1: connected\n');
    writeFileSync(file, 'garbage line\n2026-12-01T10:00:09.000Z WARN  ssh hv1: channel refused\n2026-12-01T10:05:00.000Z INFO  later\n');
    const lines = logLinesBetween(Date.parse('2026-12-01T10:00:01Z'), Date.parse('2026-12-01T10:01:00Z'), file);
    expect(lines).toEqual(['2026-12-01T10:00:05.000Z INFO  ssh hv1: connected', '2026-12-01T10:00:09.000Z WARN  ssh hv1: channel refused']);
    expect(logLinesBetween(0, Date.now(), undefined)).toEqual([]);
  });

  it('writes hosts with their SSH sessions, migrations, pending cleanups and the last log lines, never a secret', () => {
    configureLog({});
    rootLog.child('ssh hv1').warn('connect failed', { passphrase: 'hunter2' });
    const text = diagnosticsText({
      version: '0.1.0', configDir: '/cfg',
      hosts: [{ id: 'hv1', label: 'root@10.0.0.1:22', state: 'connected', sessions: { held: 2, peak: 8, queued: 0, refusals: 1, limit: 8 } }, { id: 'hv2', label: 'hv2', state: 'failed', lastError: 'no key was accepted [SSH_AUTH_FAILED]' }],
      migrations: [{ id: 'm1', vm: 'demo', from: 'hv1', to: 'hv2', phase: 'precopy', startedAt: 0, timeline: '/t/m1.ferry.jsonl' }],
      pendingCleanups: [{ hostId: 'hv2', vm: 'demo', reason: 'migration m0 failed', since: 0 }],
    });
    expect(text).toMatch(/hv1\tconnected\troot@10\.0\.0\.1:22 sessions 2\/8 \(peak 8, 1 refused, 0 queued\)/);
    expect(text).toMatch(/hv2\tfailed\thv2\tlast error: no key was accepted/);
    expect(text).toMatch(/m1\tdemo hv1 -> hv2\tprecopy/);
    expect(text).toMatch(/hv2\/demo\tsince .*migration m0 failed/);
    expect(text).toMatch(/WARN {2}ssh hv1: connect failed/);
    expect(text).not.toContain('hunter2');
  });

  it('an HTML report carries the log lines it is given, escaped', () => {
    const t = parseTimeline(readFileSync(path.join(import.meta.dirname, '../../test/fixtures/timelines/converging.ferry.jsonl'), 'utf8'));
    const html = reportHtml(t, 'x', { log: ['2026-12-01T10:00:05.000Z WARN  ssh hv1: <refused>'] });
    expect(html).toContain('Ferry log (1 lines while it ran)');
    expect(html).toContain('ssh hv1: &lt;refused&gt;');
    expect(reportHtml(t, 'x')).not.toContain('Ferry log');
  });
});
