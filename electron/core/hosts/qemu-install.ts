/**
 * Which QEMU runs a host's VMs, and what it is: its version, its machine types (and which
 * of them an alias such as `pc` names there), and its migration surface from its own QMP
 * schema. A host names its QEMU in its config (`qemu.binary`, `qemu.dataDir`); without it,
 * `qemu-system-x86_64` on the host's PATH.
 *
 * A probe starts the binary once with `-machine none -qmp stdio` (no guest, no accelerator,
 * ~0.1 s) and reads `query-qmp-schema` and `query-machines`; it is kept per host, binary and
 * version string, so a QEMU upgraded in place is probed again.
 */
import { Duplex } from 'node:stream';
import { FerryException, isFerryException, toFerryError } from '../../../shared/errors';
import type { HostConfig, QemuInstall } from '../../../shared/model/host';
import type { HostTransport } from '../transport/host-transport';
import { QmpClient } from '../qmp/qmp-client';
import { QmpSchema, migrationFeatures, rememberFeatures } from '../qmp/qmp-schema';
import type { MigrationFeatures, SchemaEntity } from '../qmp/qmp-schema';
import { rootLog } from '../log';

const log = rootLog.child('qemu');

export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';
export const SYSTEM_DATA_DIR = '/usr/share/qemu';

export type { QemuInstall };

/** The QEMU a host runs (its config, else the one on its PATH). */
export function qemuOf(host: Pick<HostConfig, 'qemu'> | undefined): QemuInstall {
  return host?.qemu ?? { binary: DEFAULT_QEMU_BINARY };
}

/** `-L DIR` for a QEMU whose firmware is not in its built-in path. */
export function dataDirArgs(q: QemuInstall | undefined): string[] {
  return q?.dataDir ? ['-L', q.dataDir] : [];
}

/** Where a QEMU finds its firmware and ROMs. */
export function firmwareDirOf(q: QemuInstall | undefined): string {
  return q?.dataDir ?? SYSTEM_DATA_DIR;
}

export type QemuVersion = [number, number, number];

export function parseQemuVersion(s: string | undefined): QemuVersion | undefined {
  const m = s ? /(\d+)\.(\d+)\.(\d+)/.exec(s) : null;
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

export const compareVersions = (a: readonly number[], b: readonly number[]) => a[0]! - b[0]! || a[1]! - b[1]! || a[2]! - b[2]!;

/**
 * The QEMU's version line (`QEMU emulator version 10.0.2 (Debian …)`), or undefined when it
 * does not run there. A host that could not be asked (busy, disconnected) is an error, never "no QEMU".
 */
/** The first line `BINARY --version` prints on the host, or undefined when it has no such QEMU that runs. */
export async function qemuVersionLine(transport: HostTransport, q: QemuInstall): Promise<string | undefined> {
  const r = await transport.exec([q.binary, '--version'], { timeoutMs: 10_000 }).catch((e: unknown) => {
    if (isFerryException(e) && e.code === 'EXEC_FAILED' && e.details?.errno === 'ENOENT') return undefined; // local: not installed
    throw e;
  });
  return r?.code === 0 ? r.stdout.split('\n')[0]?.trim() : undefined;
}

/** The check that this user may use KVM on the host: /dev/kvm readable and writable. */
export const KVM_USABLE: readonly string[] = ['test', '-r', '/dev/kvm', '-a', '-w', '/dev/kvm'];

/**
 * The QEMU's version line (as qemuVersionLine: undefined when it does not run there) and
 * whether /dev/kvm is usable there, asked in one process: each process is a fork of the
 * whole console on a local host and a session over SSH, and the board asks every host once
 * a minute. A host that could not be asked is an error.
 */
export async function qemuVersionAndKvm(transport: HostTransport, q: QemuInstall): Promise<{ line: string | undefined; kvm: boolean }> {
  const script = `if ${KVM_USABLE.join(' ')}; then echo kvm; else echo no-kvm; fi; exec "$0" --version`;
  const r = await transport.exec(['sh', '-c', script, q.binary], { timeoutMs: 10_000 });
  const [first, second] = r.stdout.split('\n');
  if (first !== 'kvm' && first !== 'no-kvm') {
    throw new FerryException('EXEC_FAILED', `asking ${transport.label} for its QEMU and KVM: sh exited ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim().split('\n')[0]}` : ''}`, { code: r.code });
  }
  return { kvm: first === 'kvm', line: r.code === 0 ? second?.trim() || undefined : undefined };
}

/** The host's QEMU version as [major, minor, micro], or undefined when it has none that runs. */
export async function qemuVersionOf(transport: HostTransport, q: QemuInstall = { binary: DEFAULT_QEMU_BINARY }): Promise<QemuVersion | undefined> {
  return parseQemuVersion(await qemuVersionLine(transport, q));
}

export interface MachineType {
  name: string;
  alias?: string;
  deprecated: boolean;
  isDefault: boolean;
}

export interface QemuProbe {
  binary: string;
  dataDir?: string;
  version: string;
  versionTuple: QemuVersion;
  package: string;
  machines: MachineType[];
  features: MigrationFeatures;
}

const probes = new Map<string, Promise<QemuProbe>>();

/**
 * Version, machine types and migration surface of a host's QEMU (cached per host, binary
 * and version line). Throws NOT_FOUND when the binary does not run there.
 */
export async function probeQemu(transport: HostTransport, q: QemuInstall = { binary: DEFAULT_QEMU_BINARY }, knownVersionLine?: string): Promise<QemuProbe> {
  // A caller that has just read the version line passes it: one process fewer on the host.
  const line = knownVersionLine ?? await qemuVersionLine(transport, q);
  if (!line) throw new FerryException('NOT_FOUND', `${q.binary} does not run on ${transport.label}`, { binary: q.binary });
  const key = `${transport.label}\n${q.binary}\n${q.dataDir ?? ''}\n${line}`;
  let p = probes.get(key);
  if (!p) {
    p = runProbe(transport, q);
    probes.set(key, p);
    p.catch(() => probes.delete(key));
  }
  return p;
}

async function runProbe(transport: HostTransport, q: QemuInstall): Promise<QemuProbe> {
  const t0 = Date.now();
  const proc = await transport.spawn([q.binary, ...dataDirArgs(q), '-machine', 'none', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-qmp', 'stdio']);
  let stderr = '';
  proc.stderr.on('data', (c: Buffer | string) => (stderr = `${stderr}${c.toString()}`.slice(-2000)));
  const stream = Duplex.from({ readable: proc.stdout, writable: proc.stdin });
  let qmp: QmpClient | undefined;
  try {
    qmp = await QmpClient.connect(stream, { handshakeTimeoutMs: 15_000, commandTimeoutMs: 20_000 });
    const v = qmp.greeting.version;
    if (!v) throw new FerryException('QMP_GREETING', `${q.binary} on ${transport.label} sent no version in its QMP greeting`);
    const version = `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}`;
    const [schema, machines] = await Promise.all([
      qmp.execute<SchemaEntity[]>('query-qmp-schema'),
      qmp.execute<{ name: string; alias?: string; deprecated?: boolean; 'is-default'?: boolean }[]>('query-machines'),
    ]);
    const features = migrationFeatures(new QmpSchema(schema), version);
    rememberFeatures(version, v.package, features);
    await qmp.execute('quit').catch(() => undefined); // a probe QEMU: it exits on its own as well when stdin closes
    log.info(`probed ${q.binary} on ${transport.label}: QEMU ${version} (${machines.length} machine types) in ${Date.now() - t0} ms`);
    const probe: QemuProbe = {
      binary: q.binary, version, versionTuple: [v.qemu.major, v.qemu.minor, v.qemu.micro], package: v.package, features,
      machines: machines.map((m) => ({ name: m.name, ...(m.alias ? { alias: m.alias } : {}), deprecated: m.deprecated === true, isDefault: m['is-default'] === true })),
    };
    if (q.dataDir) probe.dataDir = q.dataDir;
    return probe;
  } catch (e) {
    const why = stderr.trim().split('\n').at(-1) ?? '';
    throw new FerryException('EXEC_FAILED', `could not probe ${q.binary} on ${transport.label}: ${toFerryError(e).message}${why ? ` (${why})` : ''}`, { binary: q.binary });
  } finally {
    qmp?.close();
    stream.destroy();
    proc.kill('SIGKILL');
  }
}

/** The machine an alias (`pc`, `q35`) or a name stands for on this QEMU, or undefined when it has none such. */
export function resolveMachine(probe: Pick<QemuProbe, 'machines'>, name: string): MachineType | undefined {
  return probe.machines.find((m) => m.name === name) ?? probe.machines.find((m) => m.alias === name);
}

/** The default machine type's concrete name (what a bare `-machine` would give). */
export function defaultMachine(probe: Pick<QemuProbe, 'machines'>): MachineType | undefined {
  return probe.machines.find((m) => m.isDefault);
}

/**
 * The concrete machine type of a running VM (`pc-i440fx-7.2`, never the alias `pc`): its
 * machine object's QOM type is `<name>-machine`.
 */
export async function runningMachineOf(qmp: QmpClient): Promise<string> {
  const type = await qmp.execute<string>('qom-get', { path: '/machine', property: 'type' });
  if (typeof type !== 'string' || !type.endsWith('-machine')) throw new FerryException('INTERNAL', `unexpected machine type ${JSON.stringify(type)} from qom-get /machine`);
  return type.slice(0, -'-machine'.length);
}

/** The `-machine` option's type part (`pc-i440fx-7.2,accel=kvm` -> `pc-i440fx-7.2`; `type=q35` too). */
export function machineTypeOfOption(opt: string | undefined): string | undefined {
  if (!opt) return undefined;
  const parts = opt.split(',');
  const typed = parts.find((p) => p.startsWith('type='));
  return typed ? typed.slice(5) : parts[0] && !parts[0].includes('=') ? parts[0] : undefined;
}
