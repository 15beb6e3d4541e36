/**
 * Browser mode: the console service behind HTTP + WebSocket, on 127.0.0.1 only. A random
 * token in the URL; the first page load trades it for an HttpOnly, SameSite=Strict cookie.
 * Every request without the token is refused, so is every WebSocket whose Origin is not
 * this server, and every message is validated against the contract before it reaches the
 * service (the service validates requests again against the channel's schema).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { EVENT_CHANNELS, isInvokeChannel } from '../../shared/contract';
import type { ConsoleService } from './console-service';
import { serveMetrics } from './metrics/metrics-http';

export interface BrowserServer {
  url: string;
  port: number;
  token: string;
  close(): Promise<void>;
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json', '.ico': 'image/x-icon', '.woff2': 'font/woff2',
};

const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

function sameToken(a: string | undefined, b: string): boolean {
  if (!a) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookieToken(req: IncomingMessage): string | undefined {
  return /(?:^|;\s*)ferry_token=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '')?.[1];
}

export interface BrowserServerOptions {
  staticDir: string;
  port?: number;
  host?: string;
  /** `ferry serve --metrics`: `/metrics` on the same port, guarded by its own token (metrics/metrics-http.ts). */
  metrics?: { render: () => string; token: string };
}

export async function startBrowserServer(service: ConsoleService, options: BrowserServerOptions): Promise<BrowserServer> {
  const host = options.host ?? '127.0.0.1';
  if (host !== '127.0.0.1' && host !== '::1' && host !== 'localhost') throw new Error('the browser mode listens on loopback only');
  const token = randomBytes(24).toString('base64url');
  let port = 0;
  const origins = () => new Set([`http://127.0.0.1:${port}`, `http://localhost:${port}`, `http://[::1]:${port}`]);

  const send = (res: ServerResponse, code: number, body: string, type = 'text/plain; charset=utf-8') => {
    res.writeHead(code, { 'content-type': type, 'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'cache-control': 'no-store' });
    res.end(body);
  };

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', `http://${host}`);
    if (options.metrics && url.pathname === '/metrics') return serveMetrics(req, res, options.metrics.render, options.metrics.token);
    const queryToken = url.searchParams.get('token') ?? undefined;
    const authed = sameToken(queryToken, token) || sameToken(cookieToken(req), token);
    if (!authed) return send(res, 403, 'Forbidden: open the URL Ferry printed (it carries the access token).\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'Method not allowed\n');
    let rel = decodeURIComponent(url.pathname);
    if (rel === '/' || rel === '') rel = '/index.html';
    const file = path.resolve(options.staticDir, `.${rel}`);
    if (!file.startsWith(path.resolve(options.staticDir) + path.sep)) return send(res, 404, 'Not found\n');
    let body: Buffer;
    try {
      body = await fs.readFile(file);
    } catch {
      return send(res, 404, rel === '/index.html' ? 'The console is not built: run npm run build\n' : 'Not found\n');
    }
    const headers: Record<string, string> = {
      'content-type': MIME[path.extname(file)] ?? 'application/octet-stream',
      'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'cache-control': 'no-store',
    };
    if (queryToken) headers['set-cookie'] = `ferry_token=${token}; HttpOnly; SameSite=Strict; Path=/`;
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  });

  /** How long an event may wait for others to share its WebSocket message. */
  const EVENT_BATCH_MS = 10;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 1024 * 1024,
  });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', `http://${host}`);
    const authed = sameToken(url.searchParams.get('token') ?? undefined, token) || sameToken(cookieToken(req), token);
    const origin = req.headers.origin;
    if (url.pathname !== '/ws' || !authed || !origin || !origins().has(origin)) {
      socket.write('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  const clients = new Set<WebSocket>();
  // Events leave in batches: each WebSocket message is a write to a TCP socket, which on
  // loopback costs the console ~100 µs of kernel time, and 8 migrations at 10 Hz are 80
  // samples a second. Migrations sample on the same clock ticks, so their samples arrive
  // within milliseconds of one another and a batch waits at most EVENT_BATCH_MS.
  let batch: string[] = [];
  let flushTimer: NodeJS.Timeout | undefined;
  const flush = () => {
    flushTimer = undefined;
    const msg = `{"type":"events","events":[${batch.join(',')}]}`;
    batch = [];
    for (const c of clients) if (c.readyState === c.OPEN) c.send(msg);
  };
  const offs = EVENT_CHANNELS.map((channel) =>
    service.on(channel, (payload) => {
      if (clients.size === 0) return;
      batch.push(JSON.stringify({ channel, payload }));
      flushTimer ??= setTimeout(flush, EVENT_BATCH_MS);
    }));

  wss.on('connection', (ws) => {
    clients.add(ws);
    ws.on('close', () => clients.delete(ws));
    ws.on('message', async (data, isBinary) => {
      let msg: unknown;
      try {
        if (isBinary) throw new Error('binary');
        msg = JSON.parse(data.toString());
      } catch {
        ws.send(JSON.stringify({ type: 'error', error: { code: 'INVALID_REQUEST', message: 'messages are JSON text' } }));
        return;
      }
      const m = msg as { type?: unknown; id?: unknown; channel?: unknown; request?: unknown };
      if (m?.type !== 'invoke' || typeof m.id !== 'number' || !Number.isSafeInteger(m.id) || !isInvokeChannel(m.channel)) {
        ws.send(JSON.stringify({ type: 'result', id: typeof m?.id === 'number' ? m.id : null, result: { ok: false, error: { code: 'INVALID_REQUEST', message: `not a valid invoke message${typeof m?.channel === 'string' ? ` (channel ${JSON.stringify(m.channel)})` : ''}` } } }));
        return;
      }
      const result = await service.invoke(m.channel, m.request);
      // Events sent before the reply still arrive before it (a history reply counts on that).
      if (flushTimer) {
        clearTimeout(flushTimer);
        flush();
      }
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'result', id: m.id, result }));
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  port = (server.address() as { port: number }).port;
  return {
    url: `http://${host}:${port}/?token=${token}`,
    port,
    token,
    async close() {
      for (const off of offs) off();
      if (flushTimer) clearTimeout(flushTimer);
      for (const c of clients) c.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
