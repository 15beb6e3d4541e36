/**
 * libvirt domains as Ferry sees them: listed by UUID, looked up by exact name (names are
 * data; see virsh-text.ts), described by `dominfo`, and read from their XML with libvirt's
 * own XPath (`dumpxml --xpath`), so no XML is parsed here.
 */
import { FerryException } from '../../../shared/errors';
import type { LibvirtDomainInfo, VmInfo } from '../../../shared/model/vm';
import type { LibvirtConnection } from './libvirt-connection';
import { commandMissing } from '../transport/host-transport';
import type { HostTransport } from '../transport/host-transport';
import { readProcessArgv } from '../hosts/vm-launcher';
import { parseColonTable, parseUuidNameList, parseXpathAttributes, decodeXmlText } from './virsh-text';

export interface DomainSummary extends LibvirtDomainInfo {
  name: string;
  memoryKiB?: number;
  vcpus?: number;
}

/** `dominfo UUID`. */
export async function domainInfo(conn: LibvirtConnection, uuid: string, name?: string): Promise<DomainSummary> {
  const t = parseColonTable(await conn.run(['dominfo', uuid]));
  const out: DomainSummary = {
    uuid,
    // The name printed by dominfo loses leading spaces; the listing's is exact.
    name: name ?? t.get('Name') ?? '',
    persistent: t.get('Persistent') === 'yes',
    state: t.get('State') ?? 'unknown',
  };
  const id = Number(t.get('Id'));
  if (Number.isInteger(id) && id >= 0) out.id = id;
  const auto = t.get('Autostart');
  if (auto) out.autostart = auto === 'enable';
  const mem = /^(\d+) KiB$/.exec(t.get('Max memory') ?? '');
  if (mem) out.memoryKiB = Number(mem[1]);
  const cpus = Number(t.get('CPU(s)'));
  if (Number.isInteger(cpus) && cpus > 0) out.vcpus = cpus;
  return out;
}

/** Every domain (running or defined), one `dominfo` each through the shell. */
export async function listDomains(conn: LibvirtConnection): Promise<DomainSummary[]> {
  const all = parseUuidNameList(await conn.run(['list', '--all', '--uuid', '--name']));
  const out: DomainSummary[] = [];
  for (const d of all) {
    try {
      out.push(await domainInfo(conn, d.uuid, d.name));
    } catch (e) {
      // Undefined between the listing and now: it is simply not there any more.
      if (!(e instanceof Error && /failed to get domain|Domain not found/i.test(e.message))) throw e;
    }
  }
  return out;
}

/** The domain with exactly this name (libvirt names are unique per daemon), or undefined. */
export async function findDomain(conn: LibvirtConnection, name: string): Promise<{ uuid: string; name: string } | undefined> {
  return parseUuidNameList(await conn.run(['list', '--all', '--uuid', '--name'])).find((d) => d.name === name);
}

/** Like findDomain, but a missing domain is a clear error. */
export async function requireDomain(conn: LibvirtConnection, name: string): Promise<{ uuid: string; name: string }> {
  const d = await findDomain(conn, name);
  if (!d) throw new FerryException('NOT_FOUND', `no libvirt domain named ${JSON.stringify(name)} on ${conn.hostId}`, { vm: name, host: conn.hostId });
  return d;
}

/** libvirt's state word as a run state the board shares with QEMU VMs. */
export function runStateOf(state: string): string {
  if (state === 'shut off') return 'stopped';
  if (state === 'in shutdown') return 'shutdown';
  return state.replace(/\s+/g, '-');
}

export function vmInfoOf(hostId: string, d: DomainSummary): VmInfo {
  const info: VmInfo = {
    hostId, name: d.name, qmpSocket: '', runState: runStateOf(d.state), manager: 'libvirt',
    // Ferry migrates a running libvirt domain through libvirt.
    managed: true,
    libvirt: { uuid: d.uuid, persistent: d.persistent, state: d.state, ...(d.id !== undefined ? { id: d.id } : {}), ...(d.autostart !== undefined ? { autostart: d.autostart } : {}) },
  };
  if (d.memoryKiB !== undefined) info.memoryMiB = Math.round((d.memoryKiB / 1024) * 100) / 100;
  if (d.vcpus !== undefined) info.vcpus = d.vcpus;
  return info;
}

export async function listLibvirtVms(hostId: string, conn: LibvirtConnection): Promise<VmInfo[]> {
  return (await listDomains(conn)).map((d) => vmInfoOf(hostId, d));
}

/** Attribute values selected by an XPath over the domain's XML (live, or `--inactive`, `--migratable`). */
export async function xpathAttributes(conn: LibvirtConnection, uuid: string, xpath: string, flags: ('--inactive' | '--migratable')[] = []): Promise<string[]> {
  const text = await conn.run(['dumpxml', uuid, ...flags, '--xpath', xpath]);
  return parseXpathAttributes(text).map((a) => a.value);
}

/** Text nodes selected by an XPath (`.../text()`), decoded. */
export async function xpathTexts(conn: LibvirtConnection, uuid: string, xpath: string, flags: ('--inactive' | '--migratable')[] = []): Promise<string[]> {
  const text = await conn.run(['dumpxml', uuid, ...flags, '--xpath', xpath]);
  return text.split('\n').filter((l) => l.trim() !== '').map(decodeXmlText);
}

/** The element(s) an XPath selects, as XML text (e.g. `/domain/cpu` for hypervisor-cpu-compare). */
export async function xpathXml(conn: LibvirtConnection, uuid: string, xpath: string, flags: ('--inactive' | '--migratable')[] = []): Promise<string> {
  return (await conn.run(['dumpxml', uuid, ...flags, '--xpath', xpath])).trim();
}

/** The demo guest's serial console, when the domain has a unix-socket serial port. */
export async function serialSocketOf(conn: LibvirtConnection, uuid: string): Promise<string | undefined> {
  return (await xpathAttributes(conn, uuid, "/domain/devices/serial[@type='unix']/source/@path"))[0];
}

export interface DomainDisk {
  target: string;
  device: string;
  /** A file or block device path; undefined for network disks and empty drives. */
  source?: string;
  format?: string;
  readonly: boolean;
  shareable: boolean;
}

/** The domain's disks as libvirt describes them (for storage checks and copy-storage). */
export async function domainDisks(conn: LibvirtConnection, uuid: string): Promise<DomainDisk[]> {
  const targets = await xpathAttributes(conn, uuid, '/domain/devices/disk/target/@dev');
  const out: DomainDisk[] = [];
  for (let i = 1; i <= targets.length; i++) {
    const at = `/domain/devices/disk[${i}]`;
    const [device] = await xpathAttributes(conn, uuid, `${at}/@device`);
    const [source] = await xpathAttributes(conn, uuid, `${at}/source/@file | ${at}/source/@dev`);
    const [format] = await xpathAttributes(conn, uuid, `${at}/driver/@type`);
    const flags = await conn.run(['dumpxml', uuid, '--xpath', `${at}/readonly | ${at}/shareable`]);
    const d: DomainDisk = { target: targets[i - 1]!, device: device ?? 'disk', readonly: flags.includes('<readonly'), shareable: flags.includes('<shareable') };
    if (source !== undefined) d.source = source;
    if (format !== undefined) d.format = format;
    out.push(d);
  }
  return out;
}

/**
 * The QEMU processes running a domain on a host: libvirt starts QEMU with `-uuid UUID`, so
 * `pgrep -f` finds the candidates and each one's argv (/proc/PID/cmdline) must carry the two
 * arguments side by side (the shell that ran pgrep has them inside one string, not as
 * arguments). Both ends of a migration on one machine have the same UUID: callers ask before
 * the destination's exists. Empty when none; `unavailable` when the host cannot say.
 */
export async function qemuPidsOfDomain(transport: HostTransport, uuid: string): Promise<number[] | { unavailable: string }> {
  const r = await transport.exec(['pgrep', '-f', '--', `-uuid ${uuid}`], { timeoutMs: 3000 });
  if (commandMissing(r)) return { unavailable: `pgrep (procps) is not installed on ${transport.label}` };
  const out: number[] = [];
  for (const pid of r.stdout.split('\n').map((l) => Number(l.trim())).filter((n) => Number.isSafeInteger(n) && n > 0)) {
    // A candidate that ended meanwhile (pgrep's own shell) has no argv to read: not a QEMU of this domain.
    const argv = await readProcessArgv(transport, pid).catch(() => [] as string[]);
    if (argv.some((a, i) => a === '-uuid' && argv[i + 1] === uuid)) out.push(pid);
  }
  return out;
}
