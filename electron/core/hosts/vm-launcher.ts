/**
 * Starts, stops and inspects VMs on any host through its transport. A Ferry-launched VM
 * lives in `<runtimeDir>/<name>/`: `qmp.sock` (Ferry's own QMP monitor — one client at a
 * time), `qmp-aux.sock` (a second monitor for other tools and short CLI queries),
 * `serial.sock`, `pid`, `argv.json`. Names are validated and every argument travels as argv.
 */
import path from 'node:path';
import { FerryException, isFerryException } from '../../../shared/errors';
import { VmNameSchema } from '../../../shared/model/vm';
import { DEFAULT_RUNTIME_DIR } from '../../../shared/model/host';
import type { HostConfig } from '../../../shared/model/host';
import type { HostTransport } from '../transport/host-transport';
import { QmpClient } from '../qmp/qmp-client';
import { accelOfArgv, machineOfArgv, rewriteArgvForRuntime, withMachineType, withOption } from './qemu-argv';
import { DEFAULT_QEMU_BINARY, KVM_USABLE, dataDirArgs, firmwareDirOf, probeQemu, qemuVersionOf, resolveMachine } from './qemu-install';
import type { QemuInstall } from './qemu-install';
import { rootLog } from '../log';

const launcherLog = rootLog.child('launcher');

export const QEMU_BINARY = DEFAULT_QEMU_BINARY;
export { qemuVersionOf };

export interface VmDiskSpec {
  path: string;
  format?: 'raw' | 'qcow2';
}

export interface VmSpec {
  name: string;
  /** Guest RAM, in KiB so that sizes like 524100k (not a multiple of 256 KiB) are expressible. */
  memoryKiB: number;
  vcpus?: number;
  /** `auto` = KVM when /dev/kvm is usable on the host, else TCG. */
  accel?: 'auto' | 'kvm' | 'tcg';
  /**
   * KVM's dirty ring (entries per vCPU), e.g. 4096: needed by the `dirty-limit` capability
   * (QEMU 8.1+). Ignored under TCG.
   */
  dirtyRingSize?: number;
  /**
   * Machine type. An alias (`pc`, `q35`) is resolved on the host's QEMU at launch and the
   * concrete name (`pc-i440fx-7.2`) is what is started and recorded: an alias names a
   * different machine on each QEMU version, and a migration needs the same one on both ends.
   */
  machine?: string;
  cpu?: string;
  kernel?: string;
  append?: string;
  disks?: VmDiskSpec[];
  /** Firmware; default qboot when the host has it (fast under KVM and TCG). */
  bios?: string;
  extraArgs?: string[];
  /** Start paused (-S). */
  paused?: boolean;
  /**
   * A complete QEMU command line taken from a running process (a QEMU Ferry adopted, see
   * qemu-argv.ts). When set it is the VM: the fields above other than name, memoryKiB,
   * paused and extraArgs are ignored, and its host-local paths are moved into the runtime dir.
   */
  argv?: string[];
}

export interface VmFiles {
  dir: string;
  qmpSocket: string;
  auxQmpSocket: string;
  serialSocket: string;
  pidFile: string;
  argvFile: string;
}

export interface LaunchedVm extends VmFiles {
  name: string;
  pid: number;
  argv: string[];
  accel: 'kvm' | 'tcg';
  /** The concrete machine type it runs. */
  machine: string;
  qemuVersion: string;
}

/** What argv.json holds: enough to start the same VM again elsewhere. */
export interface ArgvRecord {
  version: 1;
  name: string;
  argv: string[];
  spec: VmSpec;
  accel: 'kvm' | 'tcg';
  /** The QEMU that runs it (absent: `qemu-system-x86_64` on the PATH) and its version. */
  qemu?: QemuInstall;
  qemuVersion?: string;
}

/** Where Ferry keeps its per-VM runtime dirs on a host. */
export function runtimeDirOf(host: HostConfig): string {
  return host.runtimeDir ?? DEFAULT_RUNTIME_DIR;
}

export function validateVmName(name: string): string {
  const r = VmNameSchema.safeParse(name);
  if (!r.success) {
    throw new FerryException('INVALID_REQUEST', `invalid VM name ${JSON.stringify(name)}: ${r.error.issues[0]?.message ?? 'invalid'}`, { name });
  }
  return r.data;
}

export function vmFiles(runtimeDir: string, name: string): VmFiles {
  const dir = path.posix.join(runtimeDir, validateVmName(name));
  return {
    dir,
    qmpSocket: `${dir}/qmp.sock`,
    auxQmpSocket: `${dir}/qmp-aux.sock`,
    serialSocket: `${dir}/serial.sock`,
    pidFile: `${dir}/pid`,
    argvFile: `${dir}/argv.json`,
  };
}

/** KVM when /dev/kvm is readable and writable on the host, otherwise TCG. */
export async function detectAccel(transport: HostTransport): Promise<'kvm' | 'tcg'> {
  const r = await transport.exec(KVM_USABLE);
  return r.code === 0 ? 'kvm' : 'tcg';
}

async function fileExists(transport: HostTransport, p: string): Promise<boolean> {
  return (await transport.exec(['test', '-e', p])).code === 0;
}

/** The argv that starts `spec` daemonized with its runtime files in `files`. */
export function buildArgv(spec: VmSpec, files: VmFiles, accel: 'kvm' | 'tcg', bios: string | undefined, qemu?: QemuInstall): string[] {
  if (!Number.isInteger(spec.memoryKiB) || spec.memoryKiB < 4096) {
    throw new FerryException('INVALID_REQUEST', `memory must be at least 4 MiB, got ${spec.memoryKiB} KiB`);
  }
  if (spec.argv) {
    // An adopted QEMU's command line: its hardware as it was, its machine made concrete and its
    // firmware found for this host's QEMU (spec.machine, spec.bios), its paths in the runtime dir.
    let line = withOption(spec.argv, 'machine', (v) => withMachineType(v, spec.machine ?? 'pc'));
    if (spec.bios) line = withOption(line, 'bios', () => spec.bios!);
    const [binary, ...rest] = rewriteArgvForRuntime(withOption(line, 'L', () => undefined), files);
    // This host's QEMU (a path of the source host may not exist here), with its own data dir.
    const here = qemu?.binary ?? (/(^|\/)(qemu-system-x86_64|qemu-kvm)$/.test(binary ?? '') ? QEMU_BINARY : binary!);
    return [here, ...dataDirArgs(qemu), ...rest, ...(spec.paused ? ['-S'] : []), ...(spec.extraArgs ?? [])];
  }
  const ring = accel === 'kvm' && spec.dirtyRingSize ? `,dirty-ring-size=${spec.dirtyRingSize}` : '';
  const argv = [
    qemu?.binary ?? QEMU_BINARY,
    ...dataDirArgs(qemu),
    '-name', `${spec.name},process=ferry-${spec.name}`,
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-machine', spec.machine ?? 'pc',
    '-accel', `${accel}${ring}`,
    '-cpu', spec.cpu ?? 'qemu64,-pni',
    '-m', `${spec.memoryKiB}k`,
    '-smp', String(spec.vcpus ?? 1),
  ];
  if (bios) argv.push('-bios', bios);
  if (spec.kernel) argv.push('-kernel', spec.kernel);
  if (spec.append) argv.push('-append', spec.append);
  for (const [i, d] of (spec.disks ?? []).entries()) {
    argv.push('-drive', `file=${d.path.replace(/,/g, ',,')},format=${d.format ?? 'raw'},if=virtio,id=disk${i},cache=none`);
  }
  argv.push(
    '-chardev', `socket,id=ser0,path=${files.serialSocket},server=on,wait=off`,
    '-serial', 'chardev:ser0',
    '-qmp', `unix:${files.qmpSocket},server=on,wait=off`,
    '-qmp', `unix:${files.auxQmpSocket},server=on,wait=off`,
    '-pidfile', files.pidFile,
    '-daemonize',
  );
  if (spec.paused) argv.push('-S');
  argv.push(...(spec.extraArgs ?? []));
  return argv;
}

/**
 * A spec's extra args for a QEMU that waits for an incoming stream (`-incoming defer`).
 * An -incoming already there (the record of a VM that itself came in by migration or
 * restore) is dropped, so the args do not grow with every hop.
 */
export function withIncomingDefer(extraArgs: readonly string[] | undefined): string[] {
  const out: string[] = [];
  const args = extraArgs ?? [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '-incoming') i++;
    else out.push(args[i]!);
  }
  return [...out, '-incoming', 'defer'];
}

/** Reads a process's state letter from /proc/PID/stat; a zombie counts as gone. */
export async function processAlive(transport: HostTransport, pid: number): Promise<boolean> {
  const r = await transport.exec(['cat', `/proc/${pid}/stat`]);
  if (r.code !== 0) return false;
  const state = r.stdout.slice(r.stdout.lastIndexOf(')') + 2).charAt(0);
  return state !== '' && state !== 'Z' && state !== 'X';
}

/** True for "that file is not there": a missing file is an answer, a transport failure is not. */
function isMissing(e: unknown): boolean {
  return isFerryException(e) && e.code === 'NOT_FOUND';
}

/** The pid in a pid file; undefined when there is none. A host that cannot be asked throws. */
async function readPid(transport: HostTransport, pidFile: string): Promise<number | undefined> {
  let text: string;
  try {
    text = (await transport.readFile(pidFile)).toString().trim();
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
  const n = Number(text);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * Starts `spec` on a host with its QEMU (`qemu`, default the PATH's). The machine type is
 * made concrete on that QEMU first, and the record (argv.json) keeps the concrete machine,
 * CPU model and firmware, so that a destination can be started with exactly the same.
 */
export async function launchVm(transport: HostTransport, runtimeDir: string, specIn: VmSpec, qemu?: QemuInstall): Promise<LaunchedVm> {
  if (specIn.dirtyRingSize !== undefined && (!Number.isInteger(specIn.dirtyRingSize) || specIn.dirtyRingSize < 1024 || specIn.dirtyRingSize > 65536 || (specIn.dirtyRingSize & (specIn.dirtyRingSize - 1)) !== 0)) {
    throw new FerryException('INVALID_REQUEST', `dirty ring size must be a power of two from 1024 to 65536, got ${specIn.dirtyRingSize}`);
  }
  const files = vmFiles(runtimeDir, specIn.name);
  const probe = await probeQemu(transport, qemu).catch((e: unknown) => {
    throw new FerryException('EXEC_FAILED', `QEMU cannot start VM "${specIn.name}" on ${transport.label}: ${e instanceof Error ? e.message : String(e)}`, { name: specIn.name });
  });
  const wanted = specIn.machine ?? (specIn.argv ? machineOfArgv(specIn.argv) : undefined) ?? 'pc';
  const machine = resolveMachine(probe, wanted);
  if (!machine) {
    throw new FerryException('UNSUPPORTED', `machine type ${wanted} is not available in QEMU ${probe.version} on ${transport.label}`, { machine: wanted, qemuVersion: probe.version });
  }
  const spec: VmSpec = { ...specIn, machine: machine.name, cpu: specIn.cpu ?? 'qemu64,-pni' };
  const existing = await readPid(transport, files.pidFile);
  if (existing && (await processAlive(transport, existing))) {
    throw new FerryException('ALREADY_EXISTS', `VM "${spec.name}" is already running on ${transport.label} (pid ${existing})`, { name: spec.name, pid: existing });
  }
  const mk = await transport.exec(['mkdir', '-p', '-m', '0700', files.dir]);
  if (mk.code !== 0) throw new FerryException('IO_ERROR', `cannot create ${files.dir} on ${transport.label}: ${mk.stderr.trim()}`);
  // Leftovers of a VM that died without cleaning up.
  await transport.exec(['rm', '-f', files.qmpSocket, files.auxQmpSocket, files.serialSocket, files.pidFile]);
  const wantedAccel = spec.argv ? accelOfArgv(spec.argv) : spec.accel;
  const accel = !wantedAccel || wantedAccel === 'auto' ? await detectAccel(transport) : wantedAccel;
  if (accel === 'kvm' && wantedAccel === 'kvm' && (await detectAccel(transport)) !== 'kvm') {
    throw new FerryException('UNSUPPORTED', `KVM is not usable on ${transport.label} (/dev/kvm missing or not accessible)`);
  }
  const qboot = `${firmwareDirOf(qemu)}/qboot.rom`;
  // An adopted command line keeps its own firmware (or none): no default added.
  const bios = spec.argv ? spec.bios : spec.bios ?? ((await fileExists(transport, qboot)) ? qboot : undefined);
  if (bios) spec.bios = bios;
  const argv = buildArgv(spec, files, accel, bios, qemu);
  const record: ArgvRecord = { version: 1, name: spec.name, argv, spec, accel, qemuVersion: probe.version, ...(qemu && (qemu.binary !== QEMU_BINARY || qemu.dataDir) ? { qemu } : {}) };
  await transport.writeFile(files.argvFile, `${JSON.stringify(record, null, 2)}\n`, 0o600);
  const r = await transport.exec(argv, { timeoutMs: 60_000 });
  if (r.code !== 0) {
    await transport.exec(['rm', '-f', files.argvFile]);
    const why = r.stderr.trim() || `exit code ${r.code}`;
    throw new FerryException('EXEC_FAILED', `QEMU did not start VM "${spec.name}" on ${transport.label}: ${why}`, { name: spec.name, stderr: r.stderr });
  }
  const pid = await readPid(transport, files.pidFile);
  if (!pid) throw new FerryException('EXEC_FAILED', `QEMU started VM "${spec.name}" but wrote no pid file`, { name: spec.name });
  return { name: spec.name, pid, argv, accel, machine: machine.name, qemuVersion: probe.version, ...files };
}

/** Stops a VM: QMP `quit`, then SIGTERM and SIGKILL by pid after `timeoutMs`. Removes its dir. */
export async function stopVm(transport: HostTransport, runtimeDir: string, name: string, options: { timeoutMs?: number } = {}): Promise<{ wasRunning: boolean }> {
  const files = vmFiles(runtimeDir, name);
  const pid = await readPid(transport, files.pidFile);
  const running = pid !== undefined && (await processAlive(transport, pid));
  if (running) {
    const timeoutMs = options.timeoutMs ?? 3000;
    for (const sock of [files.qmpSocket, files.auxQmpSocket]) {
      try {
        const qmp = await QmpClient.connect(await transport.openUnix(sock), { handshakeTimeoutMs: 1000 });
        await qmp.execute('quit', undefined, { timeoutMs: 1000 }).catch(launcherLog.dropped(`QMP quit of ${name} (signals follow)`, 'debug'));
        qmp.close();
        break;
      } catch {
        // busy or gone: try the other monitor, then signals
      }
    }
    if (!(await waitGone(transport, pid, timeoutMs))) {
      await transport.exec(['kill', '-TERM', String(pid)]);
      if (!(await waitGone(transport, pid, timeoutMs))) {
        await transport.exec(['kill', '-KILL', String(pid)]);
        await waitGone(transport, pid, timeoutMs);
      }
    }
  }
  await transport.exec(['rm', '-rf', '--', files.dir]);
  return { wasRunning: running };
}

/**
 * Stops a VM by pid, no QMP asked: SIGTERM, then SIGKILL after `graceMs`; removes its dir.
 * For a destination QEMU whose incoming migration failed or was cancelled: it holds no guest
 * worth a graceful quit, and its monitor may be stuck behind a dead stream. Only a process
 * whose command line still names the VM's runtime dir is signalled (a reused pid is left alone).
 */
export async function killVmByPid(transport: HostTransport, runtimeDir: string, name: string, options: { graceMs?: number } = {}): Promise<{ wasRunning: boolean }> {
  const files = vmFiles(runtimeDir, name);
  const pid = await readPid(transport, files.pidFile);
  let running = pid !== undefined && (await processAlive(transport, pid));
  if (running && pid !== undefined) {
    const argv = await readProcessArgv(transport, pid).catch((e: unknown) => {
      if (isMissing(e)) return [] as string[];
      throw e;
    });
    running = argv.some((a) => a.includes(`${files.dir}/`));
    if (running) {
      const grace = options.graceMs ?? 1500;
      await transport.exec(['kill', '-TERM', String(pid)]);
      if (!(await waitGone(transport, pid, grace))) {
        await transport.exec(['kill', '-KILL', String(pid)]);
        if (!(await waitGone(transport, pid, 5000))) throw new FerryException('EXEC_FAILED', `${transport.label}: QEMU pid ${pid} of ${name} survived SIGKILL`, { pid });
      }
    }
  }
  const rm = await transport.exec(['rm', '-rf', '--', files.dir]);
  if (rm.code !== 0) throw new FerryException('IO_ERROR', `${transport.label}: cannot remove ${files.dir}: ${rm.stderr.trim()}`);
  return { wasRunning: running };
}

async function waitGone(transport: HostTransport, pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await processAlive(transport, pid))) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The argv a running process was started with, from /proc/PID/cmdline on its host. */
export async function readProcessArgv(transport: HostTransport, pid: number): Promise<string[]> {
  const buf = await transport.readFile(`/proc/${pid}/cmdline`).catch((e: unknown) => {
    throw isMissing(e) ? new FerryException('NOT_FOUND', `no process ${pid} on ${transport.label}`, { pid }) : e;
  });
  const parts = buf.toString('utf8').split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

/** A Ferry-launched VM's record (argv.json), or undefined for a VM Ferry did not start. */
export async function readArgvRecord(transport: HostTransport, argvFile: string): Promise<ArgvRecord | undefined> {
  let text: string;
  try {
    text = (await transport.readFile(argvFile)).toString();
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e; // busy or disconnected: not the same as "Ferry did not start it"
  }
  try {
    const rec = JSON.parse(text) as ArgvRecord;
    return rec.version === 1 && Array.isArray(rec.argv) ? rec : undefined;
  } catch {
    return undefined; // not a record Ferry wrote (or one cut short): treated as absent
  }
}

export { readPid };
