/**
 * Migration with the stream inside SSH (transport ssh-tunnel) between two hosts of a
 * throwaway lab reached through a real sshd on 127.0.0.1. A socket check on the QEMU pids
 * shows they hold no TCP connection: the stream is in the unix sockets Ferry relays.
 */
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { QmpClient } from '../qmp/qmp-client';
import { LocalTransport } from '../transport/local-transport';
import { vmFiles } from '../hosts/vm-launcher';
import path from 'node:path';
import { makeTestLab } from '../../../test/support/lab';
import type { TestLab } from '../../../test/support/lab';
import { makeClientHome, startSshd } from '../../../test/support/sshd';
import type { TestSshd } from '../../../test/support/sshd';
import { kvmUsable } from '../../../test/support/qemu';
import { waitFor } from '../../../test/support/processes';
import { readTimeline } from '../recorder/timeline-reader';
import type { HostConfig } from '../../../shared/model/host';
import type { PreflightResult } from '../../../shared/model/preflight';

/** Inodes of the TCP sockets (v4 and v6) in this network namespace. */
function tcpInodes(): Set<string> {
  const inodes = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9 && cols[9] !== '0') inodes.add(cols[9]!);
    }
  }
  return inodes;
}

/** How many TCP sockets process `pid` holds open. */
function tcpSocketsOf(pid: number): number {
  const tcp = tcpInodes();
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && tcp.has(m[1]!)) n++;
    } catch {
      // fd closed meanwhile
    }
  }
  return n;
}

describe('migration through an SSH tunnel (real QEMU, real sshd on 127.0.0.1)', () => {
  let sshd: TestSshd;
  let client: ReturnType<typeof makeClientHome>;
  let lab: TestLab | undefined;

  beforeAll(async () => {
    sshd = await startSshd();
    client = makeClientHome([sshd]);
    client.trust(sshd);
  });
  afterAll(async () => {
    await sshd?.stop();
    client?.cleanup();
  });
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });

  const sshHosts = (root: string): HostConfig[] => ['a', 'b'].map((x) => ({
    id: `ssh-${x}`,
    transport: { kind: 'ssh', ssh: { host: '127.0.0.1', port: sshd.port, user: 'root', identityFile: client.keyPath } },
    runtimeDir: path.join(root, `lab-${x}`),
    imagesDir: path.join(root, `lab-${x}-images`),
  }));
  const newLab = () => makeTestLab({ ssh: { homeDir: client.home, agent: false } }, sshHosts);

  it('precopy completes through the tunnel; QEMU holds no TCP connection, every byte went through SSH', async () => {
    lab = await newLab();
    await lab.up({ workload: { wsMiB: 48, rateMiBs: 10 } });
    const pre = await lab.service.invoke('migrations:preflight', { vm: 'demo', from: 'ssh-a', to: 'ssh-b', transport: 'ssh-tunnel' });
    expect(pre.ok && (pre.value as PreflightResult).checks.find((c) => c.id === 'ssh-tunnel')).toMatchObject({ status: 'pass', reason: expect.stringMatching(/SSH -> Ferry -> SSH/) });
    const srcPid = (await lab.pidOn('lab-a'))!;
    const m = await lab.service.engine.start({ vm: 'demo', from: 'ssh-a', to: 'ssh-b', transport: 'ssh-tunnel', maxBandwidth: 30_000_000 });
    expect(m.summary().transport).toBe('ssh-tunnel');
    await waitFor(() => m.phase === 'precopy' && (m.samples.at(-1)?.transferredBytes ?? 0) > 1_000_000, 'precopy under way', 30_000);
    const dstPid = (await lab.pidOn('lab-b'))!;
    expect(dstPid).toBeGreaterThan(0);
    // mid-stream: neither QEMU has a TCP socket (the stream is in unix sockets relayed by SSH)
    expect(tcpSocketsOf(srcPid)).toBe(0);
    expect(tcpSocketsOf(dstPid)).toBe(0);
    const final = await m.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true, bad: 0, stale: 0 } });
    expect(final.tunnel!.connections).toBe(1);
    expect(final.tunnel!.forwardBytes).toBeGreaterThanOrEqual(final.transferredBytes!);
    expect(await lab.pidOn('lab-b')).toBe(dstPid);
    const t = readTimeline(m.timelineFile);
    expect(t.header?.plan?.transport).toBe('ssh-tunnel');
    expect(t.records.some((r) => r.type === 'note' && /through SSH/.test((r as { text: string }).text))).toBe(true);

    // Control: the same check sees the TCP stream of a plain migration back.
    const back = await lab.service.engine.start({ vm: 'demo', from: 'ssh-b', to: 'ssh-a', maxBandwidth: 30_000_000 });
    expect(back.summary().transport).toBe('tcp');
    await waitFor(() => back.phase === 'precopy' && (back.samples.at(-1)?.transferredBytes ?? 0) > 1_000_000, 'precopy under way (tcp)', 30_000);
    expect(tcpSocketsOf(dstPid)).toBeGreaterThan(0);
    expect(await back.whenDone()).toMatchObject({ outcome: 'completed' });
    // two hops later the VM's argv still has one -incoming (the args do not grow per hop)
    const argv = readFileSync(`/proc/${(await lab.pidOn('lab-a'))!}/cmdline`, 'utf8').split('\0');
    expect(argv.filter((a) => a === '-incoming')).toHaveLength(1);
  });

  it('postcopy works through the tunnel: page requests come back through it', async () => {
    lab = await newLab();
    await lab.up({ workload: { wsMiB: 96, rateMiBs: null } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'ssh-a', to: 'ssh-b', transport: 'ssh-tunnel', mode: 'postcopy-after', postcopyAfterPasses: 2, maxBandwidth: 40_000_000 });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    expect(m.samples.some((s) => s.phase === 'postcopy')).toBe(true);
    expect(final.postcopyRequests).toBeGreaterThan(0);
    expect(final.tunnel!.backBytes).toBeGreaterThan(0);
    if (kvmUsable()) expect(final.verify).toMatchObject({ ok: true });
  });

  it('postcopy paused by hand is recovered through a new tunnel', async () => {
    lab = await newLab();
    await lab.up({ workload: { wsMiB: 128, rateMiBs: null } });
    const m = await lab.service.engine.start({ vm: 'demo', from: 'ssh-a', to: 'ssh-b', transport: 'ssh-tunnel', mode: 'postcopy-after', postcopyAfterPasses: 1, maxBandwidth: 30_000_000 });
    // Once the destination runs the guest and pulls pages (in the switchover window a broken stream fails instead).
    await waitFor(() => m.phase === 'postcopy' && (m.samples.at(-1)?.postcopyRequests ?? 0) > 20 && (m.samples.at(-1)?.remainingBytes ?? 0) > 30e6, 'postcopy pulling pages', 40_000);
    await m.control({ action: 'pause-postcopy' });
    await waitFor(() => m.phase === 'postcopy-paused', 'postcopy-paused', 30_000);
    await m.control({ action: 'recover' });
    const final = await m.whenDone();
    expect(final.outcome).toBe('completed');
    expect(final.tunnel!.connections).toBeGreaterThanOrEqual(2);
    const notes = readTimeline(m.timelineFile).records.filter((r) => r.type === 'phase').map((r) => (r as { phase: string }).phase);
    expect(notes).toEqual(expect.arrayContaining(['postcopy', 'postcopy-paused', 'completed']));
    if (kvmUsable()) expect(final.verify).toMatchObject({ ok: true });
  });

  it('a storage copy goes through the tunnel too: NBD relayed, images equal, no TCP on either QEMU', async () => {
    lab = await newLab();
    await lab.up({ dataDiskMiB: 16, workload: { wsMiB: 16, rateMiBs: 10 } });
    const srcImage = path.join(lab.root, 'lab-a-images', 'demo-data.qcow2');
    const dstImage = path.join(lab.root, 'lab-b-images', 'demo-data.qcow2');
    const auxOf = async (id: string) => QmpClient.connect(await new LocalTransport().openUnix(vmFiles(path.join(lab!.root, id), 'demo').auxQmpSocket));
    const srcAux = await auxOf('lab-a');
    await srcAux.execute('human-monitor-command', { 'command-line': 'qemu-io disk0 "write -P 0x77 0 12M"' });
    srcAux.close();
    const srcPid = (await lab.pidOn('lab-a'))!;
    const m = await lab.service.engine.start({ vm: 'demo', from: 'ssh-a', to: 'ssh-b', transport: 'ssh-tunnel', copyStorage: true, storageBandwidth: 8_000_000 });
    await waitFor(() => m.phase === 'storage-copy' && (m.samples.at(-1)?.storage?.copiedBytes ?? 0) > 1_000_000, 'storage copy under way', 30_000);
    const dstPid = (await lab.pidOn('lab-b'))!;
    expect(tcpSocketsOf(srcPid)).toBe(0);
    expect(tcpSocketsOf(dstPid)).toBe(0);
    const final = await m.whenDone();
    expect(final).toMatchObject({ outcome: 'completed', verify: { ok: true } });
    expect(final.tunnel!.connections).toBeGreaterThanOrEqual(1);
    expect(final.tunnel!.forwardBytes).toBeGreaterThanOrEqual(final.transferredBytes!);
    expect(final.storage!.copiedBytes).toBeGreaterThanOrEqual(12 << 20);
    // quiesced: the source QEMU is gone, the destination stopped (and so flushed)
    const dq = await auxOf('lab-b');
    await dq.execute('stop');
    dq.close();
    expect(spawnSync('qemu-img', ['compare', '-U', '-f', 'qcow2', '-F', 'qcow2', srcImage, dstImage]).status).toBe(0);
  });

  it('refuses what cannot work through the tunnel, and preflight says why for local hosts', async () => {
    lab = await newLab();
    await lab.up({ workload: { wsMiB: 8, rateMiBs: 0 } });
    const r = await lab.service.invoke('migrations:start', { vm: 'demo', from: 'ssh-a', to: 'ssh-b', transport: 'ssh-tunnel', port: 4444 });
    expect(r).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST', message: expect.stringMatching(/port has no meaning with transport ssh-tunnel/) } });
    const pre = await lab.service.invoke('migrations:preflight', { vm: 'demo', from: 'lab-a', to: 'lab-b', transport: 'ssh-tunnel' });
    expect(pre.ok && (pre.value as PreflightResult).checks.find((c) => c.id === 'ssh-tunnel')).toMatchObject({ status: 'warn', reason: expect.stringMatching(/both this machine/) });
  });
});
