/**
 * Every Ferry process that can run migrations (the console, `ferry migrate`, `ferry recover`,
 * `ferry evacuate`, `ferry attach`) answers on a unix socket of its own,
 * `<configDir>/control/<pid>.sock` (directory 0700: this user only), so that `ferry control`
 * and `ferry migrations` in another shell act through the process that runs a migration —
 * the way virsh acts through libvirtd. One JSON request per line, one Result per line; only
 * the channels below, each validated by the console service against the contract.
 */
import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { promises as fs, readdirSync } from 'node:fs';
import path from 'node:path';
import { FerryException, toFerryError } from '../../shared/errors';
import type { Result } from '../../shared/result';
import { rootLog } from './log';

/** What another process may ask of this one. */
export const CONTROL_CHANNELS = ['migrations:list', 'migrations:control'] as const;
type ControlChannel = (typeof CONTROL_CHANNELS)[number];

const log = rootLog.child('control');
const MAX_LINE = 64 * 1024;

export function controlDir(configDir: string): string {
  return path.join(configDir, 'control');
}

export interface ControlServer {
  path: string;
  close(): Promise<void>;
}

/** Listens for this process; `invoke` is the console service's (validated, returns a Result). */
export async function startControlServer(configDir: string, invoke: (channel: string, request: unknown) => Promise<Result<unknown>>, describe: string): Promise<ControlServer> {
  const dir = controlDir(configDir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  await removeStale(dir);
  const sock = path.join(dir, `${process.pid}.sock`);
  await fs.rm(sock, { force: true });
  const server: Server = createServer((c: Socket) => {
    let buf = '';
    c.setEncoding('utf8');
    c.on('error', log.dropped('a control client', 'debug'));
    c.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) {
        c.end(`${JSON.stringify({ ok: false, error: { code: 'INVALID_REQUEST', message: 'request too long' } })}\n`);
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void answer(line).then((r) => c.write(`${JSON.stringify(r)}\n`));
      }
    });
  });
  const answer = async (line: string): Promise<Result<unknown>> => {
    let msg: { channel?: unknown; request?: unknown; who?: unknown };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch (e) {
      return { ok: false, error: { code: 'INVALID_REQUEST', message: `not JSON: ${(e as Error).message}` } };
    }
    if (!CONTROL_CHANNELS.includes(msg.channel as ControlChannel)) return { ok: false, error: { code: 'INVALID_REQUEST', message: `not offered here: ${JSON.stringify(msg.channel)}` } };
    const who = typeof msg.who === 'string' ? msg.who.slice(0, 100) : 'another process';
    if (msg.channel === 'migrations:control') log.info(`from ${who}: ${JSON.stringify(msg.request)}`);
    return invoke(String(msg.channel), msg.channel === 'migrations:control' ? { ...(msg.request as object), who } : msg.request);
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sock, () => resolve());
  });
  await fs.chmod(sock, 0o600);
  server.unref();
  log.info(`listening on ${sock} (${describe})`);
  return {
    path: sock,
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      await fs.rm(sock, { force: true });
    },
  };
}

/** Sockets of processes that are gone (killed with -9: nobody removed them). */
async function removeStale(dir: string): Promise<void> {
  for (const f of await fs.readdir(dir)) {
    const pid = Number(/^(\d+)\.sock$/.exec(f)?.[1]);
    if (!pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      // no such process: its socket is stale
      await fs.rm(path.join(dir, f), { force: true });
    }
  }
}

/** The pids of the Ferry processes answering in `configDir` (this one excluded). */
export function controlPeers(configDir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(controlDir(configDir));
  } catch {
    // no control directory: no Ferry process has answered here yet
    return [];
  }
  return names.map((f) => Number(/^(\d+)\.sock$/.exec(f)?.[1])).filter((pid) => pid > 0 && pid !== process.pid);
}

/** One request to the Ferry process `pid`; rejects when it does not answer within `timeoutMs`. */
export function askPeer(configDir: string, pid: number, channel: ControlChannel, request: unknown, who: string, timeoutMs = 5000): Promise<Result<unknown>> {
  return new Promise((resolve, reject) => {
    const c = connect(path.join(controlDir(configDir), `${pid}.sock`));
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new FerryException('IO_ERROR', `Ferry process ${pid} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    c.setEncoding('utf8');
    c.on('connect', () => c.write(`${JSON.stringify({ channel, request, who })}\n`));
    c.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      c.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as Result<unknown>);
      } catch (e) {
        reject(new FerryException('IO_ERROR', `Ferry process ${pid} answered garbage: ${toFerryError(e).message}`));
      }
    });
    c.on('error', (e) => {
      clearTimeout(timer);
      reject(new FerryException('IO_ERROR', `Ferry process ${pid}: ${e.message}`));
    });
  });
}
