import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'node:net';
import { isAlive, killPid, waitFor } from './processes';

export const QEMU = 'qemu-system-x86_64';

let kvmCache: boolean | undefined;
/** KVM when /dev/kvm can be opened read-write; TCG otherwise. Never assumed. */
export function kvmUsable(): boolean {
  if (kvmCache === undefined) {
    try {
      closeSync(openSync('/dev/kvm', 'r+'));
      kvmCache = true;
    } catch {
      kvmCache = false;
    }
  }
  return kvmCache;
}

export interface TestVm {
  pid: number;
  dir: string;
  qmpPath: string;
  accel: 'kvm' | 'tcg';
  stop(): Promise<void>;
}

/** A paused, device-less QEMU with QMP on a unix socket in a temp dir. Stopped by pid. */
export async function startTestVm(options: { dir?: string; extraArgs?: string[] } = {}): Promise<TestVm> {
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'ferry-vm-'));
  const qmpPath = path.join(dir, 'qmp.sock');
  const accel = kvmUsable() ? 'kvm' : 'tcg';
  const argv = [
    '-S', '-nodefaults', '-display', 'none', '-no-user-config',
    '-machine', 'pc', '-accel', accel, '-cpu', 'qemu64,-pni', '-m', '64',
    '-qmp', `unix:${qmpPath},server=on,wait=off`,
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(QEMU, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${QEMU}`);
  await waitFor(() => existsSync(qmpPath) || !isAlive(pid), 'QMP socket').catch(() => undefined);
  if (!existsSync(qmpPath)) {
    await killPid(pid);
    throw new Error(`QEMU did not create its QMP socket: ${stderr}`);
  }
  // The socket file appears at bind(), a moment before listen(): wait until it accepts.
  await waitFor(() => new Promise<boolean>((resolve) => {
    const s = connect(qmpPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  }), 'QMP socket listening').catch(async (e: unknown) => {
    await killPid(pid);
    throw e;
  });
  return {
    pid,
    dir,
    qmpPath,
    accel,
    async stop() {
      await killPid(pid);
      if (!options.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PlainQemu {
  name: string;
  pid: number;
  dir: string;
  /** Its QMP sockets, in the order given (`qmp.sock` first). */
  qmpSockets: string[];
  serialSocket: string;
  pidFile: string;
  argv: string[];
  stop(): Promise<void>;
}

/**
 * The demo guest started the way a script or a systemd unit would, not by Ferry: plain
 * `qemu-system-x86_64 ... -daemonize` with its own pid file, serial and QMP sockets in `dir`
 * (default `<dir>/qmp.sock`; `extraQmp` names more sockets there, e.g. one for a watcher).
 */
export async function startPlainQemu(options: { dir: string; name: string; wsMiB?: number; rateMiBs?: number; extraQmp?: string[]; memoryKiB?: number }): Promise<PlainQemu> {
  const { dir, name } = options;
  const { guestImagePath, LAB_DEFAULT_MEMORY_KIB } = await import('../../electron/core/lab/local-lab');
  mkdirSync(dir, { recursive: true });
  const env = process.env.FERRY_TEST_ACCEL;
  const accel = env === 'tcg' || env === 'kvm' ? env : kvmUsable() ? 'kvm' : 'tcg';
  const qmpSockets = ['qmp.sock', ...(options.extraQmp ?? [])].map((f) => path.join(dir, f));
  const serialSocket = path.join(dir, 'console.sock');
  const pidFile = path.join(dir, `${name}.pid`);
  const argv = [
    QEMU, '-name', name, '-nodefaults', '-display', 'none', '-machine', 'pc', '-accel', accel, '-cpu', 'qemu64,-pni',
    '-m', `${options.memoryKiB ?? LAB_DEFAULT_MEMORY_KIB}k`,
    ...(existsSync('/usr/share/qemu/qboot.rom') ? ['-bios', '/usr/share/qemu/qboot.rom'] : []),
    '-kernel', guestImagePath(), '-append', `ws=${options.wsMiB ?? 32} rate=${options.rateMiBs ?? 20} hb=100`,
    '-chardev', `socket,id=console0,path=${serialSocket},server=on,wait=off`, '-serial', 'chardev:console0',
    ...qmpSockets.flatMap((s) => ['-qmp', `unix:${s},server=on,wait=off`]),
    '-pidfile', pidFile, '-daemonize',
  ];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${QEMU} did not start: ${r.stderr}`);
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  return {
    name, pid, dir, qmpSockets, serialSocket, pidFile, argv,
    async stop() {
      await killPid(pid);
    },
  };
}
