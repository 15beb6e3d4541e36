/**
 * The metrics collector over a stand-in event source (the real console service is in
 * metrics.int.test.ts), and the guard of `/metrics`: loopback only, its own bearer token.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MigrationMetrics } from './migration-metrics';
import type { MetricsSource } from './migration-metrics';
import { loadOrCreateMetricsToken, metricsTokenPath, startMetricsServer } from './metrics-http';
import type { MetricsServer } from './metrics-http';
import { startBrowserServer } from '../browser-server';
import type { BrowserServer } from '../browser-server';
import { ConsoleService } from '../console-service';
import type { EventChannel, EventPayload, MigrationSummaryPayload } from '../../../shared/contract';

class StandIn implements MetricsSource {
  private readonly listeners = new Map<string, ((p: unknown) => void)[]>();
  running: MigrationSummaryPayload[] = [];
  engine = { list: () => this.running };
  on<C extends EventChannel>(channel: C, listener: (payload: EventPayload<C>) => void): () => void {
    const ls = this.listeners.get(channel) ?? [];
    ls.push(listener as (p: unknown) => void);
    this.listeners.set(channel, ls);
    return () => this.listeners.set(channel, (this.listeners.get(channel) ?? []).filter((l) => l !== listener));
  }
  emit<C extends EventChannel>(channel: C, payload: EventPayload<C>): void {
    for (const l of this.listeners.get(channel) ?? []) l(payload);
  }
}

const summary = (id: string): MigrationSummaryPayload => ({ id, plan: { vm: 'demo', from: 'lab-a', to: 'lab-b', downtimeLimitMs: 80 }, phase: 'preflight', startedAt: 1_700_000_000_000, timeline: `${id}.ferry.jsonl` });
const value = (text: string, name: string, extra = '') => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(extra));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : undefined;
};

function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the metrics collector', () => {
  it('follows a migration from its events: samples move the gauges, the end keeps the lifecycle', () => {
    const src = new StandIn();
    const metrics = new MigrationMetrics(src);
    src.emit('migration:started', summary('m1'));
    src.emit('migration:phase', { id: 'm1', phase: 'precopy', from: 'setup' });
    src.emit('migration:sample', { id: 'm1', sample: { t: 1, elapsedMs: 1, status: 'active', phase: 'precopy', transferredBytes: 100, remainingBytes: 900, pass: 1 } });
    let text = metrics.render();
    expect(value(text, 'kubevirt_vmi_migration_data_processed_bytes')).toBe(100);
    expect(value(text, 'ferry_migration_downtime_limit_ms')).toBe(80);
    expect(text).toContain('kubevirt_vmi_migrations_in_running_phase 1\n');
    src.emit('migration:sample', { id: 'm1', sample: { t: 2, elapsedMs: 2, status: 'active', phase: 'precopy', transferredBytes: 700, remainingBytes: 300, pass: 2 } });
    text = metrics.render();
    expect(value(text, 'kubevirt_vmi_migration_data_processed_bytes')).toBe(700);
    expect(value(text, 'ferry_migration_pass')).toBe(2);
    expect(value(text, 'ferry_migration_phase', 'phase="precopy"')).toBe(1);
    src.emit('migration:ended', { id: 'm1', final: { outcome: 'completed', downtimeMs: 30 } });
    text = metrics.render();
    expect(value(text, 'kubevirt_vmi_migration_data_processed_bytes')).toBeUndefined();
    expect(value(text, 'kubevirt_vmi_migration_succeeded')).toBe(1);
    expect(value(text, 'ferry_migration_phase', 'phase="completed"')).toBe(1);
    expect(value(text, 'ferry_migration_phase', 'phase="precopy"')).toBe(0);
    expect(text).toContain('kubevirt_vmi_migrations_in_running_phase 0\n');
    // a late sample after the end changes nothing
    src.emit('migration:sample', { id: 'm1', sample: { t: 3, elapsedMs: 3, status: 'completed', phase: 'activation', transferredBytes: 999 } });
    expect(metrics.render()).toBe(text);
    metrics.dispose();
    src.emit('migration:started', summary('m2'));
    expect(metrics.render()).not.toContain('m2');
  });

  it('picks up migrations that were running before it started, and forgets the oldest ended ones', () => {
    const src = new StandIn();
    src.running = [{ ...summary('old'), phase: 'precopy', last: { t: 5, elapsedMs: 5, status: 'active', phase: 'precopy', transferredBytes: 42 } }];
    const metrics = new MigrationMetrics(src, 2);
    expect(value(metrics.render(), 'kubevirt_vmi_migration_data_processed_bytes', 'migration_name="old"')).toBe(42);
    for (const id of ['a', 'b', 'c']) {
      src.emit('migration:started', summary(id));
      src.emit('migration:ended', { id, final: { outcome: 'failed', reason: 'x' } });
    }
    const text = metrics.render();
    expect(text).not.toContain('migration_name="a"');
    expect(text).toContain('migration_name="b"');
    expect(text).toContain('migration_name="c"');
    expect(text).toContain('migration_name="old"');
  });
});

describe('the /metrics guard', () => {
  let dir: string;
  let server: MetricsServer | undefined;
  let browser: BrowserServer | undefined;
  let service: ConsoleService | undefined;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ferry-metrics-'));
  });
  afterEach(async () => {
    await server?.close();
    await browser?.close();
    await service?.dispose();
    server = browser = service = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps one token, readable by its owner only, and refuses a file that holds something else', () => {
    const token = loadOrCreateMetricsToken(dir);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(metricsTokenPath(dir)).mode & 0o777).toBe(0o600);
    expect(loadOrCreateMetricsToken(dir)).toBe(token);
    writeFileSync(metricsTokenPath(dir), 'not a token\n');
    expect(() => loadOrCreateMetricsToken(dir)).toThrow(/does not hold a metrics token/);
  });

  it('answers only with the bearer token, only GET, only /metrics, and listens on loopback only', async () => {
    const token = loadOrCreateMetricsToken(dir);
    server = await startMetricsServer({ render: () => 'ferry_test 1\n', token });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const none = await get(server.url);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="ferry-metrics"');
    expect(none.body).not.toContain('ferry_test');
    expect((await get(server.url, { authorization: `Bearer ${token.slice(0, -1)}x` })).status).toBe(401);
    expect((await get(`${server.url}?token=${token}`)).status).toBe(401);
    const ok = await get(server.url, { authorization: `Bearer ${token}` });
    expect(ok).toMatchObject({ status: 200, body: 'ferry_test 1\n' });
    expect(ok.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect((await get(server.url, { authorization: `Bearer ${token}` }, 'POST')).status).toBe(405);
    expect((await get(server.url.replace('/metrics', '/'), { authorization: `Bearer ${token}` })).status).toBe(404);
    await expect(startMetricsServer({ render: () => '', token, host: '0.0.0.0' })).rejects.toThrow(/loopback only/);
  });

  it('is served by the browser console with --metrics, behind its own token, not the console\'s', async () => {
    const staticDir = path.join(dir, 'static');
    mkdirSync(staticDir);
    writeFileSync(path.join(staticDir, 'index.html'), '<!doctype html><title>t</title>');
    service = new ConsoleService({ configDir: path.join(dir, 'cfg'), builtinHosts: [] });
    const metrics = new MigrationMetrics(service);
    const token = loadOrCreateMetricsToken(service.configDir);
    browser = await startBrowserServer(service, { staticDir, metrics: { render: () => metrics.render(), token } });
    const url = `http://127.0.0.1:${browser.port}/metrics`;
    expect((await get(url)).status).toBe(401);
    expect((await get(`${url}?token=${browser.token}`)).status).toBe(401);
    expect((await get(url, { authorization: `Bearer ${browser.token}` })).status).toBe(401);
    const ok = await get(url, { authorization: `Bearer ${token}` });
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('kubevirt_vmi_migrations_in_running_phase 0');
    metrics.dispose();
    await browser.close();
    // Without --metrics there is no /metrics: the console's own guard answers.
    browser = await startBrowserServer(service, { staticDir });
    expect((await get(`http://127.0.0.1:${browser.port}/metrics`, { authorization: `Bearer ${token}` })).status).toBe(403);
  });
});
