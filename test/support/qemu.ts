import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, rmSync } from 'node:fs';
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
