/**
 * What virsh reads and prints, as pure functions: quoting a word for virsh's own command
 * parser (the interactive shell reads lines, not argv), and parsing the replies Ferry asks
 * for. No I/O here.
 *
 * Domain names are data: libvirt allows spaces, quotes, backslashes and any Unicode in
 * them (not "/" and not a newline). Ferry addresses domains by UUID in every command it
 * sends and only ever reads names, so a name never has to survive a parser; where a word
 * must be typed into virsh's shell (a file path, say), {@link quoteVirshArg} writes it the
 * way virsh's tokenizer reads it back.
 */
import { FerryException } from '../../../shared/errors';

/** Words virsh's tokenizer leaves alone. */
const SAFE = /^[A-Za-z0-9_/.,:=@%+-]+$/;

/**
 * Quotes one word for virsh's interactive parser (vshCommandStringGetArg): single quotes
 * keep everything literally, `'` is written `'\''` as in sh. A control character cannot be
 * typed at all (the shell's readline would act on a TAB or ESC before virsh saw it), so it
 * is refused rather than mangled; callers use a domain's UUID instead of such a name.
 */
export function quoteVirshArg(arg: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  const bad = /[\u0000-\u001f\u007f]/.exec(arg);
  if (bad) {
    throw new FerryException('INVALID_REQUEST', `cannot type ${JSON.stringify(arg)} into virsh: it contains the control character U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}`, { arg });
  }
  if (arg === '') return "''";
  if (SAFE.test(arg) && !arg.startsWith('#')) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** One command line for virsh's shell, every word quoted. */
export function virshCommandLine(argv: readonly string[]): string {
  if (argv.length === 0) throw new FerryException('INVALID_REQUEST', 'empty virsh command');
  return argv.map(quoteVirshArg).join(' ');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string): boolean => UUID.test(s);

/** `virsh list --all --uuid --name`: `UUID NAME` per line; the name is everything after the first space, untouched. */
export function parseUuidNameList(text: string): { uuid: string; name: string }[] {
  const out: { uuid: string; name: string }[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const sp = line.indexOf(' ');
    const uuid = sp < 0 ? line : line.slice(0, sp);
    if (!isUuid(uuid)) continue;
    out.push({ uuid: uuid.toLowerCase(), name: sp < 0 ? '' : line.slice(sp + 1) });
  }
  return out;
}

/**
 * `Key:   value` lines (dominfo, nodeinfo, version). The value keeps inner spaces; only the
 * padding after the colon and at the end of the line goes.
 */
export function parseColonTable(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out.set(line.slice(0, i).trim(), line.slice(i + 1).replace(/^\s+/, '').replace(/\s+$/, ''));
  }
  return out;
}

/** A typed parameter as virsh prints it: a number when it is one, else the text. */
function typedValue(v: string): number | string {
  return /^-?\d+(?:\.\d+)?$/.test(v) ? Number(v) : v;
}

export interface RawJobStats {
  /** virDomainJobType: 0 none, 1 bounded, 2 unbounded (a migration runs), 3 completed, 4 failed, 5 cancelled. */
  jobType: number;
  /** The job's typed parameters by libvirt's names (VIR_DOMAIN_JOB_*: memory_processed, downtime, ...). */
  fields: Record<string, number | string>;
}

/** `virsh domjobinfo DOM --rawstats` (also `--completed`): `Job type: N`, then `name: value` lines. */
export function parseRawJobStats(text: string): RawJobStats {
  const fields: Record<string, number | string> = {};
  let jobType = -1;
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z][A-Za-z0-9_. ]*?):\s?(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1]!;
    const value = m[2]!.replace(/\s+$/, '');
    if (key === 'Job type') jobType = Number(value);
    else if (!key.includes(' ')) fields[key] = typedValue(value);
  }
  if (jobType < 0) throw new FerryException('INTERNAL', `virsh domjobinfo printed no job type: ${JSON.stringify(text.slice(0, 200))}`);
  return { jobType, fields };
}

/** `virsh version --daemon`: the versions of the library, the hypervisor and the daemon. */
export function parseVersion(text: string): { library?: string; hypervisor?: string; hypervisorName?: string; daemon?: string } {
  const t = parseColonTable(text);
  const out: { library?: string; hypervisor?: string; hypervisorName?: string; daemon?: string } = {};
  const lib = /libvirt ([\d.]+)/.exec(t.get('Using library') ?? '');
  if (lib) out.library = lib[1]!;
  const hv = /^(\S+) ([\d.]+)/.exec(t.get('Running hypervisor') ?? '');
  if (hv) {
    out.hypervisorName = hv[1]!;
    out.hypervisor = hv[2]!;
  }
  const d = /^([\d.]+)/.exec(t.get('Running against daemon') ?? '');
  if (d) out.daemon = d[1]!;
  return out;
}

/** `virsh nodememstats`: total/free/buffers/cached in KiB. */
export function parseNodeMemStats(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of parseColonTable(text)) {
    const m = /^(\d+)\s*KiB$/.exec(v);
    if (m) out[k] = Number(m[1]);
  }
  return out;
}

/** One line (or block) of `virsh event --all --loop --timestamp`. */
export interface VirshEvent {
  /** Wall-clock ms from virsh's timestamp. */
  t: number;
  /** `lifecycle`, `migration-iteration`, `job-completed`, ... */
  event: string;
  domain: string;
  /** What follows the domain: `Suspended Migrated`, `iteration: '3'`, ... */
  detail: string;
  /** job-completed: its statistics, by libvirt's names. */
  stats?: Record<string, number | string>;
}

const EVENT_HEAD = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}[+-]\d{4}): event '([a-z0-9-]+)' for domain '/;

function parseTimestamp(s: string): number {
  // 2026-12-01 09:49:59.081+0000 -> 2026-12-01T09:49:59.081+00:00
  return Date.parse(`${s.slice(0, 10)}T${s.slice(11, 23)}${s.slice(23, 26)}:${s.slice(26)}`);
}

/**
 * Splits virsh's event stream into events. A domain's name is printed inside single quotes
 * without escaping, so the caller says which names it is after (`names`): the head is
 * matched against each exactly, and events of other domains are dropped. A job-completed
 * event's statistics follow on tab-indented lines.
 */
export class VirshEventParser {
  private pending: VirshEvent | undefined;
  private buf = '';

  constructor(private readonly names: () => readonly string[], private readonly emit: (e: VirshEvent) => void) {}

  push(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      this.line(line);
    }
  }

  /** Emits an event still waiting for more statistics lines. */
  flush(): void {
    if (this.pending) this.emit(this.pending);
    this.pending = undefined;
  }

  private line(line: string): void {
    if (line.startsWith('\t') && this.pending) {
      const m = /^\t([a-z0-9_.]+): (.*)$/.exec(line);
      if (m) {
        (this.pending.stats ??= {})[m[1]!] = typedValue(m[2]!);
        return;
      }
    }
    this.flush();
    const head = EVENT_HEAD.exec(line);
    if (!head) return;
    const rest = line.slice(head[0].length);
    const name = [...this.names()].sort((a, b) => b.length - a.length).find((n) => rest.startsWith(`${n}':`));
    if (name === undefined) return;
    const e: VirshEvent = { t: parseTimestamp(head[1]!), event: head[2]!, domain: name, detail: rest.slice(name.length + 2).trim() };
    if (e.event === 'job-completed') this.pending = e;
    else this.emit(e);
  }
}

const ENTITIES: Record<string, string> = { quot: '"', amp: '&', lt: '<', gt: '>', apos: "'" };

/** Decodes XML character and entity references (`&quot;`, `&#10;`, `&#x41;`). */
export function decodeXmlText(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|[a-z]+);/g, (whole, ref: string) => {
    if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
    if (ref.startsWith('#')) return String.fromCodePoint(Number(ref.slice(1)));
    return ENTITIES[ref] ?? whole;
  });
}

/** `virsh dumpxml DOM --xpath .../@attr`: one ` attr="value"` line per node, values XML-escaped. */
export function parseXpathAttributes(text: string): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][\w.:-]*)="([^"]*)"\s*$/.exec(line);
    if (m) out.push({ name: m[1]!, value: decodeXmlText(m[2]!) });
  }
  return out;
}
