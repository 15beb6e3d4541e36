/**
 * A real lab migration (QEMU + demo guest) scraped over HTTP while it runs: the KubeVirt
 * gauges must move. Then its recorded timeline, exported as OpenMetrics, is imported by
 * Prometheus's own promtool (Debian's `prometheus` package), as are the recorded fixtures
 * and the imports; where promtool is not installed that test is skipped and says why.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { startConsoleMetrics } from './metrics-http';
import { readTimeline, timelineToOpenMetrics } from '../recorder/timeline-reader';

type Series = { name: string; labels: Record<string, string>; value: number };

function scrape(url: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function parse(text: string): Series[] {
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(l)!;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
    return { name: m[1]!, labels, value: Number(m[3]) };
  });
}

const promtool = (() => {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    // no promtool on this machine: the import check is skipped, saying so
    return false;
  }
})();

const work = mkdtempSync(path.join(tmpdir(), 'ferry-metrics-int-'));
let recorded: string | undefined;

describe('/metrics of a live lab migration', () => {
  let lab: TestLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('is scraped while the migration runs: processed bytes rise, remaining falls, rates and labels are real', async () => {
    lab = await makeTestLab();
    await lab.up({ workload: { wsMiB: 96, rateMiBs: 20 } });
    const metrics = await startConsoleMetrics(lab.service, 0);
    try {
      const token = readFileSync(metrics.tokenFile, 'utf8').trim();
      expect((await scrape(metrics.url)).status).toBe(401);
      const m = await lab.service.engine.start({ vm: 'demo', from: 'lab-a', to: 'lab-b', maxBandwidth: 30_000_000, downtimeLimitMs: 50 });
      const scrapes: Series[][] = [];
      let done = false;
      const finished = m.whenDone().finally(() => (done = true));
      while (!done) {
        const r = await scrape(metrics.url, token);
        expect(r.status).toBe(200);
        scrapes.push(parse(r.body));
        await new Promise((res) => setTimeout(res, 200));
      }
      const final = await finished;
      expect(final.outcome).toBe('completed');
      const of = (s: Series[], name: string) => s.find((x) => x.name === name && x.labels.migration_name === m.id);
      const live = scrapes.filter((s) => of(s, 'kubevirt_vmi_migration_data_processed_bytes'));
      console.log(`${scrapes.length} scrapes, ${live.length} during the RAM copy`);
      expect(live.length).toBeGreaterThanOrEqual(3);
      const processed = live.map((s) => of(s, 'kubevirt_vmi_migration_data_processed_bytes')!.value);
      const remaining = live.map((s) => of(s, 'kubevirt_vmi_migration_data_remaining_bytes')?.value).filter((v): v is number => v !== undefined);
      expect(processed.at(-1)!).toBeGreaterThan(processed[0]!);
      for (let i = 1; i < processed.length; i++) expect(processed[i]!).toBeGreaterThanOrEqual(processed[i - 1]!);
      expect(Math.min(...remaining)).toBeLessThan(Math.max(...remaining));
      expect(live.some((s) => (of(s, 'kubevirt_vmi_migration_memory_transfer_rate_bytes')?.value ?? 0) > 1_000_000)).toBe(true);
      expect(live.some((s) => (of(s, 'kubevirt_vmi_migration_dirty_memory_rate_bytes')?.value ?? 0) > 0)).toBe(true);
      expect(live.some((s) => (of(s, 'ferry_migration_pass')?.value ?? 0) >= 1)).toBe(true);
      const total = of(live[0]!, 'kubevirt_vmi_migration_data_total_bytes')!.value;
      expect(total).toBeGreaterThan(96 * 1024 * 1024);
      expect(of(live[0]!, 'kubevirt_vmi_migration_data_processed_bytes')!.labels).toEqual({ name: 'demo', migration_name: m.id, source: 'lab-a', destination: 'lab-b', node: 'lab-a' });
      expect(live.some((s) => s.find((x) => x.name === 'kubevirt_vmi_migrations_in_running_phase')!.value === 1)).toBe(true);
      expect(live.some((s) => s.some((x) => x.name === 'ferry_migration_phase' && x.labels.phase === 'precopy' && x.value === 1))).toBe(true);
      // After the end: the lifecycle stays, the progress gauges are gone.
      const after = parse((await scrape(metrics.url, token)).body);
      expect(of(after, 'kubevirt_vmi_migration_succeeded')!.value).toBe(1);
      expect(of(after, 'kubevirt_vmi_migration_failed')!.value).toBe(0);
      expect(of(after, 'kubevirt_vmi_migration_end_time_seconds')!.value).toBeGreaterThan(of(after, 'kubevirt_vmi_migration_start_time_seconds')!.value);
      expect(of(after, 'kubevirt_vmi_migration_last_downtime_seconds')!.value).toBe(final.downtimeMs! / 1000);
      expect(of(after, 'kubevirt_vmi_migration_data_processed_bytes')).toBeUndefined();
      // The recording it made reads back with every line valid.
      expect(readTimeline(m.timelineFile).problems).toEqual([]);
      recorded = path.join(work, 'lab.ferry.jsonl');
      writeFileSync(recorded, readFileSync(m.timelineFile));
    } finally {
      await metrics.close();
    }
  });

  if (!promtool) console.log('skipping the promtool import test: promtool is not installed (Debian: apt-get install prometheus)');
  it.skipIf(!promtool)('imports into a Prometheus TSDB with promtool: the lab migration, the fixtures, the imports', () => {
    expect(recorded, 'the lab migration test above recorded a timeline').toBeDefined();
    const inputs = [recorded!, ...['converging', 'postcopy'].map((n) => path.resolve(`test/fixtures/timelines/${n}.ferry.jsonl`)),
      path.resolve('test/fixtures/imports/proxmox-migrate-100.log'), path.resolve('test/fixtures/imports/guestperf-precopy.json')];
    for (const [i, file] of inputs.entries()) {
      const t = readTimeline(file);
      const om = path.join(work, `${i}.om`);
      writeFileSync(om, timelineToOpenMetrics(t));
      const db = path.join(work, `db-${i}`);
      execFileSync('promtool', ['tsdb', 'create-blocks-from', 'openmetrics', om, db], { stdio: 'pipe' });
      mkdirSync(path.join(db, 'wal'), { recursive: true }); // tsdb dump opens the head too
      const dump = execFileSync('promtool', ['tsdb', 'dump', '--match', '{__name__="kubevirt_vmi_migration_data_processed_bytes"}', db], { encoding: 'utf8', maxBuffer: 64 << 20 });
      const points = dump.trim().split('\n').filter(Boolean).map((l) => {
        const m = /\} (\S+) (\d+)$/.exec(l)!;
        return { value: Number(m[1]), t: Number(m[2]) };
      });
      const want = t.samples.filter((s) => s.transferredBytes !== undefined);
      // Same values at the same milliseconds (later value kept where two samples share one).
      const byT = new Map(want.map((s) => [s.t, s.transferredBytes!]));
      expect(points.length, file).toBe(byT.size);
      for (const p of points) expect(p.value, `${file} at ${p.t}`).toBe(byT.get(p.t));
      expect(dump, file).toContain(`migration_name="${t.header!.migrationId}"`);
    }
    // Without the closing # EOF promtool refuses the file: the export's ending matters.
    const cut = path.join(work, 'cut.om');
    writeFileSync(cut, timelineToOpenMetrics(readTimeline(inputs[1]!)).replace(/# EOF\n$/, ''));
    expect(() => execFileSync('promtool', ['tsdb', 'create-blocks-from', 'openmetrics', cut, path.join(work, 'db-cut')], { stdio: 'pipe' })).toThrow();
  });
});
