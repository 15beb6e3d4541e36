/**
 * The timeline file format (`.ferry.jsonl`): a header line, then one JSON object per line
 * for every sample, event, control, phase change and gap, appended as they happen, and an
 * `end` line. A truncated file still opens: every complete line is kept.
 *
 * Reading checks every line against the schema of its record type and the header's format
 * version. A line that fails is reported with its line number and why, never dropped
 * silently. A file written by a newer Ferry (a higher format version) opens read-only: the
 * records this Ferry understands are shown, the others are counted and skipped, and a notice
 * says so. The parser is incremental (one line at a time), so a large file is streamed
 * through it rather than held whole (electron/core/recorder/timeline-reader.ts).
 */
import { z } from 'zod';
import { MIGRATION_PHASES } from './migration';
import type { MigrationFinal, MigrationPhase, MigrationPlan, MigrationSample } from './migration';
import type { PreflightResult } from './preflight';

export const TIMELINE_FORMAT = 'ferry-timeline';
export const TIMELINE_VERSION = 1;
/** A line longer than this is reported and skipped instead of parsed (no record comes near it). */
export const MAX_TIMELINE_LINE_CHARS = 16 * 1024 * 1024;

export interface TimelineHost {
  id: string;
  label: string;
  qemuVersion?: string;
  migrationAddress?: string;
}

/** Where an imported timeline came from, and what its source does not have. */
export interface TimelineImport {
  format: 'proxmox-task-log' | 'qemu-guestperf';
  /** The file it was read from (its name only). */
  name?: string;
  /** Figures the source does not record: shown as absent, never filled in. */
  absent: string[];
  /** How its figures were read (units, rounding, clocks) and what else it holds. */
  notes: string[];
}

export interface TimelineHeader {
  type: 'header';
  format: typeof TIMELINE_FORMAT;
  version: number;
  ferryVersion: string;
  migrationId: string;
  createdAt: number;
  /** 'engine' = Ferry ran it; 'attach' = Ferry watched a migration someone else started; 'import' = read from another tool's log or report. */
  mode: 'engine' | 'attach' | 'import';
  /** The hypervisor driver that carried it out (`qmp`, `libvirt`); absent in older files. */
  driver?: string;
  plan?: MigrationPlan;
  source: TimelineHost;
  destination?: TimelineHost;
  vm: { name: string; memoryMiB?: number; argv?: string[] };
  capabilities?: Record<string, boolean>;
  parameters?: Record<string, unknown>;
  imported?: TimelineImport;
}

export type TimelineRecord =
  | TimelineHeader
  | ({ type: 'sample' } & MigrationSample)
  | { type: 'phase'; t: number; phase: MigrationPhase; from?: MigrationPhase; reason?: string }
  | { type: 'event'; t: number; side: 'source' | 'destination'; event: string; data?: Record<string, unknown> }
  | { type: 'control'; t: number; who: string; action: string; args?: Record<string, unknown>; result: { ok: boolean; error?: string } }
  | { type: 'policy'; t: number; policy: string; action: string; why: string }
  | { type: 'gap'; t: number; side: 'source' | 'destination'; fromT: number; toT: number; reason: string }
  | { type: 'guest'; t: number; side: 'source' | 'destination'; line: string }
  | { type: 'note'; t: number; text: string }
  | { type: 'preflight'; t: number; result: PreflightResult }
  | ({ type: 'end'; t: number } & MigrationFinal);

/** A line (or, for a JSON report, a place) that could not be read, and why. */
export interface TimelineProblem {
  /** 1-based line number in the file, when the input has lines. */
  line?: number;
  /** Where in a structured input (e.g. `progress_history[3]`), when it has no lines. */
  where?: string;
  reason: string;
}

export interface ParsedTimeline {
  header: TimelineHeader | undefined;
  records: TimelineRecord[];
  samples: MigrationSample[];
  end: Extract<TimelineRecord, { type: 'end' }> | undefined;
  /** True when the file stopped mid-line or has no end record (recording was cut short). */
  truncated: boolean;
  /** Lines that did not parse or did not fit their record's schema (kept out of records). */
  problems: TimelineProblem[];
  /** Written by a newer Ferry (format version above TIMELINE_VERSION): shown as far as understood, never appended to. */
  readOnly: boolean;
  /** readOnly: lines of the newer format this Ferry does not understand, skipped. */
  skipped: number;
  /** One-line notices for the viewer and the reports (newer format, unreadable lines). */
  notices: string[];
}

// ---- schemas -------------------------------------------------------------------------
// Loose objects: fields this version does not know are kept (a writer may add optional
// fields without a version bump); a known field of the wrong type fails the line.

const num = z.number();
const optNum = num.optional();
const Side = z.enum(['source', 'destination']);
const Phase = z.enum(MIGRATION_PHASES);
const Host = z.looseObject({ id: z.string(), label: z.string(), qemuVersion: z.string().optional(), migrationAddress: z.string().optional() });

const HeaderSchema = z.looseObject({
  type: z.literal('header'),
  format: z.literal(TIMELINE_FORMAT),
  version: z.number().int().min(1),
  ferryVersion: z.string(),
  migrationId: z.string(),
  createdAt: num,
  mode: z.enum(['engine', 'attach', 'import']),
  plan: z.looseObject({ vm: z.string(), from: z.string(), to: z.string() }).optional(),
  source: Host,
  destination: Host.optional(),
  vm: z.looseObject({ name: z.string(), memoryMiB: optNum, argv: z.array(z.string()).optional() }),
  capabilities: z.record(z.string(), z.boolean()).optional(),
  parameters: z.record(z.string(), z.unknown()).optional(),
  imported: z.looseObject({ format: z.enum(['proxmox-task-log', 'qemu-guestperf']), name: z.string().optional(), absent: z.array(z.string()), notes: z.array(z.string()) }).optional(),
});
/** What a newer format's header must still have for this Ferry to show anything. */
const NewerHeaderSchema = z.looseObject({
  type: z.literal('header'), format: z.literal(TIMELINE_FORMAT), version: z.number().int(), migrationId: z.string(), createdAt: num,
  source: Host, vm: z.looseObject({ name: z.string() }),
});

const SampleSchema = z.looseObject({
  type: z.literal('sample'),
  t: num,
  elapsedMs: num,
  status: z.string(),
  phase: Phase,
  pass: optNum, transferredBytes: optNum, remainingBytes: optNum, totalBytes: optNum, dirtyRate: optNum, transferRate: optNum,
  normalPages: optNum, duplicatePages: optNum, pageSize: optNum, precopyBytes: optNum, downtimeBytes: optNum, postcopyBytes: optNum,
  multifdBytes: optNum, postcopyRequests: optNum, cpuThrottlePct: optNum, expectedDowntimeMs: optNum, setupTimeMs: optNum,
  totalTimeMs: optNum, downtimeMs: optNum, linkRate: optNum, errorDesc: z.string().optional(),
  xbzrle: z.looseObject({ cacheSize: optNum, bytes: num, pages: num, cacheMiss: optNum, cacheMissRate: optNum, encodingRate: optNum, overflow: optNum }).optional(),
  guest: z.looseObject({ side: Side, seq: num, achievedBytesPerS: num, stallMs: num }).optional(),
  storage: z.looseObject({ copiedBytes: num, totalBytes: num, remainingBytes: num, rate: optNum, dirtyRate: optNum, ready: z.boolean(), disks: num }).optional(),
  projection: z.looseObject({ verdict: z.enum(['converging', 'slow', 'never', 'unknown']) }).optional(),
});

const EventRecordSchema = z.looseObject({ type: z.literal('event'), t: num, side: Side, event: z.string(), data: z.record(z.string(), z.unknown()).optional() });
const PolicyRecordSchema = z.looseObject({ type: z.literal('policy'), t: num, policy: z.string(), action: z.string(), why: z.string() });
const GapRecordSchema = z.looseObject({ type: z.literal('gap'), t: num, side: Side, fromT: num, toT: num, reason: z.string() });
const NoteRecordSchema = z.looseObject({ type: z.literal('note'), t: num, text: z.string() });

/**
 * The records a live console learns only from the timeline otherwise: the hypervisors'
 * events, sampling gaps, notes and policy decisions (phases, samples and the end have events
 * of their own). Sent as they are recorded, so the live log says what the timeline says.
 */
export const LiveRecordSchema = z.discriminatedUnion('type', [EventRecordSchema, PolicyRecordSchema, GapRecordSchema, NoteRecordSchema]);
export const LIVE_RECORD_TYPES: ReadonlySet<string> = new Set(['event', 'policy', 'gap', 'note']);
export type LiveRecord = Extract<TimelineRecord, { type: 'event' | 'policy' | 'gap' | 'note' }>;

const RecordSchema = z.discriminatedUnion('type', [
  HeaderSchema,
  SampleSchema,
  z.looseObject({ type: z.literal('phase'), t: num, phase: Phase, from: Phase.optional(), reason: z.string().optional() }),
  EventRecordSchema,
  z.looseObject({ type: z.literal('control'), t: num, who: z.string(), action: z.string(), args: z.record(z.string(), z.unknown()).optional(), result: z.looseObject({ ok: z.boolean(), error: z.string().optional() }) }),
  PolicyRecordSchema,
  GapRecordSchema,
  z.looseObject({ type: z.literal('guest'), t: num, side: Side, line: z.string() }),
  NoteRecordSchema,
  z.looseObject({
    type: z.literal('preflight'), t: num,
    result: z.looseObject({ ok: z.boolean(), tookMs: optNum, checks: z.array(z.looseObject({ id: z.string(), title: z.string(), status: z.enum(['pass', 'warn', 'fail']), reason: z.string(), fix: z.string().optional() })) }),
  }),
  z.looseObject({
    type: z.literal('end'), t: num, outcome: z.enum(['completed', 'failed', 'cancelled']), reason: z.string().optional(),
    totalTimeMs: optNum, setupTimeMs: optNum, downtimeMs: optNum, guestDowntimeMs: optNum, observedDowntimeMs: optNum, transferredBytes: optNum,
    precopyBytes: optNum, downtimeBytes: optNum, postcopyBytes: optNum, passes: optNum, postcopyRequests: optNum,
  }),
]);

const RECORD_TYPES = new Set(['header', 'sample', 'phase', 'event', 'control', 'policy', 'gap', 'guest', 'note', 'preflight', 'end']);

/** A zod failure as one short line: `field: what is wrong` for the first few issues. */
export function issuesText(error: z.ZodError, max = 3): string {
  const parts = error.issues.slice(0, max).map((i) => `${i.path.length ? i.path.join('.') : 'record'}: ${i.message}`);
  return parts.join('; ') + (error.issues.length > max ? `; and ${error.issues.length - max} more` : '');
}

/** Up to `max` problems as one phrase: `line 4 (not JSON), line 9 (sample: pass: …)`. */
export function problemsText(problems: readonly TimelineProblem[], max = 3): string {
  const where = (p: TimelineProblem) => (p.line !== undefined ? `line ${p.line}` : (p.where ?? 'input'));
  return problems.slice(0, max).map((p) => `${where(p)} (${p.reason})`).join(', ') + (problems.length > max ? `, and ${problems.length - max} more` : '');
}

/**
 * Reads a timeline one line at a time: `line()` for every complete line (without its
 * newline), then `finish()` with whatever followed the last newline.
 */
export class TimelineParser {
  private lineNo = 0;
  private readonly records: TimelineRecord[] = [];
  private readonly problems: TimelineProblem[] = [];
  private header: TimelineHeader | undefined;
  private sawFirst = false;
  private newer = false;
  private skipped = 0;

  line(raw: string): void {
    this.lineNo++;
    const text = this.lineNo === 1 ? raw.replace(/^\uFEFF/, '') : raw;
    this.take(text.endsWith('\r') ? text.slice(0, -1) : text, this.lineNo, false);
  }

  /** A line too long to parse: reported, not parsed. */
  tooLong(chars: number): void {
    this.lineNo++;
    this.problems.push({ line: this.lineNo, reason: `longer than ${MAX_TIMELINE_LINE_CHARS / 1024 / 1024} MiB (${chars} characters): skipped` });
  }

  finish(tail = ''): ParsedTimeline {
    // A last line without newline may still be a whole record (writer killed after the write).
    let partial = false;
    if (tail.trim()) partial = !this.take(tail, this.lineNo + 1, true);
    const records = this.records;
    const end = records.find((r): r is Extract<TimelineRecord, { type: 'end' }> => r.type === 'end');
    const samples = records.filter((r): r is { type: 'sample' } & MigrationSample => r.type === 'sample').map(({ type: _t, ...s }) => s as MigrationSample);
    const notices: string[] = [];
    if (this.newer && this.header) {
      notices.push(`Written by a newer Ferry (timeline format ${this.header.version}; this Ferry reads format ${TIMELINE_VERSION}): opened read-only${this.skipped ? `; ${this.skipped} line${this.skipped === 1 ? '' : 's'} it does not understand were skipped` : ''}.`);
    }
    if (this.problems.length) notices.push(`${this.problems.length} line${this.problems.length === 1 ? '' : 's'} could not be read and ${this.problems.length === 1 ? 'was' : 'were'} left out: ${problemsText(this.problems)}.`);
    return { header: this.header, records, samples, end, truncated: partial || !end, problems: this.problems, readOnly: this.newer, skipped: this.skipped, notices };
  }

  /** Returns false when `text` is not JSON (only meaningful for the tail). */
  private take(text: string, lineNo: number, isTail: boolean): boolean {
    if (!text.trim()) return true;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      if (isTail) return false; // cut mid-line: the truncation, not a bad line
      this.problems.push({ line: lineNo, reason: 'not JSON' });
      this.sawFirst = true;
      return true;
    }
    const first = !this.sawFirst;
    this.sawFirst = true;
    const type = value && typeof value === 'object' && !Array.isArray(value) ? (value as { type?: unknown }).type : undefined;
    if (typeof type !== 'string') {
      this.problems.push({ line: lineNo, reason: 'not a record (a JSON object with a "type")' });
      return true;
    }
    if (type === 'header') {
      if (!first) {
        this.problems.push({ line: lineNo, reason: this.header ? 'a second header line' : 'a header line that is not the first line' });
        return true;
      }
      this.takeHeader(value, lineNo);
      return true;
    }
    if (!RECORD_TYPES.has(type)) {
      if (this.newer) this.skipped++;
      else this.problems.push({ line: lineNo, reason: `unknown record type ${JSON.stringify(type)}` });
      return true;
    }
    const r = RecordSchema.safeParse(value);
    if (r.success) this.records.push(r.data as TimelineRecord);
    else if (this.newer) this.skipped++;
    else this.problems.push({ line: lineNo, reason: `${type}: ${issuesText(r.error)}` });
    return true;
  }

  private takeHeader(value: unknown, lineNo: number): void {
    const v = (value as { version?: unknown; format?: unknown });
    if (v.format !== TIMELINE_FORMAT) {
      this.problems.push({ line: lineNo, reason: `header of another format (${JSON.stringify(v.format)}, not ${TIMELINE_FORMAT})` });
      return;
    }
    if (typeof v.version === 'number' && Number.isInteger(v.version) && v.version > TIMELINE_VERSION) {
      this.newer = true;
      const strict = HeaderSchema.safeParse(value);
      const h = strict.success ? strict : NewerHeaderSchema.safeParse(value);
      if (h.success) {
        this.header = h.data as unknown as TimelineHeader;
        this.records.push(this.header);
      } else {
        this.newer = false;
        this.problems.push({ line: lineNo, reason: `header: ${issuesText(h.error)}` });
      }
      return;
    }
    const h = HeaderSchema.safeParse(value);
    if (h.success) {
      this.header = h.data as TimelineHeader;
      this.records.push(this.header);
    } else {
      this.problems.push({ line: lineNo, reason: `header: ${issuesText(h.error)}` });
    }
  }
}

/** Parses a timeline's text, keeping every complete, valid line. */
export function parseTimeline(text: string): ParsedTimeline {
  const p = new TimelineParser();
  let start = 0;
  for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
    if (nl - start > MAX_TIMELINE_LINE_CHARS) p.tooLong(nl - start);
    else p.line(text.slice(start, nl));
    start = nl + 1;
  }
  return p.finish(text.slice(start));
}
