/**
 * Pre-migration checks for a libvirt domain, asked of libvirt itself wherever it can say:
 * both daemons reachable and their versions, the domain there and running, libvirt's own
 * refusals (its Begin phase, word for word), the machine type and CPU on the destination
 * (domcapabilities, hypervisor-cpu-compare), memory, disks shared or to copy, postcopy.
 *
 * libvirt's own verdict on the source comes from a dry run: `virsh migrate` with the plan's
 * options to the *source's own* daemon. libvirt runs every check of its Begin phase (device
 * types, storage safety, job state, flags that do not go together), and if they all pass,
 * the Prepare phase refuses at once with "Attempt to migrate guest to the same host",
 * before anything is started. Any other answer is the reason libvirt would give.
 */
import { toFerryError } from '../../../shared/errors';
import type { MigrationPlan } from '../../../shared/model/migration';
import { planAllowsPostcopy } from '../../../shared/model/migration';
import type { PreflightCheck, PreflightResult } from '../../../shared/model/preflight';
import type { HostConfig } from '../../../shared/model/host';
import type { HostTransport } from '../transport/host-transport';
import { capabilitiesNeeded } from '../migration/drivers/hypervisor-driver';
import type { DriverCapability, EngineHosts } from '../migration/drivers/hypervisor-driver';
import { cmpVersion as cmp, migrateOptions, unsupportedByLibvirt, withTempFile } from './libvirt-plan';
import type { LibvirtConnection, LibvirtPool } from './libvirt-connection';
import { domainDisks, domainInfo, findDomain, xpathAttributes, xpathTexts, xpathXml } from './libvirt-domains';
import type { DomainSummary } from './libvirt-domains';
import { VirshProcess } from './virsh-process';
import { VirshError } from './virsh-shell';
import { parseNodeMemStats, parseVersion } from './virsh-text';

type Check = Omit<PreflightCheck, 'id' | 'title'>;
const pass = (reason: string): Check => ({ status: 'pass', reason });
const warn = (reason: string, fix?: string): Check => (fix ? { status: 'warn', reason, fix } : { status: 'warn', reason });
const fail = (reason: string, fix?: string): Check => (fix ? { status: 'fail', reason, fix } : { status: 'fail', reason });

const ORDER = ['source-reachable', 'destination-reachable', 'libvirt-versions', 'source-vm', 'plan', 'libvirt-accepts', 'name-free', 'machine-type', 'cpu', 'memory', 'storage', 'postcopy', 'internal'];

/** What the libvirt driver cannot do (the run refuses such a plan: say so here first). */
const LIBVIRT_LACKS: Partial<Record<DriverCapability, string>> = {
  'ssh-tunnel': 'transport ssh-tunnel: libvirt streams QEMU to QEMU (its own --tunnelled needs peer-to-peer migration and SSH trust between the hosts)',
  'pause-before-switchover': 'pauseBeforeSwitchover: libvirt offers no pause before switchover',
  'qemu-capabilities': 'capabilities: libvirt sets QEMU\'s migration capabilities itself; use the plan\'s own options',
};

const versionText = (v: { daemon?: string; library?: string; hypervisorName?: string; hypervisor?: string }) =>
  `libvirt ${v.daemon ?? v.library ?? '?'}${v.hypervisor ? ` (${v.hypervisorName ?? 'QEMU'} ${v.hypervisor})` : ''}`;

interface End {
  host: HostConfig;
  t: HostTransport;
  conn: LibvirtConnection;
}

export async function libvirtPreflight(plan: MigrationPlan, hosts: EngineHosts, pool: LibvirtPool): Promise<PreflightResult> {
  const t0 = Date.now();
  const checks: PreflightCheck[] = [];
  const add = (id: string, title: string, c: Check) => checks.push({ id, title, ...c });
  const done = (): PreflightResult => {
    checks.sort((a, b) => ORDER.indexOf(a.id) - ORDER.indexOf(b.id));
    return { ok: !checks.some((c) => c.status === 'fail'), checks, tookMs: Date.now() - t0 };
  };
  const connect = async (id: string): Promise<End> => {
    const host = await hosts.host(id);
    const t = await hosts.transport(id);
    if (!host.libvirt) throw new Error(`${id} is not a libvirt host (a libvirt domain migrates to another libvirt host: set "libvirt" in its config)`);
    return { host, t, conn: await pool.get(host, t) };
  };
  const [s, d] = await Promise.allSettled([connect(plan.from), connect(plan.to)]);
  if (s.status === 'rejected') add('source-reachable', 'Source libvirt reachable', fail(toFerryError(s.reason).message, 'check the host, its SSH access and that libvirt runs there'));
  if (d.status === 'rejected') add('destination-reachable', 'Destination libvirt reachable', fail(toFerryError(d.reason).message, 'check the host, its SSH access and that libvirt runs there'));
  if (s.status === 'rejected' || d.status === 'rejected') return done();
  const S = s.value;
  const D = d.value;

  const [sv, dv] = await Promise.all([S.conn.run(['version', '--daemon']).then(parseVersion), D.conn.run(['version', '--daemon']).then(parseVersion)]);
  add('source-reachable', 'Source libvirt reachable', pass(`${plan.from}: ${versionText(sv)} at ${S.conn.remoteSocket} via ${S.t.label}`));
  add('destination-reachable', 'Destination libvirt reachable', pass(`${plan.to}: ${versionText(dv)} at ${D.conn.remoteSocket} via ${D.t.label}`));
  if (sv.hypervisor && dv.hypervisor) {
    const c = cmp(dv.hypervisor, sv.hypervisor);
    add('libvirt-versions', 'libvirt and QEMU versions', c < 0
      ? fail(`QEMU ${dv.hypervisor} on ${plan.to} is older than ${sv.hypervisor} on ${plan.from}: migrating to an older QEMU is not supported`, 'upgrade QEMU on the destination')
      : cmp(dv.daemon ?? '0', sv.daemon ?? '0') < 0
        ? warn(`libvirt ${dv.daemon} on ${plan.to} is older than ${sv.daemon} on ${plan.from}`, 'newer features (postcopy recovery: 8.5) need both ends')
        : pass(c === 0 && sv.daemon === dv.daemon ? `both ${versionText(sv)}` : `${versionText(sv)} -> ${versionText(dv)}`));
  }

  const found = await findDomain(S.conn, plan.vm);
  if (!found) {
    add('source-vm', 'Domain on the source', fail(`no libvirt domain named ${JSON.stringify(plan.vm)} on ${plan.from}`, 'virsh list --all on the source shows the names (they are case- and space-sensitive)'));
    return done();
  }
  const info: DomainSummary = await domainInfo(S.conn, found.uuid, found.name);
  if (info.state !== 'running' && info.state !== 'paused') {
    add('source-vm', 'Domain on the source', fail(`${JSON.stringify(found.name)} is ${info.state} on ${plan.from}: only a running domain migrates live`, `start it (virsh start ${found.uuid})`));
    return done();
  }
  add('source-vm', 'Domain on the source', pass(`${found.name} is ${info.state} on ${plan.from} (${info.persistent ? 'persistent' : 'transient'}, id ${info.id ?? '-'}, uuid ${found.uuid})`));
  const uuid = found.uuid;

  const lacks = capabilitiesNeeded(plan).map((c) => LIBVIRT_LACKS[c]).filter((x): x is string => x !== undefined);
  const problems = [...unsupportedByLibvirt(plan), ...lacks];
  const opts = migrateOptions(plan, info.persistent, undefined);
  add('plan', 'Plan through libvirt', problems.length
    ? fail(`libvirt cannot: ${problems.join('; ')}`, 'drop those options from the plan')
    : pass(`${opts.persistent ? `defined on ${plan.to}` : 'transient on the destination'}${opts.undefineSource ? `, undefined on ${plan.from}` : info.persistent ? `, ${plan.from} keeps its definition` : ''}; bandwidth ${opts.parameters.bandwidthMiBs === 'unlimited' ? 'unlimited' : `${opts.parameters.bandwidthMiBs} MiB/s`}, downtime limit ${opts.parameters.downtimeLimitMs} ms${planAllowsPostcopy(plan) ? ', postcopy allowed' : ''}`));

  const tasks: Promise<void>[] = [];

  tasks.push((async () => {
    // The dry run (see the file's header): same options, the source's own daemon as destination.
    const flags = opts.flags.filter((f, i, all) => f !== '--bandwidth' && all[i - 1] !== '--bandwidth');
    const p = new VirshProcess(S.conn, ['migrate', ...flags, '--domain', uuid, '--desturi', S.conn.uri]);
    const timer = setTimeout(() => p.kill(), 30_000);
    const x = await p.exited.finally(() => clearTimeout(timer));
    const reason = x.errors.at(-1) ?? '';
    if (x.code !== 0 && /Attempt to migrate guest to the same host/.test(reason)) {
      add('libvirt-accepts', 'libvirt accepts the migration', pass(`libvirt's own checks on ${plan.from} pass for these options`));
    } else if (x.code === 0) {
      add('libvirt-accepts', 'libvirt accepts the migration', warn('the dry run against the source itself did not stop where it should; libvirt\'s verdict is unknown'));
    } else {
      add('libvirt-accepts', 'libvirt accepts the migration', fail(`libvirt refuses: ${x.errors.join(': ') || reason || `virsh exit ${x.code}`}`, 'what libvirt says is what to change (the domain, or the plan\'s options)'));
    }
  })());

  tasks.push((async () => {
    const byName = await findDomain(D.conn, found.name);
    const byUuid = await domainInfo(D.conn, uuid).catch((e: unknown) => (e instanceof VirshError ? undefined : Promise.reject(e)));
    if (byName && byName.uuid !== uuid) add('name-free', 'Name free on the destination', fail(`${plan.to} has another domain named ${JSON.stringify(found.name)} (uuid ${byName.uuid})`, 'rename or undefine one of them'));
    else if (byUuid && byUuid.state !== 'shut off') add('name-free', 'Name free on the destination', fail(`${JSON.stringify(byUuid.name)} (same uuid) is already ${byUuid.state} on ${plan.to}`));
    else add('name-free', 'Name free on the destination', pass(byUuid ? `${plan.to} has this domain defined, shut off: libvirt takes it over` : `no ${found.name} on ${plan.to}`));
  })());

  // What the domain needs from the destination's QEMU, from its migratable XML.
  const [virttype] = await xpathAttributes(S.conn, uuid, '/domain/@type');
  const [machine] = await xpathAttributes(S.conn, uuid, '/domain/os/type/@machine');
  const [arch] = await xpathAttributes(S.conn, uuid, '/domain/os/type/@arch');
  const [emulator] = await xpathTexts(S.conn, uuid, '/domain/devices/emulator/text()');
  const target = [...(virttype ? ['--virttype', virttype] : []), ...(emulator ? ['--emulatorbin', emulator] : []), ...(arch ? ['--arch', arch] : []), ...(machine ? ['--machine', machine] : [])];

  tasks.push((async () => {
    try {
      await D.conn.run(['domcapabilities', ...target]);
      add('machine-type', 'Machine type on the destination', pass(`${machine ?? '?'} (${virttype ?? '?'}, ${emulator ?? 'default emulator'}) is known on ${plan.to}`));
    } catch (e) {
      add('machine-type', 'Machine type on the destination', fail(e instanceof VirshError ? e.reason : toFerryError(e).message, 'a machine type both QEMUs know (a versioned one such as pc-i440fx-7.2 stays the same across QEMU versions)'));
    }
  })());

  tasks.push((async () => {
    const cpu = await xpathXml(S.conn, uuid, '/domain/cpu', ['--migratable']);
    if (!cpu) {
      add('cpu', 'CPU on the destination', pass('the domain names no CPU model: QEMU\'s default'));
      return;
    }
    const [mode] = await xpathAttributes(S.conn, uuid, '/domain/cpu/@mode', ['--inactive']);
    const [check] = await xpathAttributes(S.conn, uuid, '/domain/cpu/@check', ['--inactive']);
    if (mode === 'host-passthrough' || mode === 'maximum') {
      add('cpu', 'CPU on the destination', warn(`${mode}: the guest sees ${plan.from}'s CPU as it is; ${plan.to} must have the same CPU`, 'host-model or a named model migrates between different CPUs'));
      return;
    }
    try {
      const out = await withTempFile(cpu, (file) => D.conn.run(['hypervisor-cpu-compare', file, ...target, '--error']));
      add('cpu', 'CPU on the destination', pass(out.trim().replace(/^CPU described in \S+ is /, 'the CPU is ') || 'compatible'));
    } catch (e) {
      const why = e instanceof VirshError ? e.reason : toFerryError(e).message;
      add('cpu', 'CPU on the destination', check === 'none'
        ? warn(`${why}; the domain says check='none', so libvirt will not stop it and the guest may miss those features`, 'a CPU model the destination provides')
        : fail(why, 'a CPU model the destination provides, or a host-model CPU'));
    }
  })());

  tasks.push((async () => {
    const mem = parseNodeMemStats(await D.conn.run(['nodememstats']));
    const availKiB = (mem.free ?? 0) + (mem.buffers ?? 0) + (mem.cached ?? 0);
    const needKiB = (info.memoryKiB ?? 0) + 64 * 1024;
    const mib = (k: number) => Math.round(k / 1024);
    add('memory', 'Free memory on the destination', availKiB >= needKiB * 1.2 ? pass(`${mib(availKiB)} MiB free or reclaimable for a ${mib(info.memoryKiB ?? 0)} MiB domain`)
      : availKiB >= needKiB ? warn(`only ${mib(availKiB)} MiB free or reclaimable for a ${mib(info.memoryKiB ?? 0)} MiB domain`, 'free memory on the destination')
      : fail(`${mib(availKiB)} MiB free or reclaimable, the domain needs ${mib(needKiB)} MiB`, 'free memory or pick another destination'));
  })());

  tasks.push((async () => {
    const disks = (await domainDisks(S.conn, uuid)).filter((x) => x.source);
    const boot = [
      ...(await xpathTexts(S.conn, uuid, '/domain/os/kernel/text()')),
      ...(await xpathTexts(S.conn, uuid, '/domain/os/initrd/text()')),
      ...(await xpathTexts(S.conn, uuid, '/domain/os/loader/text()')),
    ];
    const size = async (t: HostTransport, f: string) => {
      const r = await t.exec(['stat', '-L', '-c', '%s', '--', f]).catch(() => undefined); // no size: the check reports the file missing
      return r?.code === 0 ? Number(r.stdout.trim()) : undefined;
    };
    const missing: string[] = [];
    const toCopy: string[] = [];
    const shared: string[] = [];
    for (const f of boot) if ((await size(D.t, f)) === undefined) missing.push(`${f} (boot file: libvirt does not copy it)`);
    for (const disk of disks) {
      const f = disk.source!;
      const [a, b] = await Promise.all([size(S.t, f), size(D.t, f)]);
      const copied = plan.copyStorage && disk.device === 'disk' && !disk.readonly && !disk.shareable;
      if (copied) toCopy.push(`${disk.target} ${f}${b === undefined ? ' (created on the destination)' : ''}`);
      else if (b === undefined) missing.push(`${f} (${disk.target})`);
      else if (a !== b) missing.push(`${f} differs in size (${a} vs ${b} bytes)`);
      else shared.push(f);
    }
    if (missing.length) {
      add('storage', 'Disks and boot files on the destination', fail(`on ${plan.to}: ${missing.join('; ')}`, disks.length && !plan.copyStorage ? 'migrate with --copy-storage (libvirt --copy-storage-all), or put the files on shared storage at the same path' : 'put the files on shared storage at the same path'));
      return;
    }
    add('storage', 'Disks and boot files on the destination', pass([
      toCopy.length ? `copied by libvirt: ${toCopy.join(', ')}` : '',
      shared.length ? `${shared.length} disk(s) found with the same size (shared storage)` : '',
      boot.length ? `${boot.length} boot file(s) present` : '',
      !disks.length && !boot.length ? 'the domain uses no files' : '',
    ].filter(Boolean).join('; ')));
  })());

  if (planAllowsPostcopy(plan)) {
    tasks.push((async () => {
      // libvirt's QEMU runs as qemu.conf's user: userfaultfd needs root, or the sysctl.
      const conf = await D.t.readFile('/etc/libvirt/qemu.conf').then((b) => b.toString()).catch(() => ''); // unreadable: libvirt's default user, and the check says so
      const user = /^\s*user\s*=\s*"([^"]*)"/m.exec(conf)?.[1];
      const unpriv = await D.t.readFile('/proc/sys/vm/unprivileged_userfaultfd').then((b) => b.toString().trim()).catch(() => undefined); // shown as "unknown" in the warning
      const recover = cmp(dv.daemon ?? '0', '8.5.0') >= 0 && cmp(sv.daemon ?? '0', '8.5.0') >= 0;
      const tail = recover ? '; pause and recovery available (libvirt 8.5+)' : '; no pause/recovery (needs libvirt 8.5 on both ends)';
      if (user === 'root' || user === '+0') add('postcopy', 'Postcopy possible (userfaultfd)', pass(`QEMU runs as root on ${plan.to}${tail}`));
      else if (unpriv === '1') add('postcopy', 'Postcopy possible (userfaultfd)', pass(`unprivileged userfaultfd is allowed on ${plan.to}${tail}`));
      else add('postcopy', 'Postcopy possible (userfaultfd)', warn(`QEMU runs as ${user ?? 'libvirt\'s default user'} on ${plan.to} and vm.unprivileged_userfaultfd is ${unpriv ?? 'unknown'}: postcopy may fail there`, 'sysctl vm.unprivileged_userfaultfd=1 on the destination, or plan precopy'));
    })());
  }

  await Promise.all(tasks.map((p) => p.catch((e: unknown) => add('internal', 'Preflight', warn(`a check could not run: ${toFerryError(e).message}`)))));
  return done();
}
