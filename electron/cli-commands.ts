/**
 * The `ferry` command table: every command is one entry with its usage lines, its options
 * (as node:util parseArgs takes them) and how many positional arguments it takes. The
 * general usage, `ferry help COMMAND` and every usage error are made from it, and every
 * command line is parsed through parseArgs with `strict: true` before anything else runs
 * (no host is touched by a command line that does not parse).
 */
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';

/** Bad usage (exit code 2); `command` names the command it was for. */
export class CliUsageError extends Error {
  constructor(message: string, readonly command?: string) {
    super(message);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface CommandSpec {
  /** One or two words: `migrate`, `lab up`. */
  name: string;
  /** As printed in the general usage and by `ferry help NAME`: synopsis first, then what it does. */
  usage: string[];
  options: Options;
  /** How many positional arguments: exactly N, or from min to max. */
  positionals: number | { min: number; max: number };
}

const str = { type: 'string' } as const;
const bool = { type: 'boolean' } as const;
const output = { type: 'string', short: 'o' } as const;
const json = { json: bool } as const;
/** --copy-storage, --storage-bandwidth, --tunnel: plan fields of migrate and preflight. */
const beyond = { 'copy-storage': bool, 'storage-bandwidth': str, tunnel: str } as const;

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'lab up',
    usage: [
      'ferry lab up [--netns | --libvirt] [--accel kvm|tcg|auto] [--memory MiB] [--qemu-a PATH] [--qemu-b PATH] [--dirty-ring N]',
      '                                 start the local lab (lab-a, lab-b) with the demo VM on lab-a;',
      '                                 --qemu-b: lab-b runs VMs with another QEMU (its firmware found beside it);',
      '                                 --libvirt: two libvirt daemons, the demo guest a domain on lab-a',
    ],
    options: { netns: bool, libvirt: bool, accel: str, memory: str, 'qemu-a': str, 'qemu-b': str, 'dirty-ring': str },
    positionals: 0,
  },
  {
    name: 'lab demo',
    usage: [
      'ferry lab demo [--bandwidth MB/s] [--compare postcopy|converge] [--qemu-b PATH] [-o compare.html]',
      '                                 precopy then postcopy of the same workload (converge: auto-converge',
      '                                 vs dirty-limit, QEMU 8.1+ and KVM); writes their comparison',
    ],
    options: { bandwidth: str, compare: str, 'qemu-b': str, output },
    positionals: 0,
  },
  { name: 'lab down', usage: ['ferry lab down                   stop everything the lab started'], options: {}, positionals: 0 },
  { name: 'lab status', usage: ['ferry lab status [--json]'], options: json, positionals: 0 },
  { name: 'hosts list', usage: ['ferry hosts list [--json]        the hosts Ferry knows, their state and QEMU version'], options: json, positionals: 0 },
  {
    name: 'hosts trust',
    usage: [
      'ferry hosts trust HOST [--fingerprint SHA256:...]',
      '                                 show the host key an SSH host presents; trust it once confirmed',
    ],
    options: { fingerprint: str },
    positionals: 1,
  },
  { name: 'vm list', usage: ['ferry vm list HOST [--json]      the VMs on a host (name, state, memory, QMP socket)'], options: json, positionals: 1 },
  {
    name: 'vm start',
    usage: [
      'ferry vm start HOST VM [--memory MiB] [--accel A] [--ws MiB] [--rate MiB/s|max] [--kernel PATH [--append ARGS]]',
      '                                 start a VM (the demo guest unless --kernel says otherwise)',
    ],
    options: { memory: str, accel: str, ws: str, rate: str, kernel: str, append: str },
    positionals: 2,
  },
  { name: 'vm stop', usage: ['ferry vm stop HOST VM            QMP quit, then SIGTERM/SIGKILL by pid'], options: {}, positionals: 2 },
  {
    name: 'guest',
    usage: [
      "ferry guest HOST VM 'COMMAND'    send a command to the demo guest and print its reply",
      '                                 (r 200 = dirty 200 MiB/s, r max, w 128 = working set, v = verify, s = status)',
    ],
    options: {},
    positionals: 3,
  },
  {
    name: 'migrate',
    usage: [
      'ferry migrate VM --from HOST --to HOST [--postcopy] [--postcopy-after N] [--bandwidth MB/s]',
      '      [--downtime ms] [--auto-converge] [--xbzrle MiB] [--multifd N] [--keep-source] [--record FILE]',
      '      [--capabilities NAME[=off],...]   any other QEMU migration capability (preflight checks QEMU has it)',
      '                                 live-migrate a VM, with a live progress line',
      '      [--policy postcopy-when-never|downtime-steps|dynamic-rate|deadline] [--deadline 90s] [--downtime-ceiling ms]',
      '      [--copy-storage [--storage-bandwidth MB/s]]',
      '                                 copy the VM\'s disk images to the destination first (no shared storage)',
      '      [--tunnel ssh]              carry the migration stream inside SSH (unix sockets relayed by Ferry)',
    ],
    options: {
      from: str, to: str, postcopy: bool, 'postcopy-after': str, bandwidth: str, downtime: str, 'auto-converge': bool, xbzrle: str,
      multifd: str, 'keep-source': bool, record: str, capabilities: str, policy: str, deadline: str, 'downtime-ceiling': str, ...beyond,
    },
    positionals: 1,
  },
  {
    name: 'preflight',
    usage: [
      'ferry preflight VM --from HOST --to HOST [--postcopy] [--capabilities NAME,...] [--json]',
      '      [--copy-storage [--storage-bandwidth MB/s]] [--tunnel ssh]',
      '                                 the checks a migration would run first (exit 1 when one fails)',
    ],
    options: { from: str, to: str, postcopy: bool, capabilities: str, ...json, ...beyond },
    positionals: 1,
  },
  {
    name: 'evacuate',
    usage: [
      'ferry evacuate HOST --to HOST[,HOST] [--parallel K] [--deadline 5m] [--bandwidth MB/s]',
      '                                 move every VM off a host',
    ],
    options: { to: str, parallel: str, deadline: str, bandwidth: str },
    positionals: 1,
  },
  {
    name: 'attach',
    usage: [
      'ferry attach HOST VM [--qmp-socket PATH] [--record FILE]',
      '                                 watch and record a migration someone else runs (no control issued);',
      '                                 VM: Ferry\'s, or a QEMU found through the host\'s qmpSocketGlobs;',
      '                                 --qmp-socket: a VM Ferry did not start, by its QMP socket on HOST',
    ],
    options: { 'qmp-socket': str, record: str },
    positionals: 2,
  },
  {
    name: 'migrations',
    usage: [
      'ferry migrations [--all] [--json]',
      '                                 the migrations the Ferry processes of this user run now',
    ],
    options: { all: bool, ...json },
    positionals: 0,
  },
  {
    name: 'control',
    usage: [
      'ferry control MIGRATION|VM cancel|postcopy|stop-vm|pause-postcopy|recover|continue',
      'ferry control MIGRATION|VM bandwidth MB/s | downtime ms',
      '                                 act on a running migration from another shell, through the Ferry',
      '                                 process that runs it (its timeline records who acted)',
    ],
    options: {},
    positionals: { min: 2, max: 3 },
  },
  {
    name: 'recover',
    usage: [
      'ferry recover                    connect every host; pick up and follow the migrations a Ferry that',
      '                                 was stopped or killed had started (e.g. after kill -9)',
    ],
    options: {},
    positionals: 0,
  },
  {
    name: 'save',
    usage: [
      'ferry save HOST VM FILE [--compress zstd|gzip|none] [--encrypt-to RECIPIENT] [--keep-running] [--layout auto|stream|mapped-ram] [--json]',
      '                                 save a VM\'s state to FILE on its host (relative: the host\'s states dir)',
      '                                 and stop it (--keep-running: resume it, a checkpoint)',
    ],
    options: { compress: str, 'encrypt-to': str, 'keep-running': bool, layout: str, ...json },
    positionals: 3,
  },
  {
    name: 'restore',
    usage: [
      'ferry restore HOST FILE [--name VM] [--identity FILE] [--json]',
      '                                 start the saved VM again from FILE (checked against its sidecar first)',
    ],
    options: { name: str, identity: str, ...json },
    positionals: 2,
  },
  { name: 'states', usage: ['ferry states HOST [--json]       the saved states in a host\'s states dir'], options: json, positionals: 1 },
  {
    name: 'timeline',
    usage: [
      'ferry timeline FILE --csv|--json|--openmetrics',
      '                                 export a recorded timeline (OpenMetrics: for promtool tsdb create-blocks-from)',
    ],
    options: { csv: bool, openmetrics: bool, ...json },
    positionals: 1,
  },
  {
    name: 'report',
    usage: [
      'ferry report FILE [-o report.html] [--with-log]',
      '                                 a self-contained HTML report (charts, plan, preflight, events;',
      '                                 --with-log: Ferry\'s log lines from while it ran, for support)',
    ],
    options: { output, 'with-log': bool },
    positionals: 1,
  },
  {
    name: 'diagnostics',
    usage: ['ferry diagnostics                what to paste into a ticket: hosts, sessions, migrations, last log lines'],
    options: {},
    positionals: 0,
  },
  {
    name: 'compare',
    usage: [
      'ferry compare A B [...] -o compare.html',
      '                                 overlay two or more timelines, final figures side by side',
      '                                 (timeline, report, compare: FILE may also be a Proxmox VE migration',
      '                                 task log or a QEMU guestperf JSON report)',
    ],
    options: { output },
    positionals: { min: 2, max: Infinity },
  },
  {
    name: 'serve',
    usage: [
      'ferry serve [--port N] [--metrics]',
      '                                 the console in a browser; --metrics adds Prometheus /metrics (see README)',
    ],
    options: { port: str, metrics: bool },
    positionals: 0,
  },
  {
    name: 'help',
    usage: ['ferry help [COMMAND]             the usage of one command (also: ferry COMMAND --help)'],
    options: {},
    positionals: { min: 0, max: 2 },
  },
];

const indent = (lines: string[]) => lines.map((l) => `  ${l}\n`).join('');

export const USAGE = `usage: ferry <command> [options]\n\n${COMMANDS.map((c) => indent(c.usage)).join('')}\nExit codes: 0 ok, 1 the operation failed, 2 bad usage.\n`;

export function commandSpec(name: string): CommandSpec {
  const spec = COMMANDS.find((c) => c.name === name);
  if (!spec) throw new Error(`no command "${name}" in the table`);
  return spec;
}

/** The first words of a group of commands (`lab`, `hosts`, `vm`). */
const groups = new Set(COMMANDS.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0]!));

/** Which command argv names, and the arguments after its name. */
export function commandOf(argv: string[]): { spec: CommandSpec; rest: string[] } {
  const [first = '', second] = argv;
  const two = COMMANDS.find((c) => c.name === `${first} ${second ?? ''}`);
  if (two) return { spec: two, rest: argv.slice(2) };
  const one = COMMANDS.find((c) => c.name === first);
  if (one) return { spec: one, rest: argv.slice(1) };
  if (groups.has(first)) {
    const subs = COMMANDS.filter((c) => c.name.startsWith(`${first} `)).map((c) => c.name.split(' ')[1]);
    throw new CliUsageError(second === undefined ? `${first} needs one of: ${subs.join(', ')}` : `${first} has no command "${second}" (its commands: ${subs.join(', ')})`, first);
  }
  throw new CliUsageError(`unknown command: ${first}`);
}

export interface ParsedCommand {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  /** --help / -h was given: print the command's usage instead of running it. */
  help: boolean;
}

const plural = (n: number) => `${n} argument${n === 1 ? '' : 's'}`;

/** Parses a command's arguments with node:util parseArgs (`strict: true`); bad usage throws CliUsageError. */
export function parseCommand(spec: CommandSpec, args: string[]): ParsedCommand {
  const { min, max } = typeof spec.positionals === 'number' ? { min: spec.positionals, max: spec.positionals } : spec.positionals;
  let r;
  try {
    r = parseArgs({ args, options: { ...spec.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: max > 0, strict: true });
  } catch (e) {
    throw new CliUsageError(parseErrorMessage(spec, args, e), spec.name);
  }
  const { help, ...values } = r.values as Record<string, string | boolean | undefined>;
  if (help === true) return { values, positionals: r.positionals, help: true };
  const n = r.positionals.length;
  if (n < min || n > max) {
    const want = min === max ? plural(min) : max === Infinity ? `at least ${plural(min)}` : `${min} to ${max} arguments`;
    throw new CliUsageError(`expected ${want}, got ${n}${n > max ? ` (${r.positionals.slice(max).map((p) => `'${p}'`).join(' ')} is too many)` : ''}`, spec.name);
  }
  return { values, positionals: r.positionals, help: false };
}

/** node's parseArgs errors, in Ferry's words: what was wrong with which option. */
function parseErrorMessage(spec: CommandSpec, args: string[], e: unknown): string {
  const err = e as { code?: string; message?: string };
  const quoted = /'([^']*)'/.exec(err.message ?? '')?.[1] ?? '';
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const long = quoted.startsWith('--') ? quoted.slice(2).split('=')[0]! : undefined;
      const elsewhere = long === undefined ? [] : COMMANDS.filter((c) => c !== spec && long in c.options).map((c) => c.name);
      if (elsewhere.length > 0 && elsewhere.length <= 4) return `--${long} only applies to ${elsewhere.slice(0, -1).join(', ')}${elsewhere.length > 1 ? ' and ' : ''}${elsewhere.at(-1)!}`;
      return `unknown option ${long !== undefined ? `--${long}` : quoted}`;
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      // "Option '-o, --output <value>' argument missing", "Option '--x' argument is ambiguous",
      // "Option '--json' does not take an argument".
      const long = /--[a-z0-9-]+/.exec(quoted)?.[0] ?? quoted;
      const short = /^-[a-zA-Z](?=,)/.exec(quoted)?.[0];
      // Named as it was typed: `-o` or `--output`.
      const option = short && !args.some((a) => a === long || a.startsWith(`${long}=`)) ? short : long;
      if (/does not take an argument/.test(err.message ?? '')) return `${option} takes no value`;
      return `${option} needs a value`;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `takes no arguments (got '${quoted}')`;
    default:
      return (err.message ?? String(e)).split('\n')[0]!;
  }
}

/** `ferry help WORDS`: the entries of a command, or of every command of a group (`ferry help lab`). */
export function helpFor(words: string[]): string {
  const name = words.join(' ');
  const found = COMMANDS.filter((c) => c.name === name || (words.length === 1 && c.name.startsWith(`${name} `)));
  if (found.length === 0) throw new CliUsageError(`no command "${name}"`, 'help');
  return `usage:\n${found.map((c) => indent(c.usage)).join('')}`;
}

/** A usage error as printed: one line naming the command and the problem, then where its usage is. */
export function usageErrorText(message: string, command: string | undefined): string {
  const named = command === undefined || message.startsWith(`${command} `) || message.startsWith(`${command}:`) ? message : `${command}: ${message}`;
  return `ferry: ${named}\nferry: see ferry help${command && command !== 'help' ? ` ${command}` : ''}\n`;
}

export interface ServeOptions {
  /** 0: any free port. */
  port: number;
  metrics: boolean;
}

/** `ferry serve`'s options (`FERRY_PORT` when --port is not given). */
export function serveOptionsOf(c: ParsedCommand, env: NodeJS.ProcessEnv = process.env): ServeOptions {
  const raw = typeof c.values.port === 'string' ? c.values.port : env.FERRY_PORT || '0';
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65535) throw new CliUsageError(`--port must be a port number from 0 to 65535${typeof c.values.port === 'string' ? '' : ` (FERRY_PORT is "${raw}")`}`, 'serve');
  return { port, metrics: c.values.metrics === true };
}
