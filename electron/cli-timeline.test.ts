/**
 * `ferry timeline --openmetrics`, `ferry report` and `ferry compare` on recorded timelines
 * and on imports (Proxmox task log, guestperf report): no lab, no QEMU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ferry } from '../test/support/cli-main';

const PROXMOX = path.resolve('test/fixtures/imports/proxmox-migrate-100.log');
const GUESTPERF = path.resolve('test/fixtures/imports/guestperf-precopy.json');
const FERRY = path.resolve('test/fixtures/timelines/converging.ferry.jsonl');

describe('ferry timeline / report / compare on timelines and imports', () => {
  let dir: string;
  let savedConfig: string | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ferry-cli-tl-'));
    savedConfig = process.env.XDG_CONFIG_HOME;
    process.env.XDG_CONFIG_HOME = path.join(dir, 'config');
  });
  afterAll(() => {
    if (savedConfig === undefined) delete process.env.XDG_CONFIG_HOME;
    else process.env.XDG_CONFIG_HOME = savedConfig;
    rmSync(dir, { recursive: true, force: true });
  });

  it('exports OpenMetrics ending in # EOF, from a Ferry timeline and from a Proxmox log', async () => {
    const a = await ferry('timeline', FERRY, '--openmetrics');
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/^# TYPE kubevirt_vmi_migration_data_processed_bytes gauge\n/);
    expect(a.out.endsWith('# EOF\n')).toBe(true);
    const p = await ferry('timeline', PROXMOX, '--openmetrics');
    expect(p.code).toBe(0);
    expect(p.out).toContain('kubevirt_vmi_migration_memory_transfer_rate_bytes{name="100",migration_name="proxmox-100-20240305T101500",source="?",destination="pve2",node="?"} 104018739 1709633704.000');
    const csv = await ferry('timeline', GUESTPERF, '--csv');
    expect(csv.code).toBe(0);
    expect(csv.out.trim().split('\n')).toHaveLength(7);
  });

  it('refuses bad usage with exit 2 and a file that is no timeline with exit 1', async () => {
    const both = await ferry('timeline', FERRY, '--csv', '--openmetrics');
    expect(both.code).toBe(2);
    expect(both.err).toContain('timeline needs exactly one of --csv, --json or --openmetrics');
    const junk = path.join(dir, 'junk.txt');
    writeFileSync(junk, 'hello\n');
    const j = await ferry('report', junk, '-o', path.join(dir, 'j.html'));
    expect(j.code).toBe(1);
    expect(j.err).toContain('junk.txt is not a Ferry timeline');
  });

  it('writes an HTML report of a Proxmox log, and says what the reader noticed on stderr', async () => {
    const out = path.join(dir, 'p.html');
    const r = await ferry('report', PROXMOX, '-o', out);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`wrote ${out}`);
    const html = readFileSync(out, 'utf8');
    expect(html).toContain('Ferry report: 100 ? → pve2');
    expect(html).toContain('Imported from a Proxmox VE migration task log (proxmox-migrate-100.log)');
    const failed = await ferry('report', path.resolve('test/fixtures/imports/proxmox-failed.log'), '-o', path.join(dir, 'f.html'));
    expect(failed.code).toBe(0);
    expect(failed.err).toMatch(/proxmox-failed\.log: 3 lines of the task log could not be read and were left out: line 5/);
  });

  it('compares a guestperf run, a Proxmox run and a Ferry run in one file', async () => {
    const out = path.join(dir, 'c.html');
    const r = await ferry('compare', GUESTPERF, PROXMOX, FERRY, '-o', out);
    expect(r.code).toBe(0);
    const html = readFileSync(out, 'utf8');
    expect(html).toContain('Ferry comparison: guestperf-precopy vs proxmox-migrate-100 vs converging');
    expect(html).toMatch(/<tr><th>Downtime<\/th><td>187 ms<\/td><td>61 ms<\/td><td>\d+ ms<\/td><\/tr>/);
  });
});
