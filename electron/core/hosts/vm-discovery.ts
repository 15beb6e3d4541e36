/**
 * Finds the VMs on a host: Ferry's runtime dirs (`<runtimeDir>/<name>/qmp.sock`). The
 * launcher, argv read-back and foreign QMP socket globs come with the lab issue.
 */
import path from 'node:path';
import { DEFAULT_RUNTIME_DIR } from '../../../shared/model/host';
import type { HostConfig } from '../../../shared/model/host';
import type { VmInfo } from '../../../shared/model/vm';
import type { HostTransport } from '../transport/host-transport';
import { QmpClient } from '../qmp/qmp-client';

export async function listVms(host: HostConfig, transport: HostTransport): Promise<VmInfo[]> {
  const runtimeDir = host.runtimeDir ?? DEFAULT_RUNTIME_DIR;
  const found = await transport.exec(['find', runtimeDir, '-mindepth', '2', '-maxdepth', '2', '-name', 'qmp.sock', '-type', 's'], { timeoutMs: 10_000 });
  if (found.code !== 0 && !/No such file/.test(found.stderr)) {
    return [];
  }
  const sockets = found.stdout.split('\n').filter(Boolean).sort();
  return Promise.all(sockets.map(async (qmpSocket): Promise<VmInfo> => {
    const dir = path.posix.dirname(qmpSocket);
    const name = path.posix.basename(dir);
    const managed = (await transport.exec(['test', '-f', path.posix.join(dir, 'argv.json')])).code === 0;
    let runState = 'unreachable';
    try {
      const qmp = await QmpClient.connect(await transport.openUnix(qmpSocket), { handshakeTimeoutMs: 3000, commandTimeoutMs: 3000 });
      try {
        runState = (await qmp.execute<{ status: string }>('query-status')).status;
      } finally {
        qmp.close();
      }
    } catch {
      // QMP busy (one client at a time) or the VM is gone: reported as unreachable
    }
    return { hostId: host.id, name, qmpSocket, runState, managed };
  }));
}
