/**
 * Pre-migration checks, run when a migration is planned and before anything starts. Each
 * gives pass / warn / fail, a one-line reason and a fix hint. Checks run in parallel and
 * never throw: a check that cannot run says so.
 */
import { toFerryError } from '../../../shared/errors';
import type { HostConfig } from '../../../shared/model/host';
import type { MigrationPlan } from '../../../shared/model/migration';
import type { PreflightCheck, PreflightResult } from '../../../shared/model/preflight';
import type { HostTransport } from '../transport/host-transport';
import { processAlive, readPid, vmFiles, detectAccel } from '../hosts/vm-launcher';
import { compareVersions, parseQemuVersion, probeQemu, qemuOf, qemuVersionOf } from '../hosts/qemu-install';
import type { QemuProbe } from '../hosts/qemu-install';
import { featuresOf, greetingVersion } from '../qmp/qmp-schema';
import type { MigrationFeatures } from '../qmp/qmp-schema';
import { destinationSpec, newerFeatureSettings, sourceIdentity } from './cross-version';
import type { SourceIdentity } from './cross-version';
import { memoryMiBFromArgv, runtimeDirOf } from '../hosts/vm-discovery';
import { findQemuVm, noSuchVm } from '../hosts/adopted-qemu';
import { QmpClient } from '../qmp/qmp-client';
import { migrationAddressOf } from './drivers/hypervisor-driver';
import type { EngineHosts } from './drivers/hypervisor-driver';
import { tunnelCheck } from './stream-tunnel';
import { measureClock, offsetBetween } from '../hosts/clock-offset';
import { rootLog } from '../log';
import { planDiskCopiesFromFiles, storageCheck } from './storage-copy';

const pfLog = rootLog.child('preflight');

type Check = Omit<PreflightCheck, 'id' | 'title'>;
const pass = (reason: string): Check => ({ status: 'pass', reason });
const warn = (reason: string, fix?: string): Check => (fix ? { status: 'warn', reason, fix } : { status: 'warn', reason });
const fail = (reason: string, fix?: string): Check => (fix ? { status: 'fail', reason, fix } : { status: 'fail', reason });


function argAfter(argv: readonly string[], flag: string): string[] {
  const out: string[] = [];
  argv.forEach((a, i) => {
    if (a === flag && argv[i + 1] !== undefined) out.push(argv[i + 1]!);
  });
  return out;
}

/** Files a VM needs on whichever host runs it: -kernel, -initrd, and -drive file=... */
export function filesOfArgv(argv: readonly string[]): string[] {
  const files = [...argAfter(argv, '-kernel'), ...argAfter(argv, '-initrd')];
  for (const d of argAfter(argv, '-drive')) {
    const m = /(?:^|,)file=((?:[^,]|,,)+)/.exec(d);
    if (m) files.push(m[1]!.replace(/,,/g, ','));
  }
  return files;
}

/** A check that takes longer than this is reported as not finished; a preflight always ends. */
export const CHECK_LIMIT_MS = 20_000;
/** The whole preflight, connecting to both hosts included. */
export const PREFLIGHT_LIMIT_MS = 60_000;

const ORDER = ['source-reachable', 'destination-reachable', 'source-vm', 'destination-qemu', 'qemu-versions', 'machine-type', 'firmware', 'accelerator', 'memory', 'storage-copy', 'storage', 'name-free', 'migration-port', 'ssh-tunnel', 'postcopy', 'capabilities', 'clock', 'internal'];
const TITLES: Record<string, string> = { 'source-reachable': 'Source host reachable', 'destination-reachable': 'Destination reachable', 'source-vm': 'VM running on the source' };

/**
 * Runs the checks; never waits forever: what has not answered within the limits is reported
 * as not finished (a warning, or a failure when the VM itself could not be checked).
 */
/** Whether a check with this id runs for this plan. */
function expectedCheck(id: string, plan: MigrationPlan): boolean {
  if (id === 'storage-copy') return plan.copyStorage === true;
  if (id === 'ssh-tunnel') return plan.transport === 'ssh-tunnel';
  if (id === 'migration-port') return plan.transport !== 'ssh-tunnel';
  if (id === 'postcopy') return plan.mode !== 'precopy';
  if (id === 'qemu-versions' || id === 'machine-type' || id === 'firmware') return false; // only when both versions are known
  return true;
}

export async function preflight(plan: MigrationPlan, hosts: EngineHosts, limits: { checkMs?: number; totalMs?: number } = {}): Promise<PreflightResult> {
  const t0 = Date.now();
  const checks: PreflightCheck[] = [];
  const totalMs = limits.totalMs ?? PREFLIGHT_LIMIT_MS;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => {
    timer = setTimeout(() => r('late'), totalMs);
  });
  try {
    const done = await Promise.race([runChecks(plan, hosts, checks, limits.checkMs ?? CHECK_LIMIT_MS), late]);
    if (done !== 'late') return done;
  } finally {
    clearTimeout(timer);
  }
  const out = [...checks];
  const seen = new Set(out.map((c) => c.id));
  const first = ['source-reachable', 'destination-reachable', 'source-vm'].find((id) => !seen.has(id));
  if (first) out.push({ id: first, title: TITLES[first]!, status: 'fail', reason: `no answer within ${Math.round(totalMs / 1000)} s`, fix: 'check that the host is up and not overloaded, then run the preflight again' });
  out.push({ id: 'internal', title: 'Preflight', status: 'warn', reason: `stopped after ${Math.round(totalMs / 1000)} s; checks not finished are not shown` });
  out.sort((a, b) => ORDER.indexOf(a.id) - ORDER.indexOf(b.id));
  return { ok: false, checks: out, tookMs: Date.now() - t0 };
}

async function runChecks(plan: MigrationPlan, hosts: EngineHosts, checks: PreflightCheck[], checkMs: number): Promise<PreflightResult> {
  const t0 = Date.now();
  const add = (id: string, title: string, c: Check) => checks.push({ id, title, ...c });
  let src: { host: HostConfig; t: HostTransport } | undefined;
  let dst: { host: HostConfig; t: HostTransport } | undefined;
  const connect = async (id: string) => ({ host: await hosts.host(id), t: await hosts.transport(id) });
  const [s, d] = await Promise.allSettled([connect(plan.from), connect(plan.to)]);
  if (s.status === 'fulfilled') src = s.value;
  else add('source-reachable', 'Source host reachable', fail(toFerryError(s.reason).message, 'check the host settings and that it is up'));
  if (d.status === 'fulfilled') dst = d.value;
  else add('destination-reachable', 'Destination reachable', fail(toFerryError(d.reason).message, 'check the host settings, SSH access and its host key'));
  if (!src || !dst) return { ok: false, checks, tookMs: Date.now() - t0 };
  const S = src;
  const D = dst;

  // Ferry's own VM, or a QEMU started by something else and found through the host's globs.
  const vm = await findQemuVm(S.host, S.t, plan.vm);
  if (!vm) {
    add('source-vm', 'VM running on the source', fail(noSuchVm(plan.vm, plan.from).message, `start it with ferry vm start ${plan.from} ${plan.vm}, or add its QMP socket to the host's qmpSocketGlobs`));
    return { ok: false, checks, tookMs: Date.now() - t0 };
  }
  add('source-vm', 'VM running on the source', pass(vm.manager === 'qemu'
    ? `${plan.vm} runs on ${plan.from} (pid ${vm.pid}, started outside Ferry: adopted through ${vm.adoptedSocket})`
    : `${plan.vm} runs on ${plan.from} (pid ${vm.pid})`));
  const record = vm.record;

  // The running source, asked once through its spare monitor: its QEMU version and schema, its concrete machine type.
  let q: QmpClient | undefined;
  let srcQmpError: string | undefined;
  try {
    // Ferry's VM: its aux monitor (the main one is the engine's); an adopted QEMU: the socket it was found by.
    q = await QmpClient.connect(await S.t.openUnix(vm.manager === 'ferry' ? vm.files.auxQmpSocket : vm.qmpSockets[0]!), { handshakeTimeoutMs: 2000 });
  } catch (e) {
    srcQmpError = toFerryError(e).message;
  }
  const srcFeatures: Promise<MigrationFeatures | undefined> = q ? featuresOf(q).catch(pfLog.dropped('source migration features (the check reports what is missing)', 'debug')) : Promise.resolve(undefined);
  const identity: Promise<SourceIdentity> = sourceIdentity(record, q);
  const dstProbe: Promise<QemuProbe | undefined> = probeQemu(D.t, qemuOf(D.host)).catch(pfLog.dropped('probing the destination QEMU (the check reports what is missing)', 'debug'));
  const srcVersion = async () => (q ? greetingVersion(q) : undefined) ?? record.qemuVersion ?? (await qemuVersionOf(S.t, record.qemu ?? qemuOf(S.host)))?.join('.');


  const tasks: Promise<void>[] = [];
  tasks.push((async () => {
    const dstQemu = qemuOf(D.host);
    const [svs, probe] = await Promise.all([srcVersion(), dstProbe]);
    const dvs = probe?.version ?? (await qemuVersionOf(D.t, dstQemu))?.join('.');
    if (!dvs) {
      add('destination-qemu', 'QEMU on the destination', fail(`${dstQemu.binary} not found on ${plan.to} (or it does not run there)`, D.host.qemu ? 'check the host\'s qemu.binary setting' : 'install qemu-system-x86 there'));
      return;
    }
    add('destination-qemu', 'QEMU on the destination', pass(`QEMU ${dvs} on ${plan.to}${D.host.qemu ? ` (${dstQemu.binary})` : ''}`));
    const sv = parseQemuVersion(svs);
    const dv = parseQemuVersion(dvs)!;
    if (!sv) return;
    const c = compareVersions(dv, sv);
    add('qemu-versions', 'QEMU versions', c === 0 ? pass(`both ${svs}`)
      : c > 0 ? pass(`QEMU ${svs} on ${plan.from} -> QEMU ${dvs} on ${plan.to}: an upgrade (newer QEMUs read older streams when the machine type is the same)`)
      : fail(`${plan.to} runs QEMU ${dvs}, older than QEMU ${svs} on ${plan.from}: migrating to an older QEMU is not supported upstream`, `upgrade QEMU on ${plan.to} to ${svs} or later, or pick another destination`));
  })());

  tasks.push((async () => {
    const [id, probe] = await Promise.all([identity, dstProbe]);
    if (!probe) return; // destination-qemu says why
    const m = probe.machines.find((x) => x.name === id.machine);
    if (!m) {
      add('machine-type', 'Machine type on the destination', fail(`the VM runs machine type ${id.machine}, which QEMU ${probe.version} on ${plan.to} does not have`, 'migrate to a QEMU that still has it (versioned machine types are removed after 6 years)'));
      return;
    }
    add('machine-type', 'Machine type on the destination', m.deprecated
      ? warn(`${id.machine} is deprecated in QEMU ${probe.version} on ${plan.to}: a later QEMU will drop it`, 'plan a cold restart on a newer machine type')
      : pass(`${id.machine} available in QEMU ${probe.version} (the destination starts with it, not with an alias)`));
    const spec = destinationSpec(record, id, S.host, D.host);
    if (spec.bios) {
      const r = await D.t.exec(['test', '-r', spec.bios]).catch(pfLog.dropped('looking for the firmware on the destination (the check reports what is missing)', 'debug'));
      add('firmware', 'Firmware on the destination', r?.code === 0 ? pass(`${spec.bios}, CPU ${id.cpu}`) : fail(`firmware ${spec.bios} is missing on ${plan.to}`, 'install the same firmware there (qemu-system-data)'));
    }
  })());

  tasks.push((async () => {
    if (record.accel !== 'kvm') {
      add('accelerator', 'Accelerator', pass('TCG: no hardware needed'));
      return;
    }
    const a = await detectAccel(D.t);
    add('accelerator', 'Accelerator', a === 'kvm' ? pass('KVM usable on the destination') : fail(`the VM runs under KVM but /dev/kvm is not usable on ${plan.to}`, 'enable KVM there (module, permissions)'));
  })());

  tasks.push((async () => {
    const mem = memoryMiBFromArgv(record.argv) ?? 0;
    const r = await D.t.readFile('/proc/meminfo').catch(pfLog.dropped('/proc/meminfo on the destination (the check reports what is missing)', 'debug'));
    const avail = r ? Number(/MemAvailable:\s+(\d+)/.exec(r.toString())?.[1] ?? NaN) / 1024 : NaN;
    if (!Number.isFinite(avail)) {
      add('memory', 'Free memory on the destination', warn('could not read /proc/meminfo on the destination'));
      return;
    }
    const need = mem + 64;
    add('memory', 'Free memory on the destination', avail >= need * 1.2 ? pass(`${Math.round(avail)} MiB available for a ${Math.round(mem)} MiB guest`)
      : avail >= need ? warn(`only ${Math.round(avail)} MiB available for a ${Math.round(mem)} MiB guest`, 'free memory on the destination')
      : fail(`${Math.round(avail)} MiB available, the guest needs ${Math.round(need)} MiB`, 'free memory or pick another destination'));
  })());

  // copyStorage: what will be copied, to where, and whether it fits.
  const diskCopies = () => planDiskCopiesFromFiles(S.t, S.host, D.host, record.spec.disks);
  if (plan.copyStorage) {
    tasks.push((async () => {
      if (vm.manager === 'qemu') {
        add('storage-copy', 'Storage copy', fail('Ferry copies the disks of VMs it started; this QEMU was started outside Ferry', 'put its disks on shared storage at the same path, and migrate without --copy-storage'));
        return;
      }
      try {
        add('storage-copy', 'Storage copy', await storageCheck(plan, await diskCopies(), D.t));
      } catch (e) {
        add('storage-copy', 'Storage copy', fail(toFerryError(e).message));
      }
    })());
  }

  tasks.push((async () => {
    const copied = plan.copyStorage ? new Set((record.spec.disks ?? []).map((d) => d.path)) : new Set<string>();
    const files = filesOfArgv(record.argv).filter((f) => !copied.has(f));
    if (files.length === 0) {
      add('storage', 'Disks and kernel on the destination', pass('the VM uses no files'));
      return;
    }
    const size = async (t: HostTransport, f: string) => {
      const r = await t.exec(['stat', '-L', '-c', '%s', '--', f]).catch(pfLog.dropped('stat of a VM file (the check reports what is missing)', 'debug'));
      return r?.code === 0 ? Number(r.stdout.trim()) : undefined;
    };
    const problems: string[] = [];
    for (const f of files) {
      const [a, b] = await Promise.all([size(S.t, f), size(D.t, f)]);
      if (b === undefined) problems.push(`${f} missing`);
      else if (a !== b) problems.push(`${f} differs in size (${a} vs ${b} bytes)`);
    }
    if (problems.length && !plan.copyStorage && record.spec.disks?.length && vm.manager === 'ferry') {
      // Local storage: offer the storage copy, with what it would take on the destination.
      const offer = await diskCopies().then((d) => storageCheck({ ...plan, mode: 'precopy' }, d, D.t)).catch(pfLog.dropped('the storage-copy offer (the check reports what is missing)', 'debug'));
      add('storage', 'Disks and kernel on the destination', fail(`on ${plan.to}: ${problems.join('; ')}`,
        `migrate with copyStorage (--copy-storage)${offer ? `: ${offer.reason}` : ''}, or put the files on shared storage at the same path`));
      return;
    }
    add('storage', 'Disks and kernel on the destination', problems.length === 0
      ? pass(files.length === 0 ? 'nothing else to find there' : `${files.length} file(s) present with the same size${plan.copyStorage ? '' : ' (shared storage)'}`)
      : fail(`on ${plan.to}: ${problems.join('; ')}`, 'put the files on shared storage at the same path'));
  })());

  tasks.push((async () => {
    try {
      // Round-trip compensated readings of both hosts' clocks against Ferry's (clock-offset.ts).
      const [a, b] = await Promise.all([measureClock(S.t), measureClock(D.t)]);
      const { offsetMs, uncertaintyMs } = offsetBetween(a, b);
      const off = Math.abs(offsetMs);
      const text = `${Math.round(off)} ± ${Math.max(1, Math.round(uncertaintyMs))} ms apart`;
      add('clock', 'Clock offset between the hosts', off - uncertaintyMs <= 100 ? pass(text) : warn(`clocks ${text}: guest time will jump`, 'run NTP/chrony on both hosts'));
    } catch (e) {
      add('clock', 'Clock offset between the hosts', warn(`could not compare clocks: ${toFerryError(e).message}`));
    }
  })());

  tasks.push((async () => {
    const dstFiles = vmFiles(runtimeDirOf(D.host), plan.vm);
    const pid = await readPid(D.t, dstFiles.pidFile);
    const busy = pid !== undefined && (await processAlive(D.t, pid));
    add('name-free', 'VM name free on the destination', busy ? fail(`a VM named ${plan.vm} already runs on ${plan.to} (pid ${pid})`, `stop it: ferry vm stop ${plan.to} ${plan.vm}`) : pass(`no ${plan.vm} on ${plan.to}`));
  })());

  if (plan.transport === 'ssh-tunnel') {
    tasks.push((async () => {
      add('ssh-tunnel', 'Migration stream through SSH', await tunnelCheck(plan, { t: S.t, dir: runtimeDirOf(S.host) }, { t: D.t }));
    })());
  } else tasks.push((async () => {
    const addr = migrationAddressOf(D.host, D.t);
    const port = 49152 + Math.floor(Math.random() * 10000);
    const have = await D.t.exec(['sh', '-c', 'command -v socat']).catch(pfLog.dropped('socat on the destination (the check reports what is missing)', 'debug'));
    const haveSrc = await S.t.exec(['sh', '-c', 'command -v socat']).catch(pfLog.dropped('socat on the source (the check reports what is missing)', 'debug'));
    if (have?.code !== 0 || haveSrc?.code !== 0) {
      add('migration-port', 'Migration address reachable', warn(`cannot test ${addr} without socat on both hosts`));
      return;
    }
    const listener = await D.t.spawn(['timeout', '5', 'socat', '-u', `TCP-LISTEN:${port},bind=${addr},reuseaddr`, 'OPEN:/dev/null']);
    try {
      let ok = false;
      for (let i = 0; i < 20 && !ok; i++) {
        const r = await S.t.exec(['socat', '-u', 'OPEN:/dev/null', `TCP:${addr}:${port},connect-timeout=1`]);
        ok = r.code === 0;
        if (!ok) await new Promise((res) => setTimeout(res, 50));
      }
      add('migration-port', 'Migration address reachable', ok ? pass(`${plan.from} reaches ${addr} over TCP`) : fail(`${plan.from} cannot open TCP to ${addr}`, 'check routes and firewalls between the hosts, or set the host\'s migration address'));
    } finally {
      listener.kill('SIGKILL');
    }
  })());

  if (plan.mode !== 'precopy') {
    tasks.push((async () => {
      const uid = await D.t.exec(['id', '-u']);
      const unpriv = await D.t.readFile('/proc/sys/vm/unprivileged_userfaultfd').then((b) => b.toString().trim()).catch(pfLog.dropped('unprivileged_userfaultfd on the destination (the check reports what is missing)', 'debug'));
      const ok = uid.stdout.trim() === '0' || unpriv === '1';
      add('postcopy', 'Postcopy possible (userfaultfd)', ok ? pass(uid.stdout.trim() === '0' ? 'QEMU runs as root: userfaultfd available' : 'unprivileged userfaultfd allowed')
        : fail('QEMU is not root and unprivileged userfaultfd is off', 'sysctl vm.unprivileged_userfaultfd=1, or plan precopy'));
    })());
  }

  tasks.push((async () => {
    // Each end's own schema decides: a capability one end lacks (e.g. `compress`, gone in 9.1) fails here, not mid-migration.
    const extra = Object.entries(plan.capabilities ?? {}).filter(([, on]) => on).map(([k]) => k);
    const both = [...new Set(['events', ...(plan.mode !== 'precopy' ? ['postcopy-ram'] : []), ...(plan.multifdChannels ? ['multifd'] : []), ...extra])];
    const sourceOnly = [...(plan.autoConverge ? ['auto-converge'] : []), ...(plan.xbzrleCacheBytes ? ['xbzrle'] : [])];
    const [sf, probe] = await Promise.all([srcFeatures, dstProbe]);
    if (!sf) {
      add('capabilities', 'Capabilities supported', warn(`could not ask the source QEMU: ${srcQmpError ?? 'no schema'}`));
      return;
    }
    const problems: string[] = [];
    const lack = (f: MigrationFeatures, names: string[], who: string) => {
      const missing = names.filter((n) => !f.capabilities.includes(n));
      if (missing.length) problems.push(`${who}'s QEMU ${f.version ?? ''} has no ${missing.join(', ')}`);
    };
    lack(sf, [...both, ...sourceOnly], plan.from);
    if (probe) lack(probe.features, both, plan.to);
    let newer: string[] = [];
    try {
      const n = newerFeatureSettings(plan, sf, probe?.features ?? sf);
      newer = [...Object.keys(n.sourceCaps), ...Object.keys(n.sourceParams)];
    } catch (e) {
      problems.push(toFerryError(e).message);
    }
    if (plan.dirtyLimitMBps !== undefined && !/(?:^|,)dirty-ring-size=\d+/.test(argAfter(record.argv, '-accel')[0] ?? '')) {
      problems.push(`dirty-limit needs KVM's dirty ring, and ${plan.vm} was started without one (-accel kvm,dirty-ring-size=N)`);
    }
    const listed = [...new Set([...both, ...sourceOnly, ...newer])].join(', ');
    add('capabilities', 'Capabilities supported', problems.length === 0 ? pass(listed) : fail(problems.join('; '), 'drop them from the plan, or run a QEMU that has them on that host (ferry lab up --qemu-b PATH)'));
  })());

  const before = new Set(checks.map((c) => c.id));
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => {
    timer = setTimeout(() => r('late'), checkMs);
  });
  const all = Promise.all(tasks.map((p) => p.catch((e: unknown) => add('internal', 'Preflight', warn(`a check could not run: ${toFerryError(e).message}`)))));
  const settled = await Promise.race([all, late]);
  clearTimeout(timer);
  q?.close();
  // A late check must not change the result after it is returned: copy what is there now.
  const out = [...checks];
  if (settled === 'late') {
    const reported = new Set(out.map((c) => c.id));
    const missing = ORDER.filter((id) => !before.has(id) && !reported.has(id) && id !== 'internal' && expectedCheck(id, plan));
    out.push({ id: 'internal', title: 'Preflight', status: 'warn', reason: `not finished within ${Math.round(checkMs / 1000)} s: ${missing.join(', ') || 'some checks'} (host slow or busy)`, fix: 'run the preflight again' });
  }
  out.sort((a, b) => ORDER.indexOf(a.id) - ORDER.indexOf(b.id));
  return { ok: !out.some((c) => c.status === 'fail'), checks: out, tookMs: Date.now() - t0 };
}

