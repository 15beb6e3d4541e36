/**
 * A plan as libvirt understands it: the `virsh migrate` options it becomes, what libvirt
 * cannot do of it, and the units libvirt speaks (MiB/s). Pure, shared by the driver and the
 * preflight.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { planAllowsPostcopy } from '../../../shared/model/migration';
import type { MigrationPlan } from '../../../shared/model/migration';

/** libvirt's largest bandwidth (MiB/s): "unlimited", its own default. */
export const LIBVIRT_UNLIMITED_MIBS = 8796093022207;
/** QEMU's default downtime limit; the run's projections assume it when the plan says nothing. */
export const DEFAULT_DOWNTIME_MS = 300;
const MiB = 1024 * 1024;

/** Bytes/s as libvirt's MiB/s, never rounded down to 0. */
export function mibPerSecond(bytesPerSecond: number): number {
  return Math.max(1, Math.round(bytesPerSecond / MiB));
}

export const cmpVersion = (a: string, b: string): number => {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
};

/** What the migrate command carries, from the plan and the domain (what libvirt users expect). */
export interface MigrateOptions {
  persistent: boolean;
  undefineSource: boolean;
  flags: string[];
  parameters: Record<string, unknown>;
}

/**
 * The plan as virsh migrate options. Persistence follows the domain unless the plan says
 * otherwise: a persistent domain moves (defined on the destination, undefined on the
 * source, as virt-manager does), a transient one stays transient.
 */
export function migrateOptions(plan: MigrationPlan, domainPersistent: boolean, migrateUri: string | undefined): MigrateOptions {
  const persistent = plan.persistent ?? domainPersistent;
  const undefineSource = plan.undefineSource ?? (domainPersistent && persistent);
  const flags = ['--live'];
  const parameters: Record<string, unknown> = {};
  if (persistent) flags.push('--persistent');
  if (undefineSource) flags.push('--undefinesource');
  const bw = plan.maxBandwidth !== undefined ? mibPerSecond(plan.maxBandwidth) : LIBVIRT_UNLIMITED_MIBS;
  flags.push('--bandwidth', String(bw));
  parameters.bandwidthMiBs = plan.maxBandwidth !== undefined ? bw : 'unlimited';
  if (planAllowsPostcopy(plan)) flags.push('--postcopy');
  if (plan.autoConverge) {
    flags.push('--auto-converge');
    if (plan.cpuThrottleInitial !== undefined) flags.push('--auto-converge-initial', String(plan.cpuThrottleInitial));
    if (plan.cpuThrottleIncrement !== undefined) flags.push('--auto-converge-increment', String(plan.cpuThrottleIncrement));
  }
  if (plan.xbzrleCacheBytes !== undefined) {
    flags.push('--compressed', '--comp-methods', 'xbzrle', '--comp-xbzrle-cache', String(plan.xbzrleCacheBytes));
    parameters.xbzrleCacheBytes = plan.xbzrleCacheBytes;
  }
  if (plan.multifdChannels !== undefined) {
    flags.push('--parallel', '--parallel-connections', String(plan.multifdChannels));
    parameters.parallelConnections = plan.multifdChannels;
  }
  if (plan.copyStorage) flags.push('--copy-storage-all');
  if (migrateUri) {
    flags.push('--migrateuri', migrateUri);
    parameters.migrateUri = migrateUri;
  }
  parameters.downtimeLimitMs = plan.downtimeLimitMs ?? DEFAULT_DOWNTIME_MS;
  return { persistent, undefineSource, flags, parameters };
}

/** tcp://ADDR[:PORT], IPv6 in brackets. */
export function tcpMigrateUri(address: string, port?: number): string {
  const a = address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
  return `tcp://${a}${port ? `:${port}` : ''}`;
}

/** What a plan asks that libvirt cannot do, in words (checked at open and in preflight). */
export function unsupportedByLibvirt(plan: MigrationPlan): string[] {
  const out: string[] = [];
  if (plan.keepSource) out.push('keepSource: libvirt ends the source QEMU once the domain runs on the destination (undefineSource: false keeps its definition)');
  if (plan.storageBandwidth !== undefined) out.push('storageBandwidth: libvirt copies the disks at the migration bandwidth (maxBandwidth)');
  return out;
}

/** A temporary file on this machine for virsh to read (a CPU definition to compare). */
export async function withTempFile<T>(text: string, fn: (file: string) => Promise<T>): Promise<T> {
  const file = path.join(tmpdir(), `ferry-virsh-${randomUUID()}.xml`);
  await fs.writeFile(file, text, { mode: 0o600 });
  try {
    return await fn(file);
  } finally {
    await fs.rm(file, { force: true });
  }
}

