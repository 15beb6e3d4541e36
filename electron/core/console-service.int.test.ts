import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConsoleService } from './console-service';
import { makeClientHome, startSshd } from '../../test/support/sshd';
import type { TestSshd } from '../../test/support/sshd';
import { launchVm, stopVm } from './hosts/vm-launcher';
import type { LaunchedVm } from './hosts/vm-launcher';
import { LocalTransport } from './transport/local-transport';
import { waitFor } from '../../test/support/processes';
import type { EventPayload, HostInfo } from '../../shared/contract';
import type { VmInfo } from '../../shared/model/vm';

describe('ConsoleService: hosts and VMs over the contract', () => {
  let sshd: TestSshd;
  let client: ReturnType<typeof makeClientHome>;
  let vm: LaunchedVm;
  let runtimeDir: string;
  let configDir: string;
  let service: ConsoleService;
  const states: EventPayload<'hosts:state'>[] = [];

  beforeAll(async () => {
    sshd = await startSshd();
    client = makeClientHome([sshd]); // the host key is NOT in known_hosts: the UI must confirm it
    runtimeDir = mkdtempSync(path.join(tmpdir(), 'ferry-run-'));
    vm = await launchVm(new LocalTransport(), runtimeDir, { name: 'demo', memoryKiB: 65_500, paused: true });
    configDir = mkdtempSync(path.join(tmpdir(), 'ferry-cfg-'));
    service = new ConsoleService({
      configDir,
      builtinHosts: [{ id: 'lab-a', transport: { kind: 'local' }, runtimeDir }],
      ssh: { homeDir: client.home, agent: false },
      reconnectDelayMs: 100,
    });
    service.on('hosts:state', (s) => states.push(s));
  });

  afterAll(async () => {
    await service?.dispose();
    if (vm) await stopVm(new LocalTransport(), runtimeDir, 'demo');
    await sshd?.stop();
    client?.cleanup();
    rmSync(runtimeDir, { recursive: true, force: true });
    rmSync(configDir, { recursive: true, force: true });
  });

  it('validates every request against the contract and names the problem', async () => {
    expect(await service.invoke('hosts:nope', {})).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST', message: 'unknown channel "hosts:nope"' } });
    const bad = await service.invoke('hosts:add', { id: 'Bad Id', transport: { kind: 'ssh', ssh: { host: '-oProxyCommand=x' } } });
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.error.message).toMatch(/^hosts:add: id: host id.*transport\.ssh\.host: SSH host must not/);
    expect(await service.invoke('hosts:connect', { id: 'missing' })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(await service.invoke('hosts:list', { extra: 1 })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
  });

  it('lists the VMs of a local host with their QMP state', async () => {
    const r = await service.invoke('vms:list', { hostId: 'lab-a' });
    expect(r).toEqual({ ok: true, value: [{ hostId: 'lab-a', name: 'demo', qmpSocket: vm.qmpSocket, runState: 'prelaunch', managed: true, manager: 'ferry', pid: vm.pid, memoryMiB: 63.96, vcpus: 1 }] satisfies VmInfo[] });
  });

  it('asks to confirm an unknown host key, trusts it only for the fingerprint shown, then connects', async () => {
    const added = await service.invoke('hosts:add', { id: 'hv1', transport: { kind: 'ssh', ssh: { host: '127.0.0.1', port: sshd.port, user: 'root' } }, runtimeDir });
    expect(added).toMatchObject({ ok: true, value: { state: 'disconnected' } });
    const first = await service.invoke('hosts:connect', { id: 'hv1' });
    expect(first).toMatchObject({ ok: false, error: { code: 'SSH_HOST_KEY_UNKNOWN' } });
    const fingerprint = !first.ok ? (first.error.details?.fingerprint as string) : '';
    expect(fingerprint).toMatch(/^SHA256:/);
    expect(states.at(-1)).toMatchObject({ hostId: 'hv1', state: 'failed', error: { code: 'SSH_HOST_KEY_UNKNOWN' } });

    const wrong = await service.invoke('hosts:trust-key', { id: 'hv1', fingerprint: `SHA256:${'A'.repeat(43)}` });
    expect(wrong).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });

    const trusted = await service.invoke('hosts:trust-key', { id: 'hv1', fingerprint });
    expect(trusted).toMatchObject({ ok: true, value: { state: 'connected', label: `root@127.0.0.1:${sshd.port}` } });
    // stored hashed in Ferry's own known_hosts, not in the user's
    expect(readFileSync(path.join(configDir, 'known_hosts'), 'utf8')).toMatch(/^\|1\|\S+ ssh-ed25519 /);

    const vms = await service.invoke('vms:list', { hostId: 'hv1' });
    expect(vms).toMatchObject({ ok: true, value: [{ hostId: 'hv1', name: 'demo', runState: 'prelaunch' }] });

    // persisted: a new service sees the host, and its key is still trusted
    const again = new ConsoleService({ configDir, ssh: { homeDir: client.home, agent: false } });
    try {
      expect(await again.invoke('hosts:connect', { id: 'hv1' })).toMatchObject({ ok: true, value: { state: 'connected' } });
    } finally {
      await again.dispose();
    }
  });

  it('reports a dropped connection and re-establishes it', async () => {
    const listed = (await service.invoke('hosts:list', {})) as { ok: true; value: HostInfo[] };
    expect(listed.value.map((h) => [h.config.id, h.state])).toEqual([['lab-a', 'connected'], ['hv1', 'connected']]);
    states.length = 0;
    // Kill the session's sshd process (a child of the listener), as a crash on the host would.
    const children = readFileSync(`/proc/${sshd.pid}/task/${sshd.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    expect(children.length).toBeGreaterThan(0);
    for (const pid of children) process.kill(pid, 'SIGKILL');
    await waitFor(() => states.some((s) => s.state === 'disconnected'), 'disconnected event');
    expect(states.find((s) => s.state === 'disconnected')).toMatchObject({ hostId: 'hv1', error: { code: 'SSH_DISCONNECTED' } });
    await waitFor(() => states.at(-1)?.state === 'connected', 'reconnected event');
    expect(states.map((s) => s.state)).toEqual(['disconnected', 'connecting', 'connected']);
    expect(await service.invoke('vms:list', { hostId: 'hv1' })).toMatchObject({ ok: true });
  });

  it('removes a host', async () => {
    expect(await service.invoke('hosts:remove', { id: 'hv1' })).toEqual({ ok: true, value: {} });
    expect(await service.invoke('hosts:remove', { id: 'lab-a' })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    const listed = (await service.invoke('hosts:list', {})) as { ok: true; value: HostInfo[] };
    expect(listed.value.map((h) => h.config.id)).toEqual(['lab-a']);
  });
});
