/**
 * The real-host fixture: three SSH hosts in network namespaces, shaped the way users' are.
 *
 *   root namespace (Ferry) ── veth ── jump (sshd) ══ bridge ══ hv1 (sshd)
 *                                                         ╚══ hv2 (sshd)
 *                                       hv1 ── veth (migration network) ── hv2
 *
 * Ferry reaches only the jump host; hv1 and hv2 are reached with `ProxyJump jump` from an
 * ssh config in a throwaway home. Each sshd has its own host key and OpenSSH's default
 * limits (MaxSessions 10, MaxStartups 10:30:100): nothing is raised for the tests. The
 * migration stream goes over its own link between hv1 and hv2, which can be shaped and cut
 * without touching the SSH paths. The hosts share this machine's filesystem, so each has
 * its own runtime, states and images directories under the fleet's root.
 *
 * Everything is stopped by pid and the namespaces are deleted in `stop()`.
 */
import { spawn, execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { HostConfig } from '../../shared/model/host';
import { isAlive, killPid, sleep, waitFor } from './processes';
import { sshKeygen } from './sshd';
import { processesMentioning } from './lab';
import { ConsoleService } from '../../electron/core/console-service';
import type { ConsoleServiceOptions } from '../../electron/core/console-service';
import { launchVm, vmFiles } from '../../electron/core/hosts/vm-launcher';
import { demoVmSpec, waitGuestReady } from '../../electron/core/lab/local-lab';

export interface FleetHost {
  /** Host id and ssh_config alias. */
  id: 'jump' | 'hv1' | 'hv2';
  ns: string;
  /** Where its sshd listens (inside its namespace). */
  sshAddress: string;
  sshdPid: number;
  sshdLog: string;
  hostKeyPub: string;
  /** hv1/hv2: address on the migration network. */
  migrationAddress?: string;
  root: string;
}

export interface Fleet {
  root: string;
  /** The client's home: ~/.ssh/config, id_ed25519, known_hosts. */
  home: string;
  keyPath: string;
  jump: FleetHost;
  hv1: FleetHost;
  hv2: FleetHost;
  /** HostConfigs for hv1 and hv2 as a user would write them (alias only; ProxyJump from ~/.ssh/config). */
  hostConfigs(): HostConfig[];
  /** Lines of a host's sshd log matching `re`. */
  sshdLogLines(host: FleetHost, re: RegExp): string[];
  /** Cuts (false) or restores (true) the migration link between hv1 and hv2. */
  setMigrationLink(up: boolean): void;
  /** Cuts (false) or restores (true) a hypervisor's management link (its SSH path through the jump host). */
  setManagementLink(host: FleetHost, up: boolean): void;
  /** Shapes the migration link (bit/s, null = unshaped), on both sending sides. */
  shapeMigrationLink(bitsPerSecond: number | null): void;
  /** Runs a command inside a host's namespace. */
  run(host: FleetHost, argv: string[]): string;
  /**
   * A console service on hv1 and hv2 as a user's would be: their ssh config and keys, its own
   * config dir under the fleet's root (removed by stop()). The caller disposes it.
   */
  service(options?: Partial<ConsoleServiceOptions>): ConsoleService;
  /** Replaces a host's sshd host key (as a reinstalled host would), restarting its sshd. */
  rekey(host: FleetHost): Promise<void>;
  stop(): Promise<void>;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Whether this machine can build the fleet (root, ip netns, sshd). */
export function fleetAvailable(): { ok: boolean; reason?: string } {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'the SSH fleet needs root (network namespaces)' };
  if (!existsSync('/usr/sbin/sshd')) return { ok: false, reason: 'openssh-server is not installed' };
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  } catch {
    return { ok: false, reason: 'ip netns does not work here' };
  }
  return { ok: true };
}

let fleetCounter = 0;

export async function startFleet(options: { prefix?: string } = {}): Promise<Fleet> {
  const tag = options.prefix ?? `ff${process.pid % 10000}${fleetCounter++}`;
  if (!/^[a-z0-9]{2,9}$/.test(tag)) throw new Error(`fleet prefix must be 2-9 of a-z0-9: ${tag}`);
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const root = mkdtempSync(path.join(tmpdir(), `ferry-fleet-${tag}-`));
  const ns = { jump: `${tag}-jump`, hv1: `${tag}-hv1`, hv2: `${tag}-hv2` };
  // A /30 in the root namespace unique to this fleet: the other subnets live inside namespaces only.
  const n = (process.pid * 7 + fleetCounter * 13) % 250;
  const rootNet = `10.${150 + (n % 50)}.${n}.`;
  const addr = { root: `${rootNet}1`, jump: `${rootNet}2`, jumpBr: '10.77.1.1', hv1: '10.77.1.11', hv2: '10.77.1.12', mig1: '10.77.2.1', mig2: '10.77.2.2' };
  const dev = { r: `${tag}r`, jr: `${tag}jr`, j1: `${tag}j1`, h1: `${tag}h1`, j2: `${tag}j2`, h2: `${tag}h2`, m1: `${tag}m1`, m2: `${tag}m2` };
  const pids: number[] = [];
  const cleanupNs = () => {
    for (const x of Object.values(ns)) {
      try {
        ip(['netns', 'del', x]);
      } catch {
        // not created (or already gone)
      }
    }
    try {
      ip(['link', 'del', dev.r]);
    } catch {
      // went with the jump namespace
    }
  };
  cleanupNs();
  try {
    for (const x of Object.values(ns)) ip(['netns', 'add', x]);
    for (const x of Object.values(ns)) ip(['-n', x, 'link', 'set', 'lo', 'up']);
    // root <-> jump
    ip(['link', 'add', dev.r, 'type', 'veth', 'peer', 'name', dev.jr]);
    ip(['link', 'set', dev.jr, 'netns', ns.jump]);
    ip(['addr', 'add', `${addr.root}/30`, 'dev', dev.r]);
    ip(['link', 'set', dev.r, 'up']);
    ip(['-n', ns.jump, 'addr', 'add', `${addr.jump}/30`, 'dev', dev.jr]);
    ip(['-n', ns.jump, 'link', 'set', dev.jr, 'up']);
    // jump's bridge to the hypervisors' management interfaces (the jump host does not forward).
    ip(['-n', ns.jump, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', ns.jump, 'addr', 'add', `${addr.jumpBr}/24`, 'dev', 'br0']);
    ip(['-n', ns.jump, 'link', 'set', 'br0', 'up']);
    for (const [j, h, hns, a] of [[dev.j1, dev.h1, ns.hv1, addr.hv1], [dev.j2, dev.h2, ns.hv2, addr.hv2]] as const) {
      ip(['link', 'add', j, 'type', 'veth', 'peer', 'name', h]);
      ip(['link', 'set', j, 'netns', ns.jump]);
      ip(['link', 'set', h, 'netns', hns]);
      ip(['-n', ns.jump, 'link', 'set', j, 'master', 'br0']);
      ip(['-n', ns.jump, 'link', 'set', j, 'up']);
      ip(['-n', hns, 'addr', 'add', `${a}/24`, 'dev', h]);
      ip(['-n', hns, 'link', 'set', h, 'up']);
    }
    // hv1 <-> hv2: the migration network.
    ip(['link', 'add', dev.m1, 'type', 'veth', 'peer', 'name', dev.m2]);
    ip(['link', 'set', dev.m1, 'netns', ns.hv1]);
    ip(['link', 'set', dev.m2, 'netns', ns.hv2]);
    ip(['-n', ns.hv1, 'addr', 'add', `${addr.mig1}/30`, 'dev', dev.m1]);
    ip(['-n', ns.hv2, 'addr', 'add', `${addr.mig2}/30`, 'dev', dev.m2]);
    ip(['-n', ns.hv1, 'link', 'set', dev.m1, 'up']);
    ip(['-n', ns.hv2, 'link', 'set', dev.m2, 'up']);
  } catch (e) {
    cleanupNs();
    rmSync(root, { recursive: true, force: true });
    throw e;
  }

  const home = path.join(root, 'home');
  const sshDir = path.join(home, '.ssh');
  mkdirSync(sshDir, { recursive: true, mode: 0o700 });
  const keyPath = path.join(sshDir, 'id_ed25519');
  const clientPub = sshKeygen(keyPath, { comment: 'ferry-fleet-client' });

  const startSshdIn = async (id: FleetHost['id'], nsName: string, listen: string): Promise<FleetHost> => {
    const dir = path.join(root, id);
    mkdirSync(path.join(dir, 'run'), { recursive: true, mode: 0o700 });
    const hostKey = path.join(dir, 'ssh_host_ed25519_key');
    if (!existsSync(hostKey)) sshKeygen(hostKey, { comment: `ferry-fleet-${id}` });
    const hostKeyPub = readFileSync(`${hostKey}.pub`, 'utf8').trim();
    const authorized = path.join(dir, 'authorized_keys');
    writeFileSync(authorized, `${clientPub}\n`, { mode: 0o600 });
    // OpenSSH's defaults except what a test host needs to exist at all: no MaxSessions,
    // MaxStartups or forwarding settings beyond the stock ones (AllowStreamLocalForwarding
    // and AllowTcpForwarding default to yes), key auth as root, its own files.
    const config = [
      `ListenAddress ${listen}:22`,
      `HostKey ${hostKey}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorized}`,
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'Subsystem sftp /usr/lib/openssh/sftp-server',
    ];
    const configPath = path.join(dir, 'sshd_config');
    writeFileSync(configPath, `${config.join('\n')}\n`);
    const log = path.join(dir, 'sshd.log');
    const child = spawn('ip', ['netns', 'exec', nsName, '/usr/sbin/sshd', '-f', configPath, '-D', '-E', log], { stdio: 'ignore' });
    const pid = child.pid!;
    pids.push(pid);
    await waitFor(() => {
      if (!isAlive(pid)) throw new Error(`sshd for ${id} exited: ${existsSync(log) ? readFileSync(log, 'utf8') : ''}`);
      try {
        execFileSync('ip', ['netns', 'exec', nsName, 'bash', '-c', `exec 3<>/dev/tcp/${listen}/22`], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    }, `sshd of ${id} listening`).catch(async (e: unknown) => {
      await killPid(pid);
      throw e;
    });
    return { id, ns: nsName, sshAddress: listen, sshdPid: pid, sshdLog: log, hostKeyPub, root: dir };
  };

  let hosts: { jump: FleetHost; hv1: FleetHost; hv2: FleetHost };
  try {
    const jump = await startSshdIn('jump', ns.jump, addr.jump);
    const hv1 = { ...(await startSshdIn('hv1', ns.hv1, addr.hv1)), migrationAddress: addr.mig1 };
    const hv2 = { ...(await startSshdIn('hv2', ns.hv2, addr.hv2)), migrationAddress: addr.mig2 };
    hosts = { jump, hv1, hv2 };
  } catch (e) {
    for (const p of pids) await killPid(p);
    cleanupNs();
    rmSync(root, { recursive: true, force: true });
    throw e;
  }

  const writeKnownHosts = () => {
    const lines = Object.values(hosts).map((h) => {
      const [type, b64] = h.hostKeyPub.split(/\s+/);
      return `${h.sshAddress} ${type} ${b64}`;
    });
    writeFileSync(path.join(sshDir, 'known_hosts'), `${lines.join('\n')}\n`, { mode: 0o600 });
  };
  writeKnownHosts();
  writeFileSync(path.join(sshDir, 'config'), [
    'Host jump',
    `  HostName ${addr.jump}`,
    '  User root',
    `  IdentityFile ${keyPath}`,
    'Host hv1',
    `  HostName ${addr.hv1}`,
    '  User root',
    '  ProxyJump jump',
    'Host hv2',
    `  HostName ${addr.hv2}`,
    '  User root',
    '  ProxyJump jump',
    'Host *',
    `  IdentityFile ${keyPath}`,
    '',
  ].join('\n'), { mode: 0o600 });

  const fleet: Fleet = {
    root,
    home,
    keyPath,
    ...hosts,
    hostConfigs() {
      return (['hv1', 'hv2'] as const).map((id): HostConfig => ({
        id,
        transport: { kind: 'ssh', ssh: { host: id } },
        runtimeDir: path.join(hosts[id].root, 'run'),
        statesDir: path.join(hosts[id].root, 'states'),
        imagesDir: path.join(hosts[id].root, 'images'),
        migrationAddress: hosts[id].migrationAddress!,
      }));
    },
    sshdLogLines(host, re) {
      return existsSync(host.sshdLog) ? readFileSync(host.sshdLog, 'utf8').split('\n').filter((l) => re.test(l)) : [];
    },
    setMigrationLink(up) {
      ip(['-n', ns.hv1, 'link', 'set', dev.m1, up ? 'up' : 'down']);
      ip(['-n', ns.hv2, 'link', 'set', dev.m2, up ? 'up' : 'down']);
    },
    service(options = {}) {
      const configDir = mkdtempSync(path.join(root, 'cfg-'));
      return new ConsoleService({ configDir, builtinHosts: this.hostConfigs(), reconnectDelayMs: 200, ...options, ssh: { homeDir: home, agent: false, ...options.ssh } });
    },
    setManagementLink(host, up) {
      const d = host.id === 'hv1' ? dev.j1 : host.id === 'hv2' ? dev.j2 : undefined;
      if (!d) throw new Error('only hv1 and hv2 have a management link to cut');
      ip(['-n', ns.jump, 'link', 'set', d, up ? 'up' : 'down']);
    },
    shapeMigrationLink(bits) {
      for (const [n, d] of [[ns.hv1, dev.m1], [ns.hv2, dev.m2]] as const) {
        if (bits === null) {
          try {
            execFileSync('ip', ['netns', 'exec', n, 'tc', 'qdisc', 'del', 'dev', d, 'root'], { stdio: 'ignore' });
          } catch {
            // was not shaped
          }
        } else {
          const burst = Math.max(32 * 1024, Math.round(bits / 8 / 100));
          execFileSync('ip', ['netns', 'exec', n, 'tc', 'qdisc', 'replace', 'dev', d, 'root', 'tbf', 'rate', `${Math.round(bits)}bit`, 'burst', String(burst), 'latency', '100ms']);
        }
      }
    },
    run(host, argv) {
      return execFileSync('ip', ['netns', 'exec', host.ns, ...argv], { encoding: 'utf8' });
    },
    async rekey(host) {
      await killPid(host.sshdPid);
      rmSync(path.join(host.root, 'ssh_host_ed25519_key'), { force: true });
      rmSync(path.join(host.root, 'ssh_host_ed25519_key.pub'), { force: true });
      const again = await startSshdIn(host.id, host.ns, host.sshAddress);
      Object.assign(host, { sshdPid: again.sshdPid, hostKeyPub: again.hostKeyPub });
    },
    async stop() {
      // QEMUs (and anything else) the tests left under the fleet's directories, by pid.
      for (const pid of processesMentioning(root)) if (!pids.includes(pid)) await killPid(pid);
      for (const h of Object.values(hosts)) await killPid(h.sshdPid);
      for (const p of pids) await killPid(p);
      await sleep(10);
      cleanupNs();
      rmSync(root, { recursive: true, force: true });
    },
  };
  return fleet;
}

/** Starts the demo guest on a fleet host through Ferry's launcher over SSH, and waits until it answers. */
export async function startDemo(service: ConsoleService, hostId: string, workload: { wsMiB: number; rateMiBs: number | null }): Promise<void> {
  const host = await service.registry.get(hostId);
  const t = await service.transportOf(hostId);
  await launchVm(t, host.runtimeDir!, demoVmSpec(workload));
  await waitGuestReady(t, vmFiles(host.runtimeDir!, 'demo').serialSocket);
}

/** Appends a line to a fleet client's known_hosts (e.g. a stale key, to provoke a refusal). */
export function addKnownHost(fleet: Fleet, line: string): void {
  appendFileSync(path.join(fleet.home, '.ssh', 'known_hosts'), `${line}\n`);
}
