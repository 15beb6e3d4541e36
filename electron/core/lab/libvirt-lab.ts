/**
 * The libvirt lab: two libvirt daemons on this machine, each in its own mount namespace
 * (its own /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt,
 * /var/log/libvirt, bind-mounted from the lab's directory), with distinct host UUIDs, and
 * the demo guest defined as a domain on lab-a. Ferry reaches each daemon the way it
 * reaches any host: a local transport inside that namespace (nsenter, /proc/PID/root), and
 * the daemon's own socket at /run/libvirt/libvirt-sock there.
 *
 * Each daemon runs under a small child-subreaper (perl's syscall, perl-base is essential
 * in Debian): PID 1 on these machines reaps orphans late, and libvirt waits for QEMU's
 * exit. Everything the lab made is stopped by pid and removed by `ferry lab down`; the
 * namespaces and their mounts go with the last process in them.
 *
 * What each setting is for, and what was measured: ../shared/LAB-NOTES.md, "libvirt on one
 * machine".
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, promises as fs, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FerryException } from '../../../shared/errors';
import { LocalTransport } from '../transport/local-transport';
import { VirshShell, VirshError } from '../libvirt/virsh-shell';
import { unixUri } from '../libvirt/libvirt-connection';
import { parseUuidNameList } from '../libvirt/virsh-text';
import { rootLog } from '../log';

const log = rootLog.child('libvirt-lab');

/** What libvirt sees as system directories, each bind-mounted from the lab. */
const MOUNTS = [
  ['etc', '/etc/libvirt'],
  ['run', '/run/libvirt'],
  ['lib', '/var/lib/libvirt'],
  ['cache', '/var/cache/libvirt'],
  ['log', '/var/log/libvirt'],
] as const;

/** The daemon's socket inside its namespace (libvirtd's default unix_sock_dir). */
export const LAB_LIBVIRT_SOCKET = '/run/libvirt/libvirt-sock';

export interface LibvirtDaemonState {
  hostId: string;
  dir: string;
  /** Holds the pid of the subreaper, whose mount namespace the daemon shares. */
  pidFile: string;
  hostUuid: string;
}

export interface LibvirtLabState {
  daemons: LibvirtDaemonState[];
  /** Mount points this lab had to create (removed again when empty). */
  createdDirs: string[];
  domain?: { name: string; uuid: string; type: 'kvm' | 'qemu' };
}

/** PR_SET_CHILD_SUBREAPER, bind mounts, then the daemon; reaps every orphan until all are gone. */
const SUBREAPER = `# Ferry's libvirt lab: a child subreaper that bind-mounts libvirt's directories, then runs the daemon.
use strict; use warnings; use POSIX ();
my %nr = (x86_64 => 157, aarch64 => 167, riscv64 => 167, ppc64le => 171, ppc64 => 171, s390x => 172);
my $arch = (POSIX::uname())[4];
my $n = $nr{$arch} // die "subreaper: no prctl number known for $arch\\n";
syscall($n, 36, 1, 0, 0, 0) == 0 or die "subreaper: prctl(PR_SET_CHILD_SUBREAPER): $!\\n";
while (@ARGV && $ARGV[0] eq '--bind') {
  shift; my ($s, $d) = splice(@ARGV, 0, 2);
  system('mount', '--bind', $s, $d) == 0 or die "subreaper: mount --bind $s $d failed\\n";
}
shift if @ARGV && $ARGV[0] eq '--';
my $child = fork() // die "subreaper: fork: $!\\n";
if ($child == 0) { exec { $ARGV[0] } @ARGV or die "subreaper: exec $ARGV[0]: $!\\n"; }
for my $sig (qw(TERM INT HUP)) { $SIG{$sig} = sub { kill $sig, $child }; }
my $status = 0;
while (1) { my $w = waitpid(-1, 0); if ($w == -1) { last unless $!{EINTR}; next; } $status = $? if $w == $child; }
exit(($status >> 8) || (($status & 127) ? 128 + ($status & 127) : 0));
`;

/** Whether this machine can run the libvirt lab, and if not, what to do. */
export async function libvirtLabAvailable(): Promise<{ ok: boolean; reason?: string }> {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'the libvirt lab needs root (mount namespaces, system libvirt daemons)' };
  const local = new LocalTransport();
  for (const [bin, pkg] of [['libvirtd', 'libvirt-daemon-system'], ['virsh', 'libvirt-clients'], ['unshare', 'util-linux'], ['nsenter', 'util-linux'], ['perl', 'perl-base']] as const) {
    const r = await local.exec(['sh', '-c', 'command -v "$1"', 'sh', bin]);
    if (r.code !== 0) return { ok: false, reason: `${bin} is not installed: apt-get install --no-install-recommends ${pkg === 'libvirt-daemon-system' || pkg === 'libvirt-clients' ? 'libvirt-daemon-system libvirt-clients' : pkg}` };
  }
  return { ok: true };
}

function libvirtdConf(hostUuid: string): string {
  return [
    '# Ferry libvirt lab',
    `host_uuid = "${hostUuid}"`,
    'auth_unix_rw = "none"',
    'auth_unix_ro = "none"',
    'unix_sock_rw_perms = "0700"',
    'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
    '',
  ].join('\n');
}

function qemuConf(portBase: number): string {
  return [
    '# Ferry libvirt lab: QEMU as root (/dev/kvm is 0600 here), no labels, no virtlogd,',
    '# no cgroups (both daemons would make the same paths and clean each other up).',
    'user = "root"',
    'group = "root"',
    'dynamic_ownership = 0',
    'remember_owner = 0',
    'security_driver = "none"',
    'stdio_handler = "file"',
    'cgroup_controllers = [ ]',
    `migration_port_min = ${portBase}`,
    `migration_port_max = ${portBase + 63}`,
    '',
  ].join('\n');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function pidOf(pidFile: string): number | undefined {
  try {
    const n = Number(readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    // no pid file: the daemon never started or has cleaned up; "no pid" is the answer
    return undefined;
  }
}

/** Alive and not a zombie (PID 1 here reaps late: a dead process's /proc entry lingers). */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).charAt(0);
    return state !== '' && state !== 'Z' && state !== 'X';
  } catch {
    // no /proc entry: the process is gone, which is what was asked
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (pidAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

function tail(file: string, lines = 5): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ');
  } catch {
    // for an error message only: a daemon that wrote no log says so
    return '(no log)';
  }
}

/** Starts one daemon in its own mount namespace; resolves once it answers on its socket. */
async function startDaemon(d: LibvirtDaemonState, wrapper: string, portBase: number): Promise<void> {
  for (const [sub] of MOUNTS) mkdirSync(path.join(d.dir, sub), { recursive: true, mode: 0o700 });
  mkdirSync(path.join(d.dir, 'etc', 'qemu'), { recursive: true });
  writeFileSync(path.join(d.dir, 'etc', 'libvirtd.conf'), libvirtdConf(d.hostUuid));
  writeFileSync(path.join(d.dir, 'etc', 'qemu.conf'), qemuConf(portBase));
  const logFile = path.join(d.dir, 'daemon.log');
  const out = openSync(logFile, 'a');
  const binds = MOUNTS.flatMap(([sub, target]) => ['--bind', path.join(d.dir, sub), target]);
  const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'perl', wrapper, ...binds, '--', 'libvirtd', '-f', '/etc/libvirt/libvirtd.conf', '-p', '/run/libvirt/libvirtd.pid'], {
    detached: true, stdio: ['ignore', out, out],
  });
  closeSync(out);
  const spawned = await new Promise<number>((resolve, reject) => {
    child.once('error', (e) => reject(new FerryException('EXEC_FAILED', `cannot start libvirtd for ${d.hostId}: ${e.message}`)));
    child.once('spawn', () => resolve(child.pid!));
  });
  child.unref();
  writeFileSync(d.pidFile, `${spawned}\n`);
  const sock = path.join(d.dir, 'run', 'libvirt-sock');
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (!pidAlive(spawned)) throw new FerryException('EXEC_FAILED', `libvirtd for ${d.hostId} exited: ${tail(logFile)}`);
    if (existsSync(sock)) {
      try {
        const sh = await VirshShell.open(unixUri(sock), { label: d.hostId, timeoutMs: 30_000 });
        sh.close();
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
    }
    if (Date.now() > deadline) throw new FerryException('EXEC_FAILED', `libvirtd for ${d.hostId} did not open ${sock} within 30 s: ${tail(logFile)}`);
    await sleep(50);
  }
}

/** A virsh shell straight to a lab daemon's socket (the lab's own housekeeping). */
export function labVirsh(d: LibvirtDaemonState): Promise<VirshShell> {
  return VirshShell.open(unixUri(path.join(d.dir, 'run', 'libvirt-sock')), { label: d.hostId, timeoutMs: 60_000 });
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

export interface DemoDomainSpec {
  name: string;
  uuid: string;
  memoryKiB: number;
  kernel: string;
  cmdline: string;
  type: 'kvm' | 'qemu';
  machine: string;
  /** A disk image to attach (virtio, cache=none). */
  disk?: { path: string; format: 'qcow2' | 'raw' };
}

/** The guest's serial socket inside its daemon's namespace: each daemon's copy has its own path. */
export function demoSerialPath(uuid: string): string {
  return `/run/libvirt/qemu/ferry-serial-${uuid}.sock`;
}

/**
 * The demo guest as a libvirt domain (LAB-NOTES: what works here): qboot as a ROM, the
 * kernel and command line, qemu64 without pni and no CPU check (the default check fails on
 * "svm" here), a unix serial socket, no balloon.
 */
export function demoDomainXml(spec: DemoDomainSpec): string {
  const disk = spec.disk
    ? `\n    <disk type='file' device='disk'><driver name='qemu' type='${spec.disk.format}' cache='none'/><source file='${xmlEscape(spec.disk.path)}'/><target dev='vda' bus='virtio'/></disk>`
    : '';
  return `<domain type='${spec.type}'>
  <name>${xmlEscape(spec.name)}</name>
  <uuid>${spec.uuid}</uuid>
  <memory unit='KiB'>${spec.memoryKiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='${xmlEscape(spec.machine)}'>hvm</type>
    <loader type='rom' readonly='yes'>/usr/share/qemu/qboot.rom</loader>
    <kernel>${xmlEscape(spec.kernel)}</kernel>
    <cmdline>${xmlEscape(spec.cmdline)}</cmdline>
  </os>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model><feature policy='disable' name='pni'/></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>${disk}
    <serial type='unix'><source mode='bind' path='${demoSerialPath(spec.uuid)}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

/** The versioned machine type libvirt resolves `pc` to on this daemon (e.g. pc-i440fx-7.2). */
export async function defaultMachine(sh: VirshShell, type: 'kvm' | 'qemu'): Promise<string> {
  const caps = await sh.run(['domcapabilities', '--virttype', type, '--arch', 'x86_64', '--machine', 'pc']);
  const m = /<machine>([^<]+)<\/machine>/.exec(caps);
  if (!m) throw new FerryException('INTERNAL', 'libvirt named no machine type for pc');
  return m[1]!;
}

/** Defines a domain from `xml` (written to a file in `dir`) and returns its UUID. */
export async function defineDomain(sh: VirshShell, dir: string, xml: string): Promise<void> {
  const file = path.join(dir, `define-${randomUUID()}.xml`);
  await fs.writeFile(file, xml, { mode: 0o600 });
  try {
    await sh.run(['define', '--file', file]);
  } finally {
    await fs.rm(file, { force: true });
  }
}

export interface LibvirtLabUpOptions {
  accel: 'auto' | 'kvm' | 'tcg';
  spec: { name: string; memoryKiB: number; kernel: string; cmdline: string };
  /**
   * A qcow2 data disk of this many MiB for the demo domain, in lab-a's own
   * /var/lib/libvirt/images (each daemon has its own: local storage, as on two real hosts).
   */
  dataDiskMiB?: number;
}

/** Where the lab's data disk lives, as the daemons see it. */
export const LAB_DISK_PATH = '/var/lib/libvirt/images/demo-data.qcow2';

/**
 * Starts both daemons (lab-a first: its QEMU capabilities cache is copied to lab-b, saving
 * the second probe) and defines and starts the demo domain on lab-a. On any failure
 * everything started so far is stopped again.
 */
export async function startLibvirtLab(root: string, hostIds: readonly [string, string], options: LibvirtLabUpOptions): Promise<LibvirtLabState> {
  const avail = await libvirtLabAvailable();
  if (!avail.ok) throw new FerryException('UNSUPPORTED', avail.reason ?? 'the libvirt lab cannot run here');
  const base = path.join(root, 'libvirt');
  mkdirSync(base, { recursive: true, mode: 0o700 });
  const wrapper = path.join(base, 'subreaper.pl');
  writeFileSync(wrapper, SUBREAPER, { mode: 0o600 });
  const state: LibvirtLabState = { daemons: [], createdDirs: [] };
  try {
    for (const [, target] of MOUNTS) {
      if (!existsSync(target)) {
        mkdirSync(target, { recursive: true, mode: 0o755 });
        state.createdDirs.push(target);
      }
    }
    state.daemons = hostIds.map((hostId) => ({ hostId, dir: path.join(base, hostId), pidFile: path.join(base, hostId, 'ns.pid'), hostUuid: randomUUID() }));
    const [a, b] = state.daemons as [LibvirtDaemonState, LibvirtDaemonState];
    mkdirSync(a.dir, { recursive: true, mode: 0o700 });
    mkdirSync(b.dir, { recursive: true, mode: 0o700 });
    const t0 = Date.now();
    await startDaemon(a, wrapper, 49152 + Math.floor(Math.random() * 120) * 64);
    const sh = await labVirsh(a);
    try {
      const kvm = options.accel === 'tcg' ? false : (await new LocalTransport().exec(['test', '-r', '/dev/kvm', '-a', '-w', '/dev/kvm'])).code === 0;
      if (options.accel === 'kvm' && !kvm) throw new FerryException('UNSUPPORTED', 'KVM is not usable here (/dev/kvm missing or not accessible)');
      const type = kvm ? 'kvm' : 'qemu';
      const machine = await defaultMachine(sh, type); // probes QEMU once: the cache lab-b gets
      cpSync(path.join(a.dir, 'cache', 'qemu'), path.join(b.dir, 'cache', 'qemu'), { recursive: true });
      await startDaemon(b, wrapper, 49152 + Math.floor(Math.random() * 120) * 64);
      log.info(`daemons up in ${Date.now() - t0} ms (${a.hostId}: ${a.hostUuid}, ${b.hostId}: ${b.hostUuid})`);
      const uuid = randomUUID();
      let disk: DemoDomainSpec['disk'];
      if (options.dataDiskMiB !== undefined) {
        const mib = options.dataDiskMiB;
        if (!Number.isInteger(mib) || mib < 1 || mib > 1 << 20) throw new FerryException('INVALID_REQUEST', `data disk size must be 1 MiB to 1 TiB, got ${mib} MiB`);
        const images = path.join(a.dir, 'lib', 'images');
        mkdirSync(images, { recursive: true, mode: 0o700 });
        const r = await new LocalTransport().exec(['qemu-img', 'create', '-q', '-f', 'qcow2', '--', path.join(images, path.basename(LAB_DISK_PATH)), `${mib}M`]);
        if (r.code !== 0) throw new FerryException('EXEC_FAILED', `qemu-img create: ${r.stderr.trim()}`);
        disk = { path: LAB_DISK_PATH, format: 'qcow2' };
      }
      await defineDomain(sh, a.dir, demoDomainXml({ ...options.spec, uuid, type, machine, ...(disk ? { disk } : {}) }));
      await sh.run(['start', uuid]);
      state.domain = { name: options.spec.name, uuid, type };
    } finally {
      sh.close();
    }
    return state;
  } catch (e) {
    await stopLibvirtLab(state).catch((err: unknown) => log.warn(`cleaning up a failed libvirt lab: ${(err as Error).message}`));
    throw e;
  }
}

/**
 * Destroys and undefines every domain of both daemons, stops each daemon by pid (its
 * subreaper forwards the signal), kills any QEMU left by pid, and removes what was made.
 * Returns `host/domain` for every domain that was running.
 */
export async function stopLibvirtLab(state: LibvirtLabState): Promise<string[]> {
  const stopped: string[] = [];
  for (const d of state.daemons) {
    const pid = pidOf(d.pidFile);
    if (pid !== undefined && pidAlive(pid) && existsSync(path.join(d.dir, 'run', 'libvirt-sock'))) {
      let sh: VirshShell | undefined;
      try {
        sh = await labVirsh(d);
        const running = new Set(parseUuidNameList(await sh.run(['list', '--uuid', '--name'])).map((x) => x.uuid));
        for (const dom of parseUuidNameList(await sh.run(['list', '--all', '--uuid', '--name']))) {
          if (running.has(dom.uuid)) {
            await sh.run(['destroy', dom.uuid]).catch((e: unknown) => log.warn(`${d.hostId}: destroy ${dom.uuid}: ${(e as VirshError).message}`));
            stopped.push(`${d.hostId}/${dom.name}`);
          }
          await sh.run(['undefine', dom.uuid]).catch(() => undefined); // transient: gone with destroy
        }
      } catch (e) {
        log.warn(`${d.hostId}: could not list domains before stopping the daemon: ${(e as Error).message}`);
      } finally {
        sh?.close();
      }
    }
    // The daemon's QEMUs, by pid, before it goes (their pid files go with its run dir).
    const qemus = readdirSafe(path.join(d.dir, 'run', 'qemu')).filter((n) => n.endsWith('.pid')).map((f) => pidOf(path.join(d.dir, 'run', 'qemu', f))).filter((q): q is number => q !== undefined);
    const killLeftQemus = async () => {
      // A QEMU libvirt did not stop (the domains could not be listed, or destroy failed)
      // outlives its daemon, as libvirt's QEMUs do: stop it by pid, nothing is left running.
      for (const q of qemus.filter(pidAlive)) {
        log.warn(`${d.hostId}: QEMU ${q} outlived its daemon: SIGKILL`);
        process.kill(q, 'SIGKILL');
        await waitGone(q, 3000);
      }
    };
    if (pid !== undefined && pidAlive(pid)) {
      process.kill(pid, 'SIGTERM');
      if (!(await waitGone(pid, 10_000))) {
        // Something keeps the subreaper waiting: a QEMU libvirt did not stop.
        await killLeftQemus();
        if (!(await waitGone(pid, 3000))) process.kill(pid, 'SIGKILL');
        await waitGone(pid, 3000);
      }
    }
    await killLeftQemus();
  }
  for (const d of state.daemons) await fs.rm(d.dir, { recursive: true, force: true });
  for (const dir of state.createdDirs) {
    try {
      rmdirSync(dir);
    } catch {
      // not empty (something else uses it now) or already gone: leave it
    }
  }
  return stopped;
}

/** A directory's entries; none when it does not exist (yet, or any more). */
export function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    // no such directory: nothing in it, which is the answer callers need
    return [];
  }
}
