/**
 * `/metrics` over HTTP, guarded: it listens on loopback only and answers only a request that
 * carries the metrics token as `Authorization: Bearer <token>` (Prometheus:
 * `authorization: { credentials_file: <configDir>/metrics.token }`). The metrics token is
 * not the console's: it reads numbers and nothing else, so a scrape config never holds the
 * key that drives migrations. It is made once (32 random bytes, file mode 0600) and kept, so
 * a scrape config stays valid across restarts.
 *
 * Two servers use this: the browser-mode console (`ferry serve --metrics`, same port as the
 * console) and the desktop app's own loopback listener (off by default).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { FerryException } from '../../../shared/errors';
import { PROMETHEUS_CONTENT_TYPE } from '../../../shared/report/metrics';
import { rootLog } from '../log';
import { MigrationMetrics } from './migration-metrics';
import type { MetricsSource } from './migration-metrics';

const log = rootLog.child('metrics');

export const METRICS_TOKEN_FILE = 'metrics.token';
/** The desktop app's default metrics port. */
export const DEFAULT_METRICS_PORT = 9479;
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function metricsTokenPath(configDir: string): string {
  return path.join(configDir, METRICS_TOKEN_FILE);
}

/** The metrics token in `<configDir>/metrics.token`, made (0600) on first use. */
export function loadOrCreateMetricsToken(configDir: string): string {
  const file = metricsTokenPath(configDir);
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (/^[A-Za-z0-9_-]{32,}$/.test(existing)) return existing;
    if (existing) throw new FerryException('CONFIG_CORRUPT', `${file} does not hold a metrics token (delete it and Ferry makes a new one)`, { path: file });
  } catch (e) {
    if (e instanceof FerryException) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new FerryException('IO_ERROR', `cannot read ${file}: ${(e as Error).message}`, { path: file });
  }
  const token = randomBytes(32).toString('base64url');
  mkdirSync(configDir, { recursive: true });
  // 'wx': never overwrite a token another process made meanwhile.
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateMetricsToken(configDir);
    throw new FerryException('IO_ERROR', `cannot write ${file}: ${(e as Error).message}`, { path: file });
  }
  try {
    writeSync(fd, `${token}\n`);
  } finally {
    closeSync(fd);
  }
  chmodSync(file, 0o600);
  log.info(`made a metrics token in ${file}`);
  return token;
}

function bearer(req: IncomingMessage): string | undefined {
  return /^Bearer\s+([A-Za-z0-9_-]+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
}

function same(a: string | undefined, b: string): boolean {
  if (!a) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Answers one `/metrics` request: 401 without the token, 405 for anything but GET/HEAD, else the text. */
export function serveMetrics(req: IncomingMessage, res: ServerResponse, render: () => string, token: string): void {
  const headers = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
  if (!same(bearer(req), token)) {
    res.writeHead(401, { ...headers, 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer realm="ferry-metrics"' });
    res.end('Unauthorized: /metrics needs "Authorization: Bearer <token>", the token in <configDir>/metrics.token\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...headers, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('Method not allowed\n');
    return;
  }
  let body: string;
  try {
    body = render();
  } catch (e) {
    log.error(`rendering /metrics failed: ${(e as Error).message}`);
    res.writeHead(500, { ...headers, 'content-type': 'text/plain; charset=utf-8' });
    res.end('metrics could not be rendered; see the Ferry log\n');
    return;
  }
  res.writeHead(200, { ...headers, 'content-type': PROMETHEUS_CONTENT_TYPE });
  res.end(req.method === 'HEAD' ? undefined : body);
}

export interface MetricsServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** A loopback listener that serves only `/metrics` (the desktop app's; the browser console serves it itself). */
export async function startMetricsServer(options: { render: () => string; token: string; port?: number; host?: string }): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host)) throw new FerryException('INVALID_REQUEST', `the metrics listener binds loopback only (127.0.0.1, ::1, localhost), not ${host}`);
  const server = createServer((req, res) => {
    if (new URL(req.url ?? '/', 'http://localhost').pathname !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('Not found: this listener serves /metrics only\n');
      return;
    }
    serveMetrics(req, res, options.render, options.token);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new FerryException('IO_ERROR', `cannot listen for /metrics on ${host}:${options.port ?? 0}: ${e.message}`)));
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}/metrics`,
    port,
    close: () => new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}

/**
 * The desktop app's `/metrics`: a collector over the console service and a loopback listener
 * with the persisted token. `close()` stops both.
 */
export async function startConsoleMetrics(service: MetricsSource & { configDir: string }, port = DEFAULT_METRICS_PORT): Promise<MetricsServer & { tokenFile: string }> {
  const token = loadOrCreateMetricsToken(service.configDir);
  const metrics = new MigrationMetrics(service);
  try {
    const server = await startMetricsServer({ render: () => metrics.render(), token, port });
    log.info(`serving ${server.url} (token in ${metricsTokenPath(service.configDir)})`);
    return {
      ...server,
      tokenFile: metricsTokenPath(service.configDir),
      async close() {
        metrics.dispose();
        await server.close();
      },
    };
  } catch (e) {
    metrics.dispose();
    throw e;
  }
}
