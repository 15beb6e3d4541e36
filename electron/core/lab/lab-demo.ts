/**
 * The trainer's demo: the lab's demo guest runs one workload, is migrated with plain pre-copy
 * from where it is to the other lab host, then straight back with post-copy (switched on
 * after the first pass), so the console can overlay the two timelines. Same guest, same
 * workload, same bandwidth cap: only the algorithm differs.
 */
import { FerryException } from '../../../shared/errors';
import type { MigrationFinal, MigrationPlanInput } from '../../../shared/model/migration';
import type { Migration, MigrationEngine } from '../migration/migration-engine';
import { vmFiles } from '../hosts/vm-launcher';
import { GuestConsole } from './demo-guest';
import { LAB_HOST_IDS, LAB_VM_NAME, labHosts, labStatus, labUp, transportFor, waitGuestReady } from './local-lab';

export interface LabDemoOptions {
  root: string;
  engine: MigrationEngine;
  /** Bandwidth cap of both runs, MB/s (decimal). */
  bandwidthMBps?: number;
  workingSetMiB?: number;
  dirtyMiBps?: number;
  /** Each run started, so a caller can follow it live. */
  onRun?: (label: string, m: Migration) => void;
}

export interface LabDemoRun {
  label: string;
  id: string;
  timeline: string;
  outcome: MigrationFinal['outcome'];
}

/** Defaults chosen so pre-copy needs several shrinking passes and post-copy one (about 15 s in all with KVM). */
export const DEMO_DEFAULTS = { bandwidthMBps: 30, workingSetMiB: 96, dirtyMiBps: 20 } as const;

export async function runLabDemo(o: LabDemoOptions): Promise<LabDemoRun[]> {
  const bw = o.bandwidthMBps ?? DEMO_DEFAULTS.bandwidthMBps;
  const ws = o.workingSetMiB ?? DEMO_DEFAULTS.workingSetMiB;
  const rate = o.dirtyMiBps ?? DEMO_DEFAULTS.dirtyMiBps;
  await labUp({ root: o.root });
  const status = await labStatus(o.root);
  const at = status.hosts.find((h) => h.vms.some((v) => v.name === LAB_VM_NAME && v.runState === 'running'));
  if (!at) throw new FerryException('NOT_FOUND', `the lab's ${LAB_VM_NAME} VM is not running on ${LAB_HOST_IDS.join(' or ')}; start the lab first`);
  const here = at.id;
  const there = LAB_HOST_IDS.find((h) => h !== here)!;
  await setWorkload(o.root, here, ws, rate);
  const plans: { label: string; plan: MigrationPlanInput }[] = [
    { label: 'precopy', plan: { vm: LAB_VM_NAME, from: here, to: there, mode: 'precopy', maxBandwidth: bw * 1e6, downtimeLimitMs: 300 } },
    { label: 'postcopy', plan: { vm: LAB_VM_NAME, from: there, to: here, mode: 'postcopy-after', postcopyAfterPasses: 1, maxBandwidth: bw * 1e6, downtimeLimitMs: 300 } },
  ];
  const runs: LabDemoRun[] = [];
  for (const { label, plan } of plans) {
    const m = await o.engine.start(plan);
    o.onRun?.(label, m);
    const final = await m.whenDone();
    runs.push({ label, id: m.id, timeline: m.timelineFile, outcome: final.outcome });
    if (final.outcome !== 'completed') {
      throw new FerryException('MIGRATION_FAILED', `demo ${label} run ${final.outcome}${final.reason ? `: ${final.reason}` : ''}; its timeline is ${m.timelineFile}`, { runs });
    }
  }
  return runs;
}

async function setWorkload(root: string, hostId: string, ws: number, rate: number): Promise<void> {
  const host = labHosts(root).find((h) => h.id === hostId)!;
  const transport = transportFor(host);
  const files = vmFiles(host.runtimeDir!, LAB_VM_NAME);
  await waitGuestReady(transport, files.serialSocket);
  const con = await GuestConsole.open(transport, files.serialSocket);
  try {
    await con.command(`w ${ws}`, 20_000);
    await con.command(`r ${rate}`, 20_000);
  } finally {
    con.close();
  }
}
