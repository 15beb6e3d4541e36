/**
 * A libvirt host reached over SSH (a real sshd): Ferry's virsh talks to the daemon's socket
 * through an OpenSSH streamlocal channel inside the one SSH connection, so polling costs no
 * session channel (sshd's MaxSessions) and a managed migration needs no trust between the
 * hosts. Here lab-b's daemon is also reached as "ssh-b", through sshd on 127.0.0.1.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationPlanSchema } from '../../../shared/model/migration';
import type { HostConfig } from '../../../shared/model/host';
import { LibvirtDriver } from '../migration/drivers/libvirt-driver';
import type { EngineHosts } from '../migration/drivers/hypervisor-driver';
import { SshTransport } from '../transport/ssh-transport';
import type { HostTransport } from '../transport/host-transport';
import { readLabState } from '../lab/local-lab';
import { findDomain, listLibvirtVms } from './libvirt-domains';
import { libvirtLabMissing, makeLibvirtLab } from '../../../test/support/libvirt-lab';
import type { TestLibvirtLab } from '../../../test/support/libvirt-lab';
import { makeClientHome, startSshd } from '../../../test/support/sshd';
import type { TestSshd } from '../../../test/support/sshd';
import { runDriver } from '../../../test/support/driver-run';

const missing = await libvirtLabMissing();

describe.skipIf(missing !== undefined)(`libvirt host over SSH${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let lab: TestLibvirtLab;
  let sshd: TestSshd;
  let client: ReturnType<typeof makeClientHome>;
  let ssh: SshTransport;
  let sshHost: HostConfig;
  let hosts: EngineHosts;
  let driver: LibvirtDriver;

  beforeAll(async () => {
    lab = await makeLibvirtLab({ workload: { rateMiBs: 10 } });
    sshd = await startSshd();
    client = makeClientHome([sshd]);
    client.trust(sshd);
    const b = readLabState(lab.root)!.libvirt!.daemons[1]!;
    // From sshd's point of view (the root namespace) lab-b's /run/libvirt is its bind source.
    sshHost = {
      id: 'ssh-b', transport: { kind: 'ssh', ssh: { host: '127.0.0.1', port: sshd.port, user: 'root', identityFile: client.keyPath } },
      libvirt: { socket: path.join(b.dir, 'run', 'libvirt-sock') }, migrationAddress: '127.0.0.3',
    };
    ssh = new SshTransport({ host: '127.0.0.1', port: sshd.port, user: 'root', identityFile: client.keyPath }, { homeDir: client.home, agent: false });
    await ssh.connect();
    const all = [...lab.hosts, sshHost];
    const ts = new Map<string, HostTransport>([...lab.transports, ['ssh-b', ssh]]);
    hosts = { host: async (id) => all.find((h) => h.id === id)!, transport: async (id) => ts.get(id)! };
    driver = new LibvirtDriver(lab.pool);
  }, 120_000);
  afterAll(async () => {
    await lab?.pool.closeAll();
    await ssh?.close();
    await sshd?.stop();
    client?.cleanup();
    await lab?.close();
  }, 60_000);

  it('lists the domains, migrates there and back, polls through streamlocal without a session channel', async () => {
    const conn = await lab.pool.get(sshHost, ssh);
    expect(conn.transport).toBe(ssh);
    expect(await listLibvirtVms('ssh-b', conn)).toEqual([]);
    const there = await runDriver(driver, MigrationPlanSchema.parse({ vm: 'demo', from: 'lab-a', to: 'ssh-b', maxBandwidth: 100e6 }), hosts);
    expect((await there.done).outcome).toBe('completed');
    expect(await findDomain(conn, 'demo')).toBeDefined();

    // Back, with the source over SSH: every sample is a round trip through the streamlocal
    // relay. The only session channels are the few commands the link probe runs (ss), each
    // held while it runs, and the host's one SFTP channel, opened once for file reads (the
    // source QEMU's cmdline and memory map, at open).
    const peakBefore = ssh.sessions.peak;
    const held: { held: number; commands: number }[] = [];
    let back: Awaited<ReturnType<typeof runDriver>> | undefined;
    let commands = 0;
    const ran: string[] = [];
    let fileReads = 0;
    const readFile = ssh.readFile.bind(ssh);
    ssh.readFile = async (p) => {
      fileReads++;
      return readFile(p);
    };
    const exec = ssh.exec.bind(ssh);
    let mostCommands = 0;
    ssh.exec = async (argv, options) => {
      commands++;
      mostCommands = Math.max(mostCommands, commands);
      ran.push(argv[0]!);
      try {
        return await exec(argv, options);
      } finally {
        commands--;
      }
    };
    try {
      back = await runDriver(driver, MigrationPlanSchema.parse({ vm: 'demo', from: 'ssh-b', to: 'lab-a', maxBandwidth: 60e6 }), hosts, { intervalMs: 50 });
      const probe = setInterval(() => held.push({ held: ssh.sessions.held, commands }), 20);
      const end = await back.done;
      clearInterval(probe);
      expect(held.length).toBeGreaterThan(5);
      expect(end.outcome).toBe('completed');
      expect(back.samples.length).toBeGreaterThan(5);
      expect(fileReads).toBeGreaterThan(0);
      expect(held.filter((h) => h.held > h.commands + 1)).toEqual([]);
      expect(new Set(ran.slice(1))).toEqual(new Set(['ss'])); // after the source QEMU's pgrep at open
      expect(ran.filter((c) => c === 'ss').length).toBeLessThanOrEqual(8);
      // …and it measured the link on the SSH host too
      expect(back.samples.some((x) => x.linkRate !== undefined)).toBe(true);
    } finally {
      ssh.exec = exec;
      ssh.readFile = readFile;
    }
    expect(mostCommands).toBe(1);
    expect(ssh.sessions.peak).toBeLessThanOrEqual(Math.max(peakBefore, mostCommands + 1));
    expect(conn.relayConnections).toBeGreaterThanOrEqual(3); // the shell, the event stream, the migrate client
    const ms = [...back!.sampleMs].sort((a, b) => a - b);
    console.log(`libvirt sample cost over SSH: ${ms.length} samples, p50 ${ms[Math.floor(ms.length / 2)]!.toFixed(2)} ms, p90 ${ms[Math.floor(ms.length * 0.9)]!.toFixed(2)} ms`);
    expect(await findDomain(await lab.conn('lab-a'), 'demo')).toBeDefined();
  });
});
