/**
 * Finds the VMs on a host: Ferry's runtime dirs (`<runtimeDir>/<name>/`) and, read-only,
 * QMP sockets matching the host's configured globs (VMs Ferry did not start).
 */
import path from 'node:path';
import { DEFAULT_RUNTIME_DIR } from '../../../shared/model/host';
import type { HostConfig } from '../../../shared/model/host';
import type { VmInfo } from '../../../shared/model/vm';
import type { HostTransport } from '../transport/host-transport';
import { QmpClient } from '../qmp/qmp-client';
import { vmFiles } from './vm-launcher';
import type { ArgvRecord } from './vm-launcher';
import { FerryException } from '../../../shared/errors';

export function runtimeDirOf(host: HostConfig): string {
  return host.runtimeDir ?? DEFAULT_RUNTIME_DIR;
}

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
  const m = argValue(argv, '-m');
  if (!m) return undefined;
  const size = /(?:^|,)(?:size=)?(\d+(?:\.\d+)?)([kKmMgGtT]?)(?:,|$)/.exec(m);
  if (!size) return undefined;
  const n = Number(size[1]);
  const unit = (size[2] || 'M').toUpperCase();
  const mib = unit === 'K' ? n / 1024 : unit === 'G' ? n * 1024 : unit === 'T' ? n * 1024 * 1024 : n;
  return Math.round(mib * 100) / 100;
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
 * strings never hold a raw newline, so dropping the pretty-printer's newlines is safe).
 */
const LIST_SCRIPT = [
  'for f in "$1"/*/argv.json; do',
  '  [ -f "$f" ] || continue',
  '  d=${f%/argv.json}; n=${d##*/}',
  '  pid=$(cat "$d/pid" 2>/dev/null); st=-',
  '  case "$pid" in ""|*[!0-9]*) pid=-;; *) [ -r "/proc/$pid/stat" ] && st=$(sed "s/.*) //" "/proc/$pid/stat" | cut -c1);; esac',
  '  printf "%s\\t%s\\t%s\\t" "$n" "$pid" "$st"; tr -d "\\n" < "$f"; printf "\\n"',
  'done; true',
].join('\n');

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

  clear(): void {
    this.states.clear();
  }
}

const noCache = { get: (t: HostTransport, sockets: string[]) => runStateVia(t, sockets) };

export async function listVms(host: HostConfig, transport: HostTransport, cache: Pick<VmStateCache, 'get'> = noCache): Promise<VmInfo[]> {
  const runtimeDir = runtimeDirOf(host);
  const found = await transport.exec(['sh', '-c', LIST_SCRIPT, 'ferry-list', runtimeDir], { timeoutMs: 10_000 });
  if (found.code !== 0) throw new FerryException('EXEC_FAILED', `${transport.label}: cannot list ${runtimeDir}: ${found.stderr.trim() || `exit ${found.code}`}`);
  const rows = found.stdout.split('\n').filter(Boolean).sort();
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
    const info: VmInfo = { hostId: host.id, name, qmpSocket: files.qmpSocket, runState: 'stopped', managed: record !== undefined };
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
  for (const glob of host.qmpSocketGlobs ?? []) {
    // The pattern is an argument, expanded by the shell's globbing of "$1" unquoted in `for`:
    // parameter expansion never runs command substitution.
    const r = await transport.exec(['sh', '-c', 'for f in $1; do [ -S "$f" ] && printf "%s\\n" "$f"; done; true', 'ferry-glob', glob]);
    for (const sock of r.stdout.split('\n').filter(Boolean).sort()) {
      if (known.has(sock)) continue;
      known.add(sock);
      const st = await cache.get(transport, [sock], undefined);
      result.push({ hostId: host.id, name: st.name ?? path.posix.basename(path.posix.dirname(sock)), qmpSocket: sock, runState: st.state, managed: false });
    }
  }
  return result;
}
