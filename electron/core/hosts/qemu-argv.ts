/**
 * A QEMU command line as data: read from a running process (`/proc/PID/cmdline`) and
 * rewritten so the same VM can be started on another host inside Ferry's runtime dir.
 *
 * What is host-local and gets rewritten: the monitors (`-qmp`, `-qmp-pretty`, `-monitor`,
 * `-mon` and the chardevs only they use) are dropped and Ferry's two QMP sockets put in their
 * place; the pid file and `-daemonize` are Ferry's; unix-socket, file and pipe chardevs and
 * serial ports get paths in the runtime dir (the first serial port is `serial.sock`, where
 * Ferry reads the guest's console); stdio backends (impossible once daemonized) become unix
 * sockets; `-nographic` becomes `-display none` with the serial and parallel ports it implied;
 * `-incoming` and `-S` are dropped (the caller adds `-incoming defer`). What the guest sees
 * (machine, CPU, memory, devices, disks) is left exactly as it was: disks are found at the
 * same paths (shared storage), and preflight checks they are there.
 */
import path from 'node:path';

/** QEMU 7.2's options that take no argument (every other option takes exactly one). */
const NO_ARG = new Set([
  'h', 'help', 'version', 'mem-prealloc', 'audio-help', 'snapshot', 'usb', 'nographic', 'portrait', 'full-screen',
  'win2k-hack', 'no-fd-bootchk', 'no-acpi', 'no-hpet', 'singlestep', 'preconfig', 'S', 's', 'enable-kvm', 'xen-attach',
  'xen-domid-restrict', 'no-reboot', 'no-shutdown', 'daemonize', 'only-migratable', 'nodefaults', 'no-user-config',
  'enable-sync-profile', 'async-teardown', 'enable-fips', 'semihosting', 'nodefconfig', 'no-quit', 'alt-grab',
  'ctrl-grab', 'no-frame', 'sdl', 'curses', 'no-kvm', 'no-kvm-irqchip', 'no-kvm-pit', 'no-kvm-pit-reinjection',
]);

export interface QemuOption {
  /** Without leading dashes: `chardev`, `m`, `S`. */
  name: string;
  value?: string;
}

/** Splits argv (binary first) into options. A bare word (an old-style disk image) is kept as an option without name. */
export function parseQemuArgv(argv: readonly string[]): { binary: string; options: QemuOption[] } {
  const options: QemuOption[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-')) {
      options.push({ name: '', value: a });
      continue;
    }
    const name = a.replace(/^--?/, '');
    if (NO_ARG.has(name) || i + 1 >= argv.length) options.push({ name });
    else options.push({ name, value: argv[++i]! });
  }
  return { binary: argv[0] ?? 'qemu-system-x86_64', options };
}

export function formatQemuArgv(binary: string, options: readonly QemuOption[]): string[] {
  const out = [binary];
  for (const o of options) {
    if (o.name) out.push(`-${o.name}`);
    if (o.value !== undefined) out.push(o.value);
  }
  return out;
}

/** `a,b=c,,d` -> ['a', 'b=c,d'] (QEMU's option syntax: a doubled comma is a comma). */
export function splitOpts(value: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value[i]!;
    if (ch === ',' && value[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (ch === ',') {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts;
}

export function joinOpts(parts: readonly string[]): string {
  return parts.map((p) => p.replace(/,/g, ',,')).join(',');
}

function optValue(parts: readonly string[], key: string): string | undefined {
  const p = parts.find((x) => x.startsWith(`${key}=`));
  return p?.slice(key.length + 1);
}

function setOpt(parts: string[], key: string, value: string): string[] {
  const i = parts.findIndex((x) => x.startsWith(`${key}=`));
  const next = [...parts];
  if (i >= 0) next[i] = `${key}=${value}`;
  else next.push(`${key}=${value}`);
  return next;
}

/** `kvm` when the command line asks for KVM (`-enable-kvm`, `-accel kvm`, `-machine accel=kvm`), else `tcg`. */
export function accelOfArgv(argv: readonly string[]): 'kvm' | 'tcg' {
  for (const o of parseQemuArgv(argv).options) {
    if (o.name === 'enable-kvm') return 'kvm';
    if (o.name === 'accel' && o.value && splitOpts(o.value)[0]?.replace(/^accel=/, '') === 'kvm') return 'kvm';
    if ((o.name === 'machine' || o.name === 'M') && o.value && /^kvm\b/.test(optValue(splitOpts(o.value), 'accel') ?? '')) return 'kvm';
  }
  return 'tcg';
}

/** The unix path a legacy chardev spec (`unix:/p,server=on`, as -serial/-qmp/-monitor take) names, if any. */
function legacyUnixPath(spec: string): string | undefined {
  if (!spec.startsWith('unix:')) return undefined;
  return splitOpts(spec.slice('unix:'.length))[0];
}

/** The QMP monitors' unix sockets of a command line, in order (`-qmp`, `-qmp-pretty`, `-mon mode=control`). */
export function qmpSocketsOfArgv(argv: readonly string[]): string[] {
  const { options } = parseQemuArgv(argv);
  const chardevPaths = new Map<string, string>();
  for (const o of options) {
    if (o.name !== 'chardev' || !o.value) continue;
    const parts = splitOpts(o.value);
    const id = optValue(parts, 'id');
    const p = optValue(parts, 'path');
    if (id && p && (parts[0] === 'socket' || parts[0] === 'unix')) chardevPaths.set(id, p);
  }
  const out: string[] = [];
  for (const o of options) {
    if ((o.name === 'qmp' || o.name === 'qmp-pretty') && o.value) {
      const p = legacyUnixPath(o.value);
      if (p) out.push(p);
    } else if (o.name === 'mon' && o.value) {
      const parts = splitOpts(o.value);
      const chardev = optValue(parts, 'chardev') ?? (parts[0]?.includes('=') ? undefined : parts[0]);
      const p = chardev ? chardevPaths.get(chardev) : undefined;
      if (p && optValue(parts, 'mode') === 'control') out.push(p);
    }
  }
  return out;
}

/**
 * The unix socket of the first serial port (where the demo guest speaks), if it is one:
 * `-serial unix:PATH,server...`, or `-serial chardev:ID` / `-device isa-serial,chardev=ID` with
 * a unix-socket chardev.
 */
export function serialSocketOfArgv(argv: readonly string[]): string | undefined {
  const { options } = parseQemuArgv(argv);
  const chardevs = new Map<string, string[]>();
  for (const o of options) {
    if (o.name === 'chardev' && o.value) {
      const parts = splitOpts(o.value);
      const id = optValue(parts, 'id');
      if (id) chardevs.set(id, parts);
    }
  }
  const socketOf = (id: string): string | undefined => {
    const parts = chardevs.get(id);
    return parts && (parts[0] === 'socket' || parts[0] === 'unix') ? optValue(parts, 'path') : undefined;
  };
  for (const o of options) {
    if (o.name === 'serial' && o.value) {
      if (o.value.startsWith('chardev:')) return socketOf(o.value.slice('chardev:'.length));
      return legacyUnixPath(o.value);
    }
    if (o.name === 'device' && o.value) {
      const parts = splitOpts(o.value);
      if (parts[0] === 'isa-serial' || optValue(parts, 'driver') === 'isa-serial') {
        const id = optValue(parts, 'chardev');
        return id ? socketOf(id) : undefined;
      }
    }
  }
  return undefined;
}

/**
 * The command line with option `-name` (also `-M` for machine) set by `value(current)`:
 * replaced in place, appended when absent, dropped when `value` returns undefined.
 */
export function withOption(argv: readonly string[], name: string, value: (current: string | undefined) => string | undefined): string[] {
  const { binary, options } = parseQemuArgv(argv);
  const names = name === 'machine' ? ['machine', 'M'] : [name];
  const at = options.findIndex((o) => names.includes(o.name));
  const next = value(at >= 0 ? options[at]!.value : undefined);
  const out = options.filter((o, i) => !names.includes(o.name) || i === at);
  const i = out.findIndex((o) => names.includes(o.name));
  if (next === undefined) return formatQemuArgv(binary, out.filter((o) => !names.includes(o.name)));
  if (i >= 0) out[i] = { name, value: next };
  else out.push({ name, value: next });
  return formatQemuArgv(binary, out);
}

/** The machine type a command line asks for (`-machine pc-i440fx-7.2,accel=kvm`, `-M q35`, `type=q35`), if any. */
export function machineOfArgv(argv: readonly string[]): string | undefined {
  const v = parseQemuArgv(argv).options.filter((o) => o.name === 'machine' || o.name === 'M').at(-1)?.value;
  if (!v) return undefined;
  const first = splitOpts(v)[0] ?? '';
  return (first.startsWith('type=') ? first.slice(5) : first.includes('=') ? optValue(splitOpts(v), 'type') : first) || undefined;
}

/** A `-machine` value with its type set to `type`, its other properties kept (`pc,accel=kvm` -> `pc-i440fx-7.2,accel=kvm`). */
export function withMachineType(value: string | undefined, type: string): string {
  const parts = value ? splitOpts(value) : [];
  const rest = parts.filter((p, i) => !(i === 0 && !p.includes('=')) && !p.startsWith('type='));
  return joinOpts([type, ...rest]);
}

/** Ferry's runtime files of a VM on the host it is being started on. */
export interface RuntimeFiles {
  dir: string;
  qmpSocket: string;
  auxQmpSocket: string;
  serialSocket: string;
  pidFile: string;
}

/**
 * The command line of `argv`'s VM for a host where it lives in `files.dir` (see the header):
 * the guest's hardware unchanged, every host-local path moved into the runtime dir, Ferry's
 * monitors and pid file, daemonized, not paused, not incoming (the caller appends that).
 */
export function rewriteArgvForRuntime(argv: readonly string[], files: RuntimeFiles): string[] {
  const { binary, options } = parseQemuArgv(argv);
  const inDir = (file: string) => path.posix.join(files.dir, file);
  const used = new Set<string>([path.posix.basename(files.qmpSocket), path.posix.basename(files.auxQmpSocket), path.posix.basename(files.serialSocket), path.posix.basename(files.pidFile), 'argv.json']);
  const fresh = (base: string, ext: string) => {
    const clean = base.replace(/[^A-Za-z0-9_.-]/g, '_') || 'chardev';
    let name = `${clean}${ext}`;
    for (let n = 2; used.has(name); n++) name = `${clean}-${n}${ext}`;
    used.add(name);
    return inDir(name);
  };
  const has = (n: string) => options.some((o) => o.name === n);
  const nodefaults = has('nodefaults');

  // The first serial port, by chardev id or as a legacy -serial spec.
  let serialChardev: string | undefined;
  for (const o of options) {
    if (o.name === 'serial' && o.value) {
      if (o.value.startsWith('chardev:')) serialChardev = o.value.slice('chardev:'.length);
      break;
    }
    if (o.name === 'device' && o.value) {
      const parts = splitOpts(o.value);
      if (parts[0] === 'isa-serial' || optValue(parts, 'driver') === 'isa-serial') {
        serialChardev = optValue(parts, 'chardev');
        break;
      }
    }
  }
  // Chardevs that only a dropped monitor uses are dropped with it.
  const monitorChardevs = new Set<string>();
  for (const o of options) {
    if (o.name === 'mon' && o.value) {
      const parts = splitOpts(o.value);
      const id = optValue(parts, 'chardev') ?? (parts[0]?.includes('=') ? undefined : parts[0]);
      if (id) monitorChardevs.add(id);
    }
  }
  const referenced = (id: string) => options.some((o) => o.name !== 'mon' && o.name !== 'chardev' && o.value !== undefined && (o.value === `chardev:${id}` || splitOpts(o.value).includes(`chardev=${id}`)));

  let serialsSeen = 0;
  const serialSpec = (spec: string): string => {
    const first = serialsSeen++ === 0;
    const target = first ? files.serialSocket : fresh(`serial${serialsSeen - 1}`, '.sock');
    if (spec === 'stdio' || spec === 'mon:stdio' || spec.startsWith('unix:')) return `unix:${target},server=on,wait=off`;
    if (spec.startsWith('file:')) return `file:${fresh(`serial${serialsSeen - 1}`, '.log')}`;
    if (spec.startsWith('pipe:')) return `pipe:${fresh(`serial${serialsSeen - 1}`, '')}`;
    return spec; // null, none, pty, vc, tcp:..., chardev:ID (rewritten with its chardev)
  };

  const out: QemuOption[] = [];
  for (const o of options) {
    switch (o.name) {
      case 'qmp':
      case 'qmp-pretty':
      case 'monitor':
      case 'mon':
      case 'pidfile':
      case 'daemonize':
      case 'incoming':
      case 'S':
        continue;
      case 'nographic':
        // -nographic implied a serial and a parallel port on stdio and no display.
        out.push({ name: 'display', value: 'none' });
        if (!nodefaults && !has('serial') && !options.some((x) => x.name === 'device' && /^isa-serial\b/.test(x.value ?? ''))) out.push({ name: 'serial', value: serialSpec('stdio') });
        if (!nodefaults && !has('parallel')) out.push({ name: 'parallel', value: 'null' });
        continue;
      case 'display':
        out.push({ name: 'display', value: /^(none|egl-headless|dbus)\b/.test(o.value ?? '') ? o.value! : 'none' });
        continue;
      case 'serial':
        out.push({ name: 'serial', value: serialSpec(o.value ?? 'null') });
        continue;
      case 'D':
        out.push({ name: 'D', value: fresh('qemu', '.log') });
        continue;
      case 'vnc':
        out.push({ name: 'vnc', value: o.value?.startsWith('unix:') ? `unix:${fresh('vnc', '.sock')}` : o.value! });
        continue;
      case 'chardev': {
        let parts = splitOpts(o.value ?? '');
        const id = optValue(parts, 'id') ?? '';
        if (monitorChardevs.has(id) && !referenced(id)) continue;
        const backend = parts[0];
        if (id === serialChardev) {
          // Whatever it was (pty, stdio, a socket elsewhere): a unix socket Ferry can read.
          parts = ['socket', `id=${id}`, `path=${files.serialSocket}`, 'server=on', 'wait=off', ...parts.slice(1).filter((p) => /^(mux|logfile|logappend)=/.test(p))];
        } else if (backend === 'stdio') {
          parts = ['socket', `id=${id}`, `path=${fresh(id, '.sock')}`, 'server=on', 'wait=off'];
        } else if ((backend === 'socket' || backend === 'unix') && optValue(parts, 'path')) {
          parts = setOpt(parts, 'path', fresh(id || path.posix.basename(optValue(parts, 'path')!), '.sock'));
        } else if ((backend === 'file' || backend === 'pipe') && optValue(parts, 'path')) {
          parts = setOpt(parts, 'path', fresh(id, backend === 'file' ? '.log' : ''));
        }
        if (optValue(parts, 'logfile')) parts = setOpt(parts, 'logfile', fresh(id, '.log'));
        out.push({ name: 'chardev', value: joinOpts(parts) });
        continue;
      }
      default:
        out.push(o);
    }
  }
  out.push(
    { name: 'qmp', value: `unix:${files.qmpSocket},server=on,wait=off` },
    { name: 'qmp', value: `unix:${files.auxQmpSocket},server=on,wait=off` },
    { name: 'pidfile', value: files.pidFile },
    { name: 'daemonize' },
  );
  return formatQemuArgv(binary, out);
}

/** Guest RAM in KiB from `-m` (`512`, `524100k`, `size=1G,slots=...`), or undefined. */
export function memoryKiBOfArgv(argv: readonly string[]): number | undefined {
  const m = parseQemuArgv(argv).options.filter((o) => o.name === 'm').at(-1)?.value;
  if (!m) return undefined;
  const size = /(?:^|,)(?:size=)?(\d+(?:\.\d+)?)([kKmMgGtT]?)[bB]?(?:,|$)/.exec(m);
  if (!size) return undefined;
  const n = Number(size[1]);
  const unit = (size[2] || 'M').toUpperCase();
  const kib = unit === 'K' ? n : unit === 'G' ? n * 1024 * 1024 : unit === 'T' ? n * 1024 * 1024 * 1024 : n * 1024;
  return Math.round(kib);
}
