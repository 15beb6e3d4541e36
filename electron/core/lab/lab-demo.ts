/**
 * The trainer's demo: the lab's demo guest runs one workload, is migrated with plain pre-copy
 * from where it is to the other lab host, then straight back with post-copy (switched on
 * after the first pass), so the console can overlay the two timelines. Same guest, same
 * workload, same bandwidth cap: only the algorithm differs.
 *
 * `compare: 'converge'`: auto-converge against dirty-limit, the two ways of making a guest
 * that dirties faster than the link converge. For it to be honest both runs need the same
 * QEMU on both ends: dirty-limit throttles the vCPUs on the *source*, so the source must be
 * 8.1+, and a destination older than its source is refused, so the destination must be as
 * new. With lab-b on QEMU 10.0 and lab-a on 7.2 the demo therefore first does what an admin
 * upgrading a host does: it moves the VM to lab-b (7.2 -> 10.0, a real cross-version
 * migration), puts the emptied lab-a on the same QEMU, and only then runs auto-converge and
 * dirty-limit, 10.0 -> 10.0 each, same workload, same cap, same downtime limit.
 */
import { FerryException } from '../../../shared/errors';
import type { QemuInstall } from '../../../shared/model/host';
import { probeQemu, qemuOf } from '../hosts/qemu-install';
import { OPTIONAL_FEATURES } from '../qmp/qmp-schema';
import { readArgvRecord } from '../hosts/vm-launcher';
import type { MigrationFinal, MigrationPlanInput } from '../../../shared/model/migration';
import type { Migration, MigrationEngine } from '../migration/migration-engine';
import { stopVm, vmFiles } from '../hosts/vm-launcher';
import { QmpClient } from '../qmp/qmp-client';
import { GuestConsole } from './demo-guest';
import { DIRTY_LIMIT_RING, LAB_HOST_IDS, LAB_VM_NAME, labHosts, labStatus, labUp, readLabState, transportFor, waitGuestReady, writeLabQemu } from './local-lab';

export interface LabDemoOptions {
  root: string;
  engine: MigrationEngine;
  /** Bandwidth cap of both runs, MB/s (decimal). */
  bandwidthMBps?: number;
  workingSetMiB?: number;
  dirtyMiBps?: number;
  /** Each run started, so a caller can follow it live. */
  onRun?: (label: string, m: Migration) => void;
  /** What the two runs compare: precopy vs postcopy (default), or auto-converge vs dirty-limit. */
  compare?: 'postcopy' | 'converge';
  /** Put lab-b on this QEMU first (a binary path, or an install). */
  qemuB?: string | QemuInstall;
  /** What the demo did besides the two runs (an upgrade hop, a host moved to another QEMU). */
  onNote?: (text: string) => void;
}

export interface LabDemoRun {
  label: string;
  id: string;
  timeline: string;
  outcome: MigrationFinal['outcome'];
  /** false for a run that only prepares the comparison (the upgrade hop): not overlaid. */
  overlay?: boolean;
}

/** Defaults chosen so pre-copy needs several shrinking passes and post-copy one (about 15 s in all with KVM). */
export const DEMO_DEFAULTS = { bandwidthMBps: 30, workingSetMiB: 96, dirtyMiBps: 20 } as const;
/** auto-converge vs dirty-limit: a guest dirtying three times what the link carries. */
export const CONVERGE_DEFAULTS = { bandwidthMBps: 50, workingSetMiB: 64, dirtyMiBps: 150, dirtyLimitMBps: 5, downtimeLimitMs: 1000 } as const;

export async function runLabDemo(o: LabDemoOptions): Promise<LabDemoRun[]> {
  if (o.compare === 'converge') return runConvergeDemo(o);
  const bw = o.bandwidthMBps ?? DEMO_DEFAULTS.bandwidthMBps;
  const ws = o.workingSetMiB ?? DEMO_DEFAULTS.workingSetMiB;
  const rate = o.dirtyMiBps ?? DEMO_DEFAULTS.dirtyMiBps;
  // From whatever state the lab is in: up or not, the VM on either host.
  const busy = o.engine.active().find((m) => m.plan.vm === LAB_VM_NAME && (LAB_HOST_IDS as readonly string[]).includes(m.plan.from));
  if (busy) throw new FerryException('ALREADY_EXISTS', `the lab's ${LAB_VM_NAME} VM is being migrated (${busy.id}, ${busy.phase}); wait for it to end or cancel it, then run the demo`, { id: busy.id });
  await labUp({ root: o.root, ...(o.qemuB !== undefined ? { qemuB: o.qemuB } : {}) });
  const status = await labStatus(o.root);
  const withVm = status.hosts.filter((h) => h.vms.some((v) => v.name === LAB_VM_NAME && v.runState !== 'stopped'));
  const at = withVm.find((h) => h.vms.some((v) => v.name === LAB_VM_NAME && v.runState === 'running')) ?? withVm[0];
  if (!at) throw new FerryException('NOT_FOUND', `the lab's ${LAB_VM_NAME} VM is not running on ${LAB_HOST_IDS.join(' or ')}; start the lab first`);
  for (const other of withVm.filter((h) => h !== at)) {
    // A second copy (left by an older Ferry, or a destination that never ran): the lab is Ferry's own.
    const h = labHosts(o.root).find((x) => x.id === other.id)!;
    await stopVm(transportFor(h), h.runtimeDir!, LAB_VM_NAME, { timeoutMs: 2000 });
    o.onNote?.(`stopped a second ${LAB_VM_NAME} VM on ${other.id}; the demo runs the one on ${at.id}`);
  }
  const here = at.id;
  const state = at.vms.find((v) => v.name === LAB_VM_NAME)!.runState;
  if (state !== 'running') await resumeDemo(o.root, here, state);
  const there = LAB_HOST_IDS.find((h) => h !== here)!;
  await setWorkload(o.root, here, ws, rate);
  const plans: { label: string; plan: MigrationPlanInput }[] = [
    { label: 'precopy', plan: { vm: LAB_VM_NAME, from: here, to: there, mode: 'precopy', maxBandwidth: bw * 1e6, downtimeLimitMs: 300 } },
    { label: 'postcopy', plan: { vm: LAB_VM_NAME, from: there, to: here, mode: 'postcopy-after', postcopyAfterPasses: 1, maxBandwidth: bw * 1e6, downtimeLimitMs: 300 } },
  ];
  return runPlans(o, plans);
}

async function runPlans(o: LabDemoOptions, plans: { label: string; plan: MigrationPlanInput }[]): Promise<LabDemoRun[]> {
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

/** A paused demo VM (stopped by hand, or left paused) runs again for the demo. */
async function resumeDemo(root: string, hostId: string, state: string): Promise<void> {
  const host = labHosts(root).find((h) => h.id === hostId)!;
  const files = vmFiles(host.runtimeDir!, LAB_VM_NAME);
  const q = await QmpClient.connect(await transportFor(host).openUnix(files.auxQmpSocket), { handshakeTimeoutMs: 3000 });
  try {
    if (state === 'inmigrate') throw new FerryException('ALREADY_EXISTS', `the ${LAB_VM_NAME} VM on ${hostId} waits for an incoming migration; stop it (ferry vm stop ${hostId} ${LAB_VM_NAME}) or let that migration end`);
    await q.execute('cont');
  } finally {
    q.close();
  }
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

const hasDirtyLimit = async (root: string, id: string) => {
  const h = labHosts(root).find((x) => x.id === id)!;
  const probe = await probeQemu(transportFor(h), qemuOf(h));
  return { probe, ok: OPTIONAL_FEATURES['dirty-limit'](probe.features) };
};

async function runConvergeDemo(o: LabDemoOptions): Promise<LabDemoRun[]> {
  const d = CONVERGE_DEFAULTS;
  const bw = o.bandwidthMBps ?? d.bandwidthMBps;
  const note = (t: string) => o.onNote?.(t);
  await labUp({ root: o.root, dirtyRingSize: DIRTY_LIMIT_RING, ...(o.qemuB !== undefined ? { qemuB: o.qemuB } : {}) });
  const status = await labStatus(o.root);
  const at = status.hosts.find((h) => h.vms.some((v) => v.name === LAB_VM_NAME && v.runState === 'running'));
  if (!at) throw new FerryException('NOT_FOUND', `the lab's ${LAB_VM_NAME} VM is not running on ${LAB_HOST_IDS.join(' or ')}; start the lab first`);
  let here = at.id as (typeof LAB_HOST_IDS)[number];
  let there = LAB_HOST_IDS.find((h) => h !== here)!;
  const host = (id: string) => labHosts(o.root).find((x) => x.id === id)!;
  const rec = await readArgvRecord(transportFor(host(here)), vmFiles(host(here).runtimeDir!, LAB_VM_NAME).argvFile);
  if (rec?.accel !== 'kvm' || !rec.argv.some((a) => /dirty-ring-size=/.test(a))) {
    throw new FerryException('UNSUPPORTED', `dirty-limit needs KVM with a dirty ring, and the demo VM runs ${rec?.accel === 'kvm' ? 'without one' : `under ${rec?.accel ?? 'an unknown accelerator'}`}; stop the lab (ferry lab down) and run the demo again${rec?.accel === 'kvm' ? '' : ' on a machine with /dev/kvm'}`);
  }
  const [a, b] = [await hasDirtyLimit(o.root, here), await hasDirtyLimit(o.root, there)];
  if (!a.ok && !b.ok) {
    throw new FerryException('UNSUPPORTED', `dirty-limit needs QEMU 8.1 or later on the source; lab-a and lab-b run ${(await hasDirtyLimit(o.root, 'lab-a')).probe.version} and ${(await hasDirtyLimit(o.root, 'lab-b')).probe.version}: put one on a newer QEMU (ferry lab up --qemu-b PATH)`);
  }
  const runs: LabDemoRun[] = [];
  if (!a.ok) {
    // The VM's host is too old to be a dirty-limit source: move the VM to the newer QEMU first, as an upgrade would.
    note(`upgrade hop: ${here} runs QEMU ${a.probe.version} (no dirty-limit); moving the VM to ${there} (QEMU ${b.probe.version}) first`);
    runs.push(...(await runPlans(o, [{ label: 'upgrade hop', plan: { vm: LAB_VM_NAME, from: here, to: there, mode: 'precopy', maxBandwidth: 1e9 } }])).map((r) => ({ ...r, overlay: false })));
    [here, there] = [there, here];
  }
  const newer = readLabState(o.root)?.qemu?.[here];
  const older = readLabState(o.root)?.qemu?.[there];
  if (JSON.stringify(newer) !== JSON.stringify(older)) {
    // The other host holds no VM now: it gets the same QEMU, so both runs are the same QEMU on both ends.
    await writeLabQemu(o.root, there, newer ?? null);
    note(`${there} now runs the same QEMU as ${here} (${newer?.binary ?? 'qemu-system-x86_64'}): a dirty-limit run needs a destination at least as new as its source`);
  }
  await setWorkload(o.root, here, o.workingSetMiB ?? d.workingSetMiB, o.dirtyMiBps ?? d.dirtyMiBps);
  const common = { vm: LAB_VM_NAME, mode: 'precopy' as const, maxBandwidth: bw * 1e6, downtimeLimitMs: d.downtimeLimitMs };
  runs.push(...(await runPlans(o, [
    { label: 'auto-converge', plan: { ...common, from: here, to: there, autoConverge: true } },
    { label: 'dirty-limit', plan: { ...common, from: there, to: here, dirtyLimitMBps: d.dirtyLimitMBps } },
  ])));
  return runs;
}
