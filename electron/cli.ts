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
import { controlCommand, migrationsCommand, recoverCommand, trustCommand } from './cli-ops';
import { CliUsageError, USAGE, commandOf, helpFor, parseCommand, serveOptionsOf, usageErrorText } from './cli-commands';
import type { CommandSpec, ParsedCommand, ServeOptions } from './cli-commands';

const cliLog = rootLog.child('cli');

/** A command's parsed arguments, as the handlers below read them: an option given as a string
 * in the table is a string here, a switch given is `true`. */
interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}

function parsedOf(c: ParsedCommand): Parsed {
  const flags = new Map<string, string | true>();
  for (const [k, v] of Object.entries(c.values)) if (v !== undefined && v !== false) flags.set(k, v);
  return { positional: c.positionals, flags };
}

function num(p: Parsed, flag: string, min: number, max: number): number | undefined {
  const v = p.flags.get(flag);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v === true || !Number.isFinite(n) || n < min || n > max) throw new CliUsageError(`--${flag} must be a number from ${min} to ${max}`);
  return n;
}

function accelOf(p: Parsed): 'auto' | 'kvm' | 'tcg' | undefined {
  const a = p.flags.get('accel');
  if (a === undefined) return undefined;
  if (a !== 'auto' && a !== 'kvm' && a !== 'tcg') throw new CliUsageError('--accel must be kvm, tcg or auto');
  return a;
}

/** `--capabilities zero-copy-send,validate-uuid=off`: QAPI capability names, on unless `=off`. */
function capabilitiesOf(p: Parsed): Record<string, boolean> | undefined {
  const v = p.flags.get('capabilities');
  if (typeof v !== 'string') return undefined;
  const out: Record<string, boolean> = {};
  for (const item of v.split(',').filter(Boolean)) {
    const m = /^([a-z][a-z0-9-]*)(?:=(on|off|true|false))?$/.exec(item);
    if (!m) throw new CliUsageError(`--capabilities: "${item}" is not NAME or NAME=on|off`);
    out[m[1]!] = m[2] === undefined || m[2] === 'on' || m[2] === 'true';
  }
  return out;
}

function printLab(s: LabStatus, out: NodeJS.WritableStream): void {
  out.write(`lab ${s.root}${s.netns ? ` (netns ${s.netns.namespaces.join(', ')})` : ''}${s.libvirt ? ` (libvirt: ${s.libvirt.daemons.map((d) => `${d.hostId} ${d.running ? 'up' : 'DOWN'}, host uuid ${d.hostUuid}`).join('; ')})` : ''}\n`);
  for (const h of s.hosts) {
    out.write(`${h.id}\tmigration address ${h.migrationAddress}\t${h.vms.length} VM(s)${h.qemu ? `\tQEMU ${h.qemu.binary}` : ''}\n`);
    for (const v of h.vms) out.write(`  ${v.name}\t${v.runState}\t${v.memoryMiB ?? '?'} MiB\tpid ${v.pid ?? '-'}\n`);
  }
}

async function reportCommand(cmd: 'report' | 'compare', p: Parsed, out: NodeJS.WritableStream, errOut: NodeJS.WritableStream): Promise<number> {
  try {
    const o = p.flags.get('output');
    const output = typeof o === 'string' ? path.resolve(o) : undefined;
    let r: WrittenReport;
    if (cmd === 'report') {
      const withLog = p.flags.get('with-log') === true;
      // The log is this user's Ferry log (`<configDir>/logs`), as the console writes it.
      if (withLog) configureLog({ dir: path.join(defaultConfigDir(), 'logs') });
      r = await writeReport(path.resolve(p.positional[0]!), output, { withLog });
    } else {
      if (!output) throw new CliUsageError('compare needs -o FILE.html');
      r = await writeCompare(p.positional.map((f) => path.resolve(f)), output);
    }
    for (const f of r.truncated) errOut.write(`ferry: ${f} is truncated (recording cut short); the report shows its complete records and says so\n`);
    for (const n of r.notices) errOut.write(`ferry: ${n}\n`);
    out.write(`wrote ${r.output} (${(r.bytes / 1024).toFixed(0)} kB)\n`);
    return 0;
  } catch (e) {
    if (e instanceof CliUsageError) {
      errOut.write(usageErrorText(e.message, e.command ?? cmd));
      return 2;
    }
    errOut.write(`ferry: ${toFerryError(e).message}\n`);
    return 1;
  }
}

/**
 * Runs one command line; returns the exit code (0 ok, 1 failed, 2 bad usage). The whole
 * command line is parsed (and `help` answered) before any service is created, so bad usage
 * never touches a host.
 */
export async function main(argv: string[], out: NodeJS.WritableStream = process.stdout, errOut: NodeJS.WritableStream = process.stderr): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    out.write(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  let spec: CommandSpec | undefined;
  let p: Parsed;
  let serveOptions: ServeOptions | undefined;
  try {
    const c = commandOf(argv);
    spec = c.spec;
    const parsed = parseCommand(spec, c.rest);
    if (parsed.help) {
      out.write(helpFor(spec.name.split(' ')));
      return 0;
    }
    if (spec.name === 'help') {
      out.write(parsed.positionals.length > 0 ? helpFor(parsed.positionals) : USAGE);
      return 0;
    }
    if (spec.name === 'serve') serveOptions = serveOptionsOf(parsed);
    p = parsedOf(parsed);
  } catch (e) {
    if (e instanceof CliUsageError) {
      errOut.write(usageErrorText(e.message, e.command ?? spec?.name));
      return 2;
    }
    throw e;
  }
  const command = spec.name;
  if (serveOptions) {
    const { serve } = await import('./serve');
    await serve(serveOptions);
    return await new Promise<number>(() => undefined); // runs until Ctrl-C
  }
  if (command === 'report' || command === 'compare') return await reportCommand(command, p, out, errOut);
  const [cmd, sub] = command.split(' ') as [string, string | undefined];
  const service = new ConsoleService({ builtinHosts: () => labHosts(), recoverOnConnect: cmd === 'recover' });
  const io = { out, errOut, follow: (m: MigrationRun, cancel: boolean) => follow(m, out, errOut, cancel) };
  try {
    if (cmd === 'diagnostics') {
      out.write(unwrap(await service.call('diagnostics:get', {})).text);
      return 0;
    }
    if (cmd === 'recover') return await recoverCommand(service, io);
    if (cmd === 'migrations') return await migrationsCommand(p.flags, service, io);
    if (cmd === 'control') return await controlCommand(p.positional, service, io);
    if (command === 'hosts trust') return await trustCommand(p.positional[0]!, p.flags.get('fingerprint'), service, io);
    if (cmd === 'save' || cmd === 'restore' || cmd === 'states') return await stateCommand(cmd, p, service, out);
    // The storage and transport options of migrate and preflight become plan fields.
    const beyond = beyondPlanOf(p.flags);
    const json = p.flags.get('json') === true;
    const args = p.positional;
    if (cmd === 'lab') {
      if (sub === 'up') {
        const mem = num(p, 'memory', 64, 65536);
        const ring = num(p, 'dirty-ring', 1024, 65536);
        const accel = accelOf(p);
        const qemuFlag = (k: 'qemu-a' | 'qemu-b') => {
          const v = p.flags.get(k);
          return typeof v === 'string' ? v : undefined;
        };
        const qa = qemuFlag('qemu-a');
        const qb = qemuFlag('qemu-b');
        const libvirt = p.flags.get('libvirt') === true;
        if (libvirt && p.flags.get('netns') === true) throw new CliUsageError('--libvirt and --netns do not go together');
        if (libvirt && (qa || qb || ring)) throw new CliUsageError('--libvirt runs Debian\'s libvirt and QEMU: --qemu-a, --qemu-b and --dirty-ring do not apply');
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
        const bw = num(p, 'bandwidth', 5, 10_000);
        const compare = p.flags.get('compare');
        if (compare !== undefined && compare !== 'postcopy' && compare !== 'converge') throw new CliUsageError('--compare must be postcopy (precopy vs postcopy) or converge (auto-converge vs dirty-limit)');
        const qb = p.flags.get('qemu-b');
        const runs = await runLabDemo({
          root: service.labRoot, engine: service.engine, ...(bw ? { bandwidthMBps: bw } : {}), ...(compare ? { compare } : {}), ...(typeof qb === 'string' ? { qemuB: qb } : {}),
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
        const r = await labDown();
        out.write(r.stopped.length ? `stopped ${r.stopped.join(', ')}\n` : 'nothing was running\n');
        return 0;
      }
      if (sub === 'status') {
        const s = await labStatus();
        if (json) out.write(`${JSON.stringify(s, null, 2)}\n`);
        else printLab(s, out);
        return 0;
      }
    }
    if (cmd === 'hosts' && sub === 'list') {
      const hosts = unwrap(await service.invoke('hosts:list', {})) as HostInfo[];
      out.write(json ? `${JSON.stringify(hosts, null, 2)}\n` : hosts.map((h) => `${h.config.id}\t${h.state}\t${h.label}\t${h.facts?.qemuVersion ? `QEMU ${h.facts.qemuVersion}` : 'QEMU ?'}${h.config.qemu ? ` (${h.config.qemu.binary})` : ''}\n`).join(''));
      return 0;
    }
    if (cmd === 'vm' && sub === 'list') {
      const vms = unwrap(await service.invoke('vms:list', { hostId: args[0] })) as VmInfo[];
      out.write(json ? `${JSON.stringify(vms, null, 2)}\n` : vms.map((v) => `${v.name}\t${v.runState}\t${v.memoryMiB ?? '?'} MiB\t${v.libvirt ? `libvirt ${v.libvirt.uuid} ${v.libvirt.persistent ? 'persistent' : 'transient'}` : v.qmpSocket}\n`).join(''));
      return 0;
    }
    if (cmd === 'vm' && (sub === 'start' || sub === 'stop')) {
      const [hostId, name] = args as [string, string];
      if (sub === 'stop') {
        const r = await stopVm(await service.transportOf(hostId), runtimeDirOf(await service.registry.get(hostId)), name);
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
      // The options are checked (above) before the host is touched.
      const host = await service.registry.get(hostId);
      const vm = await launchVm(await service.transportOf(hostId), runtimeDirOf(host), spec, host.qemu);
      out.write(`started ${vm.name} on ${hostId} (${vm.accel}, QEMU ${vm.qemuVersion}, machine ${vm.machine}, pid ${vm.pid}); QMP ${vm.qmpSocket}\n`);
      return 0;
    }
    if (cmd === 'guest') {
      const [hostId, name, guestCommand] = args as [string, string, string];
      const transport = await service.transportOf(hostId);
      const con = await GuestConsole.open(transport, await service.guestSerialSocket(hostId, name)).catch((e: unknown) => {
        throw e instanceof FerryException && e.code === 'NOT_FOUND' ? new FerryException('NOT_FOUND', `no VM "${name}" on ${hostId} (or its serial console is not there)`) : e;
      });
      try {
        const reply = con.command(guestCommand, 60_000);
        const raw = await con.waitFor((l) => l.parsed !== undefined && l.parsed.kind !== 'heartbeat', 60_000, 'the reply');
        await reply;
        out.write(`${raw.raw}\n`);
        return raw.parsed?.kind === 'verify' && !raw.parsed.ok ? 1 : 0;
      } finally {
        con.close();
      }
    }
    if (cmd === 'migrate') {
      const from = p.flags.get('from');
      const to = p.flags.get('to');
      if (typeof from !== 'string' || typeof to !== 'string') throw new CliUsageError('migrate needs --from HOST and --to HOST');
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
        if (!bytes) throw new CliUsageError('--bandwidth must be a positive size per second, e.g. 100 (MB/s) or 1.5G');
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
          if (!d) throw new CliUsageError('--policy deadline needs --deadline, e.g. 90s or 5m');
          plan.policy = { name: 'deadline', deadlineMs: d, ceilingDowntimeMs: ceiling, allowPostcopy: plan.mode !== undefined && plan.mode !== 'precopy' };
        } else throw new CliUsageError('--policy must be manual, postcopy-when-never, downtime-steps, dynamic-rate or deadline');
      }
      await service.listenForControl(`ferry migrate ${plan.vm}`);
      const m = await service.engine.start(plan);
      out.write(`migrating ${plan.vm} ${from} -> ${to}${plan.transport === 'ssh-tunnel' ? ' through an SSH tunnel' : ''} (${m.id}); timeline ${m.timelineFile}\n`);
      return await follow(m, out, errOut, true);
    }
    if (cmd === 'preflight') {
      const from = p.flags.get('from');
      const to = p.flags.get('to');
      if (typeof from !== 'string' || typeof to !== 'string') throw new CliUsageError('preflight needs --from HOST and --to HOST');
      const caps = capabilitiesOf(p);
      const r = unwrap(await service.invoke('migrations:preflight', { vm: args[0], from, to, ...beyond, ...(p.flags.get('postcopy') === true ? { mode: 'postcopy' } : {}), ...(caps ? { capabilities: caps } : {}) })) as PreflightResult;
      if (json) out.write(`${JSON.stringify(r, null, 2)}\n`);
      else for (const c of r.checks) out.write(`${c.status.toUpperCase().padEnd(4)}  ${c.title}: ${c.reason}${c.fix && c.status !== 'pass' ? ` (fix: ${c.fix})` : ''}\n`);
      return r.ok ? 0 : 1;
    }
    if (cmd === 'evacuate') {
      const to = p.flags.get('to');
      if (typeof to !== 'string') throw new CliUsageError('evacuate needs --to HOST[,HOST]');
      const parallel = num(p, 'parallel', 1, 16);
      const dl = p.flags.get('deadline');
      const deadlineMs = typeof dl === 'string' ? parseDuration(dl) : undefined;
      if (dl !== undefined && !deadlineMs) throw new CliUsageError('--deadline must be a duration like 90s or 5m');
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
      const record = p.flags.get('record');
      const qmpSocket = p.flags.get('qmp-socket');
      if (qmpSocket !== undefined && (typeof qmpSocket !== 'string' || !qmpSocket.startsWith('/'))) throw new CliUsageError('--qmp-socket needs an absolute path on the host');
      await service.listenForControl(`ferry attach ${args[1]!}`);
      const m = await service.engine.attach({ hostId: args[0]!, vm: args[1]!, ...(typeof qmpSocket === 'string' ? { qmpSocket } : {}), ...(typeof record === 'string' ? { recordPath: path.resolve(record) } : {}) });
      out.write(`watching ${args[1]} on ${args[0]} (no control is issued); timeline ${m.timelineFile}\n`);
      return await follow(m, out, errOut, false);
    }
    if (cmd === 'timeline') {
      const formats = (['csv', 'json', 'openmetrics'] as const).filter((f) => p.flags.get(f) === true);
      if (formats.length !== 1) throw new CliUsageError('timeline needs exactly one of --csv, --json or --openmetrics');
      const t = readTimeline(args[0]!);
      if (t.truncated) errOut.write(`ferry: ${args[0]} is truncated (recording cut short); exporting its ${t.records.length} complete records\n`);
      for (const n of t.notices) errOut.write(`ferry: ${args[0]}: ${n}\n`);
      out.write(formats[0] === 'csv' ? timelineToCsv(t) : formats[0] === 'json' ? timelineToJson(t) : timelineToOpenMetrics(t));
      return 0;
    }
    throw new Error(`${command} is in the command table but has no handler`);
  } catch (e) {
    if (e instanceof CliUsageError) {
      errOut.write(usageErrorText(e.message, e.command ?? command));
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
  if (cmd === 'save' || cmd === 'restore') {
    const layout = p.flags.get('layout');
    if (layout !== undefined && layout !== 'auto' && layout !== 'stream' && layout !== 'mapped-ram') throw new CliUsageError('--layout must be auto, stream or mapped-ram');
    const compress = p.flags.get('compress');
    if (compress !== undefined && compress !== 'gzip' && compress !== 'zstd' && compress !== 'none') throw new CliUsageError('--compress must be zstd, gzip or none');
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
  const list = unwrap(await service.invoke('states:list', { hostId: args[0] })) as SavedStateEntry[];
  if (json) out.write(`${JSON.stringify(list, null, 2)}\n`);
  else for (const e of list) out.write(`${e.file}\t${e.vm}\t${formatBytes(e.sizeBytes)}\t${new Date(e.createdAt).toISOString()}\t${e.compression}${e.encryption ? `+${e.encryption}` : ''}${e.complete ? '' : '\tINCOMPLETE'}\n`);
  return 0;
}

/** --tunnel ssh, --copy-storage, --storage-bandwidth: plan fields, for migrate and preflight only. */
function beyondPlanOf(flags: Map<string, string | true>): Partial<MigrationPlanInput> {
  const plan: Partial<MigrationPlanInput> = {};
  const tunnel = flags.get('tunnel');
  if (tunnel !== undefined && tunnel !== 'ssh') throw new CliUsageError('--tunnel takes one value: ssh');
  if (tunnel === 'ssh') plan.transport = 'ssh-tunnel';
  if (flags.get('copy-storage') === true) plan.copyStorage = true;
  const sbw = flags.get('storage-bandwidth');
  if (sbw !== undefined) {
    const bytes = typeof sbw === 'string' ? parseByteSize(sbw, 'M') : undefined;
    if (!bytes) throw new CliUsageError('--storage-bandwidth must be a positive size per second, e.g. 50 (MB/s)');
    if (!plan.copyStorage) throw new CliUsageError('--storage-bandwidth only applies with --copy-storage');
    plan.storageBandwidth = bytes;
  }
  return plan;
}

/** Prints a migration's progress until it ends; Ctrl-C cancels it when `cancelOnInterrupt`. */
async function follow(m: MigrationRun, out: NodeJS.WritableStream, errOut: NodeJS.WritableStream, cancelOnInterrupt: boolean): Promise<number> {
  const tty = (out as NodeJS.WriteStream).isTTY === true;
  const logged = new LogProgress();
  m.onSample((s) => {
    const line = progressLine(s);
    if (tty) {
      out.write(`\r\x1b[K${line}`);
      return;
    }
    const l = logged.sample(line, s.t);
    if (l !== undefined) out.write(`${l}\n`);
  });
  m.onPhase((ph) => {
    const text = `phase ${ph.phase}${ph.reason ? ` (${ph.reason})` : ''}`;
    if (tty) {
      out.write(`\r\x1b[K${text}\n`);
      return;
    }
    const last = logged.phaseEnds();
    out.write(last !== undefined ? `${last}\n${text}\n` : `${text}\n`);
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

/**
 * Progress written to a log rather than a terminal: a line at most once a second (and only
 * when it changed), and, as a phase ends, its last line if that was not written yet. A short
 * phase (a small disk's copy, done in half a second) otherwise left only its first line
 * ("0 B / 16.8 MB") in the log.
 */
export class LogProgress {
  private lastAt = -Infinity;
  private lastLine = '';
  private pending: string | undefined;

  /** The line to write now for a sample taken at `t` (ms), if any. */
  sample(line: string, t: number): string | undefined {
    if (line === this.lastLine) {
      this.pending = undefined; // back to what the log shows already
      return undefined;
    }
    if (t - this.lastAt >= 1000) {
      this.lastAt = t;
      this.lastLine = line;
      this.pending = undefined;
      return line;
    }
    this.pending = line;
    return undefined;
  }

  /** The ending phase's last line, when it was held back. */
  phaseEnds(): string | undefined {
    const p = this.pending;
    this.pending = undefined;
    if (p !== undefined) this.lastLine = p;
    return p;
  }
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
