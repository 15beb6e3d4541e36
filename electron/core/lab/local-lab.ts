/**
 * The local lab, Ferry's embedded default: two "hosts" on this machine, `lab-a` and
 * `lab-b` (local transport, separate runtime dirs, separate loopback migration addresses),
 * with the demo guest running on lab-a. Optionally (root + `ip`), the two hosts are network
 * namespaces joined by a veth pair that can be shaped with tc, cut and restored.
 */
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FerryException } from '../../../shared/errors';
import type { HostConfig, QemuInstall } from '../../../shared/model/host';
import type { HostTransport } from '../transport/host-transport';
import { LocalTransport, localTransportFor, writeFileAtomic } from '../transport/local-transport';
import { launchVm, stopVm, processAlive, readPid, vmFiles } from '../hosts/vm-launcher';
import type { LaunchedVm, VmDiskSpec, VmSpec } from '../hosts/vm-launcher';
import { listVms } from '../hosts/vm-discovery';
import { GuestConsole } from './demo-guest';
import { rootLog } from '../log';

const labLog = rootLog.child('lab');
import { LAB_LIBVIRT_SOCKET, demoSerialPath, pidAlive, pidOf, readdirSafe, startLibvirtLab, stopLibvirtLab } from './libvirt-lab';
import type { LibvirtLabState } from './libvirt-lab';
import { LibvirtConnection } from '../libvirt/libvirt-connection';
import { listLibvirtVms } from '../libvirt/libvirt-domains';

/** 511.8 MiB: not a multiple of 256 KiB, so QEMU 7.2's TCG keeps every guest write (LAB-NOTES). */
export const LAB_DEFAULT_MEMORY_KIB = 524_100;
export const LAB_VM_NAME = 'demo';
export const LAB_HOST_IDS = ['lab-a', 'lab-b'] as const;

export interface NetnsState {
  /** Namespace names for lab-a and lab-b. */
  namespaces: [string, string];
  /** veth ends inside each namespace. */
  devices: [string, string];
  addresses: [string, string];
}

export interface LabState {
  version: 1;
  root: string;
  netns?: NetnsState;
  /** `ferry lab up --libvirt`: the two hosts are libvirt daemons (libvirt-lab.ts). */
  libvirt?: LibvirtLabState;
  /** A lab host on another QEMU than the PATH's (`ferry lab up --qemu-b PATH`). */
  qemu?: Partial<Record<(typeof LAB_HOST_IDS)[number], QemuInstall>>;
}

export interface LabUpOptions {
  root?: string;
  accel?: 'auto' | 'kvm' | 'tcg';
  memoryKiB?: number;
  netns?: boolean;
  /** Prefix of the namespace names (tests use their own). */
  netnsPrefix?: string;
  /** Attach a qcow2 data disk of this many MiB (in lab-a's images dir) to the demo VM. */
  dataDiskMiB?: number;
  /** Initial demo-guest workload. */
  workload?: { wsMiB?: number; rateMiBs?: number | null; hbMs?: number };
  /** Two libvirt daemons instead of plain QEMU hosts, the demo guest a domain on lab-a. */
  libvirt?: boolean;
  /** Run lab-a / lab-b on this QEMU (a binary path; its data dir is found beside it). `null` = back to the PATH's. */
  qemuA?: QemuInstall | string | null;
  qemuB?: QemuInstall | string | null;
  /** KVM dirty ring for the demo VM (needed by dirty-limit); `DIRTY_LIMIT_RING` is the one to use. */
  dirtyRingSize?: number;
}

/**
 * The dirty ring for a dirty-limit demo: 1024 entries (4 MiB of pages per vCPU, KVM's least).
 * dirty-limit holds a vCPU back when its ring fills, so the ring is the grain it throttles at:
 * with 4096 entries the demo guest (64 MiB at 150 MiB/s, 50 MB/s cap, 1000 ms limit) stayed
 * just above QEMU's switchover threshold for 6 to 120 s (six runs on the lab); with 1024 it
 * switched over 4.8-5.0 s in, and the guest's own pause fell from 2.6 s to 0.6 s.
 */
export const DIRTY_LIMIT_RING = 1024;

/**
 * A QEMU named by its binary's path: an extracted package tree (`X/usr/bin/qemu-system-x86_64`)
 * has its firmware in `X/usr/share/qemu`, which becomes its data dir (`-L`).
 */
export function qemuInstallFromPath(binary: string): QemuInstall {
  const abs = path.resolve(binary);
  if (!existsSync(abs)) throw new FerryException('NOT_FOUND', `no QEMU binary at ${abs}`);
  const data = path.resolve(path.dirname(abs), '..', 'share', 'qemu');
  return data !== '/usr/share/qemu' && existsSync(data) ? { binary: abs, dataDir: data } : { binary: abs };
}

export function labRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FERRY_LAB_DIR) return path.resolve(env.FERRY_LAB_DIR);
  const base = env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR) ? env.XDG_RUNTIME_DIR : tmpdir();
  return path.join(base, `ferry-lab-${process.getuid?.() ?? 0}`);
}

const stateFile = (root: string) => path.join(root, 'lab.json');

export function readLabState(root: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(root), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

/** The two lab hosts, as the console and the CLI see them. */
export function labHosts(root = labRoot()): HostConfig[] {
  const state = readLabState(root);
  const ns = state?.netns;
  const lv = state?.libvirt?.daemons;
  return LAB_HOST_IDS.map((id, i): HostConfig => {
    const daemon = lv?.find((d) => d.hostId === id);
    const h: HostConfig = {
      id,
      name: `Lab ${i === 0 ? 'A' : 'B'}${daemon ? ' (libvirt)' : ''}`,
      ...(state?.qemu?.[id] ? { qemu: state.qemu[id] } : {}),
      transport: ns ? { kind: 'local', netns: ns.namespaces[i]! } : daemon ? { kind: 'local', mountNsPidFile: daemon.pidFile } : { kind: 'local' },
      runtimeDir: path.join(root, id),
      statesDir: path.join(root, `${id}-states`),
      imagesDir: path.join(root, `${id}-images`),
      migrationAddress: ns ? ns.addresses[i]! : `127.0.0.${i + 2}`,
    };
    if (daemon) h.libvirt = { socket: LAB_LIBVIRT_SOCKET };
    return h;
  });
}

export function transportFor(host: HostConfig): HostTransport {
  if (host.transport.kind !== 'local') throw new FerryException('INVALID_REQUEST', `${host.id} is not a local host`);
  return localTransportFor(host.transport, host.transport.mountNsPidFile ? `${host.id} (libvirt lab)` : undefined);
}

/**
 * Finds the demo guest image: FERRY_GUEST_IMAGE, then `assets/guest/guest.elf` up from this
 * module (the source tree), then `<resources>/guest/guest.elf` (the packaged app, where
 * electron-builder puts it as an extra resource), then the working directory.
 */
export function guestImagePath(env: NodeJS.ProcessEnv = process.env, where: { moduleDir?: string; resourcesPath?: string; cwd?: string } = {}): string {
  const candidates: string[] = [];
  if (env.FERRY_GUEST_IMAGE) candidates.push(env.FERRY_GUEST_IMAGE);
  let here = where.moduleDir;
  if (here === undefined) {
    try {
      here = path.dirname(fileURLToPath(import.meta.url));
    } catch {
      here = typeof __dirname === 'string' ? __dirname : undefined;
    }
  }
  for (let dir = here; dir && dir !== path.dirname(dir); dir = path.dirname(dir)) {
    candidates.push(path.join(dir, 'assets', 'guest', 'guest.elf'));
  }
  const resources = where.resourcesPath ?? (process as NodeJS.Process & { resourcesPath?: string }).resourcesPath;
  if (resources) candidates.push(path.join(resources, 'guest', 'guest.elf'));
  candidates.push(path.resolve(where.cwd ?? process.cwd(), 'assets', 'guest', 'guest.elf'));
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new FerryException('NOT_FOUND', `demo guest image not found (looked in ${candidates.join(', ')}); run npm run build:guest`);
  return found;
}

export function demoVmSpec(options: { name?: string; memoryKiB?: number; accel?: 'auto' | 'kvm' | 'tcg'; wsMiB?: number; rateMiBs?: number | null; hbMs?: number } = {}): VmSpec {
  const rate = options.rateMiBs === undefined ? 20 : options.rateMiBs === null ? 'max' : String(Math.round(options.rateMiBs));
  return {
    name: options.name ?? LAB_VM_NAME,
    memoryKiB: options.memoryKiB ?? LAB_DEFAULT_MEMORY_KIB,
    accel: options.accel ?? 'auto',
    kernel: guestImagePath(),
    append: `ws=${options.wsMiB ?? 64} rate=${rate} hb=${options.hbMs ?? 100}`,
  };
}

/** Waits until the guest answers on its serial console (a STATUS line). */
export async function waitGuestReady(transport: HostTransport, serialSocket: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    let con: GuestConsole | undefined;
    try {
      con = await GuestConsole.open(transport, serialSocket);
      await con.command('s', Math.min(2000, Math.max(100, deadline - Date.now())));
      return;
    } catch (e) {
      lastError = e;
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      con?.close();
    }
  }
  throw new FerryException('INTERNAL', `the demo guest did not answer on ${serialSocket} within ${timeoutMs} ms: ${lastError instanceof Error ? lastError.message : String(lastError)}`);
}

async function run(argv: string[]): Promise<void> {
  const r = await new LocalTransport().exec(argv);
  if (r.code !== 0) throw new FerryException('EXEC_FAILED', `${argv.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
}

/** Whether this machine can build the netns lab, and if not why. */
export async function netnsAvailable(): Promise<{ ok: boolean; reason?: string }> {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'the netns lab needs root' };
  const r = await new LocalTransport().exec(['ip', 'netns', 'list']).catch((e: Error) => ({ code: 1, stderr: e.message, stdout: '', signal: null }));
  if (r.code !== 0) return { ok: false, reason: `ip netns does not work here: ${r.stderr.trim()}` };
  return { ok: true };
}

export async function createNetns(prefix = 'ferry-lab'): Promise<NetnsState> {
  const avail = await netnsAvailable();
  if (!avail.ok) throw new FerryException('UNSUPPORTED', avail.reason ?? 'netns unavailable');
  const namespaces: [string, string] = [`${prefix}-a`, `${prefix}-b`];
  // Interface names are limited to 15 characters.
  const tag = prefix.replace(/[^a-z0-9]/g, '').slice(-9);
  const devices: [string, string] = [`${tag}-va`, `${tag}-vb`];
  const addresses: [string, string] = ['10.199.0.1', '10.199.0.2'];
  await destroyNetns({ namespaces, devices, addresses });
  try {
    for (const ns of namespaces) await run(['ip', 'netns', 'add', ns]);
    await run(['ip', 'link', 'add', devices[0], 'type', 'veth', 'peer', 'name', devices[1]]);
    for (let i = 0; i < 2; i++) {
      await run(['ip', 'link', 'set', devices[i]!, 'netns', namespaces[i]!]);
      await run(['ip', '-n', namespaces[i]!, 'addr', 'add', `${addresses[i]}/24`, 'dev', devices[i]!]);
      await run(['ip', '-n', namespaces[i]!, 'link', 'set', devices[i]!, 'up']);
      await run(['ip', '-n', namespaces[i]!, 'link', 'set', 'lo', 'up']);
    }
  } catch (e) {
    await destroyNetns({ namespaces, devices, addresses });
    throw e;
  }
  return { namespaces, devices, addresses };
}

export async function destroyNetns(ns: NetnsState): Promise<void> {
  const local = new LocalTransport();
  for (const n of ns.namespaces) await local.exec(['ip', 'netns', 'del', n]).catch(labLog.dropped(`deleting netns ${n}`));
}

/** Shapes the link in both directions with a token bucket (bit/s); `null` removes shaping. */
export async function shapeLink(ns: NetnsState, bitsPerSecond: number | null): Promise<void> {
  for (let i = 0; i < 2; i++) {
    const base = ['ip', 'netns', 'exec', ns.namespaces[i]!, 'tc', 'qdisc'];
    if (bitsPerSecond === null) {
      await new LocalTransport().exec([...base, 'del', 'dev', ns.devices[i]!, 'root']);
    } else {
      const burst = Math.max(32 * 1024, Math.round(bitsPerSecond / 8 / 100)); // ~10 ms of data
      await run([...base, 'replace', 'dev', ns.devices[i]!, 'root', 'tbf', 'rate', `${Math.round(bitsPerSecond)}bit`, 'burst', String(burst), 'latency', '100ms']);
    }
  }
}

/** Cuts (`false`) or restores (`true`) the link between the two lab hosts. */
export async function setLink(ns: NetnsState, up: boolean): Promise<void> {
  for (let i = 0; i < 2; i++) await run(['ip', '-n', ns.namespaces[i]!, 'link', 'set', ns.devices[i]!, up ? 'up' : 'down']);
}

export interface LabStatus {
  root: string;
  netns?: NetnsState;
  /** The libvirt lab's daemons (their host UUIDs, whether each runs). */
  libvirt?: { daemons: { hostId: string; hostUuid: string; running: boolean }[] };
  hosts: { id: string; runtimeDir: string; migrationAddress: string; qemu?: QemuInstall; vms: { name: string; runState: string; pid?: number; memoryMiB?: number }[] }[];
}

/** Sets (or clears, `null`) the QEMU a lab host starts VMs with; running VMs keep theirs. */
export async function writeLabQemu(root: string, id: (typeof LAB_HOST_IDS)[number], q: QemuInstall | null): Promise<void> {
  const state = readLabState(root) ?? { version: 1 as const, root };
  const next = { ...state.qemu };
  if (q === null) delete next[id];
  else next[id] = q;
  await writeFileAtomic(stateFile(root), `${JSON.stringify({ ...state, qemu: next }, null, 2)}\n`, 0o600);
}

export async function labUp(options: LabUpOptions = {}): Promise<{ status: LabStatus; vm: LaunchedVm | undefined; domain?: { name: string; uuid: string; type: 'kvm' | 'qemu' }; bootMs: number }> {
  const root = options.root ?? labRoot();
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  let state = readLabState(root) ?? { version: 1 as const, root };
  if (options.libvirt || state.libvirt) return labUpLibvirt(root, state, options);
  if (options.netns && !state.netns) {
    state = { ...state, netns: await createNetns(options.netnsPrefix) };
  }
  for (const [id, q] of [['lab-a', options.qemuA], ['lab-b', options.qemuB]] as const) {
    if (q === undefined) continue;
    const next = { ...state.qemu };
    if (q === null) delete next[id];
    else next[id] = typeof q === 'string' ? qemuInstallFromPath(q) : q;
    state = { ...state, qemu: next };
  }
  await writeFileAtomic(stateFile(root), `${JSON.stringify(state, null, 2)}\n`, 0o600);
  const [a] = labHosts(root);
  const ta = transportFor(a!);
  const files = vmFiles(a!.runtimeDir!, LAB_VM_NAME);
  let vm: LaunchedVm | undefined;
  const t0 = Date.now();
  // The demo VM may have been migrated to lab-b: the lab is up wherever it runs.
  if (!(await demoRunsSomewhere(root))) {
    try {
      const spec: Parameters<typeof demoVmSpec>[0] = { accel: options.accel ?? 'auto', memoryKiB: options.memoryKiB ?? LAB_DEFAULT_MEMORY_KIB };
      if (options.workload?.wsMiB !== undefined) spec.wsMiB = options.workload.wsMiB;
      if (options.workload?.rateMiBs !== undefined) spec.rateMiBs = options.workload.rateMiBs;
      if (options.workload?.hbMs !== undefined) spec.hbMs = options.workload.hbMs;
      const vmSpec = demoVmSpec(spec);
      if (options.dirtyRingSize !== undefined) vmSpec.dirtyRingSize = options.dirtyRingSize;
      if (options.dataDiskMiB !== undefined) vmSpec.disks = [await createLabDisk(ta, a!.imagesDir!, options.dataDiskMiB)];
      vm = await launchVm(ta, a!.runtimeDir!, vmSpec, a!.qemu);
      await waitGuestReady(ta, files.serialSocket);
    } catch (e) {
      await labDown({ root }).catch(labLog.dropped('tearing the half-started lab down'));
      throw e;
    }
  }
  return { status: await labStatus(root), vm, bootMs: Date.now() - t0 };
}

/** The lab host the demo VM runs on, if it runs on one (by its pid file and /proc). */
export async function demoHost(root: string): Promise<string | undefined> {
  for (const h of labHosts(root)) {
    const t = transportFor(h);
    const pid = await readPid(t, vmFiles(h.runtimeDir!, LAB_VM_NAME).pidFile);
    if (pid && (await processAlive(t, pid))) return h.id;
  }
  return undefined;
}

const demoRunsSomewhere = async (root: string) => (await demoHost(root)) !== undefined;

/** An empty qcow2 data disk for the demo VM (the guest does not touch it; tests write to it through QEMU). */
async function createLabDisk(t: HostTransport, dir: string, mib: number): Promise<VmDiskSpec> {
  if (!Number.isInteger(mib) || mib < 1 || mib > 1 << 20) throw new FerryException('INVALID_REQUEST', `data disk size must be 1 MiB to 1 TiB, got ${mib} MiB`);
  const file = path.join(dir, `${LAB_VM_NAME}-data.qcow2`);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const r = await t.exec(['qemu-img', 'create', '-q', '-f', 'qcow2', '--', file, `${mib}M`]);
  if (r.code !== 0) throw new FerryException('EXEC_FAILED', `qemu-img create ${file}: ${r.stderr.trim()}`);
  return { path: file, format: 'qcow2' };
}

/** The libvirt lab: both daemons, the demo domain on lab-a, waited for until the guest answers. */
async function labUpLibvirt(root: string, state: LabState, options: LabUpOptions) {
  if (options.netns || state.netns) throw new FerryException('UNSUPPORTED', 'the libvirt lab runs in mount namespaces, not network namespaces: drop --netns');
  if (state.libvirt) {
    if (!options.libvirt) throw new FerryException('ALREADY_EXISTS', 'the lab is up with libvirt daemons: ferry lab down first, or ferry lab up --libvirt');
    if (state.libvirt.daemons.every((d) => daemonRunning(d.pidFile))) {
      return { status: await labStatus(root), vm: undefined, bootMs: 0 };
    }
    await stopLibvirtLab(state.libvirt);
    delete state.libvirt;
  }
  if (readdirSafe(root).some((n) => (LAB_HOST_IDS as readonly string[]).includes(n) && readdirSafe(path.join(root, n)).length > 0)) {
    throw new FerryException('ALREADY_EXISTS', 'the lab is up with plain QEMU hosts: ferry lab down first, then ferry lab up --libvirt');
  }
  const t0 = Date.now();
  const spec: Parameters<typeof demoVmSpec>[0] = { memoryKiB: options.memoryKiB ?? LAB_DEFAULT_MEMORY_KIB };
  if (options.workload?.wsMiB !== undefined) spec.wsMiB = options.workload.wsMiB;
  if (options.workload?.rateMiBs !== undefined) spec.rateMiBs = options.workload.rateMiBs;
  if (options.workload?.hbMs !== undefined) spec.hbMs = options.workload.hbMs;
  const vmSpec = demoVmSpec(spec);
  const lv = await startLibvirtLab(root, LAB_HOST_IDS, {
    accel: options.accel ?? 'auto',
    spec: { name: vmSpec.name, memoryKiB: vmSpec.memoryKiB, kernel: vmSpec.kernel!, cmdline: vmSpec.append ?? '' },
    ...(options.dataDiskMiB !== undefined ? { dataDiskMiB: options.dataDiskMiB } : {}),
  });
  const next: LabState = { ...state, libvirt: lv };
  await writeFileAtomic(stateFile(root), `${JSON.stringify(next, null, 2)}\n`, 0o600);
  try {
    const [a] = labHosts(root);
    await waitGuestReady(transportFor(a!), demoSerialPath(lv.domain!.uuid));
  } catch (e) {
    await labDown({ root }).catch(labLog.dropped('stopping the libvirt lab that did not come up (the first error is thrown)'));
    throw e;
  }
  return { status: await labStatus(root), vm: undefined, domain: lv.domain!, bootMs: Date.now() - t0 };
}

function daemonRunning(pidFile: string): boolean {
  const pid = pidOf(pidFile);
  return pid !== undefined && pidAlive(pid);
}

/** A libvirt lab host's domains, through a connection made for this one listing. */
async function labDomains(h: HostConfig): Promise<Awaited<ReturnType<typeof listLibvirtVms>>> {
  const conn = await LibvirtConnection.open(h, transportFor(h));
  try {
    return await listLibvirtVms(h.id, conn);
  } finally {
    await conn.close();
  }
}

export async function labStatus(root = labRoot()): Promise<LabStatus> {
  const state = readLabState(root);
  const hosts = await Promise.all(labHosts(root).map(async (h) => {
    const vms = h.libvirt ? await labDomains(h).catch((e: unknown) => (labLog.dropped(`listing ${h.id}'s domains (its daemon is shown down)`)(e), [])) : existsSync(h.runtimeDir!) ? await listVms(h, transportFor(h)) : [];
    return {
      id: h.id,
      runtimeDir: h.runtimeDir!,
      migrationAddress: h.migrationAddress!,
      ...(h.qemu ? { qemu: h.qemu } : {}),
      vms: vms.map((v) => {
        const out: { name: string; runState: string; pid?: number; memoryMiB?: number } = { name: v.name, runState: v.runState };
        if (v.pid !== undefined) out.pid = v.pid;
        if (v.memoryMiB !== undefined) out.memoryMiB = v.memoryMiB;
        return out;
      }),
    };
  }));
  const out: LabStatus = state?.netns ? { root, netns: state.netns, hosts } : { root, hosts };
  if (state?.libvirt) out.libvirt = { daemons: state.libvirt.daemons.map((d) => ({ hostId: d.hostId, hostUuid: d.hostUuid, running: daemonRunning(d.pidFile) })) };
  return out;
}

/** Stops every VM of both lab hosts (by pid when QMP does not answer), removes the netns. */
export async function labDown(options: { root?: string } = {}): Promise<{ stopped: string[] }> {
  const root = options.root ?? labRoot();
  const stopped: string[] = [];
  for (const h of labHosts(root)) {
    if (!existsSync(h.runtimeDir!)) continue;
    const t = transportFor(h);
    for (const name of await fs.readdir(h.runtimeDir!)) {
      try {
        const r = await stopVm(t, h.runtimeDir!, name);
        if (r.wasRunning) stopped.push(`${h.id}/${name}`);
      } catch {
        // not a VM directory Ferry made
      }
    }
  }
  const state = readLabState(root);
  if (state?.libvirt) stopped.push(...(await stopLibvirtLab(state.libvirt)));
  if (state?.netns) await destroyNetns(state.netns);
  await fs.rm(root, { recursive: true, force: true });
  return { stopped };
}
