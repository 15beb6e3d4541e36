import { readFileSync } from 'node:fs';
import { FerryException } from '../../../shared/errors';
import { parseTimeline, TIMELINE_FORMAT } from '../../../shared/model/timeline';
import type { ParsedTimeline } from '../../../shared/model/timeline';
import type { MigrationSample } from '../../../shared/model/migration';

export function readTimeline(file: string): ParsedTimeline {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : 'IO_ERROR';
    throw new FerryException(code, `cannot read timeline ${file}: ${(e as Error).message}`, { path: file });
  }
  const parsed = parseTimeline(text);
  if (!parsed.header || parsed.header.format !== TIMELINE_FORMAT) {
    throw new FerryException('INVALID_REQUEST', `${file} is not a Ferry timeline (no ${TIMELINE_FORMAT} header line)`, { path: file });
  }
  return parsed;
}

/** CSV columns, in order: one row per sample. */
export const CSV_COLUMNS: (keyof MigrationSample | 'guestStallMs' | 'guestAchievedBytesPerS')[] = [
  't', 'elapsedMs', 'status', 'phase', 'pass', 'transferredBytes', 'remainingBytes', 'totalBytes',
  'dirtyRate', 'transferRate', 'normalPages', 'duplicatePages', 'postcopyRequests', 'cpuThrottlePct',
  'expectedDowntimeMs', 'downtimeMs', 'totalTimeMs', 'guestStallMs', 'guestAchievedBytesPerS',
];

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function timelineToCsv(t: ParsedTimeline): string {
  const rows = [CSV_COLUMNS.join(',')];
  for (const s of t.samples) {
    rows.push(CSV_COLUMNS.map((c) => {
      if (c === 'guestStallMs') return csvCell(s.guest?.stallMs);
      if (c === 'guestAchievedBytesPerS') return csvCell(s.guest?.achievedBytesPerS);
      return csvCell(s[c]);
    }).join(','));
  }
  return `${rows.join('\n')}\n`;
}

export function timelineToJson(t: ParsedTimeline): string {
  return `${JSON.stringify({ header: t.header, truncated: t.truncated, records: t.records.slice(1) }, null, 2)}\n`;
}
