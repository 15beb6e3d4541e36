/**
 * Migrating between QEMU versions, done right — the few decisions the engine, preflight and
 * the state files share:
 *
 * - the destination is started with the source's *concrete* machine type (read from the
 *   running source: `pc` on a 7.2 source is `pc-i440fx-7.2`, while `pc` on a 10.0 destination
 *   would be `pc-i440fx-10.0`, which refuses the stream), the same CPU model, and the same
 *   firmware (by name, from the destination QEMU's own firmware folder when it came from the
 *   source QEMU's);
 * - a destination older than the source is refused (not supported upstream);
 * - newer features (dirty-limit, switchover-ack, avail-switchover-bandwidth) become
 *   capabilities and parameters only on the ends whose schema has them.
 */
import path from 'node:path';
import { FerryException } from '../../../shared/errors';
import type { HostConfig } from '../../../shared/model/host';
import type { MigrationPlan } from '../../../shared/model/migration';
import type { QmpClient } from '../qmp/qmp-client';
import { compareVersions, firmwareDirOf, machineTypeOfOption, parseQemuVersion, runningMachineOf } from '../hosts/qemu-install';
import type { QemuInstall } from '../hosts/qemu-install';
import type { ArgvRecord, VmSpec } from '../hosts/vm-launcher';
import { has } from '../qmp/qmp-schema';
import { fitSwitchover, learnFinalCopyRate, switchoverModel } from '../../../shared/analysis/projection';
import type { SwitchoverPoint } from '../../../shared/analysis/projection';

/**
 * Ferry's estimate of the link's speed for a final copy between two hosts, from the
 * switchovers it has seen there: the switchover model's (the link measured during them,
 * calibrated by what they cost), else the fitted rate when sizes differ enough to fit one,
 * else the best single switchover's bytes over its time (less the fixed cost). Undefined
 * until one switchover of at least 1 MB was seen.
 */
export function linkEstimate(points: readonly SwitchoverPoint[]): number | undefined {
  const model = switchoverModel(points);
  if (model.learnedFrom > 0 && model.finalCopyRate !== undefined && points.some((p) => p.linkRate !== undefined)) return model.finalCopyRate;
  const fit = fitSwitchover(points);
  if (fit.rate !== undefined) return fit.rate;
  const rates = points.map((p) => learnFinalCopyRate(p.bytes, p.downtimeMs, fit.overheadMs ?? 3)).filter((r): r is number => r !== undefined);
  return rates.length ? Math.max(...rates) : undefined;
}
import type { MigrationFeatures } from '../qmp/qmp-schema';

function argAfter(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** The firmware the destination loads: the same file name from its own QEMU's folder when the source's came from the source QEMU's. */
export function firmwareFor(bios: string | undefined, src: QemuInstall | undefined, dst: QemuInstall | undefined): string | undefined {
  if (!bios) return undefined;
  const from = firmwareDirOf(src);
  if (path.posix.dirname(bios) === from) return path.posix.join(firmwareDirOf(dst), path.posix.basename(bios));
  return bios;
}

/** What the running source VM is, concretely: machine type, CPU model, firmware. */
export interface SourceIdentity {
  machine: string;
  cpu: string;
  bios?: string;
}

/** Reads the source's concrete machine type from the running QEMU (an older record may say only `pc`). */
export async function sourceIdentity(record: ArgvRecord, srcQmp: QmpClient | undefined): Promise<SourceIdentity> {
  const fromArgv = machineTypeOfOption(record.spec.machine ?? argAfter(record.argv, '-machine'));
  const machine = srcQmp ? await runningMachineOf(srcQmp).catch(() => fromArgv) : fromArgv;
  if (!machine) throw new FerryException('INTERNAL', `cannot tell the machine type of VM "${record.name}"`);
  const bios = record.spec.bios ?? argAfter(record.argv, '-bios');
  return { machine, cpu: record.spec.cpu ?? argAfter(record.argv, '-cpu') ?? 'qemu64,-pni', ...(bios ? { bios } : {}) };
}

/** The spec the destination is started from: the source's, with its identity made concrete for the destination's QEMU. */
export function destinationSpec(record: ArgvRecord, id: SourceIdentity, srcHost: Pick<HostConfig, 'qemu'>, dstHost: Pick<HostConfig, 'qemu'>): VmSpec {
  const spec: VmSpec = { ...record.spec, machine: id.machine, cpu: id.cpu };
  const bios = firmwareFor(id.bios, record.qemu ?? srcHost.qemu, dstHost.qemu);
  if (bios) spec.bios = bios;
  else delete spec.bios;
  return spec;
}

/** Refuses a destination QEMU older than the source's, naming both. */
export function checkDirection(srcVersion: string | undefined, dstVersion: string | undefined, from: string, to: string): void {
  const s = parseQemuVersion(srcVersion);
  const d = parseQemuVersion(dstVersion);
  if (s && d && compareVersions(d, s) < 0) {
    throw new FerryException('UNSUPPORTED', `refused: ${to} runs QEMU ${dstVersion}, older than the source's QEMU ${srcVersion} on ${from}; migrating to an older QEMU is not supported upstream`, { source: srcVersion, destination: dstVersion });
  }
}

/**
 * Capabilities and parameters for the plan's newer features, per end. Only where the
 * schema has them: preflight refuses a plan asking for one that an end lacks; here a
 * missing one is an error too (the engine never sends what QEMU would reject obscurely).
 */
export function newerFeatureSettings(plan: MigrationPlan, src: MigrationFeatures, dst: MigrationFeatures, learnedLinkRate?: number): {
  sourceCaps: Record<string, boolean>; destCaps: Record<string, boolean>; sourceParams: Record<string, unknown>; notes: string[];
} {
  const sourceCaps: Record<string, boolean> = {};
  const destCaps: Record<string, boolean> = {};
  const sourceParams: Record<string, unknown> = {};
  const notes: string[] = [];
  const need = (f: MigrationFeatures, list: 'capabilities' | 'parameters', name: string, who: string, why: string) => {
    if (!has(f[list], name)) throw new FerryException('UNSUPPORTED', `${why} needs ${list === 'capabilities' ? 'the capability' : 'the parameter'} ${name}, which ${who}'s QEMU${f.version ? ` ${f.version}` : ''} does not have (QEMU 8.1+)`, { missing: name });
  };
  if (plan.dirtyLimitMBps !== undefined) {
    // Throttling happens on the source only: its vCPUs are held to the rate.
    need(src, 'capabilities', 'dirty-limit', plan.from, 'dirty-limit');
    need(src, 'parameters', 'vcpu-dirty-limit', plan.from, 'dirty-limit');
    sourceCaps['dirty-limit'] = true;
    sourceParams['vcpu-dirty-limit'] = plan.dirtyLimitMBps;
  }
  if (plan.switchoverAck) {
    // Negotiated by both ends over the return path.
    need(src, 'capabilities', 'switchover-ack', plan.from, 'switchover-ack');
    need(dst, 'capabilities', 'switchover-ack', plan.to, 'switchover-ack');
    for (const caps of [sourceCaps, destCaps]) Object.assign(caps, { 'return-path': true, 'switchover-ack': true });
  }
  if (plan.switchoverBandwidth !== undefined) {
    need(src, 'parameters', 'avail-switchover-bandwidth', plan.from, 'avail-switchover-bandwidth');
    const v = plan.switchoverBandwidth === 'auto' ? learnedLinkRate : plan.switchoverBandwidth;
    if (v !== undefined && v > 0) {
      sourceParams['avail-switchover-bandwidth'] = Math.round(v);
      notes.push(`avail-switchover-bandwidth ${Math.round(v / 1e6)} MB/s (${plan.switchoverBandwidth === 'auto' ? 'Ferry\'s link estimate from earlier switchovers between these hosts' : 'from the plan'})`);
    } else {
      notes.push('avail-switchover-bandwidth: no link estimate yet between these hosts (none learned from a switchover); QEMU uses its own measured bandwidth');
    }
  }
  return { sourceCaps, destCaps, sourceParams, notes };
}



