import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchVm, readArgvRecord, readProcessArgv, stopVm, validateVmName, vmFiles } from './vm-launcher';
import type { VmSpec } from './vm-launcher';
import { listVms } from './vm-discovery';
import { LocalTransport } from '../transport/local-transport';
import { SshTransport } from '../transport/ssh-transport';
import type { HostTransport } from '../transport/host-transport';
import { QmpClient } from '../qmp/qmp-client';
import { FerryException } from '../../../shared/errors';
import { makeClientHome, startSshd } from '../../../test/support/sshd';
import type { TestSshd } from '../../../test/support/sshd';
import { isAlive } from '../../../test/support/processes';
import { kvmUsable } from '../../../test/support/qemu';

const spec = (name: string): VmSpec => ({ name, memoryKiB: 65_500, paused: true });

describe('VM launcher and discovery (real QEMU)', () => {
  let runtimeDir: string;
  let sshd: TestSshd;
  let client: ReturnType<typeof makeClientHome>;
  let ssh: SshTransport;
  const local = new LocalTransport();
  const pids: number[] = [];

  beforeAll(async () => {
    runtimeDir = mkdtempSync(path.join(tmpdir(), 'ferry-launch-'));
    sshd = await startSshd();
    client = makeClientHome([sshd]);
    client.trust(sshd);
    ssh = new SshTransport({ host: '127.0.0.1', port: sshd.port }, { homeDir: client.home, agent: false });
    await ssh.connect();
  });

  afterAll(async () => {
    await ssh?.close();
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await sshd?.stop();
    client?.cleanup();
    rmSync(runtimeDir, { recursive: true, force: true });
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });

  it('refuses names that cannot be a directory name, before touching the host', async () => {
    for (const bad of ['', '../etc', 'a/b', '.hidden', '-rf', 'with space', 'x'.repeat(64), 'semi;colon', '$(id)']) {
      expect(() => validateVmName(bad)).toThrow(FerryException);
      await expect(launchVm(local, runtimeDir, spec(bad))).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    }
    expect(existsSync(path.join(runtimeDir, 'etc'))).toBe(false);
    expect(validateVmName('web-01.prod_2')).toBe('web-01.prod_2');
  });

  const launchAndCheck = async (transport: HostTransport, name: string) => {
    const vm = await launchVm(transport, runtimeDir, spec(name));
    pids.push(vm.pid);
    expect(vm.accel).toBe(kvmUsable() ? 'kvm' : 'tcg');
    // argv read back from the process equals the argv launched, and argv.json records it
    expect(await readProcessArgv(transport, vm.pid)).toEqual(vm.argv);
    expect((await readArgvRecord(transport, vm.argvFile))?.argv).toEqual(vm.argv);
    expect(JSON.parse(readFileSync(vm.argvFile, 'utf8')).spec.name).toBe(name);
    // both QMP monitors answer, at the same time
    const q1 = await QmpClient.connect(await transport.openUnix(vm.qmpSocket));
    const q2 = await QmpClient.connect(await transport.openUnix(vm.auxQmpSocket));
    expect(await q1.execute('query-status')).toMatchObject({ status: 'prelaunch' });
    expect(await q2.execute('query-name')).toEqual({ name });
    q1.close();
    q2.close();
    return vm;
  };

  it('starts a VM locally, lists it, refuses a second one of the same name, and stops it', async () => {
    const vm = await launchAndCheck(local, 'alpha');
    await expect(launchVm(local, runtimeDir, spec('alpha'))).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    const vms = await listVms({ id: 'h', transport: { kind: 'local' }, runtimeDir }, local);
    expect(vms).toEqual([{ hostId: 'h', name: 'alpha', qmpSocket: vm.qmpSocket, runState: 'prelaunch', managed: true, manager: 'ferry', pid: vm.pid, memoryMiB: 63.96, vcpus: 1 }]);
    expect(await stopVm(local, runtimeDir, 'alpha')).toEqual({ wasRunning: true });
    expect(isAlive(vm.pid)).toBe(false);
    expect(existsSync(vm.dir)).toBe(false);
    expect(await stopVm(local, runtimeDir, 'alpha')).toEqual({ wasRunning: false });
  });

  it('starts, reads back and stops the same VM over the SSH transport', async () => {
    const vm = await launchAndCheck(ssh, 'beta');
    const vms = await listVms({ id: 'r', transport: { kind: 'ssh', ssh: { host: '127.0.0.1' } }, runtimeDir }, ssh);
    expect(vms.map((v) => [v.name, v.runState, v.managed])).toEqual([['beta', 'prelaunch', true]]);
    await stopVm(ssh, runtimeDir, 'beta');
    expect(isAlive(vm.pid)).toBe(false);
  });

  it('kills a VM that ignores QMP quit (frozen) by pid', async () => {
    const vm = await launchVm(local, runtimeDir, spec('frozen'));
    pids.push(vm.pid);
    process.kill(vm.pid, 'SIGSTOP');
    const r = await stopVm(local, runtimeDir, 'frozen', { timeoutMs: 300 });
    expect(r.wasRunning).toBe(true);
    expect(isAlive(vm.pid)).toBe(false);
  });

  it('reports QEMU start-up errors with QEMU\'s own words, and leaves nothing behind', async () => {
    const e = await launchVm(local, runtimeDir, { ...spec('broken'), extraArgs: ['-device', 'no-such-device'] }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'EXEC_FAILED' });
    expect((e as Error).message).toMatch(/no-such-device/);
    expect(existsSync(vmFiles(runtimeDir, 'broken').argvFile)).toBe(false);
  });

  it('finds foreign QMP sockets through globs and adopts their QEMU (pid and argv from /proc)', async () => {
    const other = await launchVm(local, path.join(runtimeDir, 'foreign-root'), spec('stranger'));
    pids.push(other.pid);
    const host = { id: 'h', transport: { kind: 'local' as const }, runtimeDir: path.join(runtimeDir, 'mine'), qmpSocketGlobs: [`${runtimeDir}/foreign-root/*/qmp-aux.sock`] };
    const vms = await listVms(host, local);
    expect(vms).toEqual([{ hostId: 'h', name: 'stranger', qmpSocket: other.auxQmpSocket, runState: 'prelaunch', managed: true, manager: 'qemu', pid: other.pid, memoryMiB: 63.96, vcpus: 1 }]);
    await stopVm(local, path.join(runtimeDir, 'foreign-root'), 'stranger');
  });
});
