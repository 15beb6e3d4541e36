/**
 * Finds the VMs on a host: Ferry's runtime dirs (`<runtimeDir>/<name>/`) and QMP sockets
 * matching the host's configured globs (QEMUs Ferry did not start, adopted: adopted-qemu.ts).
 */
import path from 'node:path';
import type { HostConfig } from '../../../shared/model/host';
import type { VmInfo } from '../../../shared/model/vm';
import type { HostTransport } from '../transport/host-transport';
import { QmpClient } from '../qmp/qmp-client';
import { runtimeDirOf, vmFiles } from './vm-launcher';
import type { ArgvRecord } from './vm-launcher';
import { FerryException } from '../../../shared/errors';
import { adoptedName, globbedQmpSockets, inspectQmpSocket } from './adopted-qemu';
import type { QmpSocketFacts } from './adopted-qemu';
import { memoryKiBOfArgv } from './qemu-argv';
import { rootLog } from '../log';

const log = rootLog.child('vm-discovery');

export { runtimeDirOf };

/** query-status through the first monitor that answers; 'busy' when each has a client. */
async function runStateVia(transport: HostTransport, sockets: string[]): Promise<{ state: string; name?: string }> {
  for (const sock of sockets) {
    try {
      const qmp = await QmpClient.connect(await transport.openUnix(sock), { handshakeTimeoutMs: 1500, commandTimeoutMs: 3000 });
      try {
        const status = await qmp.execute<{ status: string }>('query-status');
        const name = await qmp.execute<{ name?: string }>('query-name').catch(() => ({ name: undefined }));
        return name.name ? { state: status.status, name: name.name } : { state: status.status };
      } finally {
        qmp.close();
      }
    } catch {
      // next monitor
    }
  }
  return { state: 'busy' };
}

function argValue(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

export function memoryMiBFromArgv(argv: readonly string[]): number | undefined {
  const kib = memoryKiBOfArgv(argv);
  return kib === undefined ? undefined : Math.round((kib / 1024) * 100) / 100;
}

export function vcpusFromArgv(argv: readonly string[]): number | undefined {
  const s = argValue(argv, '-smp');
  if (!s) return 1;
  const m = /(?:^|,)(?:cpus=)?(\d+)(?:,|$)/.exec(s);
  return m ? Number(m[1]) : undefined;
}

/**
 * One shell pass over the runtime dir: for each `<dir>/<name>/argv.json`, the name, the pid
 * in its pid file, that process's state letter, and the record itself on one line (JSON
 * strings never hold a raw newline, so dropping the pretty-printer's newlines is safe). Only
 * shell builtins but the one `tr` per VM: the board lists every few seconds, and a host with
 * 50 VMs should not fork 200 processes each time.
 */
const LIST_SCRIPT = [
  'for f in "$1"/*/argv.json; do',
  '  [ -f "$f" ] || continue',
  '  d=${f%/argv.json}; n=${d##*/}; pid=; st=-',
  '  [ -r "$d/pid" ] && { read -r pid < "$d/pid" || :; }',
  '  case "$pid" in',
  '    ""|*[!0-9]*) pid=-;;',
  '    *) if [ -r "/proc/$pid/stat" ] && read -r s < "/proc/$pid/stat"; then s=${s##*) }; st=${s%"${s#?}"}; fi;;',
  '  esac',
  '  printf "%s\\t%s\\t%s\\t" "$n" "$pid" "$st"; tr -d "\\n" < "$f"; printf "\\n"',
  'done; true',
].join('\n');

/** The runtime dir's rows (name, pid, state letter, record; tab-separated) as LIST_SCRIPT prints them, by one shell on the host. */
export async function runtimeRowsByShell(transport: HostTransport, runtimeDir: string): Promise<string[]> {
  const found = await transport.exec(['sh', '-c', LIST_SCRIPT, 'ferry-list', runtimeDir], { timeoutMs: 10_000 });
  if (found.code !== 0) throw new FerryException('EXEC_FAILED', `${transport.label}: cannot list ${runtimeDir}: ${found.stderr.trim() || `exit ${found.code}`}`);
  return found.stdout.split('\n').filter(Boolean).sort();
}

/**
 * The same rows read as files, with no process: on this machine a spawn forks the whole
 * console (milliseconds each), and 20 local hosts listed every 5 s made that most of its
 * idle CPU. A transport without `readDir` gets the shell.
 */
export async function runtimeRowsByFiles(transport: HostTransport & Required<Pick<HostTransport, 'readDir'>>, runtimeDir: string): Promise<string[]> {
  const text = (p: string) => transport.readFile(p).then((b) => b.toString('utf8'), (e: unknown) => {
    if (e instanceof FerryException && e.code === 'NOT_FOUND') return undefined;
    throw e;
  });
  let names: string[];
  try {
    names = await transport.readDir(runtimeDir);
  } catch (e) {
    if (e instanceof FerryException && e.code === 'NOT_FOUND') return []; // no runtime dir yet: no VMs (the shell's glob matches nothing)
    throw e;
  }
  const rows = await Promise.all(names.filter((n) => !n.startsWith('.')).map(async (n) => {
    const d = `${runtimeDir.replace(/\/+$/, '')}/${n}`;
    const record = await text(`${d}/argv.json`).catch((e: unknown) => {
      if (e instanceof FerryException && /^(EISDIR|ENOTDIR)$/.test(String(e.details?.errno))) return undefined; // not a VM directory, or its argv.json not a file: the shell skips it too
      throw e;
    });
    if (record === undefined) return undefined;
    const first = ((await text(`${d}/pid`).catch(log.dropped(`${n}'s pid file (unreadable: listed as not running, as the shell's [ -r ] does)`, 'debug'))) ?? '').split('\n')[0]!.trim();
    const pid = /^\d+$/.test(first) ? first : '-';
    let st = '-';
    if (pid !== '-') {
      const stat = await text(`/proc/${pid}/stat`).catch(log.dropped(`/proc/${pid}/stat (the process went away meanwhile: no state, as in the shell)`, 'debug'));
      if (stat) st = stat.slice(stat.lastIndexOf(') ') + 2, stat.lastIndexOf(') ') + 3) || '-';
    }
    return `${n}\t${pid}\t${st}\t${record.replace(/\n/g, '')}`;
  }));
  return rows.filter((r): r is string => r !== undefined).sort();
}

/**
 * QEMU run states learned over QMP, kept for a while: the board refreshes every few seconds
 * and must not open a QMP connection per VM each time. Keyed by socket and pid, so a VM
 * started again (new pid) is asked afresh; `clear()` when Ferry itself changed a VM's state.
 */
export class VmStateCache {
  private readonly states = new Map<string, { at: number; state: string; name?: string }>();
  constructor(readonly ttlMs = 15_000) {}

  async get(transport: HostTransport, sockets: string[], pid: number | undefined): Promise<{ state: string; name?: string }> {
    const key = `${transport.label}|${sockets[0]}|${pid ?? ''}`;
    const hit = this.states.get(key);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.name ? { state: hit.state, name: hit.name } : { state: hit.state };
    const st = await runStateVia(transport, sockets);
    if (st.state !== 'busy') this.states.set(key, { at: Date.now(), ...st });
    if (this.states.size > 2000) this.states.clear();
    return st;
  }

  private readonly sockets = new Map<string, { at: number; facts: QmpSocketFacts }>();

  /** What a globbed QMP socket's QEMU is (an adopted QEMU: run state, name, process, argv), kept like the run states. */
  async socketFacts(transport: HostTransport, socket: string): Promise<QmpSocketFacts> {
    const key = `${transport.label}|${socket}`;
    const hit = this.sockets.get(key);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.facts;
    const facts = await inspectQmpSocket(transport, socket);
    if (facts.runState !== 'busy') this.sockets.set(key, { at: Date.now(), facts });
    if (this.sockets.size > 2000) this.sockets.clear();
    return facts;
  }

  /** Bumped by every clear(): a listing begun under an older generation may be stale. */
  generation = 0;

  clear(): void {
    this.states.clear();
    this.sockets.clear();
    this.generation++;
  }
}

const noCache = { get: (t: HostTransport, sockets: string[]) => runStateVia(t, sockets), socketFacts: inspectQmpSocket };

export async function listVms(host: HostConfig, transport: HostTransport, cache: Pick<VmStateCache, 'get' | 'socketFacts'> = noCache): Promise<VmInfo[]> {
  const runtimeDir = runtimeDirOf(host);
  const rows = transport.readDir ? await runtimeRowsByFiles(transport as Parameters<typeof runtimeRowsByFiles>[0], runtimeDir) : await runtimeRowsByShell(transport, runtimeDir);
  const managed = await Promise.all(rows.map(async (row): Promise<VmInfo | undefined> => {
    const [name = '', pidText = '-', stateLetter = '-', ...rest] = row.split('\t');
    let files;
    try {
      files = vmFiles(runtimeDir, name);
    } catch {
      return undefined; // not a name Ferry would have created
    }
    let record: ArgvRecord | undefined;
    try {
      const r = JSON.parse(rest.join('\t')) as ArgvRecord;
      if (r.version === 1 && Array.isArray(r.argv)) record = r;
    } catch {
      record = undefined; // not a record Ferry wrote: listed, but not migratable
    }
    const pid = /^\d+$/.test(pidText) ? Number(pidText) : undefined;
    const alive = pid !== undefined && stateLetter !== '-' && stateLetter !== 'Z' && stateLetter !== 'X';
    const info: VmInfo = { hostId: host.id, name, qmpSocket: files.qmpSocket, runState: 'stopped', managed: record !== undefined, manager: 'ferry' };
    if (alive) {
      info.pid = pid;
      info.runState = (await cache.get(transport, [files.qmpSocket, files.auxQmpSocket], pid)).state;
    }
    if (record) {
      const mem = memoryMiBFromArgv(record.argv);
      const cpus = vcpusFromArgv(record.argv);
      if (mem !== undefined) info.memoryMiB = mem;
      if (cpus !== undefined) info.vcpus = cpus;
    }
    return info;
  }));
  const result = managed.filter((v): v is VmInfo => v !== undefined);
  const known = new Set(result.flatMap((v) => [v.qmpSocket, `${path.posix.dirname(v.qmpSocket)}/qmp-aux.sock`]));
  // QEMUs started by something else: adopted when their process's command line can be read.
  for (const sock of await globbedQmpSockets(host, transport)) {
    if (known.has(sock)) continue;
    known.add(sock);
    const f = await cache.socketFacts(transport, sock);
    const info: VmInfo = { hostId: host.id, name: adoptedName(f), qmpSocket: sock, runState: f.runState, managed: f.argv !== undefined, manager: 'qemu' };
    if (f.pid !== undefined) info.pid = f.pid;
    if (f.argv) {
      const mem = memoryMiBFromArgv(f.argv);
      const cpus = vcpusFromArgv(f.argv);
      if (mem !== undefined) info.memoryMiB = mem;
      if (cpus !== undefined) info.vcpus = cpus;
    }
    result.push(info);
  }
  return result;
}
