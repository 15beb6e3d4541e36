/**
 * The timeline file format (`.ferry.jsonl`): a header line, then one JSON object per line
 * for every sample, event, control, phase change and gap, appended as they happen, and an
 * `end` line. A truncated file still opens: every complete line is kept.
 */
import type { MigrationFinal, MigrationPhase, MigrationPlan, MigrationSample } from './migration';
import type { PreflightResult } from './preflight';

export const TIMELINE_FORMAT = 'ferry-timeline';
export const TIMELINE_VERSION = 1;

export interface TimelineHost {
  id: string;
  label: string;
  qemuVersion?: string;
  migrationAddress?: string;
}

export interface TimelineHeader {
  type: 'header';
  format: typeof TIMELINE_FORMAT;
  version: number;
  ferryVersion: string;
  migrationId: string;
  createdAt: number;
  /** 'engine' = Ferry ran it; 'attach' = Ferry watched a migration someone else started. */
  mode: 'engine' | 'attach';
  /** The hypervisor driver that carried it out (`qmp`, `libvirt`); absent in older files. */
  driver?: string;
  plan?: MigrationPlan;
  source: TimelineHost;
  destination?: TimelineHost;
  vm: { name: string; memoryMiB?: number; argv?: string[] };
  capabilities?: Record<string, boolean>;
  parameters?: Record<string, unknown>;
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

export interface ParsedTimeline {
  header: TimelineHeader | undefined;
  records: TimelineRecord[];
  samples: MigrationSample[];
  end: Extract<TimelineRecord, { type: 'end' }> | undefined;
  /** True when the file stopped mid-line or has no end record (recording was cut short). */
  truncated: boolean;
  /** Complete lines that did not parse (kept out of records). */
  badLines: number[];
}

/** Parses a timeline's text, keeping every complete, valid line. */
export function parseTimeline(text: string): ParsedTimeline {
  const lines = text.split('\n');
  const endsClean = text.endsWith('\n');
  const complete = endsClean ? lines.slice(0, -1) : lines.slice(0, -1);
  const tail = endsClean ? '' : (lines.at(-1) ?? '');
  const records: TimelineRecord[] = [];
  const badLines: number[] = [];
  complete.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      const rec = JSON.parse(line) as TimelineRecord;
      if (rec && typeof rec === 'object' && typeof (rec as { type?: unknown }).type === 'string') records.push(rec);
      else badLines.push(i + 1);
    } catch {
      badLines.push(i + 1);
    }
  });
  // A last line without newline may still be a whole record (writer killed after the write).
  let partial = false;
  if (tail.trim()) {
    try {
      records.push(JSON.parse(tail) as TimelineRecord);
    } catch {
      partial = true;
    }
  }
  const header = records[0]?.type === 'header' ? (records[0] as TimelineHeader) : undefined;
  const end = records.find((r): r is Extract<TimelineRecord, { type: 'end' }> => r.type === 'end');
  const samples = records.filter((r): r is { type: 'sample' } & MigrationSample => r.type === 'sample').map(({ type: _t, ...s }) => s as MigrationSample);
  return { header, records, samples, end, truncated: partial || !end, badLines };
}
