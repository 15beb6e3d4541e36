/**
 * QEMUs Ferry did not start (a script, a systemd unit), found through a host's
 * `qmpSocketGlobs`. Ferry adopts them for migration: the process behind the socket is found
 * (QMP's vCPU thread ids lead to it; the socket's owner in /proc when QMP cannot say), its
 * command line is read from /proc/PID/cmdline, and the destination is started from it with
 * the host-local paths rewritten (qemu-argv.ts). The source is never touched but through its
 * QMP monitor: it is left to its owner as a migrated-away QEMU (see docs/adopted-qemus.md).
 *
 * `findQemuVm` is how a migration finds its VM on a host: Ferry's own first, then these.
 */
import path from 'node:path';
import type { HostConfig } from '../../../shared/model/host';
import type { HostTransport } from '../transport/host-transport';
import { QmpClient } from '../qmp/qmp-client';
import { rootLog } from '../log';
import { FerryException } from '../../../shared/errors';
import { accelOfArgv, memoryKiBOfArgv, serialSocketOfArgv } from './qemu-argv';
import { processAlive, readArgvRecord, readPid, readProcessArgv, runtimeDirOf, vmFiles } from './vm-launcher';
import type { ArgvRecord, VmFiles, VmSpec } from './vm-launcher';

const log = rootLog.child('adopted-qemu');

/** What one QMP socket tells about the QEMU behind it. */
export interface QmpSocketFacts {
  socket: string;
  /** query-status, or 'busy' when the monitor has another client (QMP serves one at a time). */
  runState: string;
  name?: string;
  pid?: number;
  argv?: string[];
  accel?: 'kvm' | 'tcg';
}

/** An adopted QEMU, as a migration needs it. */
export interface AdoptedQemu {
  name: string;
  socket: string;
  pid: number;
  argv: string[];
  accel: 'kvm' | 'tcg';
  /** Its first serial port, when it is a unix socket (the demo guest's console). */
  serialSocket?: string;
}

/** The QMP sockets matching the host's globs (each an existing socket), sorted. */
export async function globbedQmpSockets(host: HostConfig, transport: HostTransport): Promise<string[]> {
  const out: string[] = [];
  for (const glob of host.qmpSocketGlobs ?? []) {
    // The pattern is an argument, expanded by the shell's globbing of "$1" unquoted in `for`:
    // parameter expansion never runs command substitution.
    const r = await transport.exec(['sh', '-c', 'for f in $1; do [ -S "$f" ] && printf "%s\\n" "$f"; done; true', 'ferry-glob', glob]);
    for (const sock of r.stdout.split('\n').filter(Boolean).sort()) if (!out.includes(sock)) out.push(sock);
  }
  return out;
}

/** The process a QMP monitor belongs to: a vCPU thread's thread group. */
async function pidFromQmp(qmp: QmpClient, transport: HostTransport): Promise<number | undefined> {
  const cpus = await qmp.execute<{ 'thread-id'?: number }[]>('query-cpus-fast').catch(log.dropped('query-cpus-fast', 'debug'));
  const tid = cpus?.find((c) => typeof c['thread-id'] === 'number')?.['thread-id'];
  if (tid === undefined) return undefined;
  const status = await transport.readFile(`/proc/${tid}/status`).then((b) => b.toString()).catch(log.dropped(`reading /proc/${tid}/status`, 'debug'));
  const tgid = Number(/^Tgid:\s+(\d+)/m.exec(status ?? '')?.[1]);
  return Number.isInteger(tgid) && tgid > 0 ? tgid : undefined;
}

/** The process listening on a unix socket: its inode in /proc/net/unix, then the fd that holds it. */
export async function socketOwnerPid(transport: HostTransport, socket: string): Promise<number | undefined> {
  const table = await transport.readFile('/proc/net/unix').then((b) => b.toString()).catch(log.dropped('reading /proc/net/unix', 'debug'));
  // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = listening.
  const line = table?.split('\n').find((l) => l.endsWith(` ${socket}`) && l.trim().split(/\s+/)[3] === '00010000');
  const inode = line?.trim().split(/\s+/)[6];
  if (!inode || !/^\d+$/.test(inode)) return undefined;
  // Each process's fd dir, one level deep; the brackets escaped (in -lname they would be a class).
  const r = await transport.exec(['sh', '-c', 'find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -lname "$1" -print -quit 2>/dev/null; true', 'ferry-owner', `socket:\\[${inode}\\]`], { timeoutMs: 10_000 });
  const pid = Number(/^\/proc\/(\d+)\//.exec(r.stdout.trim())?.[1]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Asks the QEMU behind `socket` who it is: run state, name, process, command line and
 * accelerator. Never throws: a monitor that does not answer is 'busy'.
 */
export async function inspectQmpSocket(transport: HostTransport, socket: string): Promise<QmpSocketFacts> {
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(await transport.openUnix(socket), { handshakeTimeoutMs: 1500, commandTimeoutMs: 3000 });
  } catch (e) {
    log.debug(`${transport.label}: ${socket} did not answer: ${e instanceof Error ? e.message : String(e)}`);
    return { socket, runState: 'busy' };
  }
  const facts: QmpSocketFacts = { socket, runState: 'unreachable' };
  try {
    facts.runState = (await qmp.execute<{ status: string }>('query-status')).status;
    const name = await qmp.execute<{ name?: string }>('query-name').catch(log.dropped('query-name', 'debug'));
    if (name?.name) facts.name = name.name;
    let pid = await pidFromQmp(qmp, transport);
    let argv = pid !== undefined ? await readProcessArgv(transport, pid).catch(log.dropped(`reading the command line of ${pid}`, 'debug')) : undefined;
    // A pid QMP gave must be this monitor's QEMU (another pid namespace would mislead it).
    if (!argv?.some((a) => a.includes(socket))) {
      pid = await socketOwnerPid(transport, socket);
      argv = pid !== undefined ? await readProcessArgv(transport, pid).catch(log.dropped(`reading the command line of ${pid}`, 'debug')) : undefined;
    }
    if (pid !== undefined && argv?.length) {
      facts.pid = pid;
      facts.argv = argv;
      const kvm = await qmp.execute<{ enabled: boolean }>('query-kvm').catch(log.dropped('query-kvm', 'debug'));
      facts.accel = kvm ? (kvm.enabled ? 'kvm' : 'tcg') : accelOfArgv(argv);
    }
  } catch (e) {
    log.debug(`${transport.label}: ${socket}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    qmp.close();
  }
  return facts;
}

/** The VM's name as the board shows it: QEMU's -name, else the socket's directory. */
export function adoptedName(facts: Pick<QmpSocketFacts, 'socket' | 'name'>): string {
  return facts.name ?? path.posix.basename(path.posix.dirname(facts.socket));
}

function adopted(facts: QmpSocketFacts): AdoptedQemu | undefined {
  if (facts.pid === undefined || !facts.argv) return undefined;
  const serial = serialSocketOfArgv(facts.argv);
  return { name: adoptedName(facts), socket: facts.socket, pid: facts.pid, argv: facts.argv, accel: facts.accel ?? accelOfArgv(facts.argv), ...(serial ? { serialSocket: serial } : {}) };
}

/** The adopted QEMU behind one socket (`ferry attach --qmp-socket`), if its process can be read. */
export async function adoptAt(transport: HostTransport, socket: string): Promise<AdoptedQemu | undefined> {
  return adopted(await inspectQmpSocket(transport, socket));
}

/** The adopted QEMU named `name` on `host` (through its globs), if one runs there. */
export async function findAdopted(host: HostConfig, transport: HostTransport, name: string, except: ReadonlySet<string> = new Set()): Promise<AdoptedQemu | undefined> {
  for (const socket of await globbedQmpSockets(host, transport)) {
    if (except.has(socket)) continue;
    const facts = await inspectQmpSocket(transport, socket);
    if (adoptedName(facts) !== name) continue;
    const a = adopted(facts);
    if (a && (await processAlive(transport, a.pid))) return a;
  }
  return undefined;
}

/**
 * A QEMU found on a host, Ferry's or adopted, with what migrating it needs. `files` is
 * Ferry's runtime dir for it there: the VM's own (Ferry's), or Ferry's scratch dir beside an
 * adopted QEMU (migration.json, the SSH tunnel's sockets).
 */
export interface QemuVm {
  manager: 'ferry' | 'qemu';
  name: string;
  pid: number;
  argv: string[];
  accel: 'kvm' | 'tcg';
  /** What the destination is started from: Ferry's record, or one made from the adopted command line. */
  record: ArgvRecord;
  /** The record's spec. */
  spec: VmSpec;
  qmpSockets: string[];
  serialSocket?: string;
  files: VmFiles;
  /** Adopted: its QMP socket (the one Ferry found it by). */
  adoptedSocket?: string;
}

function fromAdopted(a: AdoptedQemu, files: VmFiles): QemuVm {
  const memoryKiB = memoryKiBOfArgv(a.argv) ?? 128 * 1024; // QEMU's default -m
  const spec: VmSpec = { name: a.name, memoryKiB, argv: a.argv };
  const vm: QemuVm = {
    manager: 'qemu', name: a.name, pid: a.pid, argv: a.argv, accel: a.accel, record: { version: 1, name: a.name, argv: a.argv, spec, accel: a.accel }, spec,
    qmpSockets: [a.socket], files, adoptedSocket: a.socket,
  };
  if (a.serialSocket) vm.serialSocket = a.serialSocket;
  return vm;
}

/**
 * Finds the running QEMU named `name` on `host`: Ferry's own first (its runtime dir), then a
 * QEMU found through the host's QMP socket globs; or the one behind `qmpSocket` when given.
 */
export async function findQemuVm(host: HostConfig, transport: HostTransport, name: string, opts: { qmpSocket?: string } = {}): Promise<QemuVm | undefined> {
  const files = vmFiles(runtimeDirOf(host), name);
  if (opts.qmpSocket && opts.qmpSocket !== files.qmpSocket && opts.qmpSocket !== files.auxQmpSocket) {
    const a = await adoptAt(transport, opts.qmpSocket);
    return a ? fromAdopted({ ...a, name }, files) : undefined;
  }
  const record = await readArgvRecord(transport, files.argvFile);
  const pid = await readPid(transport, files.pidFile);
  if (record && pid && (await processAlive(transport, pid))) {
    return {
      manager: 'ferry', name, pid, argv: record.argv, accel: record.accel, record, spec: { ...record.spec, accel: record.accel },
      qmpSockets: [files.qmpSocket, files.auxQmpSocket], serialSocket: files.serialSocket, files,
    };
  }
  const a = await findAdopted(host, transport, name, new Set([files.qmpSocket, files.auxQmpSocket]));
  return a ? fromAdopted(a, files) : undefined;
}

/** The error a plan gets when its VM runs nowhere Ferry looks. */
export function noSuchVm(vm: string, hostId: string): FerryException {
  return new FerryException('NOT_FOUND', `no running VM "${vm}" on ${hostId} (neither started by Ferry nor found through the host's qmpSocketGlobs)`, { vm, host: hostId });
}
