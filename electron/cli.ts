/**
 * The `ferry` command line. Plain, scriptable output; `--json` where a script wants it.
 * Exit codes: 0 ok, 1 the operation failed, 2 bad usage.
 */
import path from 'node:path';
import { ConsoleService } from './core/console-service';
import { FerryException, toFerryError } from '../shared/errors';
import type { HostInfo } from '../shared/contract';
import type { VmInfo } from '../shared/model/vm';
import { labDown, labHosts, labStatus, labUp, demoVmSpec } from './core/lab/local-lab';
import type { LabStatus } from './core/lab/local-lab';
import { launchVm, stopVm } from './core/hosts/vm-launcher';
import { runtimeDirOf } from './core/hosts/vm-discovery';
import { GuestConsole } from './core/lab/demo-guest';
import { formatBytes, formatMs, formatRate, parseByteSize } from '../shared/analysis/units';
import type { MigrationPlanInput, MigrationSample } from '../shared/model/migration';
import type { MigrationRun } from './core/migration/migration-run';
import { startEvacuation } from './core/migration/evacuation';
import type { PreflightResult } from '../shared/model/preflight';
import type { SavedStateEntry, StateResult } from '../shared/model/saved-state';
import { readTimeline, timelineToCsv, timelineToJson, timelineToOpenMetrics } from './core/recorder/timeline-reader';
import { writeCompare, writeReport } from './core/recorder/report';
import { runLabDemo } from './core/lab/lab-demo';
import type { WrittenReport } from './core/recorder/report';
import { configureLog, rootLog } from './core/log';
import { defaultConfigDir } from './core/hosts/host-registry';
import { CliUsageError, controlCommand, migrationsCommand, recoverCommand, trustCommand } from './cli-ops';

const cliLog = rootLog.child('cli');

const USAGE = `usage: ferry <command> [options]

  ferry lab up [--netns | --libvirt] [--accel kvm|tcg|auto] [--memory MiB] [--qemu-a PATH] [--qemu-b PATH] [--dirty-ring N]
                                   start the local lab (lab-a, lab-b) with the demo VM on lab-a;
                                   --qemu-b: lab-b runs VMs with another QEMU (its firmware found beside it);
                                   --libvirt: two libvirt daemons, the demo guest a domain on lab-a
  ferry lab demo [--bandwidth MB/s] [--compare postcopy|converge] [--qemu-b PATH] [-o compare.html]
                                   precopy then postcopy of the same workload (converge: auto-converge
                                   vs dirty-limit, QEMU 8.1+ and KVM); writes their comparison
  ferry lab down                   stop everything the lab started
  ferry lab status [--json]
  ferry hosts list [--json]        the hosts Ferry knows, their state and QEMU version
  ferry vm list HOST [--json]      the VMs on a host (name, state, memory, QMP socket)
  ferry vm start HOST VM [--memory MiB] [--accel A] [--ws MiB] [--rate MiB/s|max] [--kernel PATH]
                                   start a VM (the demo guest unless --kernel says otherwise)
  ferry vm stop HOST VM            QMP quit, then SIGTERM/SIGKILL by pid
  ferry guest HOST VM 'COMMAND'    send a command to the demo guest and print its reply
                                   (r 200 = dirty 200 MiB/s, r max, w 128 = working set, v = verify, s = status)
  ferry migrate VM --from HOST --to HOST [--postcopy] [--postcopy-after N] [--bandwidth MB/s]
        [--downtime ms] [--auto-converge] [--xbzrle MiB] [--multifd N] [--keep-source] [--record FILE]
        [--capabilities NAME[=off],...]   any other QEMU migration capability (preflight checks QEMU has it)
                                   live-migrate a VM, with a live progress line
        [--policy postcopy-when-never|downtime-steps|dynamic-rate|deadline] [--deadline 90s] [--downtime-ceiling ms]
  ferry preflight VM --from HOST --to HOST [--postcopy] [--capabilities NAME,...]
                                   the checks a migration would run first (exit 1 when one fails)
  ferry evacuate HOST --to HOST[,HOST] [--parallel K] [--deadline 5m] [--bandwidth MB/s]
                                   move every VM off a host
  ferry attach HOST VM [--qmp-socket PATH] [--record FILE]
                                   watch and record a migration someone else runs (no control issued);
                                   VM: Ferry's, or a QEMU found through the host's qmpSocketGlobs;
                                   --qmp-socket: a VM Ferry did not start, by its QMP socket on HOST
  ferry migrations [--all] [--json]
                                   the migrations the Ferry processes of this user run now
  ferry control MIGRATION|VM cancel|postcopy|stop-vm|pause-postcopy|recover|continue
  ferry control MIGRATION|VM bandwidth MB/s | downtime ms
                                   act on a running migration from another shell, through the Ferry
                                   process that runs it (its timeline records who acted)
  ferry recover                    connect every host; pick up and follow the migrations a Ferry that
                                   was stopped or killed had started (e.g. after kill -9)
  ferry hosts trust HOST [--fingerprint SHA256:...]
                                   show the host key an SSH host presents; trust it once confirmed
  ferry save HOST VM FILE [--compress zstd|gzip] [--encrypt-to RECIPIENT] [--keep-running]
                                   save a VM's state to FILE on its host (relative: the host's states dir)
                                   and stop it (--keep-running: resume it, a checkpoint)
  ferry restore HOST FILE [--name VM] [--identity FILE]
                                   start the saved VM again from FILE (checked against its sidecar first)
  ferry states HOST [--json]       the saved states in a host's states dir
  ferry migrate|preflight … --copy-storage [--storage-bandwidth MB/s]
                                   copy the VM's disk images to the destination first (no shared storage)
  ferry migrate|preflight … --tunnel ssh
                                   carry the migration stream inside SSH (unix sockets relayed by Ferry)
  ferry timeline FILE --csv|--json|--openmetrics
                                   export a recorded timeline (OpenMetrics: for promtool tsdb create-blocks-from)
  ferry report FILE [-o report.html] [--with-log]
                                   a self-contained HTML report (charts, plan, preflight, events;
                                   --with-log: Ferry's log lines from while it ran, for support)
  ferry diagnostics                what to paste into a ticket: hosts, sessions, migrations, last log lines
  ferry compare A B [...] -o compare.html
                                   overlay two or more timelines, final figures side by side
                                   (timeline, report, compare: FILE may also be a Proxmox VE migration
                                   task log or a QEMU guestperf JSON report)
  ferry serve [--port N] [--metrics]
                                   the console in a browser; --metrics adds Prometheus /metrics (see README)
`;

class UsageError extends Error {}

interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}

function parseArgs(argv: string[], valued: string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o') {
      const val = argv[++i];
      if (val === undefined) throw new UsageError('-o needs a file name');
      flags.set('output', val);
    } else if (a.startsWith('--')) {
      const [k, v] = a.slice(2).split('=', 2) as [string, string | undefined];
      if (valued.includes(k)) {
        const val = v ?? argv[++i];
        if (val === undefined) throw new UsageError(`--${k} needs a value`);
        flags.set(k, val);
      } else {
        if (v !== undefined) throw new UsageError(`--${k} takes no value`);
        flags.set(k, true);
      }
    } else positional.push(a);
  }
  return { positional, flags };
}

function num(p: Parsed, flag: string, min: number, max: number): number | undefined {
  const v = p.flags.get(flag);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === true || !Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${flag} must be a number from ${min} to ${max}`);
  return n;
}

function accelOf(p: Parsed): 'auto' | 'kvm' | 'tcg' | undefined {
  const a = p.flags.get('accel');
  if (a === undefined) return undefined;
  if (a !== 'auto' && a !== 'kvm' && a !== 'tcg') throw new UsageError('--accel must be kvm, tcg or auto');
  return a;
}

/** `--capabilities zero-copy-send,validate-uuid=off`: QAPI capability names, on unless `=off`. */
function capabilitiesOf(p: Parsed): Record<string, boolean> | undefined {
  const v = p.flags.get('capabilities');
  if (v === undefined) return undefined;
  if (v === true) throw new UsageError('--capabilities needs a list, e.g. zero-copy-send,validate-uuid=off');
  const out: Record<string, boolean> = {};
  for (const item of v.split(',').filter(Boolean)) {
    const m = /^([a-z][a-z0-9-]*)(?:=(on|off|true|false))?$/.exec(item);
    if (!m) throw new UsageError(`--capabilities: "${item}" is not NAME or NAME=on|off`);
    out[m[1]!] = m[2] === undefined || m[2] === 'on' || m[2] === 'true';
  }
  return out;
}

function allowOnly(p: Parsed, allowed: string[]): void {
  for (const k of p.flags.keys()) if (!allowed.includes(k)) throw new UsageError(`unknown option --${k}`);
}

function printLab(s: LabStatus, out: NodeJS.WritableStream): void {
  out.write(`lab ${s.root}${s.netns ? ` (netns ${s.netns.namespaces.join(', ')})` : ''}${s.libvirt ? ` (libvirt: ${s.libvirt.daemons.map((d) => `${d.hostId} ${d.running ? 'up' : 'DOWN'}, host uuid ${d.hostUuid}`).join('; ')})` : ''}\n`);
  for (const h of s.hosts) {
    out.write(`${h.id}\tmigration address ${h.migrationAddress}\t${h.vms.length} VM(s)${h.qemu ? `\tQEMU ${h.qemu.binary}` : ''}\n`);
    for (const v of h.vms) out.write(`  ${v.name}\t${v.runState}\t${v.memoryMiB ?? '?'} MiB\tpid ${v.pid ?? '-'}\n`);
  }
}

async function reportCommand(cmd: 'report' | 'compare', argv: string[], out: NodeJS.WritableStream, errOut: NodeJS.WritableStream): Promise<number> {
  try {
    const p = parseArgs(argv, ['output']);
    allowOnly(p, cmd === 'report' ? ['output', 'with-log'] : ['output']);
    const o = p.flags.get('output');
    const output = typeof o === 'string' ? path.resolve(o) : undefined;
    let r: WrittenReport;
    if (cmd === 'report') {
      if (p.positional.length !== 1) throw new UsageError(`report: expected one timeline file, got ${p.positional.length}`);
      const withLog = p.flags.get('with-log') === true;
      // The log is this user's Ferry log (`<configDir>/logs`), as the console writes it.
      if (withLog) configureLog({ dir: path.join(defaultConfigDir(), 'logs') });
      r = await writeReport(path.resolve(p.positional[0]!), output, { withLog });
    } else {
      if (p.positional.length < 2) throw new UsageError(`compare: expected at least two timeline files, got ${p.positional.length}`);
      if (!output) throw new UsageError('compare needs -o FILE.html');
      r = await writeCompare(p.positional.map((f) => path.resolve(f)), output);
    }
    for (const f of r.truncated) errOut.write(`ferry: ${f} is truncated (recording cut short); the report shows its complete records and says so\n`);
    for (const n of r.notices) errOut.write(`ferry: ${n}\n`);
    out.write(`wrote ${r.output} (${(r.bytes / 1024).toFixed(0)} kB)\n`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      errOut.write(`ferry: ${e.message}\n${USAGE}`);
      return 2;
    }
    errOut.write(`ferry: ${toFerryError(e).message}\n`);
    return 1;
  }
}

export async function main(argv: string[], out: NodeJS.WritableStream = process.stdout, errOut: NodeJS.WritableStream = process.stderr): Promise<number> {
  const [cmd, sub] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    out.write(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === 'serve') {
    const { serve } = await import('./serve');
    await serve(argv.slice(1));
    return await new Promise<number>(() => undefined); // runs until Ctrl-C
  }
  if (cmd === 'report' || cmd === 'compare') return await reportCommand(cmd, argv.slice(1), out, errOut);
  const service = new ConsoleService({ builtinHosts: () => labHosts(), recoverOnConnect: cmd === 'recover' });
  const io = { out, errOut, follow: (m: MigrationRun, cancel: boolean) => follow(m, out, errOut, cancel) };
  try {
    if (cmd === 'diagnostics') {
      if (argv.length > 1) throw new UsageError('diagnostics takes no arguments');
      out.write(unwrap(await service.call('diagnostics:get', {})).text);
      return 0;
    }
    if (cmd === 'recover') return await recoverCommand(argv.slice(1), service, io);
    if (cmd === 'migrations') return await migrationsCommand(argv.slice(1), service, io);
    if (cmd === 'control') return await controlCommand(argv.slice(1), service, io);
    if (cmd === 'hosts' && sub === 'trust') return await trustCommand(argv.slice(2), service, io);
    // Saved states parse on their own; the storage and transport options of migrate and
    // preflight are taken out first and become plan fields.
    if (cmd === 'save' || cmd === 'restore' || cmd === 'states') return await stateCommand(cmd, parseArgs(argv.slice(1), ['compress', 'encrypt-to', 'name', 'identity', 'layout']), service, out);
    const own = takeFlags(argv, ['tunnel', 'storage-bandwidth'], ['copy-storage']);
    argv = own.rest;
    const beyond = beyondPlanOf(cmd, own.flags);

    const oneWord = ['guest', 'migrate', 'timeline', 'attach', 'preflight', 'evacuate'].includes(cmd);
    const p = parseArgs(argv.slice(oneWord ? 1 : 2), ['qemu-a', 'qemu-b', 'dirty-ring', 'compare', 'output', 'accel', 'memory', 'ws', 'rate', 'kernel', 'append', 'from', 'to', 'postcopy-after', 'bandwidth', 'downtime', 'xbzrle', 'multifd', 'record', 'policy', 'deadline', 'downtime-ceiling', 'parallel', 'capabilities', 'qmp-socket']);
    const json = p.flags.get('json') === true;
    const args = p.positional;
    const want = (n: number) => {
      if (args.length !== n) throw new UsageError(`${cmd} ${sub ?? ''}: expected ${n} argument(s), got ${args.length}`);
    };
    if (cmd === 'lab') {
      if (sub === 'up') {
        allowOnly(p, ['netns', 'libvirt', 'accel', 'memory', 'qemu-a', 'qemu-b', 'dirty-ring']);
        want(0);
        const mem = num(p, 'memory', 64, 65536);
        const ring = num(p, 'dirty-ring', 1024, 65536);
        const accel = accelOf(p);
        const qemuFlag = (k: 'qemu-a' | 'qemu-b') => {
          const v = p.flags.get(k);
          if (v === true) throw new UsageError(`--${k} needs the path of a qemu-system-x86_64 binary`);
          return v;
        };
        const qa = qemuFlag('qemu-a');
        const qb = qemuFlag('qemu-b');
        const libvirt = p.flags.get('libvirt') === true;
        if (libvirt && p.flags.get('netns') === true) throw new UsageError('--libvirt and --netns do not go together');
        if (libvirt && (qa || qb || ring)) throw new UsageError('--libvirt runs Debian\'s libvirt and QEMU: --qemu-a, --qemu-b and --dirty-ring do not apply');
        const r = await labUp({
          netns: p.flags.get('netns') === true, ...(libvirt ? { libvirt } : {}), ...(accel ? { accel } : {}), ...(mem ? { memoryKiB: Math.round(mem * 1024) } : {}),
          ...(qa ? { qemuA: qa } : {}), ...(qb ? { qemuB: qb } : {}), ...(ring ? { dirtyRingSize: ring } : {}),
        });
        if (r.vm) out.write(`started ${r.vm.name} on lab-a (${r.vm.accel}, QEMU ${r.vm.qemuVersion}, machine ${r.vm.machine}, pid ${r.vm.pid}) in ${r.bootMs} ms\n`);
        else if (r.domain) out.write(`started two libvirt daemons and the domain ${r.domain.name} on lab-a (${r.domain.type}, uuid ${r.domain.uuid}) in ${r.bootMs} ms\n`);
        else out.write('the lab was already up\n');
        printLab(r.status, out);
        return 0;
      }
      if (sub === 'demo') {
        allowOnly(p, ['bandwidth', 'output', 'compare', 'qemu-b']);
        want(0);
        const bw = num(p, 'bandwidth', 5, 10_000);
        const compare = p.flags.get('compare');
        if (compare !== undefined && compare !== 'postcopy' && compare !== 'converge') throw new UsageError('--compare must be postcopy (precopy vs postcopy) or converge (auto-converge vs dirty-limit)');
        const qb = p.flags.get('qemu-b');
        if (qb === true) throw new UsageError('--qemu-b needs the path of a qemu-system-x86_64 binary');
        const runs = await runLabDemo({
          root: service.labRoot, engine: service.engine, ...(bw ? { bandwidthMBps: bw } : {}), ...(compare ? { compare } : {}), ...(qb ? { qemuB: qb } : {}),
          onRun: (label, m) => out.write(`${label}: ${m.plan.vm} ${m.plan.from} → ${m.plan.to} (timeline ${m.timelineFile})\n`),
          onNote: (t) => out.write(`${t}\n`),
        });
        const shown = runs.filter((x) => x.overlay !== false);
        const o = p.flags.get('output');
        const r = await writeCompare(shown.map((x) => x.timeline), typeof o === 'string' ? path.resolve(o) : path.join(service.timelineDir, `demo-${shown[0]!.id}.compare.html`), shown.map((x) => x.label));
        out.write(`${shown.map((x) => x.label).join(' and ')} completed; comparison: ${r.output}\n`);
        return 0;
      }
      if (sub === 'down') {
        allowOnly(p, []);
        want(0);
        const r = await labDown();
        out.write(r.stopped.length ? `stopped ${r.stopped.join(', ')}\n` : 'nothing was running\n');
        return 0;
      }
      if (sub === 'status') {
        allowOnly(p, ['json']);
        want(0);
        const s = await labStatus();
        if (json) out.write(`${JSON.stringify(s, null, 2)}\n`);
        else printLab(s, out);
        return 0;
      }
    }
    if (cmd === 'hosts' && sub === 'list') {
      allowOnly(p, ['json']);
      want(0);
      const hosts = unwrap(await service.invoke('hosts:list', {})) as HostInfo[];
      out.write(json ? `${JSON.stringify(hosts, null, 2)}\n` : hosts.map((h) => `${h.config.id}\t${h.state}\t${h.label}\t${h.facts?.qemuVersion ? `QEMU ${h.facts.qemuVersion}` : 'QEMU ?'}${h.config.qemu ? ` (${h.config.qemu.binary})` : ''}\n`).join(''));
      return 0;
    }
    if (cmd === 'vm' && sub === 'list') {
      allowOnly(p, ['json']);
      want(1);
      const vms = unwrap(await service.invoke('vms:list', { hostId: args[0] })) as VmInfo[];
      out.write(json ? `${JSON.stringify(vms, null, 2)}\n` : vms.map((v) => `${v.name}\t${v.runState}\t${v.memoryMiB ?? '?'} MiB\t${v.libvirt ? `libvirt ${v.libvirt.uuid} ${v.libvirt.persistent ? 'persistent' : 'transient'}` : v.qmpSocket}\n`).join(''));
      return 0;
    }
    if (cmd === 'vm' && (sub === 'start' || sub === 'stop')) {
      allowOnly(p, sub === 'start' ? ['memory', 'accel', 'ws', 'rate', 'kernel', 'append'] : []);
      want(2);
      const [hostId, name] = args as [string, string];
      const host = await service.registry.get(hostId);
      const transport = await service.transportOf(hostId);
      if (sub === 'stop') {
        const r = await stopVm(transport, runtimeDirOf(host), name);
        out.write(r.wasRunning ? `stopped ${name} on ${hostId}\n` : `${name} was not running on ${hostId}\n`);
        return 0;
      }
      const mem = num(p, 'memory', 16, 1 << 20);
      const ws = num(p, 'ws', 1, 1 << 20);
      const rateFlag = p.flags.get('rate');
      const rate = rateFlag === 'max' ? null : num(p, 'rate', 0, 100000);
      const accel = accelOf(p);
      const spec = demoVmSpec({
        name,
        ...(mem ? { memoryKiB: Math.round(mem * 1024) } : {}),
        ...(accel ? { accel } : {}),
        ...(ws ? { wsMiB: ws } : {}),
        ...(rate !== undefined ? { rateMiBs: rate } : {}),
      });
      const kernel = p.flags.get('kernel');
      if (typeof kernel === 'string') {
        spec.kernel = kernel;
        const append = p.flags.get('append');
        if (typeof append === 'string') spec.append = append;
        else delete spec.append;
      }
      const vm = await launchVm(transport, runtimeDirOf(host), spec, host.qemu);
      out.write(`started ${vm.name} on ${hostId} (${vm.accel}, QEMU ${vm.qemuVersion}, machine ${vm.machine}, pid ${vm.pid}); QMP ${vm.qmpSocket}\n`);
      return 0;
    }
    if (cmd === 'guest') {
      allowOnly(p, []);
      want(3);
      const [hostId, name, command] = args as [string, string, string];
      const transport = await service.transportOf(hostId);
      const con = await GuestConsole.open(transport, await service.guestSerialSocket(hostId, name)).catch((e: unknown) => {
        throw e instanceof FerryException && e.code === 'NOT_FOUND' ? new FerryException('NOT_FOUND', `no VM "${name}" on ${hostId} (or its serial console is not there)`) : e;
      });
      try {
        const reply = con.command(command, 60_000);
        const raw = await con.waitFor((l) => l.parsed !== undefined && l.parsed.kind !== 'heartbeat', 60_000, 'the reply');
        await reply;
        out.write(`${raw.raw}\n`);
        return raw.parsed?.kind === 'verify' && !raw.parsed.ok ? 1 : 0;
      } finally {
        con.close();
      }
    }
    if (cmd === 'migrate') {
      allowOnly(p, ['from', 'to', 'postcopy', 'postcopy-after', 'bandwidth', 'downtime', 'auto-converge', 'xbzrle', 'multifd', 'keep-source', 'record', 'policy', 'deadline', 'downtime-ceiling', 'capabilities']);
      want(1);
      const from = p.flags.get('from');
      const to = p.flags.get('to');
      if (typeof from !== 'string' || typeof to !== 'string') throw new UsageError('migrate needs --from HOST and --to HOST');
      const plan: MigrationPlanInput = { vm: args[0]!, from, to };
      Object.assign(plan, beyond);
      const after = num(p, 'postcopy-after', 1, 1000);
      if (after !== undefined) {
        plan.mode = 'postcopy-after';
        plan.postcopyAfterPasses = after;
      } else if (p.flags.get('postcopy') === true) plan.mode = 'postcopy';
      const bw = p.flags.get('bandwidth');
      if (bw !== undefined) {
        const bytes = typeof bw === 'string' ? parseByteSize(bw, 'M') : undefined;
        if (!bytes) throw new UsageError('--bandwidth must be a positive size per second, e.g. 100 (MB/s) or 1.5G');
        plan.maxBandwidth = bytes;
      }
      const dt = num(p, 'downtime', 1, 2_000_000);
      if (dt !== undefined) plan.downtimeLimitMs = Math.round(dt);
      if (p.flags.get('auto-converge') === true) plan.autoConverge = true;
      const xb = num(p, 'xbzrle', 1, 1 << 20);
      if (xb !== undefined) plan.xbzrleCacheBytes = Math.round(xb * 1024 * 1024);
      const mf = num(p, 'multifd', 1, 64);
      if (mf !== undefined) plan.multifdChannels = Math.round(mf);
      if (p.flags.get('keep-source') === true) plan.keepSource = true;
      const caps = capabilitiesOf(p);
      if (caps) plan.capabilities = caps;
      const record = p.flags.get('record');
      if (typeof record === 'string') plan.recordPath = path.resolve(record);
      const policy = p.flags.get('policy');
      if (policy !== undefined) {
        const ceiling = num(p, 'downtime-ceiling', 1, 2_000_000) ?? 2000;
        if (policy === 'postcopy-when-never' || policy === 'manual') plan.policy = { name: policy };
        else if (policy === 'downtime-steps') plan.policy = { name: 'downtime-steps', stepMs: 100, ceilingMs: ceiling, everyPasses: 1 };
        else if (policy === 'dynamic-rate') plan.policy = { name: 'dynamic-rate', minBandwidth: 10_000_000, maxBandwidth: plan.maxBandwidth ?? 1_000_000_000, marginBandwidth: 6_250_000 };
        else if (policy === 'deadline') {
          const d = typeof p.flags.get('deadline') === 'string' ? parseDuration(p.flags.get('deadline') as string) : undefined;
          if (!d) throw new UsageError('--policy deadline needs --deadline, e.g. 90s or 5m');
          plan.policy = { name: 'deadline', deadlineMs: d, ceilingDowntimeMs: ceiling, allowPostcopy: plan.mode !== undefined && plan.mode !== 'precopy' };
        } else throw new UsageError('--policy must be manual, postcopy-when-never, downtime-steps, dynamic-rate or deadline');
      }
      await service.listenForControl(`ferry migrate ${plan.vm}`);
      const m = await service.engine.start(plan);
      out.write(`migrating ${plan.vm} ${from} -> ${to}${plan.transport === 'ssh-tunnel' ? ' through an SSH tunnel' : ''} (${m.id}); timeline ${m.timelineFile}\n`);
      return await follow(m, out, errOut, true);
    }
    if (cmd === 'preflight') {
      allowOnly(p, ['from', 'to', 'postcopy', 'json', 'capabilities']);
      want(1);
      const from = p.flags.get('from');
      const to = p.flags.get('to');
      if (typeof from !== 'string' || typeof to !== 'string') throw new UsageError('preflight needs --from HOST and --to HOST');
      const caps = capabilitiesOf(p);
      const r = unwrap(await service.invoke('migrations:preflight', { vm: args[0], from, to, ...beyond, ...(p.flags.get('postcopy') === true ? { mode: 'postcopy' } : {}), ...(caps ? { capabilities: caps } : {}) })) as PreflightResult;
      if (json) out.write(`${JSON.stringify(r, null, 2)}\n`);
      else for (const c of r.checks) out.write(`${c.status.toUpperCase().padEnd(4)}  ${c.title}: ${c.reason}${c.fix && c.status !== 'pass' ? ` (fix: ${c.fix})` : ''}\n`);
      return r.ok ? 0 : 1;
    }
    if (cmd === 'evacuate') {
      allowOnly(p, ['to', 'parallel', 'deadline', 'bandwidth']);
      want(1);
      const to = p.flags.get('to');
      if (typeof to !== 'string') throw new UsageError('evacuate needs --to HOST[,HOST]');
      const parallel = num(p, 'parallel', 1, 16);
      const dl = p.flags.get('deadline');
      const deadlineMs = typeof dl === 'string' ? parseDuration(dl) : undefined;
      if (dl !== undefined && !deadlineMs) throw new UsageError('--deadline must be a duration like 90s or 5m');
      const bw = typeof p.flags.get('bandwidth') === 'string' ? parseByteSize(p.flags.get('bandwidth') as string, 'M') : undefined;
      await service.listenForControl(`ferry evacuate ${args[0]!}`);
      const evac = await startEvacuation(service.engine, { host: (id) => service.registry.get(id), transport: (id) => service.transportOf(id) }, {
        from: args[0]!, to: to.split(',').filter(Boolean), ...(parallel ? { parallel } : {}), ...(deadlineMs ? { deadlineMs } : {}), ...(bw ? { defaults: { maxBandwidth: bw } } : {}),
      });
      out.write(`evacuating ${evac.items.length} VM(s) from ${args[0]} to ${to}, ${parallel ?? 1} at a time\n`);
      let lastLine = '';
      evac.onProgress((s) => {
        const line = s.items.map((i) => `${i.vm}→${i.to}:${i.state}`).join('  ');
        if (line !== lastLine) out.write(`${line}\n`);
        lastLine = line;
      });
      const sum = await evac.whenDone();
      for (const i of sum.items) out.write(`${i.vm}\t${i.to}\t${i.state}${i.downtimeMs !== undefined ? `\tdowntime ${i.downtimeMs} ms` : ''}${i.reason ? `\t${i.reason}` : ''}\n`);
      return sum.items.every((i) => i.state === 'completed') ? 0 : 1;
    }
    if (cmd === 'attach') {
      allowOnly(p, ['record', 'qmp-socket']);
      want(2);
      const record = p.flags.get('record');
      const qmpSocket = p.flags.get('qmp-socket');
      if (qmpSocket !== undefined && (typeof qmpSocket !== 'string' || !qmpSocket.startsWith('/'))) throw new UsageError('--qmp-socket needs an absolute path on the host');
      await service.listenForControl(`ferry attach ${args[1]!}`);
      const m = await service.engine.attach({ hostId: args[0]!, vm: args[1]!, ...(typeof qmpSocket === 'string' ? { qmpSocket } : {}), ...(typeof record === 'string' ? { recordPath: path.resolve(record) } : {}) });
      out.write(`watching ${args[1]} on ${args[0]} (no control is issued); timeline ${m.timelineFile}\n`);
      return await follow(m, out, errOut, false);
    }
    if (cmd === 'timeline') {
      allowOnly(p, ['csv', 'json', 'openmetrics']);
      want(1);
      const formats = (['csv', 'json', 'openmetrics'] as const).filter((f) => p.flags.get(f) === true);
      if (formats.length !== 1) throw new UsageError('timeline needs exactly one of --csv, --json or --openmetrics');
      const t = readTimeline(args[0]!);
      if (t.truncated) errOut.write(`ferry: ${args[0]} is truncated (recording cut short); exporting its ${t.records.length} complete records\n`);
      for (const n of t.notices) errOut.write(`ferry: ${args[0]}: ${n}\n`);
      out.write(formats[0] === 'csv' ? timelineToCsv(t) : formats[0] === 'json' ? timelineToJson(t) : timelineToOpenMetrics(t));
      return 0;
    }
    throw new UsageError(`unknown command: ${argv.join(' ')}`);
  } catch (e) {
    if (e instanceof UsageError) {
      errOut.write(`ferry: ${e.message}\n${USAGE}`);
      return 2;
    }
    if (e instanceof CliUsageError) {
      errOut.write(`ferry: ${e.message}\n`);
      return 2;
    }
    const fe = toFerryError(e);
    errOut.write(`ferry: ${fe.message} [${fe.code}]\n`);
    return 1;
  } finally {
    await service.dispose();
  }
}

/** ferry save / restore / states. */
async function stateCommand(cmd: 'save' | 'restore' | 'states', p: Parsed, service: ConsoleService, out: NodeJS.WritableStream): Promise<number> {
  const json = p.flags.get('json') === true;
  const args = p.positional;
  const want = (n: number) => {
    if (args.length !== n) throw new UsageError(`${cmd}: expected ${n} argument(s), got ${args.length}`);
  };
  if (cmd === 'save' || cmd === 'restore') {
    allowOnly(p, cmd === 'save' ? ['compress', 'encrypt-to', 'keep-running', 'json', 'layout'] : ['name', 'identity', 'json']);
    const layout = p.flags.get('layout');
    if (layout !== undefined && layout !== 'auto' && layout !== 'stream' && layout !== 'mapped-ram') throw new UsageError('--layout must be auto, stream or mapped-ram');
    want(cmd === 'save' ? 3 : 2);
    const compress = p.flags.get('compress');
    if (compress !== undefined && compress !== 'gzip' && compress !== 'zstd' && compress !== 'none') throw new UsageError('--compress must be zstd, gzip or none');
    const req = cmd === 'save'
      ? { hostId: args[0], vm: args[1], file: args[2], ...(compress ? { compress } : {}), ...(typeof p.flags.get('encrypt-to') === 'string' ? { encryptTo: p.flags.get('encrypt-to') } : {}), ...(p.flags.get('keep-running') === true ? { keepRunning: true } : {}), ...(layout ? { layout } : {}) }
      : { hostId: args[0], file: args[1], ...(typeof p.flags.get('name') === 'string' ? { name: p.flags.get('name') } : {}), ...(typeof p.flags.get('identity') === 'string' ? { identityFile: p.flags.get('identity') } : {}) };
    let lastPrinted = 0;
    const off = service.on('state:sample', ({ sample }) => {
      const s = sample as MigrationSample;
      if (json || s.t - lastPrinted < 1000) return;
      lastPrinted = s.t;
      out.write(`${s.phase} ${formatBytes(s.transferredBytes)} ${formatRate(s.transferRate)}\n`);
    });
    const r = unwrap(await service.invoke(cmd === 'save' ? 'states:save' : 'states:restore', req)) as StateResult;
    off();
    if (json) out.write(`${JSON.stringify(r, null, 2)}\n`);
    else if (cmd === 'save') out.write(`saved ${r.vm} on ${r.hostId} to ${r.file}: ${formatBytes(r.sizeBytes)} (${r.layout === 'mapped-ram' ? 'mapped-ram' : 'stream'} ${formatBytes(r.streamBytes)}, ${r.compression}${r.encryption ? `, ${r.encryption}-encrypted` : ''}) in ${formatMs(r.tookMs)}; VM ${r.runState}\n`);
    else out.write(`restored ${r.vm} on ${r.hostId} from ${r.file} in ${formatMs(r.tookMs)}; VM ${r.runState}\n`);
    return 0;
  }
  allowOnly(p, ['json']);
  want(1);
  const list = unwrap(await service.invoke('states:list', { hostId: args[0] })) as SavedStateEntry[];
  if (json) out.write(`${JSON.stringify(list, null, 2)}\n`);
  else for (const e of list) out.write(`${e.file}\t${e.vm}\t${formatBytes(e.sizeBytes)}\t${new Date(e.createdAt).toISOString()}\t${e.compression}${e.encryption ? `+${e.encryption}` : ''}${e.complete ? '' : '\tINCOMPLETE'}\n`);
  return 0;
}

/** Takes the given flags (`--flag value`, `--flag=value`, or boolean `--flag`) out of argv. */
function takeFlags(argv: string[], valued: string[], booleans: string[]): { rest: string[]; flags: Map<string, string | true> } {
  const rest: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [k, v] = a.startsWith('--') ? (a.slice(2).split('=', 2) as [string, string | undefined]) : ['', undefined];
    if (booleans.includes(k)) {
      if (v !== undefined) throw new UsageError(`--${k} takes no value`);
      flags.set(k, true);
    } else if (valued.includes(k)) {
      const val = v ?? argv[++i];
      if (val === undefined) throw new UsageError(`--${k} needs a value`);
      flags.set(k, val);
    } else rest.push(a);
  }
  return { rest, flags };
}

/** --tunnel ssh, --copy-storage, --storage-bandwidth: plan fields, for migrate and preflight only. */
function beyondPlanOf(cmd: string, flags: Map<string, string | true>): Partial<MigrationPlanInput> {
  if (flags.size === 0) return {};
  if (cmd !== 'migrate' && cmd !== 'preflight') throw new UsageError(`--${[...flags.keys()][0]} only applies to migrate and preflight`);
  const plan: Partial<MigrationPlanInput> = {};
  const tunnel = flags.get('tunnel');
  if (tunnel !== undefined && tunnel !== 'ssh') throw new UsageError('--tunnel takes one value: ssh');
  if (tunnel === 'ssh') plan.transport = 'ssh-tunnel';
  if (flags.get('copy-storage') === true) plan.copyStorage = true;
  const sbw = flags.get('storage-bandwidth');
  if (sbw !== undefined) {
    const bytes = typeof sbw === 'string' ? parseByteSize(sbw, 'M') : undefined;
    if (!bytes) throw new UsageError('--storage-bandwidth must be a positive size per second, e.g. 50 (MB/s)');
    if (!plan.copyStorage) throw new UsageError('--storage-bandwidth only applies with --copy-storage');
    plan.storageBandwidth = bytes;
  }
  return plan;
}

/** Prints a migration's progress until it ends; Ctrl-C cancels it when `cancelOnInterrupt`. */
async function follow(m: MigrationRun, out: NodeJS.WritableStream, errOut: NodeJS.WritableStream, cancelOnInterrupt: boolean): Promise<number> {
  const tty = (out as NodeJS.WriteStream).isTTY === true;
  let lastPrinted = 0;
  let lastLine = '';
  m.onSample((s) => {
    const line = progressLine(s);
    if (tty) {
      out.write(`\r\x1b[K${line}`);
    } else if (s.t - lastPrinted >= 1000 && line !== lastLine) {
      out.write(`${line}\n`);
      lastPrinted = s.t;
      lastLine = line;
    }
  });
  m.onPhase((ph) => {
    const text = `phase ${ph.phase}${ph.reason ? ` (${ph.reason})` : ''}`;
    out.write(tty ? `\r\x1b[K${text}\n` : `${text}\n`);
  });
  const onSigint = () => {
    if (!cancelOnInterrupt) process.exit(130);
    void m.control({ action: 'cancel' }, 'cli (Ctrl-C)').catch((e: unknown) => errOut.write(`\nferry: ${toFerryError(e).message}\n`));
  };
  process.on('SIGINT', onSigint);
  const final = await m.whenDone();
  process.off('SIGINT', onSigint);
  if (tty) out.write('\r\x1b[K');
  out.write(`${final.outcome}${final.reason ? `: ${final.reason}` : ''}; total ${formatMs(final.totalTimeMs)}, downtime ${formatMs(final.downtimeMs)}` +
    `${final.guestDowntimeMs !== undefined ? ` (guest saw ${formatMs(final.guestDowntimeMs)})` : ''}, ${final.passes ?? '?'} passes, ${formatBytes(final.transferredBytes)} sent` +
    `${final.verify ? `; guest memory ${final.verify.ok ? 'verified' : `CORRUPT (${final.verify.bad} bad, ${final.verify.stale} stale pages)`}` : ''}` +
    `${final.storage ? `; disks copied ${formatBytes(final.storage.copiedBytes)}${final.storage.readyMs !== undefined ? ` (in sync after ${formatMs(final.storage.readyMs)})` : ''}` : ''}` +
    `${final.tunnel ? `; through SSH: ${formatBytes(final.tunnel.forwardBytes)} forward, ${formatBytes(final.tunnel.backBytes)} back` : ''}\n`);
  return final.outcome === 'completed' && final.verify?.ok !== false ? 0 : 1;
}

export function progressLine(s: MigrationSample): string {
  if (s.phase === 'storage-copy' && s.storage) {
    const st = s.storage;
    return `storage-copy  ${formatBytes(st.copiedBytes)} / ${formatBytes(st.totalBytes)}  copy ${formatRate(st.rate)}  disk dirty ${formatRate(st.dirtyRate)}${st.ready ? '  in sync' : ''}`;
  }
  const pct = s.totalBytes && s.remainingBytes !== undefined ? ` ${Math.max(0, Math.min(100, Math.round((1 - s.remainingBytes / s.totalBytes) * 100)))}%` : '';
  const parts = [
    `${s.phase.padEnd(13)} pass ${s.pass ?? '-'}${pct}`,
    `dirty ${formatRate(s.dirtyRate)}`,
    `xfer ${formatRate(s.transferRate)}`,
    `remaining ${formatBytes(s.remainingBytes)}`,
  ];
  const pr = s.projection;
  const dt = pr?.switchoverDowntimeMs ?? pr?.downtimeMs;
  if (dt !== undefined) parts.push(`downtime ~${formatMs(dt)} (QEMU: ${formatMs(s.expectedDowntimeMs)})`);
  else if (s.expectedDowntimeMs !== undefined) parts.push(`QEMU expects ${formatMs(s.expectedDowntimeMs)} downtime`);
  if (pr && pr.verdict !== 'unknown') parts.push(pr.verdict === 'never' ? 'NOT CONVERGING' : `${pr.verdict}${pr.etaMs !== undefined ? `, done in ~${formatMs(pr.etaMs)}` : ''}`);
  if (pr?.drainMs !== undefined) parts.push(`drain ~${formatMs(pr.drainMs)}`);
  if (s.postcopyRequests) parts.push(`${s.postcopyRequests} page requests`);
  return parts.join('  ');
}

/** "90s", "5m", "1h", "1500ms" or plain seconds -> ms. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) return undefined;
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 's'];
  return Math.round(Number(m[1]) * mult);
}

function unwrap<T>(r: { ok: true; value: T } | { ok: false; error: { code: string; message: string } }): T {
  if (!r.ok) throw new FerryException(r.error.code as never, r.error.message);
  return r.value;
}

// Piped into `head` and the like: a closed stdout must not kill a running migration.
for (const s of [process.stdout, process.stderr]) s.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e;
});

const isEntry = process.argv[1] && /(?:^|[/\\])(?:cli\.(?:ts|mjs)|ferry(?:\.mjs)?)$/.test(process.argv[1]);
if (isEntry) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    // Every connection is closed by now; should anything still hold the process open, the
    // command still ends (and the log says what held it).
    setTimeout(() => {
      const handles = (process as unknown as { _getActiveHandles?: () => object[] })._getActiveHandles?.() ?? [];
      cliLog.warn(`exiting with ${handles.length} handle(s) still open: ${handles.map((h) => h.constructor.name).join(', ')}`);
      process.exit(code);
    }, 2000).unref();
  });
}
