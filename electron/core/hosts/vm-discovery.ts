/**
 * Finds the VMs on a host: Ferry's runtime dirs (`<runtimeDir>/<name>/`) and QMP sockets
 * matching the host's configured globs (QEMUs Ferry did not start, adopted: adopted-qemu.ts).
 */
import path from 'node:path';
import type { HostConfig } from '../../../shared/model/host';
import type { VmInfo } from '../../../shared/model/vm';
import type { HostTransport } from '../transport/host-transport';
import { QmpClient } from '../qmp/qmp-client';
import { processAlive, readArgvRecord, readPid, runtimeDirOf, vmFiles } from './vm-launcher';
import { adoptedName, globbedQmpSockets, inspectQmpSocket } from './adopted-qemu';
import { memoryKiBOfArgv } from './qemu-argv';

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

export async function listVms(host: HostConfig, transport: HostTransport): Promise<VmInfo[]> {
  const runtimeDir = runtimeDirOf(host);
  const found = await transport.exec(['find', runtimeDir, '-mindepth', '2', '-maxdepth', '2', '-name', 'argv.json', '-type', 'f'], { timeoutMs: 10_000 });
  const dirs = found.stdout.split('\n').filter(Boolean).map((f) => path.posix.dirname(f)).sort();
  const managed = await Promise.all(dirs.map(async (dir): Promise<VmInfo | undefined> => {
    const name = path.posix.basename(dir);
    let files;
    try {
      files = vmFiles(runtimeDir, name);
    } catch {
      return undefined; // not a name Ferry would have created
    }
    const record = await readArgvRecord(transport, files.argvFile);
    const pid = await readPid(transport, files.pidFile);
    const alive = pid !== undefined && (await processAlive(transport, pid));
    const info: VmInfo = { hostId: host.id, name, qmpSocket: files.qmpSocket, runState: 'stopped', managed: record !== undefined, manager: 'ferry' };
    if (alive) {
      info.pid = pid;
      info.runState = (await runStateVia(transport, [files.qmpSocket, files.auxQmpSocket])).state;
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
    const f = await inspectQmpSocket(transport, sock);
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
