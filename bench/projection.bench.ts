/**
 * Projection accuracy on real migrations: Ferry's projected downtime at the switchover QEMU
 * will make, and QEMU's expected-downtime, both at the last pre-copy sample, against the
 * downtime that happened; Ferry's ETA error at 25/50/75 % of the elapsed time.
 *
 * The matrix:
 * - loopback lab: three dirty rates × two `max-bandwidth` caps (the link is fast, the final
 *   copy runs uncapped), and dirty rates at 60–95 % of a cap (long end games);
 * - netns lab, where namespaces work: three dirty rates × two tc-tbf link rates, no cap;
 * - the SSH fleet (jump host + two hypervisors in namespaces, the migration on its own link),
 *   where it can be built: the issue's first-migration case (512 MiB guest, 96 MiB working set
 *   dirtied at 60 MiB/s, 70 MB/s cap, unshaped link) and its neighbours, and a shaped link;
 * - the libvirt lab (two libvirt daemons, the demo domain migrated by `virsh migrate`), where
 *   libvirt is installed: three dirty rates under a 60 MB/s cap.
 *
 * Warm (default): Ferry has learned each host pair's switchovers from warm-up migrations in
 * both directions and from the cases before. `--cold`: every case also runs on a fresh pair
 * with no history (the store emptied first, as on a new machine), right before its warm run
 * in the other direction, so cold and warm see the same machine load; both summaries are
 * printed, the warm one first, the cold one (`"cold": true`) last.
 * `BENCH_KEEP=DIR` keeps every case's timeline there. `BENCH_ONLY=loopback,near,netns,fleet`
 * picks parts (and `libvirt`). Last line: one JSON object.
 * Targets: Ferry's median |error| <= 1/4 of QEMU's, never > QEMU's + 10 ms; ETA error at 50 % <= 15 %.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { makeTestLab } from '../test/support/lab';
import { libvirtLabMissing, makeLibvirtLab } from '../test/support/libvirt-lab';
import { fleetAvailable, startFleet } from '../test/support/fleet';
import { netnsAvailable, readLabState, shapeLink, demoVmSpec, waitGuestReady } from '../electron/core/lab/local-lab';
import { readTimeline } from '../electron/core/recorder/timeline-reader';
import { ConsoleService } from '../electron/core/console-service';
import { LocalTransport } from '../electron/core/transport/local-transport';
import { launchVm, vmFiles } from '../electron/core/hosts/vm-launcher';
import { GuestConsole } from '../electron/core/lab/demo-guest';
import { pairKey } from '../electron/core/migration/switchover-store';
import type { SwitchoverStore } from '../electron/core/migration/switchover-store';
import type { Migration } from '../electron/core/migration/migration-engine';
import type { SwitchoverPoint } from '../shared/analysis/projection';

process.stdout.on('error', () => {});
const { values: flags } = parseArgs({ options: { cold: { type: 'boolean', default: false } }, allowPositionals: false });
const COLD = flags.cold!;
const KEEP = process.env.BENCH_KEEP;
if (KEEP) mkdirSync(KEEP, { recursive: true });
const ONLY = process.env.BENCH_ONLY?.split(',');
const want = (part: string) => !ONLY || ONLY.includes(part);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2 : NaN;
};
const r1 = (x: number) => Math.round(x * 10) / 10;

interface Case {
  part: string; label: string; rate: number; cold: boolean;
  actual: number; ferry?: number; qemu?: number;
  /** Bytes copied while the VM was stopped, and what Ferry projected for it (MB). */
  finalMB?: number;
  eta: Record<string, number | undefined>;
}
const cases: Case[] = [];

function analyse(m: Migration, part: string, label: string, rate: number, cold: boolean): Case {
  const t = readTimeline(m.timelineFile);
  if (KEEP) copyFileSync(m.timelineFile, path.join(KEEP, `${part}-${label.replace(/[^a-z0-9]+/gi, '_')}-${rate}-${cold ? 'cold' : 'warm'}-${path.basename(m.timelineFile)}`));
  const final = t.end!;
  const pre = t.samples.filter((s) => s.phase === 'precopy');
  const last = pre.at(-1);
  const endAt = (t.records.find((r) => r.type === 'phase' && (r as { phase: string }).phase === 'commitment') as { t: number }).t - m.startedAt;
  const eta: Record<string, number | undefined> = {};
  for (const f of [0.25, 0.5, 0.75]) {
    const s = [...pre].reverse().find((x) => x.elapsedMs <= f * endAt && x.projection?.etaMs !== undefined);
    eta[String(f)] = s ? Math.abs(s.elapsedMs + s.projection!.etaMs! - endAt) / endAt : undefined;
  }
  const c: Case = { part, label, rate, cold, actual: final.downtimeMs ?? NaN, eta };
  if (final.downtimeBytes !== undefined) c.finalMB = r1(final.downtimeBytes / 1e6);
  const fp = last?.projection?.switchoverDowntimeMs ?? last?.projection?.downtimeMs;
  if (fp !== undefined) c.ferry = fp;
  if (last?.expectedDowntimeMs !== undefined) c.qemu = last.expectedDowntimeMs;
  cases.push(c);
  const link = last?.linkRate ? `, link ${Math.round(last.linkRate / 1e6)} MB/s` : '';
  console.log(`${cold ? 'cold' : 'warm'} ${part} ${label} dirty ${rate} MiB/s: actual ${c.actual} ms (${c.finalMB ?? '?'} MB), Ferry ${c.ferry?.toFixed(0)} ms, QEMU ${c.qemu} ms${link}, ETA err 25/50/75% ${Object.values(c.eta).map((e) => (e === undefined ? '-' : `${(e * 100).toFixed(0)}%`)).join('/')}`);
  return c;
}

/** A place to run migrations: two hosts, the demo VM on one of them, a way to set its workload. */
interface Bed {
  service: ConsoleService;
  store: SwitchoverStore;
  hosts: [string, string];
  where: string;
  guest(host: string): Promise<GuestConsole>;
}

async function migrate(bed: Bed, plan: { maxBandwidth?: number }): Promise<Migration> {
  const to = bed.where === bed.hosts[0] ? bed.hosts[1] : bed.hosts[0];
  const m = await bed.service.engine.start({ vm: 'demo', from: bed.where, to, downtimeLimitMs: 300, ...plan });
  await m.whenDone();
  bed.where = to;
  return m;
}

async function workload(bed: Bed, rate: number, wsMiB?: number): Promise<void> {
  const con = await bed.guest(bed.where);
  try {
    if (wsMiB !== undefined) await con.command(`w ${wsMiB}`, 30_000);
    await con.command(`r ${rate}`);
  } finally {
    con.close();
  }
  await new Promise((r) => setTimeout(r, 1200));
}

/** Runs a case warm, and with --cold first on a fresh pair (no history), then warm the other way. */
async function runCase(bed: Bed, part: string, label: string, rate: number, plan: { maxBandwidth?: number }, wsMiB?: number): Promise<void> {
  if (COLD) {
    // Fresh pair: what the store knows of both directions is set aside, then put back with this run's switchover.
    const keys = [pairKey(bed.hosts[0], bed.hosts[1]), pairKey(bed.hosts[1], bed.hosts[0])];
    const kept = keys.map((k) => [...(bed.store.get(k) ?? [])] as SwitchoverPoint[]);
    bed.store.clear();
    await workload(bed, rate, wsMiB);
    const m = await migrate(bed, plan);
    analyse(m, part, label, rate, true);
    const learned = keys.map((k) => [...(bed.store.get(k) ?? [])]);
    bed.store.clear();
    keys.forEach((k, i) => bed.store.set(k, [...kept[i]!, ...learned[i]!]));
  }
  await workload(bed, rate, wsMiB);
  analyse(await migrate(bed, plan), part, label, rate, false);
}

/** Warm-up: both directions learn a switchover or two before the cases. */
async function warmUp(bed: Bed, plan: { maxBandwidth?: number }, rate: number, wsMiB?: number): Promise<void> {
  for (let i = 0; i < 2; i++) {
    await workload(bed, rate, wsMiB);
    await migrate(bed, plan);
  }
}

const MEM_KIB = 131_000;
const RATES = [5, 12, 20];

async function labPart(netns: boolean): Promise<void> {
  const lab = await makeTestLab();
  try {
    await lab.up({ memoryKiB: MEM_KIB, workload: { wsMiB: 32, rateMiBs: 0 }, ...(netns ? { netns: true, netnsPrefix: `fpb${process.pid % 10000}` } : {}) });
    const bed: Bed = { service: lab.service, store: lab.service.switchovers, hosts: ['lab-a', 'lab-b'], where: 'lab-a', guest: (h) => lab.guest(h) };
    const ns = netns ? readLabState(lab.root)!.netns! : undefined;
    if (!netns && want('loopback')) {
      for (const cap of [40e6, 80e6]) {
        await warmUp(bed, { maxBandwidth: cap }, 5);
        for (const rate of RATES) await runCase(bed, 'loopback', `cap ${cap / 1e6} MB/s`, rate, { maxBandwidth: cap });
      }
    }
    if (!netns && want('near')) {
      // Dirty rates at 60–95 % of the cap (40 MB/s = 38.1 MiB/s) over a 48 MiB working set.
      await warmUp(bed, { maxBandwidth: 40e6 }, 5, 48);
      for (const rate of [24, 30, 34]) await runCase(bed, 'near', 'cap 40 MB/s ws 48 MiB', rate, { maxBandwidth: 40e6 }, 48);
    }
    if (ns && want('netns')) {
      for (const tbf of [300e6, 600e6]) {
        await shapeLink(ns, tbf);
        await warmUp(bed, {}, 5);
        for (const rate of RATES) await runCase(bed, 'netns', `tbf ${tbf / 1e6} Mbit/s`, rate, {});
      }
    }
  } finally {
    await lab.close();
  }
}

/** The libvirt lab: libvirt picks the migration port, so the link is read from the source QEMU's own connection. */
async function libvirtPart(): Promise<void> {
  const lab = await makeLibvirtLab({ memoryKiB: MEM_KIB, workload: { wsMiB: 32, rateMiBs: 0 } });
  const configDir = mkdtempSync(path.join(tmpdir(), 'ferry-projbench-'));
  const service = new ConsoleService({ configDir, labRoot: lab.root, builtinHosts: () => lab.hosts });
  try {
    const bed: Bed = { service, store: service.switchovers, hosts: ['lab-a', 'lab-b'], where: 'lab-a', guest: (h) => lab.guest(h) };
    await warmUp(bed, { maxBandwidth: 60e6 }, 5);
    for (const rate of RATES) await runCase(bed, 'libvirt', 'virsh, cap 60 MB/s', rate, { maxBandwidth: 60e6 });
  } finally {
    await service.dispose();
    await lab.close();
    rmSync(configDir, { recursive: true, force: true });
  }
}

async function fleetPart(): Promise<void> {
  const fleet = await startFleet({ prefix: `fpf${process.pid % 1000}` });
  const configDir = mkdtempSync(path.join(tmpdir(), 'ferry-projbench-'));
  const service = new ConsoleService({ configDir, builtinHosts: fleet.hostConfigs(), ssh: { homeDir: fleet.home, agent: false }, reconnectDelayMs: 200 });
  try {
    const dirs = Object.fromEntries(fleet.hostConfigs().map((h) => [h.id, h.runtimeDir!]));
    const t1 = await service.transportOf('hv1');
    // The issue's guest: 512 MiB, 96 MiB working set.
    await launchVm(t1, dirs.hv1!, demoVmSpec({ wsMiB: 96, rateMiBs: 0 }));
    await waitGuestReady(t1, vmFiles(dirs.hv1!, 'demo').serialSocket);
    // The serial sockets are on this machine's filesystem, reachable from here directly.
    const bed: Bed = { service, store: service.switchovers, hosts: ['hv1', 'hv2'], where: 'hv1', guest: (h) => GuestConsole.open(new LocalTransport(), vmFiles(dirs[h]!, 'demo').serialSocket) };
    await warmUp(bed, { maxBandwidth: 70e6 }, 20);
    for (const rate of [30, 45, 60]) await runCase(bed, 'fleet', 'ssh, cap 70 MB/s unshaped', rate, { maxBandwidth: 70e6 });
    fleet.shapeMigrationLink(400e6);
    await warmUp(bed, {}, 10);
    await runCase(bed, 'fleet', 'ssh, tbf 400 Mbit/s', 20, {});
  } finally {
    await service.dispose();
    await fleet.stop();
    rmSync(configDir, { recursive: true, force: true });
  }
}

if (want('loopback') || want('near')) await labPart(false);
if (want('netns')) {
  const ns = await netnsAvailable();
  if (ns.ok) await labPart(true);
  else console.log(`netns part skipped: ${ns.reason}`);
}
if (want('libvirt')) {
  const missing = await libvirtLabMissing();
  if (missing) console.log(`libvirt part skipped: ${missing}`);
  else await libvirtPart();
}
if (want('fleet')) {
  const f = fleetAvailable();
  if (f.ok) await fleetPart();
  else console.log(`fleet part skipped: ${f.reason}`);
}

function summary(cold: boolean) {
  const cs = cases.filter((c) => c.cold === cold);
  const ferryErr = cs.filter((c) => c.ferry !== undefined).map((c) => Math.abs(c.ferry! - c.actual));
  const qemuErr = cs.filter((c) => c.qemu !== undefined).map((c) => Math.abs(c.qemu! - c.actual));
  const worse = cs.filter((c) => c.ferry !== undefined && c.qemu !== undefined && Math.abs(c.ferry - c.actual) > Math.abs(c.qemu - c.actual) + 10);
  const etaAt = (k: string) => cs.map((c) => c.eta[k]).filter((e): e is number => e !== undefined);
  const mf = median(ferryErr);
  const mq = median(qemuErr);
  return {
    bench: 'projection', cold, cases: cs.length,
    ferryMedianAbsErrMs: r1(mf), qemuMedianAbsErrMs: r1(mq), ratio: r1((mf / mq) * 100) / 100,
    casesWhereFerryWorseBy10ms: worse.length,
    worse: worse.map((c) => `${c.part} ${c.label} dirty ${c.rate}: actual ${c.actual}, Ferry ${c.ferry!.toFixed(0)}, QEMU ${c.qemu}`),
    etaMedianErr: { p25: r1(median(etaAt('0.25')) * 100), p50: r1(median(etaAt('0.5')) * 100), p75: r1(median(etaAt('0.75')) * 100) },
    targets: { ratioMax: 0.25, worseCasesMax: 0, eta50PctMax: 15 },
    met: mf <= mq / 4 && worse.length === 0 && median(etaAt('0.5')) <= 0.15,
  };
}
console.log(JSON.stringify(summary(false)));
if (COLD) console.log(JSON.stringify(summary(true)));
