/** A throwaway libvirt lab (own root): two daemons in mount namespaces, the demo domain on lab-a. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { labDown, labHosts, labUp, readLabState, transportFor } from '../../electron/core/lab/local-lab';
import type { LabUpOptions } from '../../electron/core/lab/local-lab';
import { libvirtLabAvailable } from '../../electron/core/lab/libvirt-lab';
import type { HostConfig } from '../../shared/model/host';
import type { HostTransport } from '../../electron/core/transport/host-transport';
import { LibvirtPool } from '../../electron/core/libvirt/libvirt-connection';
import type { LibvirtConnection } from '../../electron/core/libvirt/libvirt-connection';
import { GuestConsole } from '../../electron/core/lab/demo-guest';
import { requireDomain, serialSocketOf } from '../../electron/core/libvirt/libvirt-domains';
import { processesMentioning } from './lab';
import { killPid } from './processes';

export interface TestLibvirtLab {
  root: string;
  hosts: HostConfig[];
  transports: Map<string, HostTransport>;
  pool: LibvirtPool;
  conn(hostId: string): Promise<LibvirtConnection>;
  /** The demo guest's console on whichever host runs the domain. */
  guest(hostId: string, name?: string): Promise<GuestConsole>;
  accel: 'kvm' | 'qemu';
  close(): Promise<void>;
}

/** Why the libvirt lab cannot run here (the suite is skipped, saying so), or undefined. */
export async function libvirtLabMissing(): Promise<string | undefined> {
  const a = await libvirtLabAvailable();
  return a.ok ? undefined : a.reason;
}

export async function makeLibvirtLab(options: Omit<LabUpOptions, 'root' | 'libvirt'> = {}): Promise<TestLibvirtLab> {
  const root = mkdtempSync(path.join(tmpdir(), 'ferry-lvlab-'));
  const accel = process.env.FERRY_TEST_ACCEL;
  try {
    await labUp({ root, libvirt: true, ...(accel === 'tcg' || accel === 'kvm' ? { accel } : {}), ...options });
  } catch (e) {
    await cleanup(root);
    throw e;
  }
  const hosts = labHosts(root);
  const transports = new Map(hosts.map((h) => [h.id, transportFor(h)] as const));
  const pool = new LibvirtPool();
  const conn = (hostId: string) => pool.get(hosts.find((h) => h.id === hostId)!, transports.get(hostId)!);
  return {
    root, hosts, transports, pool, conn,
    accel: readLabState(root)?.libvirt?.domain?.type ?? 'qemu',
    async guest(hostId, name = 'demo') {
      const c = await conn(hostId);
      const d = await requireDomain(c, name);
      const sock = await serialSocketOf(c, d.uuid);
      if (!sock) throw new Error(`${name} has no serial console`);
      return GuestConsole.open(transports.get(hostId)!, sock);
    },
    async close() {
      await pool.closeAll();
      await cleanup(root);
    },
  };
}

async function cleanup(root: string): Promise<void> {
  await labDown({ root }).catch(() => undefined);
  // Safety net: a daemon or QEMU whose files live under this lab is killed by pid.
  for (const pid of processesMentioning(root)) await killPid(pid);
  rmSync(root, { recursive: true, force: true });
}
